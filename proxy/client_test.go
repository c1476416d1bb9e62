package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"go.uber.org/zap"
)

// Requests the gateway must answer itself: what reaches a backend has a
// valid head, and the client's mistakes are the client's 4xx.
func TestClient_MalformedOrForeignRequestsAreAnsweredByTheGateway(t *testing.T) {
	testCases := []struct {
		desc       string
		raw        string
		wantStatus int
		wantCode   string // the JSON error, when there is a body
	}{
		{desc: "header name with a space", raw: "GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n", wantStatus: 400, wantCode: "bad_request"},
		{desc: "header name with a control byte", raw: "GET / HTTP/1.1\r\nHost: x\r\nBad\x01: v\r\n\r\n", wantStatus: 400},
		{desc: "CONNECT", raw: "CONNECT evil:443 HTTP/1.1\r\nHost: evil:443\r\n\r\n", wantStatus: 405, wantCode: "method_not_allowed"},
		{desc: "OPTIONS * is about the gateway", raw: "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", wantStatus: 200},
		{desc: "authority-form target outside CONNECT", raw: "GET evil:443 HTTP/1.1\r\nHost: x\r\n\r\n", wantStatus: 400, wantCode: "bad_request"},
		{desc: "HTTP/1.1 without Host", raw: "GET / HTTP/1.1\r\n\r\n", wantStatus: 400},
		{desc: "request head over the limit", raw: "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-Pad: "+strings.Repeat("a", 100)+"\r\n", 100) + "\r\n",
			wantStatus: 431, wantCode: "header_too_large"},
		{desc: "request line over the limit", raw: "GET /" + strings.Repeat("a", 9000) + " HTTP/1.1\r\nHost: x\r\n\r\n",
			wantStatus: 414, wantCode: "uri_too_long"},
	}
	backend, _, calls := recordingServer(t)
	gw := startGateway(t, testConfig(t, []string{hostPort(backend)}, nil, ""))
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			before := calls.Load()
			resp, body := rawRequest(t, gw.Addr(), test.raw)
			assert.Equal(t, test.wantStatus, resp.StatusCode, string(body))
			if test.wantCode != "" {
				assert.Equal(t, test.wantCode, errorCode(t, body))
			}
			assert.Equal(t, before, calls.Load(), "the backend saw the request")
		})
	}
	assert.Zero(t, counterSum(t, gw.Metrics, "switchyard_upstream_errors_total"), "a client's mistake counted against a backend")
	assert.Positive(t, counterSum(t, gw.Metrics, "switchyard_client_errors_total"))
}

// What the gateway normalises: the backend gets a clean request, with no
// credentials invented and no trailer promoted to a header.
func TestClient_RequestsAreNormalisedBeforeTheBackendSeesThem(t *testing.T) {
	testCases := []struct {
		desc  string
		raw   string
		check func(t *testing.T, got *rawReq)
	}{
		{desc: "absolute-form target becomes origin form without credentials",
			raw: "GET http://user:pw@model.example/v2/models?x=1 HTTP/1.1\r\nHost: other\r\n\r\n",
			check: func(t *testing.T, got *rawReq) {
				assert.Equal(t, "GET /v2/models?x=1 HTTP/1.1", got.Line)
				assert.Equal(t, "model.example", got.Header.Get("Host"))
				assert.Empty(t, got.Header.Get("Authorization"))
			}},
		{desc: "header names with underscores are dropped",
			raw: "GET / HTTP/1.1\r\nHost: x\r\nX_Forwarded_For: 6.6.6.6\r\nX-Ok: 1\r\n\r\n",
			check: func(t *testing.T, got *rawReq) {
				assert.Empty(t, got.Header.Get("X_forwarded_for"))
				assert.NotContains(t, got.Header.Get("X-Forwarded-For"), "6.6.6.6")
				assert.Equal(t, "1", got.Header.Get("X-Ok"))
			}},
		{desc: "declared trailers are not promoted to headers",
			raw: "POST / HTTP/1.1\r\nHost: x\r\nTrailer: X-Smuggled\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Smuggled: yes\r\n\r\n",
			check: func(t *testing.T, got *rawReq) {
				assert.Empty(t, got.Header.Get("X-Smuggled"))
				assert.Equal(t, "abc", string(got.Body))
			}},
		{desc: "HTTP/1.0 without Host gets the backend's address",
			raw: "GET /ping HTTP/1.0\r\n\r\n",
			check: func(t *testing.T, got *rawReq) {
				assert.NotEmpty(t, got.Header.Get("Host"))
			}},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			addr, got := headerRecorder(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			gw := startGateway(t, testConfig(t, []string{addr}, nil, ""))
			resp, body := rawRequest(t, gw.Addr(), test.raw)
			require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
			test.check(t, receive(t, got))
			assert.Zero(t, counterSum(t, gw.Metrics, "switchyard_upstream_errors_total"))
		})
	}
}

