package proxy

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// headerRecorder is a raw backend that hands every request it reads to the
// test and answers with a fixed raw response (head and body).
func headerRecorder(t *testing.T, response string) (string, <-chan *rawReq) {
	t.Helper()
	got := make(chan *rawReq, 16)
	addr := rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := readRawRequest(br)
			if err != nil {
				return
			}
			got <- req
			if _, err := io.WriteString(c, response); err != nil {
				return
			}
		}
	})
	return addr, got
}

// receive waits for a value from ch, failing the test after a generous bound.
func receive[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		require.FailNow(t, "nothing received")
		var zero T
		return zero
	}
}

func TestProxy_StripsHopByHopRequestHeaders(t *testing.T) {
	testCases := []struct {
		desc       string
		connection []string // Connection header lines the client sends
	}{
		{desc: "token naming a custom header", connection: []string{"X-Secret"}},
		{desc: "token after keep-alive", connection: []string{"keep-alive, X-Secret"}},
		{desc: "lower-case token", connection: []string{"x-secret"}},
		{desc: "token beside close", connection: []string{"close, X-Secret"}},
		{desc: "token on a second Connection line", connection: []string{"keep-alive", "X-Secret"}},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			addr, got := headerRecorder(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			gw := startGateway(t, testConfig(t, []string{addr}, []string{"10.0.0.2:5000"}, ""))

			var raw strings.Builder
			raw.WriteString("GET /predict HTTP/1.1\r\nHost: model.example.com\r\n")
			for _, v := range test.connection {
				raw.WriteString("Connection: " + v + "\r\n")
			}
			raw.WriteString("Keep-Alive: timeout=5\r\n" +
				"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n" +
				"Proxy-Connection: keep-alive\r\n" +
				"Te: trailers\r\n" +
				"Upgrade: websocket\r\n" +
				"X-Secret: hunter2\r\n" +
				"X-Keep: yes\r\n" +
				"Authorization: Bearer abc\r\n" +
				"\r\n")
			resp, body := rawRequest(t, gw.Addr(), raw.String())
			require.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Equal(t, "ok", string(body))

			req := receive(t, got)
			for _, name := range []string{"Connection", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection", "Te", "Upgrade", "X-Secret"} {
				assert.NotContains(t, req.Header, name, "hop-by-hop header %s reached the backend", name)
			}
			assert.Equal(t, "yes", req.Header.Get("X-Keep"))
			assert.Equal(t, "Bearer abc", req.Header.Get("Authorization"))
			assert.Equal(t, "model.example.com", req.Header.Get("Host"))
		})
	}
}

func TestProxy_StripsHopByHopResponseHeaders(t *testing.T) {
	testCases := []struct {
		desc       string
		connection []string // Connection header lines the backend sends
	}{
		{desc: "token naming a custom header", connection: []string{"X-Hop"}},
		{desc: "token after keep-alive", connection: []string{"keep-alive, X-Hop"}},
		{desc: "token beside close", connection: []string{"close, X-Hop"}},
		{desc: "token on a second Connection line", connection: []string{"keep-alive", "X-Hop"}},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			var head strings.Builder
			head.WriteString("HTTP/1.1 200 OK\r\n")
			for _, v := range test.connection {
				head.WriteString("Connection: " + v + "\r\n")
			}
			head.WriteString("Keep-Alive: timeout=5, max=100\r\n" +
				"X-Hop: secret\r\n" +
				"Upgrade: h2c\r\n" +
				"Proxy-Authenticate: Basic realm=\"x\"\r\n" +
				"Proxy-Connection: keep-alive\r\n" +
				"X-Keep: yes\r\n" +
				"Content-Type: application/json\r\n" +
				"Content-Length: 11\r\n" +
				"\r\n" +
				`{"ok":true}`)
			addr, got := headerRecorder(t, head.String())
			gw := startGateway(t, testConfig(t, []string{addr}, []string{"10.0.0.2:5000"}, ""))

			resp, body := rawRequest(t, gw.Addr(), "GET /predict HTTP/1.1\r\nHost: gw\r\n\r\n")
			receive(t, got)
			require.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Equal(t, `{"ok":true}`, string(body))
			for _, name := range []string{"Keep-Alive", "X-Hop", "Upgrade", "Proxy-Authenticate", "Proxy-Connection"} {
				assert.NotContains(t, resp.Header, name, "hop-by-hop header %s reached the client", name)
			}
			for _, v := range resp.Header.Values("Connection") {
				assert.NotContains(t, strings.ToLower(v), "x-hop")
			}
			// The backend's wish to close its connection is not the client's.
			assert.False(t, resp.Close, "the backend's Connection: close was passed to the client")
			assert.Equal(t, "yes", resp.Header.Get("X-Keep"))
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			assert.Equal(t, "blue", resp.Header.Get(HeaderColor))
		})
	}
}

