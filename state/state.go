// Package state persists the last switch, so that a color chosen through
// the admin API survives a restart.
package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/switchyard/switchyard/config"
)

// FileName is the state file inside the state directory.
const FileName = "switchyard-state.json"

// Record is the persisted routing intent.
type Record struct {
	Active     config.Color `json:"active"`
	Version    string       `json:"version"`
	Trigger    string       `json:"trigger"`
	At         time.Time    `json:"at"`
	Generation uint64       `json:"generation"`
	// ConfigSHA256 is the config file content the gateway had applied when
	// it last wrote the record: a restart on that same file keeps the
	// switch, whatever the file's modification time says.
	ConfigSHA256 string `json:"config_sha256,omitempty"`
}

// MaxFileBytes bounds what Load reads: a record is a few hundred bytes,
// so anything larger is not a state file.
const MaxFileBytes = 64 << 10

// ErrNotRegular is returned for a state file that is not a regular file:
// reading a FIFO would block start-up forever, and a directory or device
// cannot be replaced by a record.
var ErrNotRegular = errors.New("state: not a regular file")

// Store reads and writes the state file of one directory, and remembers
// how its last write went.
type Store struct {
	path string

	mu     sync.Mutex
	status Status
}

// Status is how the store's last write went, for GET /admin/status.
type Status struct {
	// Path is the state file.
	Path string `json:"path"`
	// Persisted is false while the last write failed: the routing state
	// in force is not on disk and will not survive a restart.
	Persisted bool `json:"persisted"`
	// Generation is the routing generation of the last record written or
	// attempted; 0 before the first.
	Generation uint64 `json:"generation,omitempty"`
	// LastError says why the last write failed; empty once one succeeds.
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
	// WriteFailures counts failed writes since start, the probe made by
	// Open included.
	WriteFailures uint64 `json:"write_failures"`
}

// Open returns the store in dir, creating dir if needed. It refuses a
// state file that is not a regular file (ErrNotRegular). It also tries to
// write in dir: a directory it cannot write to does not stop the gateway,
// but shows in Status from the start rather than at the first switch.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("state: creating state_dir %s: %w", dir, err)
	}
	s := &Store{path: filepath.Join(dir, FileName)}
	s.status = Status{Path: s.path, Persisted: true}
	if fi, err := os.Stat(s.path); err == nil && !fi.Mode().IsRegular() {
		return nil, notRegular(s.path, fi)
	}
	f, err := os.CreateTemp(dir, ".state-probe-*.tmp")
	if err != nil {
		s.record(0, fmt.Errorf("state: state_dir %s is not writable: %w; switches will not survive a restart until it is", dir, err))
		return s, nil
	}
	f.Close()
	_ = os.Remove(f.Name())
	return s, nil
}

func notRegular(path string, fi fs.FileInfo) error {
	kind := "a " + fi.Mode().Type().String()
	switch t := fi.Mode().Type(); {
	case t&fs.ModeNamedPipe != 0:
		kind = "a named pipe (FIFO)"
	case t&fs.ModeDir != 0:
		kind = "a directory"
	case t&fs.ModeSocket != 0:
		kind = "a socket"
	case t&fs.ModeDevice != 0:
		kind = "a device"
	}
	return fmt.Errorf("%w: %s is %s; remove it, the gateway writes a regular file there", ErrNotRegular, path, kind)
}

// Status returns how the last write went.
func (s *Store) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// record notes the outcome of a write of generation gen.
func (s *Store) record(gen uint64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status.Generation = gen
	if err == nil {
		s.status.Persisted, s.status.LastError, s.status.LastErrorAt = true, "", nil
		return
	}
	now := time.Now()
	s.status.Persisted, s.status.LastError, s.status.LastErrorAt = false, err.Error(), &now
	s.status.WriteFailures++
}

// Path returns the state file's path.
func (s *Store) Path() string { return s.path }

// ErrNone is returned by Load when no state was saved yet.
var ErrNone = errors.New("state: no state saved yet")

// Load reads the record. A corrupt file is an error the caller reports and
// ignores; it never stops the gateway.
func (s *Store) Load() (Record, error) {
	data, err := s.read()
	if errors.Is(err, fs.ErrNotExist) {
		return Record{}, ErrNone
	}
	if err != nil {
		return Record{}, err
	}
	var r Record
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return Record{}, fmt.Errorf("state: %s is corrupt (%v); delete it or switch again to rewrite it", s.path, err)
	}
	if !r.Active.Valid() || r.At.IsZero() {
		return Record{}, fmt.Errorf("state: %s has no valid active color and time; delete it or switch again to rewrite it", s.path)
	}
	return r, nil
}

// read returns the state file's content. It opens without blocking and
// checks what it opened, so a FIFO put in its place fails at once instead
// of hanging the gateway, and reads at most MaxFileBytes.
func (s *Store) read() ([]byte, error) {
	f, err := os.OpenFile(s.path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("state: reading %s: %w", s.path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("state: reading %s: %w", s.path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, notRegular(s.path, fi)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("state: reading %s: %w", s.path, err)
	}
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("state: %s is larger than %d bytes, so it is not a state file; delete it or switch again to rewrite it", s.path, MaxFileBytes)
	}
	return data, nil
}

// Save writes r atomically and durably: a temp file is written and
// fsynced, renamed over the old one, and the directory is fsynced, so a
// crash leaves either the old record or the new one, never half of one.
// The outcome shows in Status.
func (s *Store) Save(r Record) error {
	err := s.save(r)
	s.record(r.Generation, err)
	return err
}

func (s *Store) save(r Record) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("state: encoding: %w", err)
	}
	dir := filepath.Dir(s.path)
	f, err := os.CreateTemp(dir, ".state-*.tmp")
	if err != nil {
		return fmt.Errorf("state: writing to %s: %w", dir, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if _, err := f.Write(append(data, '\n')); err != nil {
		f.Close()
		return fmt.Errorf("state: writing %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("state: syncing %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("state: closing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("state: replacing %s: %w", s.path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// Choose applies the start-up rule: the newest intent wins. A switch
// recorded after the config file last changed beats the file's active; an
// edit of the file after the switch beats the record. A file the gateway
// had already seen and applied after the switch (fileSHA equals the
// record's) did not countermand it, so the record wins.
func Choose(fileActive config.Color, fileModTime time.Time, fileSHA string, rec Record, haveRecord bool) (config.Color, string) {
	if !haveRecord || rec.Active == fileActive {
		return fileActive, "config file"
	}
	if rec.ConfigSHA256 != "" && rec.ConfigSHA256 == fileSHA {
		return rec.Active, fmt.Sprintf("state file (switch by %s at %s; the config file is unchanged since the gateway applied it)", rec.Trigger, rec.At.Format(time.RFC3339))
	}
	if rec.At.After(fileModTime) {
		return rec.Active, fmt.Sprintf("state file (switch by %s at %s is newer than the config file)", rec.Trigger, rec.At.Format(time.RFC3339))
	}
	return fileActive, fmt.Sprintf("config file (edited after the recorded switch at %s)", rec.At.Format(time.RFC3339))
}