// A backend address that points at the gateway's own listener used to
// loop about 256 times until a header grew past 4 KiB.
func TestClient_RequestThatLoopsBackIsRefusedAfterOneHop(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cfg := testConfig(t, []string{ln.Addr().String()}, nil, "")
	reg := NewRegistry(RegistryOptions{StartReady: true})
	r := NewRouter(cfg, Options{Registry: reg, Metrics: NewMetrics(prometheus.NewRegistry()), Log: zap.NewNop()})
	srv := NewServer(NewHandler(r, zap.NewNop()), cfg.Proxy.MaxRequestBodyBytes)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown(); <-done; r.Close(); reg.CloseIdle() })

	resp, body := rawRequest(t, ln.Addr().String(), "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	assert.Equal(t, http.StatusLoopDetected, resp.StatusCode, string(body))
	assert.EqualValues(t, 1, reg.mustLookup(t, ln.Addr().String()).Requests(), "the request went round more than once")
}

func (r *Registry) mustLookup(t *testing.T, addr string) *Backend {
	t.Helper()
	b, ok := r.Lookup(addr)
	require.True(t, ok)
	return b
}

// An HTTP/1.0 client asking for an answer of unknown length used to make
// the gateway buffer all of it (1 GiB per request). It now streams, and
// the end of the connection ends the body.
func TestClient_HTTP10ClientGetsAStreamedAnswerEndedByClose(t *testing.T) {
	testCases := []struct {
		desc  string
		extra string
	}{
		{desc: "default client write timeout"},
		// 0 means no limit; it once set a deadline of now on the stream.
		{desc: "no client write timeout", extra: "proxy: {client: {write_timeout: 0s}}\n"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			release := make(chan struct{})
			var once sync.Once
			unblock := func() { once.Do(func() { close(release) }) }
			addr := rawBackend(t, func(c net.Conn) {
				if _, err := readRawRequest(bufio.NewReader(c)); err != nil {
					return
				}
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
				_, _ = io.WriteString(c, "d\r\ndata: first\n\n\r\n")
				<-release
				_, _ = io.WriteString(c, "e\r\ndata: second\n\n\r\n0\r\n\r\n")
			})
			gw := startGateway(t, testConfig(t, []string{addr}, nil, test.extra))
			defer unblock()

			c, err := net.Dial("tcp", gw.Addr())
			require.NoError(t, err)
			defer c.Close()
			require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
			_, err = io.WriteString(c, "GET /stream HTTP/1.0\r\nHost: x\r\n\r\n")
			require.NoError(t, err)
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet, ProtoMajor: 1})
			require.NoError(t, err)
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			assert.EqualValues(t, -1, resp.ContentLength, "no length: the body ends at close")
			assert.Empty(t, resp.TransferEncoding, "an HTTP/1.0 client cannot take chunks")
			assert.Equal(t, "blue", resp.Header.Get(HeaderColor))

			first := make([]byte, len("data: first\n\n"))
			_, err = io.ReadFull(resp.Body, first)
			require.NoError(t, err, "the first event must arrive while the backend still streams")
			assert.Equal(t, "data: first\n\n", string(first))
			unblock()
			rest, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, "data: second\n\n", string(rest))
			require.Eventually(t, func() bool { return gw.Router.Snapshot().Pool("blue").Inflight() == 0 },
				5*time.Second, time.Millisecond)
		})
	}
}

