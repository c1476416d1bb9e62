// Package observe checks Switchyard's observability as a whole: the
// metrics a running gateway exports pass promtool's lint, the alerting
// rules and the Grafana dashboard under deploy/ only use metrics that
// exist, and a real Prometheus scraping the gateway sees traffic move from
// blue to green.
package observe

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a gateway, a model server, a Prometheus
// wait or an HTTP connection outlives its test.
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
