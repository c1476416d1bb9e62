//go:build unix

package state

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Regression test (fixed): a FIFO as the state file blocked start-up in
// os.ReadFile until a writer came, and the gateway ignored SIGTERM
// meanwhile. Open refuses it at once, and Load, should one appear later,
// fails at once instead of blocking.
func TestStateFile_FIFOIsRefusedAtOnce(t *testing.T) {
	testCases := []struct {
		desc string
		// setup puts a FIFO in place and returns the call that must not
		// block on it.
		setup func(t *testing.T, dir string) func() error
	}{
		{
			desc: "Open",
			setup: func(t *testing.T, dir string) func() error {
				require.NoError(t, syscall.Mkfifo(filepath.Join(dir, FileName), 0o600))
				return func() error { _, err := Open(dir); return err }
			},
		},
		{
			desc: "Load after Open",
			setup: func(t *testing.T, dir string) func() error {
				s, err := Open(dir)
				require.NoError(t, err)
				require.NoError(t, syscall.Mkfifo(s.Path(), 0o600))
				return func() error { _, err := s.Load(); return err }
			},
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			call := test.setup(t, dir)
			done := make(chan error, 1)
			go func() { done <- call() }()

			select {
			case err := <-done:
				require.ErrorIs(t, err, ErrNotRegular)
				assert.Contains(t, err.Error(), "named pipe (FIFO)")
				assert.Contains(t, err.Error(), "remove it")
			case <-time.After(10 * time.Second):
				// Unblock the reader so the test can end.
				if f, err := os.OpenFile(filepath.Join(dir, FileName), os.O_WRONLY, 0); err == nil {
					f.Close()
				}
				require.FailNow(t, "blocked on the FIFO")
			}
		})
	}
}
