package state

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad feeds arbitrary bytes as the state file: Load must never panic,
// and anything it accepts must name a color and a time.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(`{"active": "green", "version": "v2.7", "trigger": "admin", "at": "2026-11-28T10:00:00Z", "generation": 3}`))
	f.Add([]byte(`{"active": "green", "at": `))
	f.Add([]byte(`{"active": "purple", "at": "2026-11-28T10:00:00Z"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, FileName), data, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := s.Load()
		if err == nil && (!rec.Active.Valid() || rec.At.IsZero()) {
			t.Fatalf("accepted a record without a color or time: %+v", rec)
		}
	})
}
