package proxy

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
)

func TestParseORCA(t *testing.T) {
	testCases := []struct {
		desc              string
		in                string
		waiting, pressure float64
		ok                bool
	}{
		{desc: "vLLM named metrics", in: "TEXT named_metrics.kv_cache_usage_perc=0.42, named_metrics.num_requests_waiting=3", waiting: 3, pressure: 0.42, ok: true},
		{desc: "memory utilization and cpu ignored", in: "TEXT cpu_utilization=0.9, mem_utilization=0.5", pressure: 0.5, ok: true},
		{desc: "percent is turned into a ratio", in: "named_metrics.kv_cache_utilization=80", pressure: 0.8, ok: true},
		{desc: "highest pressure wins", in: "mem_utilization=0.2, named_metrics.kv_cache_usage=0.7", pressure: 0.7, ok: true},
		{desc: "nothing we use", in: "TEXT cpu_utilization=0.3, rps_fractional=10", ok: false},
		{desc: "garbage values are skipped", in: "TEXT named_metrics.num_requests_waiting=lots, mem_utilization=-1, x", ok: false},
		{desc: "NaN is skipped", in: "named_metrics.num_requests_waiting=NaN", ok: false},
		{desc: "empty", in: "", ok: false},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			waiting, pressure, ok := parseORCA([]byte(test.in))
			assert.Equal(t, test.ok, ok)
			assert.InDelta(t, test.waiting, waiting, 1e-9)
			assert.InDelta(t, test.pressure, pressure, 1e-9)
		})
	}
}

func TestLoadScore_ClampsAndPenalizesFullCache(t *testing.T) {
	assert.Equal(t, int64(0), LoadScore(0, 0))
	assert.Equal(t, int64(3), LoadScore(3, 0))
	assert.Equal(t, int64(5), LoadScore(3, 0.5))
	assert.Equal(t, int64(16), LoadScore(0, 0.99), "a nearly full KV cache weighs like 16 queued requests")
	assert.Equal(t, int64(1<<40), LoadScore(1e300, 0), "absurd reports are clamped, never wrapped negative")
	assert.Equal(t, int64(0), LoadScore(-5, -1))
}

// With the gpu policy the gateway asks for ORCA reports and steers away
// from the backend whose KV cache is full, with no scrape in between.
func TestProxy_GPUPolicyUsesInBandLoadReports(t *testing.T) {
	rig := newInmemRig(t, func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Request.Header.Peek(orcaRequestHeader)) != "text" {
			ctx.SetStatusCode(fasthttp.StatusBadRequest)
			return
		}
		ctx.Response.Header.Set(orcaResponseHeader, "TEXT named_metrics.kv_cache_usage_perc=0.99, named_metrics.num_requests_waiting=40")
		ctx.SetBody(upstreamReply)
	})
	defer rig.stop()
	cfg := testConfig(t, []string{"10.0.0.1:5000"}, []string{"10.0.0.2:5000"}, "")
	cfg.Pools.Blue.Balance = "gpu"
	rig.router.Apply(cfg)

	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI("http://gateway/predict")
	rig.do(t, req, resp)

	b, ok := rig.router.Registry().Lookup("10.0.0.1:5000")
	require.True(t, ok)
	assert.Equal(t, int64(56), b.score.Load(), "40 waiting + 16 for a full cache")
	assert.Empty(t, resp.Header.Peek(orcaResponseHeader), "the load report is for the gateway, not the client")
}

func FuzzParseORCA(f *testing.F) {
	f.Add([]byte("TEXT named_metrics.kv_cache_usage_perc=0.42, named_metrics.num_requests_waiting=3"))
	f.Add([]byte("mem_utilization=1e309,,=,==,"))
	f.Fuzz(func(t *testing.T, v []byte) {
		waiting, pressure, _ := parseORCA(v)
		if waiting < 0 || pressure < 0 || LoadScore(waiting, pressure) < 0 {
			t.Fatalf("negative load from %q: %v %v", v, waiting, pressure)
		}
	})
}
