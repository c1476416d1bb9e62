package admin_test

import (
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/admin"
	"github.com/switchyard/switchyard/proxy"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func bearer(token string) http.Header { return http.Header{"Authorization": {"Bearer " + token}} }

// writeToken writes token to path in place (truncate and write), as
// `echo TOKEN > file` does.
func writeToken(t *testing.T, path, token string) {
	t.Helper()
	require.NoError(t, os.WriteFile(path, []byte(token+"\n"), 0o600))
}

// newTokenFile writes token to a new file and returns its path.
func newTokenFile(t *testing.T, token string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "admin-token")
	writeToken(t, path, token)
	return path
}

// statusWith returns the status code of GET /admin/status with token.
func (rg *rig) statusWith(t *testing.T, token string) int {
	t.Helper()
	return rg.do(t, http.MethodGet, "/admin/status", "", bearer(token)).status
}

// Regression test (fixed): the gateway read admin.token_file once, at
// start and on a config change, so rewriting the file left the old token
// valid and the new one refused. The file is followed now: the call after
// a rewrite is checked against the new token, whatever way it was written.
func TestTokenFile_ARewrittenTokenReplacesTheOldOnTheNextCall(t *testing.T) {
	const oldToken = "old-token-0001"
	testCases := []struct {
		desc string
		// setup makes the token file, holding oldToken; rewrite puts
		// newToken in it.
		setup   func(t *testing.T) string
		rewrite func(t *testing.T, path, newToken string)
		// newToken differs from oldToken; same length for the cases a
		// size check alone would miss.
		newToken string
	}{
		{
			desc:     "in place, another length",
			setup:    func(t *testing.T) string { return newTokenFile(t, oldToken) },
			rewrite:  writeToken,
			newToken: "new-token-000002",
		},
		{
			desc:     "in place, same length, right after the read",
			setup:    func(t *testing.T) string { return newTokenFile(t, oldToken) },
			rewrite:  writeToken,
			newToken: "new-token-0002",
		},
		{
			desc:  "in place, same length, same modification time as the read file",
			setup: func(t *testing.T) string { return newTokenFile(t, oldToken) },
			rewrite: func(t *testing.T, path, token string) {
				fi, err := os.Stat(path)
				require.NoError(t, err)
				writeToken(t, path, token)
				require.NoError(t, os.Chtimes(path, fi.ModTime(), fi.ModTime()))
			},
			newToken: "new-token-0002",
		},
		{
			desc:  "renamed over, as editors save",
			setup: func(t *testing.T) string { return newTokenFile(t, oldToken) },
			rewrite: func(t *testing.T, path, token string) {
				tmp := path + ".tmp"
				writeToken(t, tmp, token)
				require.NoError(t, os.Rename(tmp, path))
			},
			newToken: "new-token-0002",
		},
		{
			desc: "kubelet secret update: ..data symlink swapped",
			setup: func(t *testing.T) string {
				dir := t.TempDir()
				require.NoError(t, os.Mkdir(filepath.Join(dir, "..v1"), 0o700))
				writeToken(t, filepath.Join(dir, "..v1", "token"), oldToken)
				require.NoError(t, os.Symlink("..v1", filepath.Join(dir, "..data")))
				require.NoError(t, os.Symlink("..data/token", filepath.Join(dir, "token")))
				return filepath.Join(dir, "token")
			},
			rewrite: func(t *testing.T, path, token string) {
				dir := filepath.Dir(path)
				require.NoError(t, os.Mkdir(filepath.Join(dir, "..v2"), 0o700))
				writeToken(t, filepath.Join(dir, "..v2", "token"), token)
				require.NoError(t, os.Symlink("..v2", filepath.Join(dir, "..data_tmp")))
				require.NoError(t, os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
			},
			newToken: "new-token-0002",
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			rg := newRig(t)
			path := test.setup(t)
			require.NoError(t, rg.admin.SetTokenFile(path))
			require.Equal(t, http.StatusOK, rg.statusWith(t, oldToken))

			test.rewrite(t, path, test.newToken)

			assert.Equal(t, http.StatusOK, rg.statusWith(t, test.newToken), "the new token is refused")
			assert.Equal(t, http.StatusUnauthorized, rg.statusWith(t, oldToken), "the old token still works")
		})
	}
}

