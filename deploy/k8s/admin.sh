#!/usr/bin/env bash
# Runs the switchyard CLI against the fleet. In fleet mode (fleet.yaml) one
# call on any replica moves every replica, so this reaches one replica
# through the switchyard-admin Service (kubectl port-forward, no exec into
# pods), hands the CLI the token from the switchyard-admin-token Secret,
# and runs the command given:
#
#   deploy/k8s/admin.sh status
#   deploy/k8s/admin.sh switch green --wait      # returns when every live replica serves green
#   deploy/k8s/admin.sh rollback --wait
#   deploy/k8s/admin.sh traffic green=5
#
# The exit status is the CLI's: 0 done, 1 refused (the reason on stderr, a
# refusing replica named), 2 usage or connection error.
# NAMESPACE (default ml), KUBECTL (default kubectl) and SWITCHYARD (default
# switchyard on PATH, else bin/switchyard) can be overridden.
set -euo pipefail

ns=${NAMESPACE:-ml}
kubectl=${KUBECTL:-kubectl}
switchyard=${SWITCHYARD:-$(command -v switchyard || echo bin/switchyard)}
if (($# == 0)); then
  echo "usage: $0 COMMAND [ARGS...]   (a switchyard CLI command: status, switch green --wait, ...)" >&2
  exit 2
fi

tmp=$(mktemp -d)
pf=""
trap '[[ -z $pf ]] || kill "$pf" 2>/dev/null; rm -rf "$tmp"' EXIT

# The token reaches the CLI through a file, so it never shows in ps output.
umask 077
"$kubectl" -n "$ns" get secret switchyard-admin-token -o jsonpath='{.data.token}' | base64 -d >"$tmp/token"

"$kubectl" -n "$ns" port-forward svc/switchyard-admin :9901 >"$tmp/pf.log" 2>&1 &
pf=$!
port=""
for _ in $(seq 100); do
  port=$(sed -n 's/^Forwarding from 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$tmp/pf.log" | head -n 1)
  if [[ -n $port ]]; then break; fi
  if ! kill -0 "$pf" 2>/dev/null; then break; fi
  sleep 0.1
done
if [[ -z $port ]]; then
  echo "admin.sh: cannot port-forward to svc/switchyard-admin in namespace $ns:" >&2
  cat "$tmp/pf.log" >&2
  exit 2
fi

"$switchyard" "$@" --admin "http://127.0.0.1:$port" --token-file "$tmp/token"
