package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Regression test for issue 12 item 10: the config file was read whole,
// whatever its size or kind. What is not a small regular file is refused
// without being read, with an error that names the path and does not
// claim the content is invalid.
func TestReadFile_RefusesWhatIsNotASmallRegularFile(t *testing.T) {
	testCases := []struct {
		desc    string
		make    func(t *testing.T, path string)
		wantErr string
	}{
		{
			desc: "100 MB file",
			make: func(t *testing.T, path string) {
				// Sparse: no disk used; reading it would allocate 100 MB.
				require.NoError(t, os.WriteFile(path, []byte(minimal), 0o644))
				require.NoError(t, os.Truncate(path, 100<<20))
			},
			wantErr: "is 104857600 bytes, over the 4 MiB limit for a config file; check that the path names the config file",
		},
		{
			desc: "one byte over the limit",
			make: func(t *testing.T, path string) {
				require.NoError(t, os.WriteFile(path, []byte(minimal), 0o644))
				require.NoError(t, os.Truncate(path, MaxFileSize+1))
			},
			wantErr: "over the 4 MiB limit",
		},
		{
			desc:    "directory",
			make:    func(t *testing.T, path string) { require.NoError(t, os.Mkdir(path, 0o755)) },
			wantErr: "is a directory; point at the YAML file itself",
		},
		{
			desc:    "symlink loop",
			make:    func(t *testing.T, path string) { require.NoError(t, os.Symlink(filepath.Base(path), path)) },
			wantErr: "too many levels of symbolic links",
		},
		{
			// Opening a FIFO for reading would block until a writer came.
			desc:    "named pipe",
			make:    func(t *testing.T, path string) { require.NoError(t, syscall.Mkfifo(path, 0o644)) },
			wantErr: "is not a regular file",
		},
		{
			desc:    "missing",
			make:    func(*testing.T, string) {},
			wantErr: "no such file or directory",
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "switchyard.yaml")
			test.make(t, path)

			data, err := ReadFile(path)

			require.Error(t, err)
			assert.Nil(t, data)
			assert.Contains(t, err.Error(), "config: ")
			assert.Contains(t, err.Error(), path)
			assert.Contains(t, err.Error(), test.wantErr)
			assert.NotErrorIs(t, err, ErrInvalid, "an unreadable file says nothing about its content")

			_, _, err = Load(path)
			require.Error(t, err)
			assert.Contains(t, err.Error(), test.wantErr, "Load reads through ReadFile")
		})
	}
}

func TestReadFile_FileAtTheLimitIsRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "switchyard.yaml")
	require.NoError(t, os.WriteFile(path, []byte(minimal), 0o644))
	require.NoError(t, os.Truncate(path, MaxFileSize))

	data, err := ReadFile(path)

	require.NoError(t, err)
	assert.Len(t, data, MaxFileSize)
	assert.True(t, strings.HasPrefix(string(data), minimal))
}

func TestParse_RefusesDataOverTheLimit(t *testing.T) {
	data := []byte(minimal + "#" + strings.Repeat("x", MaxFileSize) + "\n")

	cfg, err := Parse(data)

	require.Error(t, err)
	assert.Nil(t, cfg)
	assert.ErrorIs(t, err, ErrInvalid)
	assert.Contains(t, err.Error(), "over the 4 MiB limit")
}

// A "billion laughs" document: each anchor holds nine aliases of the one
// before, so expanding the last would make 9^8 strings. go.yaml.in/yaml/v3
// never expands aliases while building the node tree, refuses excessive
// aliasing when decoding into untyped values, and cannot expand a sequence
// of sequences into the config's typed fields; whatever the path, Parse
// must refuse such a file quickly.
func TestParse_RefusesAnAliasBomb(t *testing.T) {
	var b strings.Builder
	b.WriteString("warmup:\n  headers:\n    a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	prev := "a"
	for _, name := range []string{"b", "c", "d", "e", "f", "g", "h", "i"} {
		b.WriteString("    " + name + ": &" + name + " [")
		for i := range 9 {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString("*" + prev)
		}
		b.WriteString("]\n")
		prev = name
	}
	bombInHeaders := b.String() + minimal
	bombInBackends := strings.Replace(bombInHeaders, "backends: [10.0.0.1:5000]", "backends: *i", 1)
	testCases := []struct {
		desc    string
		yaml    string
		wantErr string
	}{
		{desc: "aliases in a map of strings", yaml: bombInHeaders, wantErr: "line 3: cannot unmarshal !!seq into string"},
		{desc: "aliases in a list of strings", yaml: bombInBackends, wantErr: "line 3: cannot unmarshal !!seq into string"},
		{desc: "aliases under an unknown key", yaml: strings.Replace(bombInHeaders, "warmup:\n  headers:", "extra:\n  headers:", 1), wantErr: `unknown key "extra"`},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			start := time.Now()

			cfg, err := Parse([]byte(test.yaml))

			require.Error(t, err)
			assert.Nil(t, cfg)
			var es Errors
			assert.True(t, errors.As(err, &es), "%T: %v", err, err)
			assert.Less(t, time.Since(start), 5*time.Second, "the aliases were expanded")
			assert.Contains(t, err.Error(), test.wantErr)
		})
	}
}
