package warmup

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine behind: every
// test server and Warmer must be closed.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
