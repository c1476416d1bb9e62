package proxy

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves goroutines behind: every
// server, client, drain watcher and backend a test starts must be stopped.
//
// The ignores are fasthttp goroutines that are stopped, or cannot be, but
// exit lazily. Each sits in time.Sleep, so it is matched anywhere in the
// stack rather than at the top. A server or client that was never shut down
// is still caught through its other goroutines (the Serve accept loop, the
// workers, the connections).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Started once per process on first server use to refresh the
		// cached Date header every second; fasthttp offers no way to stop it.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		// Each Server's idle-worker sweeper checks its stop channel only
		// between sleeps of MaxIdleWorkerDuration (10s by default), so it
		// outlives Shutdown by up to 10s.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		// The bench rig's HostClient (bench_test.go, used by alloc_test.go)
		// sweeps idle connections on a 10s sleep and exits only after the
		// sweep that finds none left.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
	)
}
