# Switchyard. `make run` starts the demo; `make test` installs what the
# tests need (Debian packages, as root) and runs every check CI runs.

GO      ?= go
BIN     := bin/switchyard
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
# Debian packages the end-to-end, observability and browser tests run for
# real.
# python3-grpcio and python3-protobuf run the model server's KServe v2 gRPC
# API; curl is the HTTP/2 client of the proxy's h2c and TLS tests.
TEST_DEBS := python3-torch python3-flask gunicorn prometheus chromium python3-grpcio python3-protobuf curl
# What `make proto` needs besides Go: protoc, and grpc_tools for the Python
# gRPC stubs. The generated code is checked in; only changing the .proto
# needs these.
PROTO_DEBS := protobuf-compiler python3-grpc-tools
PROTOC_GEN_GO      ?= google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC ?= google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
# Iterations, not seconds: a duration can end mid-input and fail with
# "context deadline exceeded" on a busy machine.
FUZZTIME ?= 20000x

export PATH := $(PATH):/usr/local/go/bin

.PHONY: run build test deps lint test-go test-alloc fuzz test-browser test-e2e test-model-server test-k8s k8s-bin bench bench-deps proto clean

run: build
	./$(BIN) demo

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/switchyard

test: deps lint test-go test-alloc fuzz test-browser test-model-server test-e2e test-k8s

# kube-apiserver and etcd for the fleet tests, built from source once into a
# cache outside the repository, keyed by version (test/k8sbin/build.sh):
# about 11 minutes on 2 cores the first time, nothing after.
K8S_BIN ?= $(HOME)/.cache/switchyard/k8s/v1.36.3-etcd3.6.13

# Installs the Debian packages the tests need when any is missing. A
# failure here fails the build: CI never skips a test for a missing part.
deps:
	@missing=$$(for p in $(TEST_DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@$(GO) version

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags k8s ./test/... ./fleet/

test-go:
	$(GO) test -race -count=1 -timeout 15m ./...

# The zero-allocation check cannot run under the race detector, which
# allocates on its own.
test-alloc:
	$(GO) test -count=1 -run 'DoesNotAllocate' ./...

# Each fuzz target runs briefly on top of its checked-in corpus.
fuzz:
	@set -e; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

# The web console in headless Chromium against an in-process gateway.
# CI=true makes a missing chromium a failure, never a skip. Screenshots go
# to $SWITCHYARD_SCREENSHOTS (default: a new temporary directory).
test-browser:
	$(GO) vet -tags browser ./console/
	CI=$${CI:-true} $(GO) test -race -count=1 -tags browser -timeout 10m -run 'InBrowser' ./console/

test-model-server:
	cd deploy/model-server && /usr/bin/python3 -m unittest -v test_app.py test_grpc.py

test-e2e: build
	$(GO) test -count=1 -tags e2e -timeout 15m ./e2e/...

k8s-bin:
	SWITCHYARD_K8S_BIN=$(K8S_BIN) test/k8sbin/build.sh

# Fleet mode against a real kube-apiserver and etcd on loopback, with RBAC
# from deploy/k8s. CI=true makes missing binaries a failure, never a skip.
test-k8s: k8s-bin
	CI=$${CI:-true} SWITCHYARD_K8S_BIN=$(K8S_BIN) $(GO) test -count=1 -tags k8s -timeout 20m -v ./test/k8s/ ./test/fleet/

bench-deps:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx haproxy caddy wrk

bench: build
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./proxy/ | tee bench/results/go-bench.txt
	$(GO) run ./bench/cmd/bench -switchyard $(BIN)
	$(GO) run ./bench/cmd/grpcbench -switchyard $(BIN)

# Regenerates the Go and Python code of the KServe v2 gRPC proto
# (proto/inference/open_inference_grpc.proto, as published by
# kserve/open-inference-protocol). The output is checked in.
proto:
	@missing=$$(for p in $(PROTO_DEBS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi
	GOBIN=$(CURDIR)/bin $(GO) install $(PROTOC_GEN_GO)
	GOBIN=$(CURDIR)/bin $(GO) install $(PROTOC_GEN_GO_GRPC)
	cd proto/inference && PATH=$(CURDIR)/bin:$$PATH protoc -I . \
		--go_out=. --go_opt=paths=source_relative --go_opt=Mopen_inference_grpc.proto=github.com/switchyard/switchyard/proto/inference \
		--go-grpc_out=. --go-grpc_opt=paths=source_relative --go-grpc_opt=Mopen_inference_grpc.proto=github.com/switchyard/switchyard/proto/inference \
		open_inference_grpc.proto
	cd deploy/model-server && protoc -I ../../proto/inference --python_out=. open_inference_grpc.proto && \
		/usr/bin/python3 -m grpc_tools.protoc -I ../../proto/inference --grpc_python_out=. open_inference_grpc.proto

clean:
	rm -rf bin
