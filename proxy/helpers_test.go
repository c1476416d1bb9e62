package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// gateway is a running proxy on a loopback port, for tests.
type gateway struct {
	URL     string
	Router  *Router
	Metrics *prometheus.Registry
	server  *fasthttp.Server
}

// testConfig parses a YAML config with blue and green backends filled in.
func testConfig(t testing.TB, blue, green []string, extra string) *config.Config {
	t.Helper()
	y := "pools:\n  blue: {version: v1, backends: [" + strings.Join(blue, ", ") + "]}\n" +
		"  green: {version: v2, backends: [" + strings.Join(green, ", ") + "]}\n" + extra
	cfg, err := config.Parse([]byte(y))
	require.NoError(t, err)
	return cfg
}

// startGateway runs the proxy for cfg on 127.0.0.1:0 until the test ends.
func startGateway(t testing.TB, cfg *config.Config) *gateway {
	t.Helper()
	log := zap.NewNop()
	if tt, ok := t.(*testing.T); ok {
		log = zaptest.NewLogger(tt, zaptest.Level(zap.WarnLevel))
	}
	reg := NewRegistry(RegistryOptions{StartReady: true, MaxIdleConns: cfg.Proxy.MaxIdleConnsPerBackend, MaxConns: cfg.Proxy.MaxConnsPerBackend})
	promReg := prometheus.NewRegistry()
	r := NewRouter(cfg, Options{Registry: reg, Metrics: NewMetrics(promReg), Log: log})
	h := NewHandler(r, log)
	srv := NewServer(h, cfg.Proxy.MaxRequestBodyBytes)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Shutdown()
		<-done
		r.Close()
		reg.CloseIdle()
	})
	return &gateway{URL: "http://" + ln.Addr().String(), Router: r, Metrics: promReg, server: srv}
}

// colorServer is a backend answering with its name in a header and body.
func colorServer(t testing.TB, name string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"backend":"` + name + `"}`))
	}))
	t.Cleanup(s.Close)
	return s
}

func hostPort(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

// Addr returns the gateway's host:port.
func (g *gateway) Addr() string { return strings.TrimPrefix(g.URL, "http://") }

// newClient returns an HTTP client of its own, so that no keep-alive
// connection (and its goroutines) outlives the test.
func newClient(t testing.TB) *http.Client {
	t.Helper()
	tr := &http.Transport{MaxIdleConnsPerHost: 128, DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 20 * time.Second}
}

// rawBackend is a TCP backend whose every connection is handled by serve,
// for behaviours net/http will not produce: garbage, silent closes, hangs.
// When the test ends the listener and all connections are closed, and the
// serving goroutines are waited for, so serve may block reading its conn.
func rawBackend(t testing.TB, serve func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var (
		mu     sync.Mutex
		closed bool
		conns  []net.Conn
		wg     sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if closed {
				mu.Unlock()
				_ = c.Close()
				return
			}
			conns = append(conns, c)
			wg.Add(1)
			mu.Unlock()
			go func() {
				defer wg.Done()
				defer c.Close()
				serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		closed = true
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// rawReq is a request as a raw backend read it off the wire.
type rawReq struct {
	Line   string // request line, e.g. "GET /predict HTTP/1.1"
	Header textproto.MIMEHeader
	Body   []byte
}

// readRawRequest reads one request framed by Content-Length (or without a
// body), which is how the gateway always sends them.
func readRawRequest(br *bufio.Reader) (*rawReq, error) {
	tp := textproto.NewReader(br)
	line, err := tp.ReadLine()
	if err != nil {
		return nil, err
	}
	h, err := tp.ReadMIMEHeader()
	if err != nil {
		return nil, err
	}
	req := &rawReq{Line: line, Header: h}
	if v := h.Get("Content-Length"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, fmt.Errorf("bad Content-Length %q: %w", v, err)
		}
		req.Body = make([]byte, n)
		if _, err := io.ReadFull(br, req.Body); err != nil {
			return nil, err
		}
	}
	return req, nil
}

// rawRequest sends raw, a whole request, to addr on a fresh connection and
// returns the response with its body read.
func rawRequest(t testing.TB, addr, raw string) (*http.Response, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(20*time.Second)))
	_, err = io.WriteString(c, raw)
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, body
}

// deadAddr returns a loopback address that refuses connections: it was
// listened on, then closed.
func deadAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// holdServer is a backend answering with its name like colorServer, except
// that requests to /hold wait in the handler until the test calls Release.
// arrived gets one value per held request once it reached the handler.
type holdServer struct {
	*httptest.Server
	arrived chan struct{}
	release chan struct{}
	once    sync.Once
}

// newHoldServer starts a holdServer. Tests that hold requests must call
// Release (deferred) before the gateway shuts down, which waits for them.
func newHoldServer(t testing.TB, name string) *holdServer {
	t.Helper()
	s := &holdServer{arrived: make(chan struct{}, 16), release: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			s.arrived <- struct{}{}
			<-s.release
		}
		w.Header().Set("X-Backend", name)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"backend":"` + name + `"}`))
	}))
	t.Cleanup(s.Close)
	return s
}

// Release lets every held request, present and future, complete.
func (s *holdServer) Release() { s.once.Do(func() { close(s.release) }) }

// waitArrived waits until a held request reached the backend.
func (s *holdServer) waitArrived(t testing.TB) {
	t.Helper()
	select {
	case <-s.arrived:
	case <-time.After(10 * time.Second):
		require.FailNow(t, "the held request never reached the backend")
	}
}

// result is a response read to its end, or the error that ended it.
type result struct {
	status int
	header http.Header
	body   string
	err    error
}

// getAsync sends GET url from a goroutine and delivers the outcome.
func getAsync(client *http.Client, url string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		resp, err := client.Get(url)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		ch <- result{status: resp.StatusCode, header: resp.Header, body: string(body), err: err}
	}()
	return ch
}

// await returns the outcome of an async request, failing after a generous
// bound so that a hung gateway fails the test instead of hanging it.
func await(t testing.TB, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(15 * time.Second):
		require.FailNow(t, "the request never completed")
		return result{}
	}
}

// counterSum adds up every series of the counter named name in reg.
func counterSum(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	sum := 0.0
	for _, f := range families {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