// A client that stops reading used to hold its max_concurrency slot for
// as long as it liked; now it loses it after client.write_timeout.
func TestClient_ClientThatStopsReadingLosesItsSlot(t *testing.T) {
	big := strings.Repeat("x", 8<<20)
	backend := rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := readRawRequest(br)
			if err != nil {
				return
			}
			body := "ok"
			if strings.Contains(req.Line, "/big") {
				body = big
			}
			if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body); err != nil {
				return
			}
		}
	})
	cfg := testConfig(t, []string{backend}, nil,
		"proxy: {client: {write_timeout: 300ms}}\n")
	cfg.Pools.Blue.MaxConcurrency = 1
	cfg.Pools.Blue.MaxQueue = 4
	cfg.Pools.Blue.QueueTimeout = config.Duration(10 * time.Second)
	gw := startGateway(t, cfg)

	stuck, err := net.Dial("tcp", gw.Addr())
	require.NoError(t, err)
	defer stuck.Close()
	require.NoError(t, stuck.(*net.TCPConn).SetReadBuffer(4096))
	_, err = io.WriteString(stuck, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return gw.Router.Snapshot().Pool("blue").Inflight() == 1 },
		5*time.Second, time.Millisecond)

	// The stuck client never reads; the next client is served once the
	// write timeout has cut it.
	resp, err := newClient(t).Get(gw.URL + "/small")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode, string(body))
	assert.Equal(t, "ok", string(body))
}

// A slowloris client dribbling its head, or sending bare LF line ends
// that never complete one, loses its connection after
// client.header_timeout instead of holding it for a minute.
func TestClient_UnfinishedRequestHeadIsCutAtTheHeaderTimeout(t *testing.T) {
	testCases := []struct {
		desc string
		raw  string
	}{
		{desc: "bare LF line ends", raw: "GET / HTTP/1.1\nHost: x\n\n"},
		{desc: "a head that never ends", raw: "GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n"},
	}
	backend, _, calls := recordingServer(t)
	gw := startGateway(t, testConfig(t, []string{hostPort(backend)}, nil, "proxy: {client: {header_timeout: 200ms}}\n"))
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			c, err := net.Dial("tcp", gw.Addr())
			require.NoError(t, err)
			defer c.Close()
			// The bound is generous: the gateway's own limit is what ends it.
			require.NoError(t, c.SetDeadline(time.Now().Add(10*time.Second)))
			_, err = io.WriteString(c, test.raw)
			require.NoError(t, err)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err == nil {
				resp.Body.Close()
				assert.Contains(t, []int{http.StatusBadRequest, http.StatusRequestTimeout}, resp.StatusCode)
			} else {
				var ne net.Error
				require.False(t, errors.As(err, &ne) && ne.Timeout(), "the gateway held the connection open: %v", err)
			}
			// Meanwhile and afterwards everyone else is served.
			r, err := newClient(t).Get(gw.URL + "/")
			require.NoError(t, err)
			r.Body.Close()
			assert.Equal(t, http.StatusOK, r.StatusCode)
		})
	}
	assert.EqualValues(t, 2, calls.Load())
}

// With total: 0 a fixed-length answer used to be cut at response_header
// after its headers; only a stall between reads may end it now.
func TestClient_SlowFixedLengthAnswerIsNotCutWithoutTotalTimeout(t *testing.T) {
	const pieces, size = 8, 16 << 10
	addr := rawBackend(t, func(c net.Conn) {
		if _, err := readRawRequest(bufio.NewReader(c)); err != nil {
			return
		}
		if _, err := fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", pieces*size); err != nil {
			return
		}
		for range pieces {
			time.Sleep(100 * time.Millisecond) // the backend is slow, on purpose
			if _, err := io.WriteString(c, strings.Repeat("y", size)); err != nil {
				return
			}
		}
	})
	gw := startGateway(t, testConfig(t, []string{addr}, nil,
		"proxy: {timeouts: {response_header: 300ms, body_idle: 2s, total: 0s}}\n"))
	resp, err := newClient(t).Get(gw.URL + "/slow")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Len(t, body, pieces*size)
}