// A file older than the racy window that a stat finds unchanged is not
// read again on each call; POST /admin/reload reads it anyway.
func TestTokenFile_ReloadRereadsAFileAStatSeesAsUnchanged(t *testing.T) {
	rg := newRig(t, withReloader(&fakeReloader{}))
	path := newTokenFile(t, "old-token-0001")
	old := time.Now().Add(-time.Hour)
	require.NoError(t, os.Chtimes(path, old, old))
	require.NoError(t, rg.admin.SetTokenFile(path))
	writeToken(t, path, "new-token-0002")
	require.NoError(t, os.Chtimes(path, old, old))
	require.Equal(t, http.StatusOK, rg.statusWith(t, "old-token-0001"), "same inode, size and time: the stat check trusts it")

	rep := rg.do(t, http.MethodPost, "/admin/reload", "", bearer("old-token-0001"))
	require.Equal(t, http.StatusOK, rep.status, rep.raw)

	assert.Equal(t, http.StatusOK, rg.statusWith(t, "new-token-0002"))
	assert.Equal(t, http.StatusUnauthorized, rg.statusWith(t, "old-token-0001"))
}

// A token file that cannot be read or holds no token refuses every call,
// the old token's included, and never turns authentication off; writing
// a token heals it.
func TestTokenFile_UnusableFileRefusesEveryCallUntilFixed(t *testing.T) {
	testCases := []struct {
		desc  string
		spoil func(t *testing.T, path string)
	}{
		{desc: "removed", spoil: func(t *testing.T, path string) { require.NoError(t, os.Remove(path)) }},
		{desc: "emptied", spoil: func(t *testing.T, path string) { require.NoError(t, os.WriteFile(path, nil, 0o600)) }},
		{desc: "whitespace only", spoil: func(t *testing.T, path string) { require.NoError(t, os.WriteFile(path, []byte(" \n\t\n"), 0o600)) }},
		{desc: "replaced by a directory", spoil: func(t *testing.T, path string) {
			require.NoError(t, os.Remove(path))
			require.NoError(t, os.Mkdir(path, 0o700))
			t.Cleanup(func() { _ = os.Remove(path) })
		}},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			rg := newRig(t)
			path := newTokenFile(t, "s3cret")
			require.NoError(t, rg.admin.SetTokenFile(path))

			test.spoil(t, path)

			for _, h := range []http.Header{bearer("s3cret"), nil, bearer("")} {
				rep := rg.do(t, http.MethodPost, "/admin/switch", `{"to": "green"}`, h)
				assert.Equal(t, http.StatusUnauthorized, rep.status, rep.raw)
				assert.Contains(t, rep.message(), "cannot read its admin.token_file")
			}
			assert.Empty(t, rg.router.History(), "a call got through without a token")

			if fi, err := os.Stat(path); err == nil && fi.IsDir() {
				require.NoError(t, os.Remove(path))
			}
			writeToken(t, path, "fixed-token")
			assert.Equal(t, http.StatusOK, rg.statusWith(t, "fixed-token"))
			assert.Equal(t, http.StatusUnauthorized, rg.statusWith(t, "s3cret"))
		})
	}
}

func TestSetTokenFile_RefusesAFileWithoutAToken(t *testing.T) {
	testCases := []struct {
		desc    string
		setup   func(t *testing.T) string
		wantMsg string
	}{
		{desc: "missing", setup: func(t *testing.T) string { return filepath.Join(t.TempDir(), "nope") }, wantMsg: "no such file"},
		{desc: "empty", setup: func(t *testing.T) string { return newTokenFile(t, "") }, wantMsg: "is empty; put a token in it"},
		{desc: "a directory", setup: func(t *testing.T) string { return t.TempDir() }, wantMsg: "not a regular file"},
		{
			desc: "larger than a token",
			setup: func(t *testing.T) string {
				return newTokenFile(t, strings.Repeat("x", 5000))
			},
			wantMsg: "larger than 4096 bytes",
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			rg := newRig(t)
			path := test.setup(t)

			err := rg.admin.SetTokenFile(path)

			require.Error(t, err)
			assert.Contains(t, err.Error(), "admin.token_file")
			assert.Contains(t, err.Error(), test.wantMsg)
			assert.Equal(t, http.StatusUnauthorized, rg.statusWith(t, ""), "a token file without a token opened the API")
			assert.Error(t, rg.admin.CheckTokenFile(path))
		})
	}
}

