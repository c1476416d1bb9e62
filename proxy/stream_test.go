package proxy

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readLine reads one line from br in a goroutine, so that a gateway that
// buffers the stream fails the test instead of hanging it.
func readLine(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	type line struct {
		s   string
		err error
	}
	ch := make(chan line, 1)
	go func() {
		s, err := br.ReadString('\n')
		ch <- line{s, err}
	}()
	select {
	case l := <-ch:
		require.NoError(t, l.err)
		return l.s
	case <-time.After(10 * time.Second):
		require.FailNow(t, "the first event did not reach the client while the backend was still streaming")
		return ""
	}
}

func TestStream_FirstEventReachesClientBeforeBackendFinishes(t *testing.T) {
	testCases := []struct {
		desc string
		// backend starts a backend that sends "data: first\n\n", then
		// waits for release before "data: second\n\n" and the end.
		backend func(t *testing.T, release <-chan struct{}) string
	}{
		{desc: "chunked", backend: func(t *testing.T, release <-chan struct{}) string {
			s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/event-stream")
				_, _ = io.WriteString(w, "data: first\n\n")
				w.(http.Flusher).Flush()
				select {
				case <-release:
				case <-r.Context().Done():
					return
				}
				_, _ = io.WriteString(w, "data: second\n\n")
			}))
			t.Cleanup(s.Close)
			return hostPort(s)
		}},
		{desc: "delimited by connection close", backend: func(t *testing.T, release <-chan struct{}) string {
			return rawBackend(t, func(c net.Conn) {
				if _, err := readRawRequest(bufio.NewReader(c)); err != nil {
					return
				}
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\ndata: first\n\n")
				<-release
				_, _ = io.WriteString(c, "data: second\n\n")
			})
		}},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			release := make(chan struct{})
			var once sync.Once
			unblock := func() { once.Do(func() { close(release) }) }
			addr := test.backend(t, release)
			gw := startGateway(t, testConfig(t, []string{addr}, []string{"10.0.0.2:5000"}, ""))
			defer unblock() // before the gateway's shutdown, which waits for the stream

			resp, err := newClient(t).Get(gw.URL + "/v1/stream")
			require.NoError(t, err)
			defer resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
			assert.Equal(t, "blue", resp.Header.Get(HeaderColor))
			br := bufio.NewReader(resp.Body)

			assert.Equal(t, "data: first\n", readLine(t, br))
			unblock()
			rest, err := io.ReadAll(br)
			require.NoError(t, err, "the stream did not end cleanly")
			assert.Equal(t, "\ndata: second\n\n", string(rest))
			require.Eventually(t, func() bool { return gw.Router.Snapshot().Pool("blue").Inflight() == 0 },
				5*time.Second, time.Millisecond)
		})
	}
}

