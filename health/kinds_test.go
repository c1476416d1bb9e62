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
	return p.probe(ctx, addr, &h)
}

func TestProbe_EachKindAgainstItsServer(t *testing.T) {
	t.Parallel()
	const okJSON = `{"status": "ok", "model_loaded": true, "gpu_uuid": "GPU-1", "queue_depth": 2, "boot_id": "b1"}`
	testCases := []struct {
		desc   string
		kind   string
		edit   func(*config.Health)
		routes map[string]route
		// wantErr is empty for a healthy backend, else part of the error.
		wantErr string
		want    Report
	}{
		{
			desc:   "http 200",
			kind:   config.ProbeHTTP,
			routes: map[string]route{"/health": {200, "OK"}},
		},
		{
			desc:   "http 204 with no body",
			kind:   config.ProbeHTTP,
			routes: map[string]route{"/health": {204, ""}},
		},
		{
			desc:    "http 500",
			kind:    config.ProbeHTTP,
			routes:  map[string]route{"/health": {500, "boom"}},
			wantErr: "GET /health: status 500",
		},
		{
			desc:    "http redirect is not followed",
			kind:    config.ProbeHTTP,
			routes:  map[string]route{"/health": {302, ""}},
			wantErr: "GET /health: status 302",
		},
		{
			desc:    "http custom path",
			kind:    config.ProbeHTTP,
			edit:    func(h *config.Health) { h.Path = "/healthz" },
			routes:  map[string]route{"/health": {200, ""}},
			wantErr: "GET /healthz: status 404",
		},
		{
			desc:   "json ok body",
			kind:   config.ProbeJSON,
			routes: map[string]route{"/health": {200, okJSON}},
			want:   Report{ModelLoaded: ptr(true), GPUUUID: "GPU-1", QueueDepth: ptr(2.0), BootID: "b1"},
		},
		{
			desc:    "json loading answers 503",
			kind:    config.ProbeJSON,
			routes:  map[string]route{"/health": {503, `{"status": "loading", "model_loaded": false, "boot_id": "b1"}`}},
			wantErr: `GET /health: status 503: status is "loading", not ok`,
			want:    Report{ModelLoaded: ptr(false), BootID: "b1"},
		},
		{
			desc:    "json 200 but model not loaded",
			kind:    config.ProbeJSON,
			routes:  map[string]route{"/health": {200, `{"status": "ok", "model_loaded": false}`}},
			wantErr: "GET /health: model not loaded",
			want:    Report{ModelLoaded: ptr(false)},
		},
		{
			desc:    "json 500 with a non-JSON body",
			kind:    config.ProbeJSON,
			routes:  map[string]route{"/health": {500, "Internal Server Error"}},
			wantErr: "GET /health: status 500: health body is not JSON",
		},
		{
			desc:    "json 200 with garbage",
			kind:    config.ProbeJSON,
			routes:  map[string]route{"/health": {200, "<html>hi</html>"}},
			wantErr: `GET /health: health body is not JSON`,
		},
		{
			desc:   "kserve ready",
			kind:   config.ProbeKServe,
			routes: map[string]route{"/v2/health/ready": {200, ""}},
		},
		{
			desc:    "kserve not ready",
			kind:    config.ProbeKServe,
			routes:  map[string]route{"/v2/health/ready": {503, ""}},
			wantErr: "GET /v2/health/ready: status 503",
		},
		{
			desc:   "kserve with a ready model",
			kind:   config.ProbeKServe,
			edit:   func(h *config.Health) { h.Model = "sklearn-iris" },
			routes: map[string]route{"/v2/health/ready": {200, ""}, "/v2/models/sklearn-iris/ready": {200, ""}},
		},
		{
			desc:   "triton ready",
			kind:   config.ProbeTriton,
			routes: map[string]route{"/v2/health/ready": {200, ""}},
		},
		{
			desc:   "triton with a ready model",
			kind:   config.ProbeTriton,
			edit:   func(h *config.Health) { h.Model = "resnet50" },
			routes: map[string]route{"/v2/health/ready": {200, ""}, "/v2/models/resnet50/ready": {200, ""}},
		},
		{
			desc:    "triton with a missing model",
			kind:    config.ProbeTriton,
			edit:    func(h *config.Health) { h.Model = "resnet50" },
			routes:  map[string]route{"/v2/health/ready": {200, ""}, "/v2/models/bert/ready": {200, ""}},
			wantErr: "GET /v2/models/resnet50/ready: status 404",
		},
		{
			desc:    "triton with a model that is not ready yet",
			kind:    config.ProbeTriton,
			edit:    func(h *config.Health) { h.Model = "resnet50" },
			routes:  map[string]route{"/v2/health/ready": {200, ""}, "/v2/models/resnet50/ready": {400, ""}},
			wantErr: "GET /v2/models/resnet50/ready: status 400",
		},
		{
			desc:    "triton server not ready is reported before the model",
			kind:    config.ProbeTriton,
			edit:    func(h *config.Health) { h.Model = "resnet50" },
			routes:  map[string]route{"/v2/health/ready": {503, ""}, "/v2/models/resnet50/ready": {200, ""}},
			wantErr: "GET /v2/health/ready: status 503",
		},
		{
			desc:   "triton model name is escaped in the path",
			kind:   config.ProbeTriton,
			edit:   func(h *config.Health) { h.Model = "my model/v1" },
			routes: map[string]route{"/v2/health/ready": {200, ""}, "/v2/models/my%20model%2Fv1/ready": {200, ""}},
		},
		{
			desc:   "torchserve healthy",
			kind:   config.ProbeTorchServe,
			routes: map[string]route{"/ping": {200, `{"status": "Healthy"}`}},
		},
		{
			desc:    "torchserve unhealthy with 200",
			kind:    config.ProbeTorchServe,
			routes:  map[string]route{"/ping": {200, `{"status": "Unhealthy"}`}},
			wantErr: `GET /ping: want {"status": "Healthy"}`,
		},
		{
			desc:    "torchserve unhealthy with 500",
			kind:    config.ProbeTorchServe,
			routes:  map[string]route{"/ping": {500, `{"status": "Unhealthy"}`}},
			wantErr: "GET /ping: status 500",
		},
		{
			desc:    "torchserve answer that is not JSON",
			kind:    config.ProbeTorchServe,
			routes:  map[string]route{"/ping": {200, `Healthy`}},
			wantErr: `GET /ping: want {"status": "Healthy"}, got "Healthy"`,
		},
		{
			desc:   "vllm ready",
			kind:   config.ProbeVLLM,
			routes: map[string]route{"/health": {200, ""}},
		},
		{
			desc:    "vllm engine dead",
			kind:    config.ProbeVLLM,
			routes:  map[string]route{"/health": {500, ""}},
			wantErr: "GET /health: status 500",
		},
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
	}
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

// A pool that overrides only health.kind must probe that kind's default
// path, as config.Health.Path documents ("Path overrides the kind's
// default path"). Regression test: the pool inherited no path and got no
// default either, so the probe went to "/" and a Triton backend that is
// ready never became healthy.
func TestProbe_PoolKindOverrideProbesTheKindsDefaultPath(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		desc     string
		kind     string
		wantPath string
		routes   map[string]route
	}{
		{desc: "triton", kind: config.ProbeTriton, wantPath: "/v2/health/ready", routes: map[string]route{"/v2/health/ready": {200, ""}}},
		{desc: "kserve", kind: config.ProbeKServe, wantPath: "/v2/health/ready", routes: map[string]route{"/v2/health/ready": {200, ""}}},
		{desc: "torchserve", kind: config.ProbeTorchServe, wantPath: "/ping", routes: map[string]route{"/ping": {200, `{"status":"Healthy"}`}}},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			f := startFake(t, routes(test.routes))
			cfg, err := config.Parse([]byte("pools:\n" +
				"  blue: {version: v1, backends: [\"127.0.0.1:1\"]}\n" +
				"  green: {version: v2, backends: [" + f.addr() + "], health: {kind: " + test.kind + "}}\n"))
			require.NoError(t, err)
			h := *cfg.Pools.Green.Health

			_, err = probeOnce(t, newProber(t), f.addr(), h)

			assert.NoError(t, err, "health config %+v", h)
			assert.Equal(t, 1, f.count(test.wantPath), "the probe did not reach %s", test.wantPath)
		})
	}
}
