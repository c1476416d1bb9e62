//go:build unix

package admin_test

import (
	"net/http"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A FIFO named as the token file is refused at once: reading it would
// block until a writer came, at start-up or in the middle of a call.
func TestSetTokenFile_RefusesAFIFOAtOnce(t *testing.T) {
	rg := newRig(t)
	path := filepath.Join(t.TempDir(), "token")
	require.NoError(t, syscall.Mkfifo(path, 0o600))
	done := make(chan error, 1)

	go func() { done <- rg.admin.SetTokenFile(path) }()

	select {
	case err := <-done:
		require.Error(t, err)
		assert.Contains(t, err.Error(), "not a regular file")
	case <-time.After(10 * time.Second):
		require.FailNow(t, "blocked on the FIFO")
	}
	assert.Equal(t, http.StatusUnauthorized, rg.statusWith(t, ""))
}
