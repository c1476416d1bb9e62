package console

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: the
// gateways, fake model servers and browsers the tests start must all be
// stopped.
//
// The ignores are fasthttp goroutines that are stopped, or cannot be, but
// exit lazily on a sleep or ticker of their own.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Refreshes the cached Date header every second; never stops.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		// A server's idle-worker sweeper notices Stop only after its 10s
		// sleep.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
		// The mirror's client: its sweepers exit on the first sweep that
		// finds no connection, a second or more after Close.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*Client).mCleaner"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
	)
}
