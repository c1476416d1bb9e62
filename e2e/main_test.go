//go:build e2e

// Package e2e runs the built switchyard binary in front of two real PyTorch
// model servers (deploy/model-server under gunicorn) on loopback and checks
// the blue/green behaviours under continuous load, plus the Kubernetes
// manifests against the config they embed. Run it with
//
//	go test -count=1 -tags e2e -timeout 15m ./e2e/...
//
// It needs /usr/bin/python3 with torch, flask, gunicorn and grpcio (Debian
// packages python3-torch, python3-flask, gunicorn, python3-grpcio) and
// fails, never skips, without them.
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"go.uber.org/goleak"
)

// python is the interpreter whose Debian packages provide torch, flask and
// gunicorn; the pyenv python on PATH lacks them.
const python = "/usr/bin/python3"

var (
	// repoRoot is the repository root, the parent of this package.
	repoRoot string
	// switchyardBin is the binary TestMain built from ./cmd/switchyard.
	switchyardBin string
)

func TestMain(m *testing.M) {
	dir, err := setup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		if dir != "" {
			_ = os.RemoveAll(dir)
		}
		os.Exit(1)
	}
	// Every process a test starts is killed and reaped by its cleanup, and
	// every load goroutine is stopped: nothing may outlive the tests.
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		_ = os.RemoveAll(dir)
		os.Exit(code)
	}))
}

// setup finds the repository, checks the model server's Python packages and
// builds the binary into a temporary directory, which it returns.
func setup() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	repoRoot = filepath.Dir(wd)
	if _, err := os.Stat(filepath.Join(repoRoot, "go.mod")); err != nil {
		return "", fmt.Errorf("no go.mod above the test directory %s: %w", wd, err)
	}
	if out, err := exec.Command(python, "-c", "import torch, flask, gunicorn, grpc").CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s cannot import torch, flask, gunicorn and grpc (%w): %s\n"+
			"install the Debian packages python3-torch python3-flask gunicorn python3-grpcio (make deps)", python, err, out)
	}
	dir, err := os.MkdirTemp("", "switchyard-e2e-")
	if err != nil {
		return "", err
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(dir, "switchyard")
	build := exec.Command(goTool, "build", "-o", bin, "./cmd/switchyard")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		return dir, fmt.Errorf("go build ./cmd/switchyard: %w\n%s", err, out)
	}
	switchyardBin = bin
	return dir, nil
}
