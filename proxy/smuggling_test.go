package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Request smuggling needs two parsers to disagree about where a request
// ends. The gateway re-frames every body it forwards with one
// Content-Length, so the backend can only see what the gateway parsed;
// these shapes check that nothing the client hid in a body reaches a
// backend as a request of its own, that each forwarded request has its
// own answer, and that the gateway keeps serving.
func TestSmuggling_AmbiguousFramingNeverHidesARequest(t *testing.T) {
	const next = "GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
	testCases := []struct {
		desc string
		raw  string
	}{
		{desc: "Content-Length beside Transfer-Encoding",
			raw: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"},
		{desc: "Transfer-Encoding beside Content-Length",
			raw: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nGET /\r\n0\r\n\r\n"},
		{desc: "two different Content-Lengths",
			raw: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 40\r\n\r\nabcGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"},
		{desc: "a Content-Length list",
			raw: "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 40\r\n\r\nabcGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"},
		{desc: "a chunk size that is not hex",
			raw: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n0\r\n\r\n"},
		{desc: "a chunk longer than its size",
			raw: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcdef\r\n0\r\n\r\n"},
		{desc: "a transfer coding other than chunked",
			raw: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"},
		{desc: "Transfer-Encoding with a space before the colon",
			raw: "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\nabc"},
		{desc: "obs-fold in a header",
			raw: "GET /a HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n"},
		{desc: "obs-fold hiding a Transfer-Encoding",
			raw: "POST /a HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\nabc"},
		{desc: "bare LF line ends", raw: "GET /a HTTP/1.1\nHost: x\n\n"},
		{desc: "a NUL in a header value", raw: "GET /a HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n"},
	}
	addr, got := headerRecorder(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	gw := startGateway(t, testConfig(t, []string{addr}, nil, "proxy: {client: {header_timeout: 300ms, read_timeout: 300ms}}\n"))
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			answered := sendPipelined(t, gw.Addr(), test.raw+next)
			var seen []string
			for len(got) > 0 {
				req := <-got
				seen = append(seen, req.Line)
				assert.NotContains(t, req.Line, "/smuggled", "a request hidden in a body reached the backend")
				assert.Empty(t, req.Header.Values("Transfer-Encoding"))
			}
			assert.Equal(t, answered, len(seen), "backend requests %q do not match the answers the client got", seen)

			// The gateway keeps serving.
			resp, err := newClient(t).Get(gw.URL + "/after")
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Equal(t, "GET /after HTTP/1.1", receive(t, got).Line)
		})
	}
}

// sendPipelined writes raw on one connection and reads answers until the
// gateway closes it or goes quiet; it returns how many came from the
// backend (a 200, where the gateway's own refusals are 4xx).
func sendPipelined(t *testing.T, addr, raw string) int {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, raw)
	require.NoError(t, err)
	br := bufio.NewReader(c)
	fromBackend := 0
	for {
		// Longer than the gateway's 300 ms header timeout: a quiet
		// connection here has nothing more to say.
		require.NoError(t, c.SetReadDeadline(time.Now().Add(2*time.Second)))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return fromBackend
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			require.Equal(t, "ok", strings.TrimSpace(string(body)))
			fromBackend++
		}
	}
}