func TestStream_BackendDeathMidStreamTruncatesClientBody(t *testing.T) {
	testCases := []struct {
		desc     string
		response string // sent before the backend closes the connection
	}{
		{desc: "chunked body cut between chunks", response: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"},
		{desc: "chunked body cut inside a chunk", response: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n20\r\nhello"},
		{desc: "chunked body with a malformed chunk", response: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\njunk\r\n"},
		// Smaller answers are read whole first: see TestDyingBackend_*.
		{desc: "Content-Length body over the buffering limit cut short", response: "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\nhello"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			addr := rawBackend(t, func(c net.Conn) {
				if _, err := readRawRequest(bufio.NewReader(c)); err != nil {
					return
				}
				_, _ = io.WriteString(c, test.response)
			})
			gw := startGateway(t, testConfig(t, []string{addr}, []string{"10.0.0.2:5000"}, ""))

			// The gateway may have had the response head buffered when the
			// backend died, so the error can come before any of it.
			resp, err := newClient(t).Get(gw.URL + "/v1/stream")
			if err == nil {
				defer resp.Body.Close()
				require.Equal(t, http.StatusOK, resp.StatusCode)
				var body []byte
				body, err = io.ReadAll(resp.Body)
				assert.True(t, strings.HasPrefix("hello", string(body)),
					"the client got %q, which is not a prefix of what the backend sent", body)
			}
			require.Error(t, err, "the client saw a complete response")

			b, _ := gw.Router.Registry().Lookup(addr)
			require.Eventually(t, func() bool {
				return gw.Router.Snapshot().Pool("blue").Inflight() == 0 && b.Inflight() == 0 && b.OpenConns() == 0
			}, 5*time.Second, time.Millisecond, "the broken connection was kept or the request still counts as in flight")
		})
	}
}

func TestStream_ClientDisconnectCancelsBackendRequest(t *testing.T) {
	cancelled := make(chan struct{})
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(cancelled)
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		// A model streaming tokens until nobody listens.
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-r.Context().Done():
				return
			case <-tick.C:
				if _, err := io.WriteString(w, "data: token\n\n"); err != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
		}
	}))
	t.Cleanup(s.Close)
	gw := startGateway(t, testConfig(t, []string{hostPort(s)}, []string{"10.0.0.2:5000"}, ""))

	c, err := net.Dial("tcp", gw.Addr())
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, "GET /v1/stream HTTP/1.1\r\nHost: gw\r\n\r\n")
	require.NoError(t, err)
	br := bufio.NewReader(c)
	for {
		line := readLine(t, br)
		if strings.Contains(line, "data: first") {
			break
		}
	}
	require.NoError(t, c.Close())

	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		require.FailNow(t, "the backend kept streaming to a client that went away")
	}
	b, _ := gw.Router.Registry().Lookup(hostPort(s))
	require.Eventually(t, func() bool {
		return gw.Router.Snapshot().Pool("blue").Inflight() == 0 && b.Inflight() == 0 && b.OpenConns() == 0
	}, 5*time.Second, time.Millisecond)
}

// An intermediary speaks its own HTTP version (RFC 9110 §6.2); passing an
// HTTP/1.0 status line on beside the chunked framing the gateway adds makes
// clients take the chunk sizes for body bytes and wait for a close.
func TestStream_HTTP10BackendIsReframedForClient(t *testing.T) {
	testCases := []struct {
		desc     string
		response string
		want     string
	}{
		{desc: "body delimited by close", response: "HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: first\n\n", want: "data: first\n\n"},
		{desc: "body with Content-Length", response: "HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc", want: "abc"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			addr := rawBackend(t, func(c net.Conn) {
				if _, err := readRawRequest(bufio.NewReader(c)); err != nil {
					return
				}
				_, _ = io.WriteString(c, test.response)
			})
			gw := startGateway(t, testConfig(t, []string{addr}, []string{"10.0.0.2:5000"}, ""))

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, gw.URL+"/v1/stream", nil)
			require.NoError(t, err)
			resp, err := newClient(t).Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			assert.Equal(t, "HTTP/1.1", resp.Proto, "the gateway passed on the backend's HTTP version")
			require.NoError(t, err, "the body did not end (got %q)", body)
			assert.Equal(t, test.want, string(body))
		})
	}
}

// An HTTP/1.0 client cannot decode chunked encoding (RFC 9112 §6.1): a
// stream of unknown length goes to it delimited by the connection close.
func TestStream_HTTP10ClientGetsNoChunkedEncoding(t *testing.T) {
	addr := rawBackend(t, func(c net.Conn) {
		if _, err := readRawRequest(bufio.NewReader(c)); err != nil {
			return
		}
		_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
	})
	gw := startGateway(t, testConfig(t, []string{addr}, []string{"10.0.0.2:5000"}, ""))

	c, err := net.Dial("tcp", gw.Addr())
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(5*time.Second)))
	_, err = io.WriteString(c, "GET /v1/stream HTTP/1.0\r\nHost: gw\r\n\r\n")
	require.NoError(t, err)
	raw, err := io.ReadAll(c)
	require.NoError(t, err, "the gateway did not close the HTTP/1.0 connection (got %q)", raw)
	head, body, ok := bytes.Cut(raw, []byte("\r\n\r\n"))
	require.True(t, ok, "no response head in %q", raw)
	assert.NotContains(t, strings.ToLower(string(head)), "transfer-encoding", "chunked encoding sent to an HTTP/1.0 client")
	assert.Equal(t, "hello", string(body))
}
