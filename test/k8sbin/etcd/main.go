// Command etcd is etcd's server built as a library, for the real-API-server
// tests (build tag k8s). It lives in its own module so that the main module's
// go.mod never pulls go.etcd.io/etcd/server.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
