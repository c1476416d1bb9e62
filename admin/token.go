package admin

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// maxTokenBytes bounds what is read from admin.token_file: a token is a
// line, not a file's worth.
const maxTokenBytes = 4 << 10

// racyWindow is how much older than the read a token file's modification
// time must be before a stat that finds it unchanged is trusted: a file
// rewritten within one timestamp tick of the read (a few ms on ext4, 2s on
// FAT) keeps its size and time. Git treats a racily clean index entry the
// same way.
const racyWindow = 2 * time.Second

// ErrTokenRemoved is returned by CheckTokenFile for a config that drops
// admin.token_file while one is in force: a reload must never turn
// authentication off by itself.
var ErrTokenRemoved = errors.New("admin: admin.token_file removed from the config: a reload cannot turn authentication off; " +
	"put token_file back, or restart the gateway to run the admin API without a token")

// credential is the bearer token in force and where it came from. It is
// immutable: a change stores a new one.
type credential struct {
	// path is admin.token_file; empty for a token given by SetToken.
	path string
	// token is what every /admin/ call must present; empty with an empty
	// path means no check.
	token []byte
	// err, when the file could not be read or holds no token, refuses
	// every /admin/ call until the file is fixed: a broken token file
	// never turns authentication off.
	err error
	// info is the file as it was when token was read, at readAt. A change
	// of inode, size, modification time or mode makes the next call re-read
	// it.
	info   fs.FileInfo
	readAt time.Time
}

// SetToken sets a fixed bearer token that every /admin/ call must present;
// empty disables the check. It replaces any token file.
func (s *Server) SetToken(token string) {
	s.tokenMu.Lock()
	defer s.tokenMu.Unlock()
	s.cred.Store(&credential{token: bytes.TrimSpace([]byte(token))})
}

// SetTokenFile makes every /admin/ call present the token held in path,
// with surrounding whitespace ignored; empty path disables the check. The
// file is followed: each /admin/ call stats it and re-reads it when its
// inode, size, modification time or mode changed, and POST /admin/reload
// re-reads it unconditionally, so a rewritten token takes effect on the
// next call and the old one stops working. While the file is missing,
// unreadable or empty every /admin/ call is refused.
//
// It returns an error when path cannot be read or holds no token; the
// file stays followed, so writing a token to it heals the admin API.
func (s *Server) SetTokenFile(path string) error {
	s.tokenMu.Lock()
	defer s.tokenMu.Unlock()
	if path == "" {
		s.cred.Store(&credential{})
		return nil
	}
	c := s.readCredential(path, s.cred.Load())
	s.cred.Store(c)
	return c.err
}

// CheckTokenFile says whether a config naming path as admin.token_file
// can be applied: it refuses to drop the token file in force
// (ErrTokenRemoved) and a file that cannot be read or holds no token. It
// changes nothing; call SetTokenFile once the config is applied.
func (s *Server) CheckTokenFile(path string) error {
	if path == "" {
		if c := s.cred.Load(); c != nil && c.path != "" {
			return ErrTokenRemoved
		}
		return nil
	}
	_, _, err := readTokenFile(path)
	return err
}

// TokenFile returns the admin.token_file in force; empty when none.
func (s *Server) TokenFile() string {
	if c := s.cred.Load(); c != nil {
		return c.path
	}
	return ""
}

// currentCredential returns the credential to check a call against,
// re-reading the token file first when it changed since it was read (or
// always, with force). One stat per admin call is the whole cost: admin
// calls are rare, and unlike a watch it needs no goroutine, works where
// inotify does not, sees a kubelet secret's symlink swap like an editor's
// rename, and is never late: the call that follows a change is checked
// against the new file. A file changed less than racyWindow before it was
// read is re-read on every call until it is older, so a rewrite within
// one timestamp tick is not missed either.
func (s *Server) currentCredential(force bool) *credential {
	c := s.cred.Load()
	if c == nil || c.path == "" {
		return c
	}
	if !force {
		fi, err := os.Stat(c.path)
		if unchanged(c, fi, err) {
			return c
		}
	}
	s.tokenMu.Lock()
	defer s.tokenMu.Unlock()
	c = s.cred.Load()
	if c.path == "" {
		return c // SetToken or SetTokenFile("") ran meanwhile
	}
	if !force {
		fi, err := os.Stat(c.path)
		if unchanged(c, fi, err) {
			return c // another call re-read it meanwhile
		}
	}
	next := s.readCredential(c.path, c)
	s.cred.Store(next)
	return next
}

