package watch

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// testDebounce is short so the tests are quick; quiet periods are
// asserted over 3x this.
const testDebounce = 50 * time.Millisecond

// All contents have the same length, so an in-place overwrite needs no
// truncate.
var (
	oldContent   = []byte("active: blue\nversion: v1.0\n")
	newContent   = []byte("active: blue\nversion: v2.0\n")
	newerContent = []byte("active: green\nversion: v30\n")
)

// startWatcher runs a Watcher on path until the test ends and returns the
// channel its onChange calls arrive on.
func startWatcher(t *testing.T, path string, initial []byte, debounce time.Duration) <-chan Change {
	t.Helper()
	w, err := New(path, initial, debounce, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)))
	require.NoError(t, err)
	calls := make(chan Change, 64)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx, func(c Change) { calls <- c })
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return calls
}

// requireOneChange waits for the next reported change, checks that it
// carries want, and then that no further change follows within 3x the
// debounce.
func requireOneChange(t *testing.T, calls <-chan Change, path string, want []byte, debounce time.Duration) {
	t.Helper()
	select {
	case c := <-calls:
		require.Equal(t, string(want), string(c.Data))
		assert.Equal(t, sha256.Sum256(want), c.Sum)
		fi, err := os.Stat(path)
		require.NoError(t, err)
		assert.True(t, fi.ModTime().Equal(c.ModTime), "ModTime %s is not the file's %s", c.ModTime, fi.ModTime())
	case <-time.After(5 * time.Second):
		require.FailNow(t, "no change reported", "want %q", want)
	}
	requireNoChange(t, calls, 3*debounce)
}

// requireNoChange checks that nothing is reported for d. Proving that
// something does not happen takes waiting out the window.
func requireNoChange(t *testing.T, calls <-chan Change, d time.Duration) {
	t.Helper()
	select {
	case c := <-calls:
		require.FailNow(t, "unexpected change reported", "got %q", c.Data)
	case <-time.After(d):
	}
}

// writePattern is one way programs replace a file's content.
type writePattern struct {
	desc string
	// setup creates the file with data in dir and returns the path to watch.
	setup func(t *testing.T, dir string, data []byte) string
	// write replaces the content of path with data.
	write func(t *testing.T, dir, path string, data []byte)
}

func plainFile(t *testing.T, dir string, data []byte) string {
	t.Helper()
	path := filepath.Join(dir, "config.yaml")
	require.NoError(t, os.WriteFile(path, data, 0o644))
	return path
}

// writeInPlace opens the existing file and overwrites its bytes, as
// editors with backupcopy=yes and `cat > file`-style tools do when the
// length does not change.
func writeInPlace(t *testing.T, _, path string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(data, 0)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	require.NoError(t, f.Close())
}

// writeViaRename writes a swap file next to the target and renames it
// over the target, as vim and most editors save.
func writeViaRename(t *testing.T, dir, path string, data []byte) {
	t.Helper()
	tmp := filepath.Join(dir, "."+filepath.Base(path)+".swp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	require.NoError(t, err)
	_, err = f.Write(data)
	require.NoError(t, err)
	require.NoError(t, f.Sync())
	require.NoError(t, f.Close())
	require.NoError(t, os.Rename(tmp, path))
}

// truncateThenWrite empties the file with one syscall and writes the new
// content with another, gap later. The sleep reproduces the writer's
// pause between the two; it does not wait for a condition.
func truncateThenWrite(gap time.Duration) func(t *testing.T, dir, path string, data []byte) {
	return func(t *testing.T, _, path string, data []byte) {
		t.Helper()
		require.NoError(t, os.Truncate(path, 0))
		time.Sleep(gap)
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		require.NoError(t, err)
		_, err = f.Write(data)
		require.NoError(t, err)
		require.NoError(t, f.Sync())
		require.NoError(t, f.Close())
	}
}

var kubeletSeq atomic.Int64

// kubeletDir returns a fresh timestamped payload directory name of the
// kubelet's atomic writer, e.g. ..2026_11_28_10_00_00.000000001.
func kubeletDir() string {
	return fmt.Sprintf("..2026_11_28_10_00_00.%09d", kubeletSeq.Add(1))
}

// kubeletMount lays out dir as the kubelet mounts a ConfigMap:
// dir/..<ts>/config.yaml, dir/..data -> ..<ts>, dir/config.yaml ->
// ..data/config.yaml.
func kubeletMount(t *testing.T, dir string, data []byte) string {
	t.Helper()
	ts := kubeletDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, ts), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ts, "config.yaml"), data, 0o644))
	require.NoError(t, os.Symlink(ts, filepath.Join(dir, "..data")))
	path := filepath.Join(dir, "config.yaml")
	require.NoError(t, os.Symlink(filepath.Join("..data", "config.yaml"), path))
	return path
}

// kubeletUpdate is the kubelet's atomic writer: a new timestamped dir with
// the new payload, a ..data_tmp symlink to it renamed over ..data, then
// the old timestamped dir removed.
func kubeletUpdate(t *testing.T, dir, _ string, data []byte) {
	t.Helper()
	old, err := os.Readlink(filepath.Join(dir, "..data"))
	require.NoError(t, err)
	ts := kubeletDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, ts), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ts, "config.yaml"), data, 0o644))
	require.NoError(t, os.Symlink(ts, filepath.Join(dir, "..data_tmp")))
	require.NoError(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	require.NoError(t, os.RemoveAll(filepath.Join(dir, old)))
}

func writePatterns() []writePattern {
	return []writePattern{
		{desc: "in-place write", setup: plainFile, write: writeInPlace},
		{desc: "editor writes a temp file and renames it over", setup: plainFile, write: writeViaRename},
		{desc: "truncate then write within the debounce", setup: plainFile, write: truncateThenWrite(testDebounce / 5)},
		{desc: "truncate then write after the debounce", setup: plainFile, write: truncateThenWrite(3 * testDebounce)},
		{desc: "kubelet atomic writer swaps ..data", setup: kubeletMount, write: kubeletUpdate},
	}
}

