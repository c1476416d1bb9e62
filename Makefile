# Switchyard. `make run` starts the demo; `make test` installs what the
# tests need (Debian packages, as root) and runs every check CI runs.

GO      ?= go
BIN     := bin/switchyard
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
# Debian packages the end-to-end and observability tests run for real.
TEST_DEBS := python3-torch python3-flask gunicorn prometheus
# Iterations, not seconds: a duration can end mid-input and fail with
# "context deadline exceeded" on a busy machine.
FUZZTIME ?= 20000x

export PATH := $(PATH):/usr/local/go/bin

.PHONY: run build test deps lint test-go test-alloc fuzz test-e2e test-model-server bench bench-deps clean

run: build
	./$(BIN) demo

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/switchyard

test: deps lint test-go test-alloc fuzz test-model-server test-e2e

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

test-model-server:
	cd deploy/model-server && /usr/bin/python3 -m unittest -v test_app.py

test-e2e: build
	$(GO) test -count=1 -tags e2e -timeout 15m ./e2e/...

bench-deps:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx haproxy caddy

bench: build
	$(GO) test -run '^$$' -bench . -benchmem -count 5 ./proxy/ | tee bench/results/go-bench.txt
	$(GO) run ./bench/cmd/bench -switchyard $(BIN)

clean:
	rm -rf bin
