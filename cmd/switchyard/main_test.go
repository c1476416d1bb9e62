package main

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a command or a gateway run by the tests
// leaves a goroutine behind: the CLI closes its connections, the gateway
// stops everything it started.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// fasthttp starts one goroutine per process, on the first server
		// use, that refreshes the cached Date header every second; it has no
		// way to stop.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		// fasthttp's worker pool cleaner notices Stop only after its
		// time.Sleep(MaxIdleWorkerDuration, 10s by default) returns, so it
		// outlives a cleanly shut down server by up to 10s.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
	)
}
