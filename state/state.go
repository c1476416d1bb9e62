// Package state persists the last switch, so that a color chosen through
// the admin API survives a restart.
package state

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
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

// Store reads and writes the state file of one directory.
type Store struct {
	path string
}

// Open returns the store in dir, creating dir if needed.
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("state: creating state_dir %s: %w", dir, err)
	}
	return &Store{path: filepath.Join(dir, FileName)}, nil
}

// Path returns the state file's path.
func (s *Store) Path() string { return s.path }

// ErrNone is returned by Load when no state was saved yet.
var ErrNone = errors.New("state: no state saved yet")

// Load reads the record. A corrupt file is an error the caller reports and
// ignores; it never stops the gateway.
func (s *Store) Load() (Record, error) {
	data, err := os.ReadFile(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return Record{}, ErrNone
	}
	if err != nil {
		return Record{}, fmt.Errorf("state: reading %s: %w", s.path, err)
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

// Save writes r atomically and durably: a temp file is written and
// fsynced, renamed over the old one, and the directory is fsynced, so a
// crash leaves either the old record or the new one, never half of one.
func (s *Store) Save(r Record) error {
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
