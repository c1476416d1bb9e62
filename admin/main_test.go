package admin

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: every
// test server, client connection and router drain watcher must be stopped.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
