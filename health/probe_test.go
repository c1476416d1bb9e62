package health

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/modelsim"
	"go.uber.org/zap"
)

// newProber returns the prober a Checker uses, its connections closed
// when the test ends.
func newProber(t *testing.T) *prober {
	t.Helper()
	c := New(zap.NewNop(), nil, nil)
	t.Cleanup(c.Close)
	return c.prober
}

// route is one canned answer of a fake model server.
type route struct {
	status int
	body   string
}

// routes answers each path with its route and 404 elsewhere, as model
// servers do for unknown paths and models.
func routes(rs map[string]route) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rt, ok := rs[r.URL.EscapedPath()]
		if !ok {
			reply(w, http.StatusNotFound, `{"error":"not found"}`)
			return
		}
		reply(w, rt.status, rt.body)
	}
}

func probeOnce(t *testing.T, p *prober, addr string, h config.Health) (Report, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), h.Timeout.D())
	defer cancel()
	return p.probe(ctx, endpoint{addr: addr}, &h)
}

// probeCase is one probe of a fake model server and what it must find.
// Each kind's test file holds a table of them.
type probeCase struct {
	desc   string
	kind   string
	edit   func(*config.Health)
	routes map[string]route
	// wantErr is empty for a healthy backend, else part of the error.
	wantErr string
	want    Report
}

// testProbeCases probes a fake server answering each case's routes, in
// parallel subtests.
func testProbeCases(t *testing.T, testCases []probeCase) {
	t.Helper()
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			f := startFake(t, routes(test.routes))
			h := testHealth(test.kind, func(h *config.Health) {
				h.Timeout = config.Duration(5 * time.Second)
				if test.edit != nil {
					test.edit(h)
				}
			})

			r, err := probeOnce(t, newProber(t), f.addr(), h)

			if test.wantErr == "" {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
				assert.Contains(t, err.Error(), test.wantErr)
			}
			assertReportNear(t, test.want, r)
			if test.wantErr != "" && h.MetricsPath != "" {
				assert.Zero(t, f.count(h.MetricsPath), "metrics scraped from an unhealthy backend")
			}
		})
	}
}

func TestProbe_ScrapesMetricsOfAHealthyBackendOnly(t *testing.T) {
	t.Parallel()
	testProbeCases(t, []probeCase{
		{
			desc:   "vllm metrics are scraped into the report",
			kind:   config.ProbeVLLM,
			edit:   func(h *config.Health) { h.MetricsPath = "/metrics" },
			routes: map[string]route{"/health": {200, ""}, "/metrics": {200, vllmMetrics}},
			want:   Report{QueueDepth: ptr(7.0), Running: ptr(5.0), KVCacheUsage: ptr(0.42)},
		},
		{
			desc:   "triton metrics are scraped into the report",
			kind:   config.ProbeTriton,
			edit:   func(h *config.Health) { h.MetricsPath = "/metrics" },
			routes: map[string]route{"/v2/health/ready": {200, ""}, "/metrics": {200, tritonMetrics}},
			want:   Report{QueueDepth: ptr(5.0), GPUUtil: ptr(0.375), GPUMemUsed: ptr(8e9), GPUMemTotal: ptr(16e9)},
		},
		{
			desc:   "torchserve metrics are scraped into the report",
			kind:   config.ProbeTorchServe,
			edit:   func(h *config.Health) { h.MetricsPath = "/metrics" },
			routes: map[string]route{"/ping": {200, `{"status": "Healthy"}`}, "/metrics": {200, torchServeMetrics}},
			want:   Report{QueueLatency: ptr(0.5), GPUUtil: ptr(40.0), GPUMemUsed: ptr(1024.0 * (1 << 20))},
		},
		{
			desc:   "json body fields win over scraped metrics",
			kind:   config.ProbeJSON,
			edit:   func(h *config.Health) { h.MetricsPath = "/metrics" },
			routes: map[string]route{"/health": {200, okJSON}, "/metrics": {200, vllmMetrics}},
			want: Report{ModelLoaded: ptr(true), GPUUUID: "GPU-1", QueueDepth: ptr(2.0), BootID: "b1",
				Running: ptr(5.0), KVCacheUsage: ptr(0.42)},
		},
		{
			desc:   "a failing metrics endpoint does not make the backend unhealthy",
			kind:   config.ProbeVLLM,
			edit:   func(h *config.Health) { h.MetricsPath = "/metrics" },
			routes: map[string]route{"/health": {200, ""}, "/metrics": {500, vllmMetrics}},
		},
		{
			desc:   "malformed metrics do not make the backend unhealthy",
			kind:   config.ProbeVLLM,
			edit:   func(h *config.Health) { h.MetricsPath = "/metrics" },
			routes: map[string]route{"/health": {200, ""}, "/metrics": {200, "not { prometheus"}},
		},
		{
			desc:    "metrics are not scraped from an unhealthy backend",
			kind:    config.ProbeVLLM,
			edit:    func(h *config.Health) { h.MetricsPath = "/metrics" },
			routes:  map[string]route{"/health": {503, ""}, "/metrics": {200, vllmMetrics}},
			wantErr: "GET /health: status 503",
		},
	})
}

