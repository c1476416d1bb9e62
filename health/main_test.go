package health

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves goroutines behind: every
// Checker, Warmer, model server and gateway a test starts must be stopped.
//
// The ignores are fasthttp goroutines of the gateway tests that exit
// lazily or never (see proxy/main_test.go): each sleeps between checks of
// its stop signal, so they are matched anywhere in the stack.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
	)
}
