// Package watch reports logical changes of one file. It watches the
// file's directory, not the file, because editors replace files by rename
// and the kubelet updates a mounted ConfigMap by swapping a "..data"
// symlink: a watch on the file itself would go deaf after the first such
// change. The file is read as config.ReadFile reads a config file, within
// config.MaxFileSize.
package watch

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/switchyard/switchyard/config"
	"go.uber.org/zap"
)

// DefaultDebounce is how long the directory must be quiet before the file
// is read: a kubelet swap or an editor's save is a burst of events.
const DefaultDebounce = 150 * time.Millisecond

// Change is one new version of the file, or a failure to read it.
type Change struct {
	Data []byte
	Sum  [sha256.Size]byte
	// ModTime is the file's modification time (of the symlink target).
	ModTime time.Time
	// Err, when set, says why the file exists but cannot be read
	// (permission denied, a symlink loop, a directory, over
	// config.MaxFileSize); Data is then empty. It is reported once until
	// the error changes, and the next readable content after it is
	// reported even when it equals the last content reported, so that a
	// fix that brings back the running content is seen.
	Err error
}

// Watcher reports every new content of one file exactly once.
type Watcher struct {
	path     string
	debounce time.Duration
	log      *zap.Logger
	fsw      *fsnotify.Watcher
	last     [sha256.Size]byte
	missing  bool
	// lastErr is the read error last reported, "" when the last read
	// succeeded.
	lastErr string
}

// New watches path's directory. initial is the content already loaded, so
// that only real changes are reported.
func New(path string, initial []byte, debounce time.Duration, log *zap.Logger) (*Watcher, error) {
	if debounce <= 0 {
		debounce = DefaultDebounce
	}
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch: %w (raise fs.inotify.max_user_instances?)", err)
	}
	dir := filepath.Dir(path)
	if err := fsw.Add(dir); err != nil {
		_ = fsw.Close()
		return nil, fmt.Errorf("watch: watching %s: %w", dir, err)
	}
	return &Watcher{path: path, debounce: debounce, log: log, fsw: fsw, last: sha256.Sum256(initial)}, nil
}

// Run calls onChange with each new content, and each new read error,
// until ctx is cancelled, then closes the watcher. onChange runs on Run's
// goroutine, one at a time.
func (w *Watcher) Run(ctx context.Context, onChange func(Change)) {
	defer w.fsw.Close()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.fsw.Events:
			if !ok {
				return
			}
			// Any event in the directory may change what path resolves to
			// (a ..data swap renames a symlink, not our file): read after
			// the burst settles and let the content decide.
			if ev.Op == fsnotify.Chmod {
				continue
			}
			timer.Reset(w.debounce)
		case err, ok := <-w.fsw.Errors:
			if !ok {
				return
			}
			w.log.Warn("config watch error; POST /admin/reload re-reads the file", zap.Error(err))
		case <-timer.C:
			if c, ok := w.read(); ok {
				onChange(c)
			}
		}
	}
}

// read returns the file's content if it changed since the last report,
// or a read error that differs from the last one reported.
func (w *Watcher) read() (Change, bool) {
	data, err := config.ReadFile(w.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if !w.missing {
				w.missing = true
				w.log.Warn("config file deleted; keeping the running config until it comes back", zap.String("path", w.path))
			}
			return Change{}, false
		}
		if err.Error() == w.lastErr {
			return Change{}, false
		}
		w.lastErr = err.Error()
		w.log.Warn("reading config file failed; keeping the running config", zap.String("path", w.path), zap.Error(err))
		return Change{Err: err}, true
	}
	if w.missing {
		w.missing = false
		w.log.Info("config file is back", zap.String("path", w.path))
	}
	// A truncate-then-write shows an empty file in between; the write
	// that follows brings another event.
	if len(data) == 0 {
		return Change{}, false
	}
	sum := sha256.Sum256(data)
	if sum == w.last && w.lastErr == "" {
		return Change{}, false
	}
	w.last, w.lastErr = sum, ""
	var mod time.Time
	if fi, err := os.Stat(w.path); err == nil {
		mod = fi.ModTime()
	}
	return Change{Data: data, Sum: sum, ModTime: mod}, true
}
