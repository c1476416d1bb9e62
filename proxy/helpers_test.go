package proxy

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// gateway is a running proxy on a loopback port, for tests.
type gateway struct {
	URL    string
	Router *Router
	server *fasthttp.Server
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
	reg := NewRegistry(RegistryOptions{StartReady: true})
	r := NewRouter(cfg, Options{Registry: reg, Metrics: NewMetrics(prometheus.NewRegistry()), Log: log})
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
	return &gateway{URL: "http://" + ln.Addr().String(), Router: r, server: srv}
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
