package state

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
)

func openStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(t.TempDir())
	require.NoError(t, err)
	return s
}

func TestStore_SaveThenLoadRoundTrips(t *testing.T) {
	s := openStore(t)
	want := Record{Active: config.Green, Version: "v2.7", Trigger: "admin",
		At: time.Date(2026, 11, 28, 10, 0, 0, 123456789, time.UTC), Generation: 42}

	require.NoError(t, s.Save(want))
	got, err := s.Load()

	require.NoError(t, err)
	assert.Equal(t, want.Active, got.Active)
	assert.Equal(t, want.Version, got.Version)
	assert.Equal(t, want.Trigger, got.Trigger)
	assert.Equal(t, want.Generation, got.Generation)
	assert.True(t, want.At.Equal(got.At), "At: want %s, got %s", want.At, got.At)
}

func TestStore_SaveReplacesTheRecord(t *testing.T) {
	s := openStore(t)
	first := Record{Active: config.Green, Version: "v2", Trigger: "admin", At: time.Now(), Generation: 2}
	second := Record{Active: config.Blue, Version: "v1", Trigger: "rollback", At: time.Now().Add(time.Second), Generation: 3}

	require.NoError(t, s.Save(first))
	require.NoError(t, s.Save(second))
	got, err := s.Load()

	require.NoError(t, err)
	assert.Equal(t, config.Blue, got.Active)
	assert.Equal(t, "rollback", got.Trigger)
	assert.EqualValues(t, 3, got.Generation)
}

func TestStore_SaveLeavesNoTempFilesBehind(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	require.NoError(t, err)

	for i := range 3 {
		require.NoError(t, s.Save(Record{Active: config.Green, Trigger: "admin", At: time.Now(), Generation: uint64(i + 1)}))
	}

	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	assert.Equal(t, []string{FileName}, names)
}

func TestOpen_CreatesTheStateDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var", "lib", "switchyard")

	s, err := Open(dir)

	require.NoError(t, err)
	assert.Equal(t, filepath.Join(dir, FileName), s.Path())
	fi, err := os.Stat(dir)
	require.NoError(t, err)
	assert.True(t, fi.IsDir())
}

func TestStore_LoadWithoutAFileIsErrNone(t *testing.T) {
	s := openStore(t)

	_, err := s.Load()

	assert.ErrorIs(t, err, ErrNone)
}

func TestStore_LoadOfACorruptFileIsAnErrorNamingThePath(t *testing.T) {
	testCases := []struct {
		desc string
		data string
	}{
		{desc: "empty file", data: ""},
		{desc: "half a record, as a torn write leaves", data: `{"active": "green", "ver`},
		{desc: "not JSON", data: "active: green\n"},
		{desc: "JSON null", data: "null"},
		{desc: "an array", data: `[{"active": "green"}]`},
		{desc: "unknown color", data: `{"active": "purple", "at": "2026-11-28T10:00:00Z"}`},
		{desc: "no time", data: `{"active": "green"}`},
		{desc: "bad time", data: `{"active": "green", "at": "yesterday"}`},
		{desc: "unknown field", data: `{"active": "green", "at": "2026-11-28T10:00:00Z", "color": "blue"}`},
		{desc: "wrong type", data: `{"active": 1, "at": "2026-11-28T10:00:00Z"}`},
		{desc: "negative generation", data: `{"active": "green", "at": "2026-11-28T10:00:00Z", "generation": -1}`},
		{desc: "binary garbage", data: "\x00\xff\xfe{\x01"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			s := openStore(t)
			require.NoError(t, os.WriteFile(s.Path(), []byte(test.data), 0o644))

			var err error
			require.NotPanics(t, func() { _, err = s.Load() })

			require.Error(t, err)
			assert.False(t, errors.Is(err, ErrNone), "a corrupt file is not the same as no file")
			assert.Contains(t, err.Error(), s.Path())
		})
	}
}

func TestStore_SaveRewritesACorruptFile(t *testing.T) {
	s := openStore(t)
	require.NoError(t, os.WriteFile(s.Path(), []byte("{garbage"), 0o644))

	require.NoError(t, s.Save(Record{Active: config.Green, Trigger: "admin", At: time.Now(), Generation: 5}))
	got, err := s.Load()

	require.NoError(t, err)
	assert.Equal(t, config.Green, got.Active)
}

