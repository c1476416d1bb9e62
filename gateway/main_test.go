package gateway

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if Run leaves a goroutine behind after it
// returns: probes, warmups, the watcher, listeners and connections must all
// be stopped.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// fasthttp starts one goroutine per process, on the first server
		// use, that refreshes the cached Date header every second; it has no
		// way to stop.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		// fasthttp's worker pool cleaner notices Stop only after its
		// time.Sleep(MaxIdleWorkerDuration, 10s by default) returns, so it
		// outlives a cleanly shut down server by up to 10s. A server that
		// was not shut down still shows up through its accept loop.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
	)
}