func TestProbe_UnknownKindIsAnError(t *testing.T) {
	t.Parallel()
	f := startFake(t, routes(map[string]route{"/health": {200, ""}}))

	_, err := probeOnce(t, newProber(t), f.addr(), testHealth("smtp", func(h *config.Health) {
		h.Path = "/health"
		h.Timeout = config.Duration(5 * time.Second)
	}))

	require.Error(t, err)
	assert.Contains(t, err.Error(), `probe kind "smtp" is not built in`)
	assert.Zero(t, f.count("/health"), "a kind that is not built in sends nothing")
}

func TestProbe_IdentifiesItselfAndUsesGET(t *testing.T) {
	t.Parallel()
	type seen struct{ method, agent string }
	got := make(chan seen, 1)
	f := startFake(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case got <- seen{r.Method, r.UserAgent()}:
		default:
		}
		reply(w, 200, `{"status":"ok"}`)
	})
	_, err := probeOnce(t, newProber(t), f.addr(), testHealth(config.ProbeJSON, func(h *config.Health) {
		h.Timeout = config.Duration(5 * time.Second)
	}))
	require.NoError(t, err)
	assert.Equal(t, seen{http.MethodGet, "switchyard-probe"}, <-got)
}

func TestProbe_HangingServerTimesOut(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	f := startFake(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) }) // runs before the server closes

	start := time.Now()
	_, err := probeOnce(t, newProber(t), f.addr(), testHealth(config.ProbeJSON, func(h *config.Health) {
		h.Timeout = config.Duration(40 * time.Millisecond)
	}))

	require.Error(t, err)
	assert.Equal(t, "probe timed out", err.Error())
	assert.Less(t, time.Since(start), 5*time.Second, "the probe did not honour its timeout")
}

func TestProbe_HangingMetricsDoNotFailTheProbe(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	f := startFake(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		reply(w, 200, `{"status":"ok","queue_depth":1}`)
	})
	t.Cleanup(func() { close(release) })

	r, err := probeOnce(t, newProber(t), f.addr(), testHealth(config.ProbeJSON, func(h *config.Health) {
		h.MetricsPath = "/metrics"
		h.Timeout = config.Duration(300 * time.Millisecond)
	}))

	require.NoError(t, err)
	assert.Equal(t, ptr(1.0), r.QueueDepth)
}

func TestProbe_RefusedConnectionIsAnError(t *testing.T) {
	t.Parallel()
	f := startFake(t, routes(nil))
	addr := f.addr()
	f.Close()

	_, err := probeOnce(t, newProber(t), addr, testHealth(config.ProbeHTTP, func(h *config.Health) {
		h.Timeout = config.Duration(5 * time.Second)
	}))

	require.Error(t, err)
	assert.Contains(t, err.Error(), "connection refused")
	assert.NotContains(t, err.Error(), "http://", "the error repeats the URL")
}

func TestProbe_OversizedBodyIsCutAtTheLimit(t *testing.T) {
	t.Parallel()
	big := make([]byte, maxProbeBody+1024)
	for i := range big {
		big[i] = ' '
	}
	copy(big, `{"status":"ok"}`)
	f := startFake(t, func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(big) })

	_, err := probeOnce(t, newProber(t), f.addr(), testHealth(config.ProbeJSON, func(h *config.Health) {
		h.Timeout = config.Duration(5 * time.Second)
	}))

	require.NoError(t, err, "a JSON body padded past the limit still parses from its first MiB")
}

// modelsim speaks the json, kserve and torchserve probes; each must fail
// while the model is down and pass once it is up.
func TestProbe_ModelsimKindsFollowTheModel(t *testing.T) {
	t.Parallel()
	sim := startSim(t, modelsim.Options{Version: "v1"})
	p := newProber(t)
	kinds := []string{config.ProbeJSON, config.ProbeKServe, config.ProbeTorchServe}
	probeAll := func() map[string]error {
		out := map[string]error{}
		for _, k := range kinds {
			_, err := probeOnce(t, p, sim.Addr(), testHealth(k, func(h *config.Health) {
				h.Timeout = config.Duration(5 * time.Second)
			}))
			out[k] = err
		}
		return out
	}

	sim.SetDown(true)
	for k, err := range probeAll() {
		assert.Error(t, err, "%s probe passed while the model is down", k)
	}
	sim.SetDown(false)
	for k, err := range probeAll() {
		assert.NoError(t, err, "%s probe failed while the model is up", k)
	}
}
