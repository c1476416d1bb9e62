// Package fleete2e proves fleet mode (package fleet) with real parts:
// three switchyard processes against a real kube-apiserver and etcd on
// loopback (package test/k8s), simulated model servers as the pools, and
// the RBAC of deploy/k8s. Its tests need the build tag k8s:
//
//	make test-k8s
//
// which builds kube-apiserver and etcd once (make k8s-bin) and runs
//
//	go test -tags k8s -count=1 -v ./test/fleet/
//
// In CI (CI=true) missing binaries fail the run; elsewhere they skip it.
package fleete2e