func TestWatcher_ReportsEachWritePatternExactlyOnce(t *testing.T) {
	for _, test := range writePatterns() {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := test.setup(t, dir, oldContent)
			calls := startWatcher(t, path, oldContent, testDebounce)

			test.write(t, dir, path, newContent)
			requireOneChange(t, calls, path, newContent, testDebounce)

			// A watch on the replaced file itself would go deaf here.
			test.write(t, dir, path, newerContent)
			requireOneChange(t, calls, path, newerContent, testDebounce)
		})
	}
}

func TestWatcher_IdenticalContentIsNotReported(t *testing.T) {
	for _, test := range writePatterns() {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := test.setup(t, dir, oldContent)
			calls := startWatcher(t, path, oldContent, testDebounce)

			test.write(t, dir, path, oldContent)
			requireNoChange(t, calls, 3*testDebounce)

			// The watcher is still alive: a real change comes through once.
			test.write(t, dir, path, newContent)
			requireOneChange(t, calls, path, newContent, testDebounce)
		})
	}
}

func TestWatcher_DeletedFileIsNotReportedAndItsReturnIsOnce(t *testing.T) {
	dir := t.TempDir()
	path := plainFile(t, dir, oldContent)
	calls := startWatcher(t, path, oldContent, testDebounce)

	require.NoError(t, os.Remove(path))
	requireNoChange(t, calls, 3*testDebounce)

	require.NoError(t, os.WriteFile(path, newContent, 0o644))
	requireOneChange(t, calls, path, newContent, testDebounce)
}

func TestWatcher_EmptiedFileIsNotReported(t *testing.T) {
	dir := t.TempDir()
	path := plainFile(t, dir, oldContent)
	calls := startWatcher(t, path, oldContent, testDebounce)

	require.NoError(t, os.Truncate(path, 0))

	requireNoChange(t, calls, 3*testDebounce)
}

func TestWatcher_BurstOfWritesReportsOnlyTheLastContent(t *testing.T) {
	// A longer debounce keeps 20 back-to-back writes one burst even on a
	// loaded CI machine.
	const debounce = 200 * time.Millisecond
	dir := t.TempDir()
	path := plainFile(t, dir, oldContent)
	calls := startWatcher(t, path, oldContent, debounce)

	var last []byte
	for i := range 20 {
		last = fmt.Appendf(nil, "active: blue\nversion: v1.%02d\n", i)
		require.NoError(t, os.WriteFile(path, last, 0o644))
	}

	requireOneChange(t, calls, path, last, debounce)
}

func TestWatcher_OtherFilesInTheDirectoryAreNotReported(t *testing.T) {
	dir := t.TempDir()
	path := plainFile(t, dir, oldContent)
	calls := startWatcher(t, path, oldContent, testDebounce)

	require.NoError(t, os.WriteFile(filepath.Join(dir, "token"), []byte("secret"), 0o600))
	writeViaRename(t, dir, filepath.Join(dir, "other.yaml"), newContent)
	require.NoError(t, os.Remove(filepath.Join(dir, "token")))

	requireNoChange(t, calls, 3*testDebounce)
}

func TestWatcher_RunReturnsWhenContextIsCancelled(t *testing.T) {
	dir := t.TempDir()
	path := plainFile(t, dir, oldContent)
	w, err := New(path, oldContent, testDebounce, zaptest.NewLogger(t))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.Run(ctx, func(Change) {})
	}()

	cancel()

	select {
	case <-done:
	case <-time.After(5 * time.Second):
		require.FailNow(t, "Run did not return after cancel")
	}
}

func TestNew_MissingDirectoryIsAnError(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "absent")

	_, err := New(filepath.Join(dir, "config.yaml"), nil, testDebounce, zap.NewNop())

	require.Error(t, err)
	assert.Contains(t, err.Error(), dir)
}

// Regression test for issue 11: a file that exists but cannot be read was
// only logged, and its repair to the content last reported was then not
// reported at all, so the gateway could neither record the failure nor
// clear it.
func TestWatcher_UnreadableFileIsReportedOnceAndItsRepairIsReported(t *testing.T) {
	testCases := []struct {
		desc    string
		breakIt func(t *testing.T, path string)
		wantErr string
	}{
		{
			desc: "directory",
			breakIt: func(t *testing.T, path string) {
				require.NoError(t, os.Remove(path))
				require.NoError(t, os.Mkdir(path, 0o755))
			},
			wantErr: "is a directory",
		},
		{
			desc: "over the size limit",
			breakIt: func(t *testing.T, path string) {
				require.NoError(t, os.Truncate(path, config.MaxFileSize+1))
			},
			wantErr: "over the 4 MiB limit",
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := plainFile(t, dir, oldContent)
			calls := startWatcher(t, path, oldContent, testDebounce)

			test.breakIt(t, path)

			select {
			case c := <-calls:
				require.Error(t, c.Err)
				assert.Contains(t, c.Err.Error(), test.wantErr)
				assert.Empty(t, c.Data)
			case <-time.After(5 * time.Second):
				require.FailNow(t, "the unreadable file is not reported")
			}
			// The same error is not reported again on the next event.
			require.NoError(t, os.WriteFile(filepath.Join(dir, "other"), nil, 0o644))
			requireNoChange(t, calls, 3*testDebounce)

			require.NoError(t, os.RemoveAll(path))
			writeViaRename(t, dir, path, oldContent)
			requireOneChange(t, calls, path, oldContent, testDebounce)
		})
	}
}