func TestCheckTokenFile_RefusesDroppingTheTokenAndChangesNothing(t *testing.T) {
	testCases := []struct {
		desc     string
		inForce  bool   // a token file is in force
		next     string // "" drops it, "good" and "missing" name files
		wantErr  string
		wantIsRm bool
	}{
		{desc: "dropping the token file in force", inForce: true, next: "", wantIsRm: true, wantErr: "restart the gateway"},
		{desc: "another readable file", inForce: true, next: "good"},
		{desc: "a missing file", inForce: true, next: "missing", wantErr: "no such file"},
		{desc: "none in force, none asked", inForce: false, next: ""},
		{desc: "none in force, one added", inForce: false, next: "good"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			rg := newRig(t)
			if test.inForce {
				require.NoError(t, rg.admin.SetTokenFile(newTokenFile(t, "s3cret")))
			}
			next := map[string]string{"": "", "good": newTokenFile(t, "other"), "missing": filepath.Join(t.TempDir(), "nope")}[test.next]

			err := rg.admin.CheckTokenFile(next)

			if test.wantErr == "" {
				assert.NoError(t, err)
			} else {
				require.Error(t, err)
				assert.Contains(t, err.Error(), test.wantErr)
				assert.Equal(t, test.wantIsRm, errors.Is(err, admin.ErrTokenRemoved))
			}
			if test.inForce {
				assert.Equal(t, http.StatusOK, rg.statusWith(t, "s3cret"), "CheckTokenFile changed the token")
				assert.Equal(t, http.StatusUnauthorized, rg.statusWith(t, "other"))
			}
		})
	}
}

func TestStatus_WarnsOfAnExposedAdminAPIAndAReadableTokenFile(t *testing.T) {
	loopback := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9901}
	anyAddr := &net.TCPAddr{IP: net.IPv4zero, Port: 9901}
	testCases := []struct {
		desc      string
		listen    net.Addr
		tokenMode os.FileMode // 0: no token file
		wantWarn  string      // in status warnings and a Warn log line; "" for none
	}{
		{desc: "loopback without a token", listen: loopback},
		{desc: "all interfaces without a token", listen: anyAddr, wantWarn: "not a loopback address and admin.token_file is not set"},
		{desc: "private address without a token", listen: &net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 9901}, wantWarn: "not a loopback address"},
		{desc: "all interfaces with a private token file", listen: anyAddr, tokenMode: 0o600},
		{desc: "token file readable by others", listen: loopback, tokenMode: 0o644, wantWarn: "readable by group or others"},
		{desc: "token file readable by the group", listen: loopback, tokenMode: 0o640, wantWarn: "chmod 600"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			core, logs := observer.New(zap.InfoLevel)
			rg := newRigLog(t, zap.New(core))
			var h http.Header
			if test.tokenMode != 0 {
				path := newTokenFile(t, "s3cret")
				require.NoError(t, os.Chmod(path, test.tokenMode))
				require.NoError(t, rg.admin.SetTokenFile(path))
				h = bearer("s3cret")
			}

			rg.admin.SetListenAddr(test.listen)
			rep := rg.do(t, http.MethodGet, "/admin/status", "", h)

			require.Equal(t, http.StatusOK, rep.status, rep.raw)
			warns, _ := rep.json["warnings"].([]any)
			var warned []string
			for _, e := range logs.FilterLevelExact(zapcore.WarnLevel).All() {
				warned = append(warned, e.Message)
			}
			if test.wantWarn == "" {
				assert.Empty(t, warns)
				assert.Empty(t, warned)
				return
			}
			require.Len(t, warns, 1, rep.raw)
			assert.Contains(t, warns[0], test.wantWarn)
			require.Len(t, warned, 1, "one Warn line at start")
			assert.Contains(t, warned[0], test.wantWarn)
		})
	}
}

// fakeReloader stands for the gateway's config reloader.
type fakeReloader struct{ err error }

func (f *fakeReloader) Reload(string) error { return f.err }
func (f *fakeReloader) ConfigStatus() admin.ConfigStatus {
	return admin.ConfigStatus{Path: "switchyard.yaml"}
}

func withReloader(r admin.Reloader) rigOption {
	return func(_ *proxy.Router, opts *admin.Options) { opts.Reloader = r }
}
