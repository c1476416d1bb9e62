package health

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/modelsim"
	"github.com/switchyard/switchyard/proxy"
	"github.com/switchyard/switchyard/warmup"
)

// These tests run the health checker with the proxy as the gateway wires
// them: backends start not ready, the checker marks them ready, and the
// router asks it why a backend is not.

// gateway is a running proxy with a health checker, on a loopback port.
type gateway struct {
	url     string
	router  *proxy.Router
	checker *Checker
}

// gatewayConfig parses a config with fast probes and a 3-request warmup
// marked by an X-Warmup header.
func gatewayConfig(t *testing.T, blue, green []string) *config.Config {
	t.Helper()
	y := `
health: {interval: 100ms, timeout: 100ms, jitter: 10ms, healthy_threshold: 1, unhealthy_threshold: 2}
warmup:
  path: /predict
  body: '` + predictBody + `'
  headers: {X-Warmup: "1"}
  requests: 3
  max_requests: 50
  timeout: 10s
  keep_warm_interval: 100ms
pools:
  blue: {version: v1, backends: [` + strings.Join(blue, ", ") + `]}
  green: {version: v2, backends: [` + strings.Join(green, ", ") + `]}
`
	cfg, err := config.Parse([]byte(y))
	require.NoError(t, err)
	return cfg
}

// startGateway runs the proxy for cfg with a Checker watching every
// backend of both pools, until the test ends.
func startGateway(t *testing.T, cfg *config.Config) *gateway {
	t.Helper()
	log := testLogger(t)
	w := newWarmer(t)
	reg := proxy.NewRegistry(proxy.RegistryOptions{StartReady: false})
	// The checker and the router need each other, as in the gateway.
	var router *proxy.Router
	checker := New(log, w, func() config.Color { return router.Snapshot().Active })
	router = proxy.NewRouter(cfg, proxy.Options{Registry: reg, Metrics: proxy.NewMetrics(prometheus.NewRegistry()),
		Log: log, Explain: checker.Explain})
	srv := proxy.NewServer(proxy.NewHandler(router, log), cfg.Proxy.MaxRequestBodyBytes)
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
		checker.Close()
		router.Close()
		reg.CloseIdle()
	})
	checker.Sync(targetsOf(t, cfg, router.Snapshot()))
	return &gateway{url: "http://" + ln.Addr().String(), router: router, checker: checker}
}

// targetsOf builds the checker's targets from a snapshot, with each pool's
// settings, as the gateway does on every reload.
func targetsOf(t *testing.T, cfg *config.Config, snap *proxy.Snapshot) []Target {
	t.Helper()
	var out []Target
	for _, c := range []config.Color{config.Blue, config.Green} {
		pc := cfg.Pools.Get(c)
		spec, err := warmup.Compile(pc.Warmup)
		require.NoError(t, err)
		for _, b := range snap.Pool(c).Backends {
			out = append(out, Target{Backend: b, Color: c, Version: pc.Version, Health: *pc.Health,
				Warmup: spec, KeepWarm: pc.Warmup.KeepWarmInterval.D(), TLS: pc.TLS})
		}
	}
	return out
}

func backendOf(t *testing.T, g *gateway, addr string) *proxy.Backend {
	t.Helper()
	b, ok := g.router.Registry().Lookup(addr)
	require.True(t, ok, "%s is not a backend", addr)
	return b
}

// warmupWitness is a model server that loads until told, answers warmup
// requests (X-Warmup: 1) slowly like a cold GPU, and counts the other
// requests that arrived before it had answered the warmup's Requests.
type warmupWitness struct {
	*fake
	need     int32
	loading  atomic.Bool
	warmedUp atomic.Int32 // warmup requests answered 200
	early    atomic.Int32 // traffic that arrived before warmedUp reached need
	served   atomic.Int32 // traffic answered
}

func startWarmupWitness(t *testing.T, need int) *warmupWitness {
	t.Helper()
	s := &warmupWitness{need: int32(need)}
	s.loading.Store(true)
	s.fake = startFake(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/health" && s.loading.Load():
			reply(w, http.StatusServiceUnavailable, `{"status":"loading","model_loaded":false}`)
		case r.URL.Path == "/health":
			reply(w, http.StatusOK, `{"status":"ok","model_loaded":true}`)
		case r.Header.Get("X-Warmup") == "1" && s.loading.Load():
			reply(w, http.StatusServiceUnavailable, `{"error":"model loading"}`)
		case r.Header.Get("X-Warmup") == "1":
			// A cold forward pass: warmup takes a while, and traffic that
			// slipped through in the meantime would be counted.
			select {
			case <-time.After(30 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
			s.warmedUp.Add(1) // counted as answered just before the answer goes out
			reply(w, http.StatusOK, `{"outputs":[[6]]}`)
		default:
			if s.warmedUp.Load() < s.need {
				s.early.Add(1)
			}
			s.served.Add(1)
			reply(w, http.StatusOK, `{"outputs":[[6]]}`)
		}
	})
	return s
}

// hammer sends requests to url from workers goroutines until stop is
// closed, counting the answers by status.
type hammer struct {
	ok, unavailable, other, failed atomic.Int32
	lastOther                      atomic.Value
	wg                             sync.WaitGroup
	stop                           chan struct{}
	// halt stops the workers and waits for them; it may be called again.
	halt func()
}

