package admin_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/admin"
	"go.uber.org/zap"
)

// serveLimited serves rg's admin API through admin.NewHTTPServer with
// limits l on a loopback port until the test ends, and returns its
// address.
func serveLimited(t *testing.T, rg *rig, l admin.Limits) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := admin.NewHTTPServer(rg.admin, l, zap.NewNop())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return ln.Addr().String()
}

// closedWithin reads conn until the server closes it and returns how long
// that took. It fails the test if the server keeps it open for longer
// than max.
func closedWithin(t *testing.T, conn net.Conn, max time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	require.NoError(t, conn.SetReadDeadline(start.Add(max)))
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		require.FailNow(t, "the server kept the connection open", "still open after %s", max)
	}
	return time.Since(start)
}

// Regression test (fixed): the admin server had only a header timeout, so
// a client without a token could hold connections open indefinitely by
// sending a body slowly or by idling. Each connection is closed once its
// limit passes.
func TestNewHTTPServer_ClosesSlowAndIdleConnections(t *testing.T) {
	limits := admin.Limits{ReadHeader: 200 * time.Millisecond, Read: 400 * time.Millisecond, Write: time.Second, Idle: 300 * time.Millisecond}
	testCases := []struct {
		desc  string
		token string // set on the server when not empty
		// send writes to a fresh connection, then stalls.
		send func(t *testing.T, conn net.Conn)
		// limit is the one that must close the connection.
		limit time.Duration
	}{
		{
			desc:  "silent after connecting",
			send:  func(*testing.T, net.Conn) {},
			limit: limits.ReadHeader,
		},
		{
			desc:  "headers never finished",
			send:  func(t *testing.T, c net.Conn) { write(t, c, "POST /admin/switch HTTP/1.1\r\nHost: x\r\n") },
			limit: limits.ReadHeader,
		},
		{
			desc: "body slower than the read limit",
			send: func(t *testing.T, c net.Conn) {
				write(t, c, "POST /admin/switch HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"to\": ")
			},
			limit: limits.Read,
		},
		{
			desc:  "body slower than the read limit, without the token",
			token: "s3cret",
			send: func(t *testing.T, c net.Conn) {
				write(t, c, "POST /admin/switch HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"to\": ")
			},
			limit: limits.Read,
		},
		{
			desc: "idle after a request",
			send: func(t *testing.T, c net.Conn) {
				write(t, c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				require.NoError(t, err)
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				require.Equal(t, http.StatusOK, resp.StatusCode)
			},
			limit: limits.Idle,
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			rg := newRig(t)
			if test.token != "" {
				rg.admin.SetToken(test.token)
			}
			addr := serveLimited(t, rg, limits)
			conn, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			defer conn.Close()

			test.send(t, conn)
			took := closedWithin(t, conn, 10*time.Second)

			assert.GreaterOrEqual(t, took, test.limit/2, "closed long before its limit")
			assert.Empty(t, rg.router.History(), "a cut-off request switched")
		})
	}
}

func TestNewHTTPServer_HeadersOverTheLimitAre431(t *testing.T) {
	rg := newRig(t)
	addr := serveLimited(t, rg, admin.Limits{})

	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/admin/status", nil)
	require.NoError(t, err)
	req.Header.Set("X-Padding", strings.Repeat("x", 2*admin.DefaultMaxHeaderBytes))
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(req)
	require.NoError(t, err)
	defer resp.Body.Close()

	assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
}

func TestNewHTTPServer_ZeroLimitsTakeTheDefaults(t *testing.T) {
	srv := admin.NewHTTPServer(http.NotFoundHandler(), admin.Limits{}, zap.NewNop())

	assert.Equal(t, admin.DefaultReadHeaderTimeout, srv.ReadHeaderTimeout)
	assert.Equal(t, admin.DefaultReadTimeout, srv.ReadTimeout)
	assert.Equal(t, admin.DefaultWriteTimeout, srv.WriteTimeout)
	assert.Equal(t, admin.DefaultIdleTimeout, srv.IdleTimeout)
	assert.Equal(t, admin.DefaultMaxHeaderBytes, srv.MaxHeaderBytes)
	for _, d := range []time.Duration{srv.ReadHeaderTimeout, srv.ReadTimeout, srv.WriteTimeout, srv.IdleTimeout} {
		assert.Positive(t, d, "an admin connection without a limit")
	}
}

func write(t *testing.T, c net.Conn, s string) {
	t.Helper()
	_, err := io.WriteString(c, s)
	require.NoError(t, err)
}