// The traffic server is built with NoDefaultContentType: a reply without
// a Content-Type must not get one invented on its way through.
func TestProxy_DoesNotAddContentTypeTheBackendDidNotSend(t *testing.T) {
	testCases := []struct {
		desc     string
		response string
	}{
		{desc: "Content-Length body", response: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"},
		{desc: "chunked body", response: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			addr, _ := headerRecorder(t, test.response)
			gw := startGateway(t, testConfig(t, []string{addr}, []string{"10.0.0.2:5000"}, ""))
			resp, body := rawRequest(t, gw.Addr(), "GET /predict HTTP/1.1\r\nHost: gw\r\n\r\n")
			require.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Equal(t, "abc", string(body))
			assert.NotContains(t, resp.Header, "Content-Type")
		})
	}
}

// seen is what a recording backend saw of one request.
type seen struct {
	host   string
	header http.Header
	body   []byte
}

// recordingServer is a net/http backend that hands every request to the
// test and answers with the body's length and SHA-256.
func recordingServer(t *testing.T) (*httptest.Server, <-chan seen, *atomic.Int64) {
	t.Helper()
	got := make(chan seen, 64)
	var calls atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		body, err := io.ReadAll(r.Body)
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		got <- seen{host: r.Host, header: r.Header.Clone(), body: body}
		sum := sha256.Sum256(body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"len":`+strconv.Itoa(len(body))+`,"sha256":"`+hex.EncodeToString(sum[:])+`"}`)
	}))
	t.Cleanup(s.Close)
	return s, got, &calls
}

func TestProxy_SetsForwardingHeadersAndKeepsHost(t *testing.T) {
	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	testCases := []struct {
		desc      string
		header    http.Header
		wantXFF   string
		wantReqID string // "" means: generated
	}{
		{desc: "no prior hops", wantXFF: "127.0.0.1"},
		{desc: "appends to an existing X-Forwarded-For", header: http.Header{"X-Forwarded-For": {"1.2.3.4"}}, wantXFF: "1.2.3.4, 127.0.0.1"},
		// Backends that trust the last entry must find the gateway's.
		{desc: "appends after every X-Forwarded-For line", header: http.Header{"X-Forwarded-For": {"1.2.3.4", "5.6.7.8"}}, wantXFF: "1.2.3.4, 5.6.7.8, 127.0.0.1"},
		{desc: "overrides a spoofed X-Forwarded-Proto", header: http.Header{"X-Forwarded-Proto": {"https"}}, wantXFF: "127.0.0.1"},
		{desc: "keeps the client's request id", header: http.Header{HeaderRequestID: {"req-abc-123"}}, wantXFF: "127.0.0.1", wantReqID: "req-abc-123"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			backend, got, _ := recordingServer(t)
			gw := startGateway(t, testConfig(t, []string{hostPort(backend)}, []string{"10.0.0.2:5000"}, ""))

			req, err := http.NewRequest(http.MethodGet, gw.URL+"/v1/predict?x=1", nil)
			require.NoError(t, err)
			req.Host = "model.example.com"
			req.Header.Set("Traceparent", traceparent)
			for k, vs := range test.header {
				for _, v := range vs {
					req.Header.Add(k, v)
				}
			}
			resp, err := newClient(t).Do(req)
			require.NoError(t, err)
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)

			s := receive(t, got)
			assert.Equal(t, "model.example.com", s.host)
			assert.Equal(t, []string{test.wantXFF}, s.header.Values("X-Forwarded-For"))
			assert.Equal(t, []string{"http"}, s.header.Values("X-Forwarded-Proto"))
			assert.Equal(t, traceparent, s.header.Get("Traceparent"))
			if test.wantReqID != "" {
				assert.Equal(t, []string{test.wantReqID}, s.header.Values(HeaderRequestID))
			} else {
				assert.Regexp(t, `^[0-9a-f]{32}$`, s.header.Get(HeaderRequestID))
			}
		})
	}
}

func TestProxy_GeneratesDistinctRequestIDs(t *testing.T) {
	backend, got, _ := recordingServer(t)
	gw := startGateway(t, testConfig(t, []string{hostPort(backend)}, []string{"10.0.0.2:5000"}, ""))
	client := newClient(t)
	ids := map[string]bool{}
	for range 20 {
		resp, err := client.Get(gw.URL + "/predict")
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		id := receive(t, got).header.Get(HeaderRequestID)
		require.Regexp(t, `^[0-9a-f]{32}$`, id)
		ids[id] = true
	}
	assert.Len(t, ids, 20)
}

func TestProxy_PassesRequestBodyIntact(t *testing.T) {
	body := make([]byte, 1<<20)
	_, err := rand.Read(body)
	require.NoError(t, err)
	sum := sha256.Sum256(body)
	want := `{"len":1048576,"sha256":"` + hex.EncodeToString(sum[:]) + `"}`

	testCases := []struct {
		desc    string
		chunked bool // the client sends the body chunked (no Content-Length)
	}{
		{desc: "with Content-Length"},
		{desc: "chunked by the client", chunked: true},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			backend, got, _ := recordingServer(t)
			gw := startGateway(t, testConfig(t, []string{hostPort(backend)}, []string{"10.0.0.2:5000"}, ""))
			var rd io.Reader = bytes.NewReader(body)
			if test.chunked {
				rd = io.MultiReader(rd) // hides the length from net/http
			}
			req, err := http.NewRequest(http.MethodPost, gw.URL+"/predict", rd)
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/octet-stream")
			resp, err := newClient(t).Do(req)
			require.NoError(t, err)
			reply, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, resp.StatusCode, string(reply))
			assert.Equal(t, want, string(reply))
			s := receive(t, got)
			assert.Equal(t, "application/octet-stream", s.header.Get("Content-Type"))
			assert.True(t, bytes.Equal(body, s.body), "the backend got a different body")
		})
	}
}

func TestProxy_RejectsBodyOverLimitWithoutCallingBackend(t *testing.T) {
	testCases := []struct {
		desc    string
		size    int
		chunked bool
	}{
		{desc: "Content-Length over the limit", size: 2048},
		{desc: "chunked body over the limit", size: 2048, chunked: true},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			backend, _, calls := recordingServer(t)
			gw := startGateway(t, testConfig(t, []string{hostPort(backend)}, []string{"10.0.0.2:5000"},
				"proxy: {max_request_body_bytes: 1024}\n"))

			body := strings.Repeat("x", test.size)
			var raw string
			if test.chunked {
				raw = "POST /predict HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n" +
					strconv.FormatInt(int64(len(body)), 16) + "\r\n" + body + "\r\n0\r\n\r\n"
			} else {
				raw = "POST /predict HTTP/1.1\r\nHost: gw\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
			}
			resp, reply := rawRequest(t, gw.Addr(), raw)
			assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
			assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
			assert.Equal(t, "body_too_large", errorCode(t, reply))
			assert.Zero(t, calls.Load(), "the backend was called")

			// A body at the limit still goes through.
			ok, err := newClient(t).Post(gw.URL+"/predict", "text/plain", strings.NewReader(strings.Repeat("y", 1024)))
			require.NoError(t, err)
			_, _ = io.Copy(io.Discard, ok.Body)
			ok.Body.Close()
			assert.Equal(t, http.StatusOK, ok.StatusCode)
			assert.EqualValues(t, 1, calls.Load())
		})
	}
}

// errorCode returns the "error" field of a gateway error body.
func errorCode(t *testing.T, body []byte) string {
	t.Helper()
	var e struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}
	require.NoError(t, json.Unmarshal(body, &e), "not a JSON error body: %q", body)
	assert.NotEmpty(t, e.Message)
	return e.Error
}

func TestProxy_AnswersBadGatewayWhenBackendFails(t *testing.T) {
	testCases := []struct {
		desc    string
		backend func(t *testing.T) string
	}{
		{desc: "backend answers garbage", backend: func(t *testing.T) string {
			return rawBackend(t, func(c net.Conn) {
				if _, err := readRawRequest(bufio.NewReader(c)); err != nil {
					return
				}
				_, _ = io.WriteString(c, "this is not HTTP at all\r\n\r\n")
			})
		}},
		{desc: "backend closes without answering", backend: func(t *testing.T) string {
			return rawBackend(t, func(c net.Conn) {
				_, _ = readRawRequest(bufio.NewReader(c))
			})
		}},
		{desc: "backend refuses connections", backend: func(t *testing.T) string {
			return deadAddr(t)
		}},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			gw := startGateway(t, testConfig(t, []string{test.backend(t)}, []string{"10.0.0.2:5000"}, ""))
			for _, method := range []string{http.MethodGet, http.MethodPost} {
				req, err := http.NewRequest(method, gw.URL+"/predict", strings.NewReader("{}"))
				require.NoError(t, err)
				resp, err := newClient(t).Do(req)
				require.NoError(t, err)
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				require.NoError(t, err)
				assert.Equal(t, http.StatusBadGateway, resp.StatusCode, method)
				assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
				assert.Equal(t, "bad_gateway", errorCode(t, body))
				assert.Equal(t, "blue", resp.Header.Get(HeaderColor))
			}
			assert.Zero(t, gw.Router.Snapshot().Pool("blue").Inflight())
		})
	}
}

func TestProxy_AnswersUnavailableWhenNoBackendReady(t *testing.T) {
	blue1, blue2 := colorServer(t, "blue"), colorServer(t, "blue")
	gw := startGateway(t, testConfig(t, []string{hostPort(blue1), hostPort(blue2)}, []string{"10.0.0.2:5000"}, ""))
	var backends []*Backend
	for _, addr := range []string{hostPort(blue1), hostPort(blue2)} {
		b, ok := gw.Router.Registry().Lookup(addr)
		require.True(t, ok)
		b.SetReady(false)
		backends = append(backends, b)
	}
	client := newClient(t)

	resp, err := client.Get(gw.URL + "/predict")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	assert.Equal(t, "no_ready_backend", errorCode(t, body))
	retry, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	require.NoError(t, err, "Retry-After must be a number of seconds")
	assert.Positive(t, retry)
	for _, b := range backends {
		assert.Zero(t, b.Requests())
	}
	assert.Zero(t, gw.Router.Snapshot().Pool("blue").Inflight())

	// It recovers as soon as one backend is ready again.
	backends[1].SetReady(true)
	resp, err = client.Get(gw.URL + "/predict")
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Empty(t, resp.Header.Get("Retry-After"))
}

func TestProxy_AnswersGatewayTimeoutWhenBackendHangs(t *testing.T) {
	var calls atomic.Int64
	addr := rawBackend(t, func(c net.Conn) {
		if _, err := readRawRequest(bufio.NewReader(c)); err != nil {
			return
		}
		calls.Add(1)
		_, _ = io.Copy(io.Discard, c) // never answers; returns once closed
	})
	gw := startGateway(t, testConfig(t, []string{addr}, []string{"10.0.0.2:5000"},
		"proxy: {timeouts: {response_header: 200ms}}\n"))

	start := time.Now()
	resp, err := newClient(t).Get(gw.URL + "/predict")
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	// A sanity bound only: the default header timeout is a minute.
	assert.Less(t, time.Since(start), 5*time.Second)
	assert.Equal(t, http.StatusGatewayTimeout, resp.StatusCode)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	assert.Equal(t, "upstream_timeout", errorCode(t, body))
	// A timeout is not retried, not even for GET: the model is slow, and a
	// second copy of the request would only double its load.
	assert.EqualValues(t, 1, calls.Load())
	b, _ := gw.Router.Registry().Lookup(addr)
	assert.EqualValues(t, 1, b.Requests())
}

func TestProxy_RetriesDeadBackendForEveryMethod(t *testing.T) {
	for _, method := range []string{http.MethodGet, http.MethodPost, http.MethodPatch} {
		t.Run(method, func(t *testing.T) {
			dead, live := deadAddr(t), colorServer(t, "live")
			gw := startGateway(t, testConfig(t, []string{dead, hostPort(live)}, []string{"10.0.0.2:5000"}, ""))
			client := newClient(t)
			for range 32 {
				req, err := http.NewRequest(method, gw.URL+"/predict", strings.NewReader(`{"inputs":[1]}`))
				require.NoError(t, err)
				resp, err := client.Do(req)
				require.NoError(t, err)
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				require.NoError(t, err)
				require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
				require.Equal(t, `{"backend":"live"}`, string(body))
			}
			b, ok := gw.Router.Registry().Lookup(dead)
			require.True(t, ok)
			// Selection is random: 32 requests all avoiding the dead
			// backend has odds of 2^-32.
			assert.Positive(t, b.Requests(), "the dead backend was never tried, so no retry was tested")
		})
	}
}

// closerBackend reads each request whole, counts it and closes the
// connection without answering: the request was sent and maybe processed.
func closerBackend(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	var calls atomic.Int64
	addr := rawBackend(t, func(c net.Conn) {
		if _, err := readRawRequest(bufio.NewReader(c)); err == nil {
			calls.Add(1)
		}
	})
	return addr, &calls
}

func TestProxy_RetriesAfterSendOnlyIdempotentRequests(t *testing.T) {
	testCases := []struct {
		desc       string
		method     string
		wantStatus int
		wantLive   int64 // requests the live backend got for the failed one
	}{
		{desc: "GET is retried on another backend", method: http.MethodGet, wantStatus: http.StatusOK, wantLive: 1},
		{desc: "PUT is retried on another backend", method: http.MethodPut, wantStatus: http.StatusOK, wantLive: 1},
		{desc: "POST is not replayed", method: http.MethodPost, wantStatus: http.StatusBadGateway, wantLive: 0},
		{desc: "PATCH is not replayed", method: http.MethodPatch, wantStatus: http.StatusBadGateway, wantLive: 0},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			closer, closerCalls := closerBackend(t)
			live, _, liveCalls := recordingServer(t)
			gw := startGateway(t, testConfig(t, []string{closer, hostPort(live)}, []string{"10.0.0.2:5000"}, ""))
			client := newClient(t)

			// Selection is random; send until one request lands on the
			// closer first (odds of never: 2^-64), then judge that one.
			for i := 0; i < 64 && closerCalls.Load() == 0; i++ {
				liveBefore := liveCalls.Load()
				req, err := http.NewRequest(test.method, gw.URL+"/predict", strings.NewReader(`{"inputs":[1]}`))
				require.NoError(t, err)
				resp, err := client.Do(req)
				require.NoError(t, err)
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				require.NoError(t, err)
				if closerCalls.Load() == 0 {
					require.Equal(t, http.StatusOK, resp.StatusCode, "a request the live backend served first")
					continue
				}
				assert.Equal(t, test.wantStatus, resp.StatusCode, string(body))
				assert.EqualValues(t, 1, closerCalls.Load(), "the closing backend got the request more than once")
				assert.Equal(t, test.wantLive, liveCalls.Load()-liveBefore)
				if test.wantStatus == http.StatusBadGateway {
					assert.Equal(t, "bad_gateway", errorCode(t, body))
				}
			}
			require.EqualValues(t, 1, closerCalls.Load(), "no request landed on the closing backend")
		})
	}
}

func TestProxy_RetriesStaleKeepAliveConnection(t *testing.T) {
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		t.Run(method, func(t *testing.T) {
			closed := make(chan struct{}, 16)
			var conns, calls atomic.Int64
			// Each connection serves one request with keep-alive, then the
			// backend closes it while the gateway holds it idle.
			addr := rawBackend(t, func(c net.Conn) {
				conns.Add(1)
				if _, err := readRawRequest(bufio.NewReader(c)); err != nil {
					return
				}
				n := calls.Add(1)
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n"+strconv.FormatInt(n, 10))
				_ = c.Close()
				closed <- struct{}{}
			})
			gw := startGateway(t, testConfig(t, []string{addr}, []string{"10.0.0.2:5000"},
				"proxy: {timeouts: {idle: 1m}}\n"))
			client := newClient(t)
			do := func() (int, string) {
				req, err := http.NewRequest(method, gw.URL+"/predict", strings.NewReader("{}"))
				require.NoError(t, err)
				resp, err := client.Do(req)
				require.NoError(t, err)
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				require.NoError(t, err)
				return resp.StatusCode, string(body)
			}

			status, body := do()
			require.Equal(t, http.StatusOK, status)
			require.Equal(t, "1", body)
			receive(t, closed)
			b, ok := gw.Router.Registry().Lookup(addr)
			require.True(t, ok)
			// The gateway keeps the dead connection idle: the next request
			// meets it, which is the case under test.
			require.Eventually(t, func() bool { return len(b.t.idle) == 1 }, 5*time.Second, time.Millisecond)

			status, body = do()
			assert.Equal(t, http.StatusOK, status, body)
			assert.Equal(t, "2", body)
			assert.EqualValues(t, 2, conns.Load(), "the retry did not use a fresh connection")
			assert.EqualValues(t, 2, calls.Load())
		})
	}
}

func TestProxy_RetriesOnReusedConnectionOnlyIdempotentRequests(t *testing.T) {
	testCases := []struct {
		desc       string
		method     string
		wantStatus int
		wantCalls  int64 // requests the backend read in all
	}{
		{desc: "GET is retried on a fresh connection", method: http.MethodGet, wantStatus: http.StatusOK, wantCalls: 3},
		{desc: "POST is not replayed", method: http.MethodPost, wantStatus: http.StatusBadGateway, wantCalls: 2},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			var calls atomic.Int64
			// Each connection answers its first request with keep-alive;
			// the second one it reads whole, then it closes without an
			// answer, as a backend that crashed mid-inference does.
			addr := rawBackend(t, func(c net.Conn) {
				br := bufio.NewReader(c)
				for served := 0; ; served++ {
					if _, err := readRawRequest(br); err != nil {
						return
					}
					calls.Add(1)
					if served == 1 {
						return
					}
					if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
						return
					}
				}
			})
			gw := startGateway(t, testConfig(t, []string{addr}, []string{"10.0.0.2:5000"}, "proxy: {timeouts: {idle: 1m}}\n"))
			client := newClient(t)
			b, ok := gw.Router.Registry().Lookup(addr)
			require.True(t, ok)
			do := func() (int, []byte) {
				req, err := http.NewRequest(test.method, gw.URL+"/predict", strings.NewReader(`{"inputs":[1]}`))
				require.NoError(t, err)
				resp, err := client.Do(req)
				require.NoError(t, err)
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				require.NoError(t, err)
				return resp.StatusCode, body
			}

			status, _ := do()
			require.Equal(t, http.StatusOK, status)
			require.Eventually(t, func() bool { return len(b.t.idle) == 1 }, 5*time.Second, time.Millisecond)

			// This one goes out on the kept connection, is read, and is
			// dropped: it may have run, so only idempotent methods may
			// run it again.
			status, body := do()
			assert.Equal(t, test.wantStatus, status, string(body))
			assert.Equal(t, test.wantCalls, calls.Load(), "the backend read the request a different number of times")
		})
	}
}

func TestProxy_ReusesKeepAliveConnections(t *testing.T) {
	var conns atomic.Int64
	addr := rawBackend(t, func(c net.Conn) {
		conns.Add(1)
		br := bufio.NewReader(c)
		for {
			if _, err := readRawRequest(br); err != nil {
				return
			}
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
	gw := startGateway(t, testConfig(t, []string{addr}, []string{"10.0.0.2:5000"}, "proxy: {timeouts: {idle: 1m}}\n"))
	client := newClient(t)
	b, ok := gw.Router.Registry().Lookup(addr)
	require.True(t, ok)
	for i := range 10 {
		if i > 0 {
			// The connection goes back to the pool just after the client
			// has the body; wait for it so that reuse is deterministic.
			require.Eventually(t, func() bool { return len(b.t.idle) == 1 }, 5*time.Second, time.Millisecond)
		}
		resp, err := client.Get(gw.URL + "/predict")
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.NoError(t, err)
		require.Equal(t, "ok", string(body))
	}
	assert.EqualValues(t, 1, conns.Load())
}