func startHammer(t *testing.T, url string, workers int) *hammer {
	t.Helper()
	h := &hammer{stop: make(chan struct{})}
	tr := &http.Transport{MaxIdleConnsPerHost: workers}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for range workers {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			for {
				select {
				case <-h.stop:
					return
				default:
				}
				resp, err := client.Post(url, "application/json", bytes.NewReader([]byte(predictBody)))
				if err != nil {
					h.failed.Add(1)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusOK:
					h.ok.Add(1)
				case http.StatusServiceUnavailable:
					h.unavailable.Add(1)
				default:
					h.other.Add(1)
					h.lastOther.Store(resp.Status + " " + string(body))
				}
			}
		}()
	}
	var once sync.Once
	h.halt = func() {
		once.Do(func() {
			close(h.stop)
			h.wg.Wait()
			tr.CloseIdleConnections()
		})
	}
	t.Cleanup(h.halt)
	return h
}

func TestGateway_NoRequestReachesABackendBeforeItsWarmupCompleted(t *testing.T) {
	t.Parallel()
	const need = 3
	blue := startWarmupWitness(t, need)
	g := startGateway(t, gatewayConfig(t, []string{blue.addr()}, nil))
	h := startHammer(t, g.url+"/predict", 4)

	// Clients are turned away while the model loads...
	eventually(t, func() bool { return h.unavailable.Load() >= 20 && stateOf(t, g.checker, blue.addr()).Probed },
		"clients got no 503 while the model loads")
	assert.True(t, strings.HasPrefix(g.checker.Explain(backendOf(t, g, blue.addr())), "unhealthy: "),
		g.checker.Explain(backendOf(t, g, blue.addr())))
	// ...and while it warms up, until it is ready.
	blue.loading.Store(false)
	eventually(t, func() bool { return h.ok.Load() >= 50 }, "clients never got through",
		func() string { return g.checker.Explain(backendOf(t, g, blue.addr())) })
	h.halt()

	assert.Zero(t, blue.early.Load(), "requests reached the backend before its warmup completed")
	assert.GreaterOrEqual(t, blue.warmedUp.Load(), int32(need))
	assert.Zero(t, h.other.Load(), "unexpected answers, e.g. %v", h.lastOther.Load())
	assert.Zero(t, h.failed.Load(), "requests failed")
	assert.Equal(t, h.ok.Load(), blue.served.Load(), "every 200 came from the backend")
}

func TestGateway_SwitchRefusedUntilTargetPoolIsReady(t *testing.T) {
	t.Parallel()
	blue := startSim(t, modelsim.Options{Color: "blue", Version: "v1"})
	loading := startSim(t, modelsim.Options{Color: "green", Version: "v2"})
	loading.SetDown(true)
	// warming answers its first warmup request at once and holds the
	// others until released.
	release := make(chan struct{})
	var releaseOnce sync.Once
	var predicts atomic.Int32
	warming := startFake(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			reply(w, http.StatusOK, `{"status":"ok"}`)
			return
		}
		if predicts.Add(1) > 1 {
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		reply(w, http.StatusOK, `{"outputs":[[6]]}`)
	})
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) }) // before the server closes
	g := startGateway(t, gatewayConfig(t, []string{blue.Addr()}, []string{loading.Addr(), warming.addr()}))
	lb, wb := backendOf(t, g, loading.Addr()), backendOf(t, g, warming.addr())
	eventually(t, func() bool {
		return strings.HasPrefix(g.checker.Explain(lb), "unhealthy: ") &&
			g.checker.Explain(wb) == "not warm (warming, 1 of 3 done)"
	}, "green never got to loading and warming",
		func() string { return g.checker.Explain(lb) + " / " + g.checker.Explain(wb) })

	_, err := g.router.Switch(proxy.SwitchRequest{To: config.Green, Trigger: proxy.TriggerAdmin})

	var refused *proxy.RefusedError
	require.True(t, errors.As(err, &refused), "switch not refused: %v", err)
	assert.Equal(t, config.Green, refused.Color)
	assert.Equal(t, 0, refused.Ready)
	assert.Equal(t, 2, refused.Need)
	require.Len(t, refused.Backends, 2)
	assert.True(t, strings.HasPrefix(refused.Backends[loading.Addr()], `unhealthy: GET /health: status 503: status is "loading", not ok`),
		refused.Backends[loading.Addr()])
	assert.Equal(t, "not warm (warming, 1 of 3 done)", refused.Backends[warming.addr()])
	assert.Equal(t, config.Blue, g.router.Snapshot().Active)

	loading.SetDown(false)
	releaseOnce.Do(func() { close(release) })
	eventually(t, func() bool { return lb.Ready() && wb.Ready() }, "green never ready",
		func() string { return g.checker.Explain(lb) + " / " + g.checker.Explain(wb) })

	res, err := g.router.Switch(proxy.SwitchRequest{To: config.Green, Trigger: proxy.TriggerAdmin})
	require.NoError(t, err)
	assert.Equal(t, config.Green, res.To)
	assert.False(t, res.Forced)
	assert.Equal(t, config.Green, g.router.Snapshot().Active)
}
