// Command apiserver is kube-apiserver built from k8s.io/kubernetes as a
// library, for the real-API-server tests (build tag k8s). It lives in its own
// module so that the main module's go.mod never pulls k8s.io/kubernetes.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
