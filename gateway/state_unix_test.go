//go:build unix

package gateway_test

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/gateway"
	"github.com/switchyard/switchyard/gatewaytest"
	"github.com/switchyard/switchyard/state"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// Regression test (fixed): a FIFO as the state file blocked start-up
// until a writer came, and a stop signal went unheard meanwhile. Run
// refuses it, and any state file that is not a regular file, at once.
func TestRun_RefusesANonRegularStateFileAtOnce(t *testing.T) {
	testCases := []struct {
		desc    string
		make    func(path string) error
		wantMsg string
	}{
		{desc: "FIFO", make: func(path string) error { return syscall.Mkfifo(path, 0o600) }, wantMsg: "named pipe (FIFO)"},
		{desc: "directory", make: func(path string) error { return os.Mkdir(path, 0o755) }, wantMsg: "a directory"},
	}
	b := startBackends(t, 0)
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			dir := t.TempDir()
			require.NoError(t, test.make(filepath.Join(dir, state.FileName)))
			cfg, err := config.Parse([]byte(b.config(fileConfig{StateDir: dir})))
			require.NoError(t, err)
			cfg.Listen, cfg.Admin.Listen = "127.0.0.1:0", "127.0.0.1:0"
			done := make(chan error, 1)

			go func() {
				done <- gateway.Run(context.Background(), gateway.Options{Config: cfg, Log: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))})
			}()

			select {
			case err := <-done:
				require.ErrorIs(t, err, state.ErrNotRegular)
				assert.Contains(t, err.Error(), test.wantMsg)
				assert.Contains(t, err.Error(), "remove it")
			case <-time.After(gatewaytest.WaitFor):
				// Let the blocked reader go so the test can end.
				if f, err := os.OpenFile(filepath.Join(dir, state.FileName), os.O_WRONLY, 0); err == nil {
					f.Close()
				}
				require.FailNow(t, "Run blocked on the state file")
			}
		})
	}
}