// unchanged reports whether the file stat found is the one c was read
// from, and was already old then, or is still missing as it was.
func unchanged(c *credential, fi fs.FileInfo, err error) bool {
	if err != nil || c.info == nil {
		return err != nil && c.info == nil && c.err != nil
	}
	return os.SameFile(c.info, fi) && fi.Size() == c.info.Size() && fi.ModTime().Equal(c.info.ModTime()) && fi.Mode() == c.info.Mode() &&
		fi.ModTime().Before(c.readAt.Add(-racyWindow))
}

// readCredential reads path and logs what changed since prev: a new
// token, a file that became unusable, or permissions that let others read
// it.
func (s *Server) readCredential(path string, prev *credential) *credential {
	readAt := time.Now()
	token, fi, err := readTokenFile(path)
	next := &credential{path: path, token: token, info: fi, readAt: readAt, err: err}
	samePath := prev != nil && prev.path == path
	switch {
	case err != nil:
		if !samePath || prev.err == nil || prev.err.Error() != err.Error() {
			s.log.Error("admin token file unusable: every /admin/ call is refused until it holds a token",
				zap.String("token_file", path), zap.Error(err))
		}
	case samePath && prev.err == nil && bytes.Equal(prev.token, token):
		// Touched or re-read, same token: nothing to say.
	case samePath:
		s.log.Info("admin token changed: calls must present the token now in the file", zap.String("token_file", path))
	default:
		s.log.Info("admin token read", zap.String("token_file", path))
	}
	if err == nil && fi.Mode().Perm()&0o077 != 0 && (!samePath || prev.info == nil || prev.info.Mode() != fi.Mode()) {
		s.log.Warn("admin token file is readable by group or others; chmod 600 it",
			zap.String("token_file", path), zap.String("mode", fi.Mode().Perm().String()))
	}
	return next
}

// readTokenFile reads the token in path. It refuses what is not a regular
// file (a FIFO would block the read forever) and a file larger than
// maxTokenBytes.
func readTokenFile(path string) ([]byte, fs.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("admin: reading admin.token_file: %w (write the token to it, or fix the path)", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("admin: reading admin.token_file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("admin: admin.token_file %s is not a regular file (%s); point it at a file holding the token", path, fi.Mode().Type())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxTokenBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("admin: reading admin.token_file %s: %w", path, err)
	}
	if len(data) > maxTokenBytes {
		return nil, nil, fmt.Errorf("admin: admin.token_file %s is larger than %d bytes; it should hold one token", path, maxTokenBytes)
	}
	token := bytes.TrimSpace(data)
	if len(token) == 0 {
		return nil, nil, fmt.Errorf("admin: admin.token_file %s is empty; put a token in it", path)
	}
	return token, fi, nil
}

// SetListenAddr tells the server the address its listener is bound to. An
// admin API reachable beyond loopback without a token is logged at Warn
// level now and reported in GET /admin/status for as long as it lasts.
func (s *Server) SetListenAddr(addr net.Addr) {
	s.listenAddr.Store(&addr)
	if w := s.exposureWarning(); w != "" {
		s.log.Warn(w, zap.String("listen", addr.String()))
	}
}

// exposureWarning is set while the admin API listens beyond loopback with
// no token.
func (s *Server) exposureWarning() string {
	a := s.listenAddr.Load()
	if a == nil || isLoopback(*a) {
		return ""
	}
	if c := s.cred.Load(); c != nil && (c.path != "" || len(c.token) > 0) {
		return ""
	}
	return fmt.Sprintf("admin.listen %s is not a loopback address and admin.token_file is not set: anyone who can reach it can move all traffic; "+
		"set admin.token_file, or listen on 127.0.0.1", (*a).String())
}

func isLoopback(a net.Addr) bool {
	if tcp, ok := a.(*net.TCPAddr); ok {
		return tcp.IP.IsLoopback()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// tokenWarnings are the token problems GET /admin/status reports.
func (s *Server) tokenWarnings() []string {
	var out []string
	if w := s.exposureWarning(); w != "" {
		out = append(out, w)
	}
	if c := s.cred.Load(); c != nil && c.info != nil && c.info.Mode().Perm()&0o077 != 0 {
		out = append(out, fmt.Sprintf("admin.token_file %s is readable by group or others (mode %s): chmod 600 it", c.path, c.info.Mode().Perm()))
	}
	return out
}
