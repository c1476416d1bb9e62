#!/bin/sh
# build.sh builds the kube-apiserver and etcd that the real-API-server tests
# (build tag k8s) start on loopback, into a cache outside the repository keyed
# by version, and does nothing for a binary that is already there.
#
#   SWITCHYARD_K8S_BIN   where to put them; default
#                        $HOME/.cache/switchyard/k8s/v1.36.3-etcd3.6.13
#
# A cold build of kube-apiserver takes about 11 minutes on 2 cores; etcd about
# one. Prints the directory on its last line.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=${SWITCHYARD_K8S_BIN:-$HOME/.cache/switchyard/k8s/v1.36.3-etcd3.6.13}
mkdir -p "$bin"
build() { # name
	if [ -x "$bin/$1" ]; then return; fi
	echo "building $1 into $bin (once; kube-apiserver takes ~11 min on 2 cores)" >&2
	start=$(date +%s)
	(cd "$here/$1" && go build -trimpath -ldflags='-s -w' -o "$bin/$1.tmp" .)
	mv "$bin/$1.tmp" "$bin/$1"
	echo "built $1 in $(( $(date +%s) - start ))s" >&2
}
build etcd
build apiserver
echo "$bin"
