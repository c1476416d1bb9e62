package watch

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a watcher goroutine behind:
// every Run must stop when its context is cancelled.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