func TestChoose_NewestIntentWins(t *testing.T) {
	fileMod := time.Date(2026, 11, 28, 10, 0, 0, 0, time.UTC)
	testCases := []struct {
		desc       string
		fileActive config.Color
		fileMod    time.Time
		fileSHA    string
		rec        Record
		haveRecord bool
		want       config.Color
		wantWhy    string
	}{
		{
			desc: "no record: the file", fileActive: config.Blue, fileMod: fileMod,
			want: config.Blue, wantWhy: "config file",
		},
		{
			desc: "switch recorded after the file changed: the record", fileActive: config.Blue, fileMod: fileMod,
			rec:        Record{Active: config.Green, Trigger: "admin", At: fileMod.Add(time.Minute)},
			haveRecord: true, want: config.Green, wantWhy: "state file",
		},
		{
			desc: "file edited after the switch: the file", fileActive: config.Blue, fileMod: fileMod,
			rec:        Record{Active: config.Green, Trigger: "admin", At: fileMod.Add(-time.Minute)},
			haveRecord: true, want: config.Blue, wantWhy: "edited after the recorded switch",
		},
		{
			desc: "same color, newer record: the file", fileActive: config.Green, fileMod: fileMod,
			rec:        Record{Active: config.Green, Trigger: "admin", At: fileMod.Add(time.Minute)},
			haveRecord: true, want: config.Green, wantWhy: "config file",
		},
		{
			desc: "same color, older record: the file", fileActive: config.Blue, fileMod: fileMod,
			rec:        Record{Active: config.Blue, Trigger: "rollback", At: fileMod.Add(-time.Minute)},
			haveRecord: true, want: config.Blue, wantWhy: "config file",
		},
		{
			desc: "record newer than a file of unknown age: the record", fileActive: config.Blue,
			rec:        Record{Active: config.Green, Trigger: "admin", At: fileMod},
			haveRecord: true, want: config.Green, wantWhy: "state file",
		},
		{
			desc: "file edited after the switch but already applied by the gateway: the record", fileActive: config.Blue, fileMod: fileMod,
			fileSHA:    "abc",
			rec:        Record{Active: config.Green, Trigger: "admin", At: fileMod.Add(-time.Minute), ConfigSHA256: "abc"},
			haveRecord: true, want: config.Green, wantWhy: "unchanged since the gateway applied it",
		},
		{
			desc: "file changed while the gateway was down: its time decides", fileActive: config.Blue, fileMod: fileMod,
			fileSHA:    "def",
			rec:        Record{Active: config.Green, Trigger: "admin", At: fileMod.Add(-time.Minute), ConfigSHA256: "abc"},
			haveRecord: true, want: config.Blue, wantWhy: "edited after the recorded switch",
		},
		{
			desc: "a record not loaded is ignored", fileActive: config.Blue, fileMod: fileMod,
			rec:  Record{Active: config.Green, Trigger: "admin", At: fileMod.Add(time.Minute)},
			want: config.Blue, wantWhy: "config file",
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()

			got, why := Choose(test.fileActive, test.fileMod, test.fileSHA, test.rec, test.haveRecord)

			assert.Equal(t, test.want, got)
			assert.Contains(t, why, test.wantWhy)
		})
	}
}

// Regression test (fixed): Load read the whole file, whatever its size.
// A record is a few hundred bytes; anything past MaxFileBytes is refused
// unread, even when it would decode.
func TestStore_LoadRefusesAFileLargerThanTheCap(t *testing.T) {
	testCases := []struct {
		desc    string
		size    int
		wantErr string
	}{
		{desc: "a valid record padded to the cap", size: MaxFileBytes},
		{desc: "a valid record padded past the cap", size: MaxFileBytes + 1, wantErr: "larger than 65536 bytes"},
		{desc: "a valid record padded to a megabyte", size: 1 << 20, wantErr: "larger than 65536 bytes"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			s := openStore(t)
			rec := `{"active": "green", "at": "2026-11-28T10:00:00Z"}`
			require.NoError(t, os.WriteFile(s.Path(), []byte(rec+strings.Repeat(" ", test.size-len(rec))), 0o644))

			got, err := s.Load()

			if test.wantErr == "" {
				require.NoError(t, err)
				assert.Equal(t, config.Green, got.Active)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), test.wantErr)
			assert.Contains(t, err.Error(), s.Path())
		})
	}
}

func TestOpen_RefusesADirectoryAsTheStateFile(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.Mkdir(filepath.Join(dir, FileName), 0o755))

	_, err := Open(dir)

	require.ErrorIs(t, err, ErrNotRegular)
	assert.Contains(t, err.Error(), "is a directory; remove it")
}

// A write that fails shows in Status until one succeeds, and each failure
// is counted.
func TestStore_StatusReportsFailedWritesUntilOneSucceeds(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s, err := Open(dir)
	require.NoError(t, err)
	assert.Equal(t, Status{Path: s.Path(), Persisted: true}, s.Status(), "a fresh writable store")

	// The directory goes away under the gateway (a volume unmounted): even
	// root cannot write there.
	require.NoError(t, os.RemoveAll(dir))
	for gen := uint64(2); gen <= 3; gen++ {
		err = s.Save(Record{Active: config.Green, Trigger: "admin", At: time.Now(), Generation: gen})
		require.Error(t, err)
	}
	st := s.Status()
	assert.False(t, st.Persisted)
	assert.EqualValues(t, 3, st.Generation)
	assert.Contains(t, st.LastError, dir)
	assert.NotNil(t, st.LastErrorAt)
	assert.EqualValues(t, 2, st.WriteFailures)

	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, s.Save(Record{Active: config.Blue, Trigger: "admin", At: time.Now(), Generation: 4}))
	st = s.Status()
	assert.True(t, st.Persisted)
	assert.EqualValues(t, 4, st.Generation)
	assert.Empty(t, st.LastError)
	assert.Nil(t, st.LastErrorAt)
	assert.EqualValues(t, 2, st.WriteFailures, "failures are counted since start")
}

func TestOpen_ReportsAStateDirItCannotWriteTo(t *testing.T) {
	// /proc/self/fdinfo exists and refuses new files, even to root.
	dir := "/proc/self/fdinfo"
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Skip("needs Linux /proc")
	}

	s, err := Open(dir)

	require.NoError(t, err, "an unwritable state_dir does not stop the gateway")
	st := s.Status()
	assert.False(t, st.Persisted)
	assert.Contains(t, st.LastError, "state_dir /proc/self/fdinfo is not writable")
	assert.EqualValues(t, 1, st.WriteFailures)
}
