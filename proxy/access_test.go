package proxy

import (
	"net"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// The access log is off by default and, when on, writes one line per
// sampled request with what an operator filters on.
func TestAccessLog_OneLinePerRequestWithColorVersionAndRequestID(t *testing.T) {
	testCases := []struct {
		desc  string
		extra string
		want  int
	}{
		{desc: "off by default", extra: "", want: 0},
		{desc: "on for every request", extra: "log: {access: {enabled: true}}\n", want: 3},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			backend := colorServer(t, "blue")
			cfg := testConfig(t, []string{hostPort(backend)}, nil, test.extra)
			core, logs := observer.New(zap.InfoLevel)
			log := zap.New(core)
			reg := NewRegistry(RegistryOptions{StartReady: true})
			r := NewRouter(cfg, Options{Registry: reg, Metrics: NewMetrics(prometheus.NewRegistry()), Log: log})
			defer r.Close()
			defer reg.CloseIdle()
			gw := serveHandler(t, NewHandler(r, log), cfg)

			client := newClient(t)
			for range 3 {
				req, err := http.NewRequest(http.MethodPost, gw+"/predict?x=1", nil)
				require.NoError(t, err)
				req.Header.Set(HeaderRequestID, "req-42")
				resp, err := client.Do(req)
				require.NoError(t, err)
				resp.Body.Close()
			}

			lines := logs.FilterLoggerName("access").All()
			require.Len(t, lines, test.want)
			for _, l := range lines {
				f := l.ContextMap()
				assert.Equal(t, "POST", f["method"])
				assert.Equal(t, "/predict?x=1", f["path"])
				assert.EqualValues(t, 200, f["status"])
				assert.Equal(t, "blue", f["env"])
				assert.Equal(t, "v1", f["version"])
				assert.Equal(t, hostPort(backend), f["backend"])
				assert.Equal(t, "req-42", f["request_id"])
				assert.Contains(t, f, "duration")
				assert.Contains(t, f, "upstream_time")
			}
		})
	}
}

// serveHandler runs h on a loopback port until the test ends and returns
// its base URL.
func serveHandler(t *testing.T, h *Handler, cfg *config.Config) string {
	t.Helper()
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
	})
	return "http://" + ln.Addr().String()
}
