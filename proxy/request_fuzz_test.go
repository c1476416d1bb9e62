package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// headFuzzer runs the whole request path on in-memory connections: client
// bytes go through the traffic server and handler to a backend that reads
// each request strictly, as net/http does, and records what it saw.
type headFuzzer struct {
	router *Router
	reg    *Registry
	srv    interface{ ServeConn(net.Conn) error }

	mu       sync.Mutex
	problems []string
	backends sync.WaitGroup
}

func newHeadFuzzer(t testing.TB) *headFuzzer {
	cfg := testConfig(t, []string{"10.0.0.1:5000"}, []string{"10.0.0.2:5000"},
		"proxy: {client: {header_timeout: 1s, read_timeout: 1s, write_timeout: 1s}, timeouts: {response_header: 1s, body_idle: 1s}}\n")
	fz := &headFuzzer{}
	fz.reg = NewRegistry(RegistryOptions{StartReady: true, Dial: fz.dial})
	fz.router = NewRouter(cfg, Options{Registry: fz.reg, Metrics: NewMetrics(prometheus.NewRegistry()), Log: zap.NewNop()})
	fz.srv = NewServer(NewHandler(fz.router, zap.NewNop()), cfg.Proxy.MaxRequestBodyBytes)
	t.Cleanup(func() {
		fz.router.Close()
		fz.reg.CloseIdle()
		fz.backends.Wait()
	})
	return fz
}

// dial hands the gateway one end of a pipe whose other end is a backend
// that checks every request it reads.
func (fz *headFuzzer) dial(context.Context, string, string) (net.Conn, error) {
	gw, be := net.Pipe()
	fz.backends.Add(1)
	go func() {
		defer fz.backends.Done()
		defer be.Close()
		br := bufio.NewReader(be)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				if err != io.EOF && !strings.Contains(err.Error(), "closed pipe") {
					fz.report("the backend could not parse what the gateway sent: " + err.Error())
				}
				return
			}
			fz.check(req)
			_, _ = io.Copy(io.Discard, req.Body)
			if _, err := io.WriteString(be, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	}()
	return gw, nil
}

// check holds the invariants of every request a backend receives.
func (fz *headFuzzer) check(req *http.Request) {
	if len(req.TransferEncoding) > 0 {
		fz.report("a request reached the backend with Transfer-Encoding")
	}
	if req.Host == "" {
		fz.report("a request reached the backend without Host")
	}
	if !strings.HasPrefix(req.RequestURI, "/") {
		fz.report("a request target is not in origin form: " + req.RequestURI)
	}
	for name := range req.Header {
		if strings.ContainsRune(name, '_') {
			fz.report("a header with an underscore reached the backend: " + name)
		}
		switch http.CanonicalHeaderKey(name) {
		case "Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Upgrade", "Proxy-Authorization":
			fz.report("a hop-by-hop header reached the backend: " + name)
		}
	}
	if req.Header.Get(HeaderLoop) == "" {
		fz.report("a request left without the loop header")
	}
}

func (fz *headFuzzer) report(problem string) {
	fz.mu.Lock()
	fz.problems = append(fz.problems, problem)
	fz.mu.Unlock()
}

// run sends raw as one client connection and returns what went wrong.
func (fz *headFuzzer) run(raw []byte) []string {
	client, server := net.Pipe()
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = fz.srv.ServeConn(server)
	}()
	_ = client.SetDeadline(time.Now().Add(5 * time.Second))
	read := make(chan struct{})
	go func() {
		defer close(read)
		_, _ = io.Copy(io.Discard, client)
	}()
	_, _ = client.Write(raw)
	_ = client.Close()
	<-read
	<-served
	fz.reg.CloseIdle()
	fz.mu.Lock()
	defer fz.mu.Unlock()
	p := fz.problems
	fz.problems = nil
	return p
}

// FuzzRequestHead feeds client bytes through the whole request path and
// checks what a backend receives: a request it can parse strictly, in
// origin form with a Host, with no hop-by-hop or underscore headers and
// no Transfer-Encoding to disagree about. It also must never panic.
func FuzzRequestHead(f *testing.F) {
	seeds := []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTrailer: X-T\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-T: smuggled\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nFoo: a\r\n folded\r\n\r\n",
		"GET / HTTP/1.1\nHost: x\n\n",
		"GET http://user:pw@evil/p?q=1 HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX_Forwarded_For: 1.2.3.4\r\nBad Name: v\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
		"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nConnection: X-Secret, Upgrade\r\nX-Secret: 1\r\nUpgrade: h2c\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: y\r\n\r\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	fz := newHeadFuzzer(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		problems := fz.run(raw)
		require.Empty(t, problems, "client bytes %q", raw)
	})
}
