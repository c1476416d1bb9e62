package health

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/modelsim"
)

// These tests run the whole Checker (probe loop, thresholds, real Warmer)
// against in-process model servers.

func TestChecker_LoadingServerIsReadyOnlyAfterLoadAndWarmup(t *testing.T) {
	t.Parallel()
	sim := startSim(t, modelsim.Options{Version: "v1", LoadTime: 500 * time.Millisecond, Latency: 20 * time.Millisecond})
	w := newCountingWarmer(newWarmer(t))
	c := newChecker(t, w, nil)
	b := newRegistry(t).Get(sim.Addr())
	c.Sync([]Target{{Backend: b, Color: config.Blue, Version: "v1", Health: testHealth(config.ProbeJSON, nil), Warmup: testWarmup(t, nil)}})

	eventually(t, func() bool { return stateOf(t, c, sim.Addr()).Probed }, "never probed")
	st := stateOf(t, c, sim.Addr())
	if !st.Healthy { // else loading already ended on a slow machine
		assert.Equal(t, `unhealthy: GET /health: status 503: status is "loading", not ok`, c.Explain(b))
		assert.False(t, b.Ready())
		assert.Zero(t, sim.Predictions(), "warmup sent to a server that is loading")
	}

	var predictionsAtReady int64
	eventually(t, func() bool {
		if !b.Ready() {
			return false
		}
		predictionsAtReady = sim.Predictions()
		return true
	}, "never ready", func() string { return c.Explain(b) })

	assert.GreaterOrEqual(t, predictionsAtReady, int64(3), "ready before the 3 warmup requests were answered")
	st = stateOf(t, c, sim.Addr())
	assert.True(t, st.Healthy)
	assert.True(t, st.Warm)
	assert.False(t, st.Warming)
	assert.Empty(t, st.LastError)
	assert.Empty(t, st.WarmupError)
	assert.Equal(t, ptr(true), st.Report.ModelLoaded)
	assert.GreaterOrEqual(t, st.ColdLatency, 0.02, "cold latency")
	assert.Positive(t, st.WarmupSeconds)
	warms, _, _ := w.counts(sim.Addr())
	assert.Equal(t, 1, warms)
}

func TestChecker_RestartWithNewBootIDWarmsAgain(t *testing.T) {
	t.Parallel()
	sim := startSim(t, modelsim.Options{Version: "v1"})
	w := newCountingWarmer(newWarmer(t))
	c := newChecker(t, w, nil)
	b := newRegistry(t).Get(sim.Addr())
	c.Sync([]Target{{Backend: b, Color: config.Blue, Health: testHealth(config.ProbeJSON, nil), Warmup: testWarmup(t, nil)}})
	eventually(t, b.Ready, "never ready", func() string { return c.Explain(b) })
	bootBefore := stateOf(t, c, sim.Addr()).Report.BootID
	require.NotEmpty(t, bootBefore)

	sim.Restart() // new boot_id; its prediction count starts over

	eventually(t, func() bool {
		st := stateOf(t, c, sim.Addr())
		warms, _, _ := w.counts(sim.Addr())
		return st.Restarts == 1 && warms == 2 && b.Ready()
	}, "no second warmup after the restart",
		func() string { return fmt.Sprintf("%+v", stateOf(t, c, sim.Addr())) })
	assert.GreaterOrEqual(t, sim.Predictions(), int64(3), "the restarted process got no warmup requests")
	assert.NotEqual(t, bootBefore, stateOf(t, c, sim.Addr()).Report.BootID)
}

func TestChecker_ColdServerIsWarmingUntilLatencyTargetMet(t *testing.T) {
	t.Parallel()
	sim := startSim(t, modelsim.Options{Version: "v1", ColdRequests: 3, ColdDelay: 300 * time.Millisecond})
	c := newChecker(t, newWarmer(t), nil)
	b := newRegistry(t).Get(sim.Addr())
	c.Sync([]Target{{Backend: b, Color: config.Blue, Health: testHealth(config.ProbeJSON, nil),
		Warmup: testWarmup(t, func(w *config.Warmup) { w.LatencyTarget = config.Duration(200 * time.Millisecond) })}})

	warming := regexp.MustCompile(`^not warm \(warming, [0-3] of 3 done\)$`)
	eventually(t, func() bool { return warming.MatchString(c.Explain(b)) }, "never reported warming", func() string { return c.Explain(b) })
	assert.False(t, b.Ready())
	st := stateOf(t, c, sim.Addr())
	assert.True(t, st.Healthy, "warming although unhealthy")
	assert.True(t, st.Warming)
	assert.Equal(t, 3, st.WarmNeeded)

	eventually(t, b.Ready, "never ready", func() string { return c.Explain(b) })
	st = stateOf(t, c, sim.Addr())
	assert.GreaterOrEqual(t, sim.Predictions(), int64(6), "ready before 3 fast answers followed the 3 cold ones")
	assert.GreaterOrEqual(t, st.ColdLatency, 0.3)
	assert.Less(t, st.WarmLatency, 0.2)
}

func TestChecker_FlappingBackendLosesWarmthAndWarmsAgain(t *testing.T) {
	t.Parallel()
	sim := startSim(t, modelsim.Options{Version: "v1"})
	w := newCountingWarmer(newWarmer(t))
	c := newChecker(t, w, nil)
	b := newRegistry(t).Get(sim.Addr())
	c.Sync([]Target{{Backend: b, Color: config.Blue, Warmup: testWarmup(t, nil),
		Health: testHealth(config.ProbeJSON, func(h *config.Health) { h.HealthyThreshold, h.UnhealthyThreshold = 2, 2 })}})
	eventually(t, b.Ready, "never ready", func() string { return c.Explain(b) })
	predictions := sim.Predictions()

	sim.SetDown(true)
	eventually(t, func() bool { return !stateOf(t, c, sim.Addr()).Healthy }, "never unhealthy")
	st := stateOf(t, c, sim.Addr())
	assert.False(t, st.Warm, "still warm after going unhealthy")
	assert.False(t, b.Ready())
	assert.True(t, strings.HasPrefix(c.Explain(b), "unhealthy: GET /health: status 503"), c.Explain(b))

	sim.SetDown(false)
	eventually(t, b.Ready, "never ready again", func() string { return c.Explain(b) })
	warms, _, _ := w.counts(sim.Addr())
	assert.Equal(t, 2, warms, "warmup runs")
	assert.GreaterOrEqual(t, sim.Predictions(), predictions+3, "no warmup requests after coming back")
}

func TestChecker_HangingServerIsUnhealthyAndNeverReady(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	f := startFake(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) }) // before the server closes
	c := newChecker(t, newWarmer(t), nil)
	b := newRegistry(t).Get(f.addr())
	c.Sync([]Target{{Backend: b, Color: config.Blue, Warmup: testWarmup(t, nil),
		Health: testHealth(config.ProbeJSON, func(h *config.Health) { h.Timeout = config.Duration(40 * time.Millisecond) })}})

	eventually(t, func() bool { return f.count("/health") >= 3 }, "probes stopped")
	assert.Equal(t, "unhealthy: probe timed out", c.Explain(b))
	require.Never(t, b.Ready, 200*time.Millisecond, pollIn, "a hanging backend became ready")
	assert.Zero(t, f.count("/predict"), "warmup sent to an unhealthy backend")
}

func TestChecker_GarbageHealthBodyIsUnhealthyWithAClearError(t *testing.T) {
	t.Parallel()
	f := startFake(t, func(w http.ResponseWriter, r *http.Request) {
		reply(w, http.StatusOK, "<html><body>It works!</body></html>")
	})
	c := newChecker(t, newWarmer(t), nil)
	b := newRegistry(t).Get(f.addr())
	c.Sync([]Target{{Backend: b, Color: config.Blue, Health: testHealth(config.ProbeJSON, nil), Warmup: testWarmup(t, nil)}})

	eventually(t, func() bool { return f.count("/health") >= 3 }, "probes stopped")
	got := c.Explain(b)
	assert.True(t, strings.HasPrefix(got, "unhealthy: GET /health: health body is not JSON"), got)
	assert.Contains(t, got, "It works!", "the error does not quote the body")
	assert.False(t, b.Ready())
	assert.Zero(t, f.count("/predict"), "warmup sent to an unhealthy backend")
}

func TestChecker_KeepWarmPingsOnlyTheStandby(t *testing.T) {
	t.Parallel()
	blue := startSim(t, modelsim.Options{Color: "blue", Version: "v1"})
	green := startSim(t, modelsim.Options{Color: "green", Version: "v2"})
	w := newCountingWarmer(newWarmer(t))
	c := newChecker(t, w, func() config.Color { return config.Blue })
	reg := newRegistry(t)
	bb, gb := reg.Get(blue.Addr()), reg.Get(green.Addr())
	spec := testWarmup(t, nil)
	c.Sync([]Target{
		{Backend: bb, Color: config.Blue, Health: testHealth(config.ProbeJSON, nil), Warmup: spec, KeepWarm: 50 * time.Millisecond},
		{Backend: gb, Color: config.Green, Health: testHealth(config.ProbeJSON, nil), Warmup: spec, KeepWarm: 50 * time.Millisecond},
	})

	eventually(t, func() bool {
		_, pings, _ := w.counts(green.Addr())
		return bb.Ready() && pings >= 3
	}, "the standby got no keep-warm pings")

	assert.True(t, gb.Ready())
	assert.GreaterOrEqual(t, green.Predictions(), int64(3+3), "keep-warm pings are predictions")
	_, pings, pingErrs := w.counts(green.Addr())
	assert.Zero(t, pingErrs, "of %d pings", pings)
	_, bluePings, _ := w.counts(blue.Addr())
	assert.Zero(t, bluePings, "the active backend got keep-warm pings")
	assert.Positive(t, stateOf(t, c, green.Addr()).WarmLatency)
}

// Spec.Timeout documents 0 as "only the caller's context bounds it".
// Regression test: keep-warm used it as a deadline of zero, so every ping
// of a hand-built Spec failed at once and the standby was warmed again
// and again instead.
func TestChecker_KeepWarmWithoutPerRequestTimeoutPings(t *testing.T) {
	t.Parallel()
	green := startSim(t, modelsim.Options{Color: "green", Version: "v2"})
	w := newCountingWarmer(newWarmer(t))
	c := newChecker(t, w, func() config.Color { return config.Blue })
	gb := newRegistry(t).Get(green.Addr())
	spec := *testWarmup(t, nil)
	spec.Timeout = 0
	c.Sync([]Target{{Backend: gb, Color: config.Green, Health: testHealth(config.ProbeJSON, nil), Warmup: &spec, KeepWarm: 30 * time.Millisecond}})

	eventually(t, func() bool {
		_, pings, _ := w.counts(green.Addr())
		return pings >= 3
	}, "the standby got no keep-warm pings")

	warms, pings, pingErrs := w.counts(green.Addr())
	assert.Zero(t, pingErrs, "of %d keep-warm pings failed: %s", pings, stateOf(t, c, green.Addr()).WarmupError)
	assert.Equal(t, 1, warms, "warmups run")
}

func TestChecker_GPUSharedAcrossColorsIsReportedOnBoth(t *testing.T) {
	t.Parallel()
	blue := startSim(t, modelsim.Options{Color: "blue", Version: "v1"})
	blue2 := startSim(t, modelsim.Options{Color: "blue", Version: "v1"})
	blueOwnGPU := startSim(t, modelsim.Options{Color: "blue", Version: "v1"})
	green := startSim(t, modelsim.Options{Color: "green", Version: "v2"})
	for _, s := range []*modelsim.Server{blue, blue2, green} {
		s.SetHealthFields(map[string]any{"gpu_uuid": "GPU-5f6e0c1a", "cuda_available": true, "device": "cuda:0"})
	}
	blueOwnGPU.SetHealthFields(map[string]any{"gpu_uuid": "GPU-77777777"})
	c := newChecker(t, nil, nil)
	reg := newRegistry(t)
	var targets []Target
	for _, s := range []*modelsim.Server{blue, blue2, blueOwnGPU} {
		targets = append(targets, Target{Backend: reg.Get(s.Addr()), Color: config.Blue, Health: testHealth(config.ProbeJSON, nil)})
	}
	targets = append(targets, Target{Backend: reg.Get(green.Addr()), Color: config.Green, Health: testHealth(config.ProbeJSON, nil)})
	c.Sync(targets)

	wantGreen := []string{blue.Addr(), blue2.Addr()}
	if wantGreen[1] < wantGreen[0] {
		wantGreen[0], wantGreen[1] = wantGreen[1], wantGreen[0]
	}
	eventually(t, func() bool {
		return len(stateOf(t, c, green.Addr()).SharedGPUWith) == 2 &&
			len(stateOf(t, c, blue.Addr()).SharedGPUWith) == 1 &&
			len(stateOf(t, c, blue2.Addr()).SharedGPUWith) == 1
	}, "GPU sharing not reported")

	assert.Equal(t, wantGreen, stateOf(t, c, green.Addr()).SharedGPUWith)
	assert.Equal(t, []string{green.Addr()}, stateOf(t, c, blue.Addr()).SharedGPUWith)
	assert.Equal(t, []string{green.Addr()}, stateOf(t, c, blue2.Addr()).SharedGPUWith, "same-color sharing is not reported, other-color is")
	assert.Empty(t, stateOf(t, c, blueOwnGPU.Addr()).SharedGPUWith)
	assert.Equal(t, "GPU-5f6e0c1a", stateOf(t, c, green.Addr()).Report.GPUUUID)
}

func TestChecker_RewarmRunsWarmupAgainWhileServing(t *testing.T) {
	t.Parallel()
	sim := startSim(t, modelsim.Options{Version: "v1"})
	w := newCountingWarmer(newWarmer(t))
	c := newChecker(t, w, nil)
	b := newRegistry(t).Get(sim.Addr())
	c.Sync([]Target{{Backend: b, Color: config.Blue, Health: testHealth(config.ProbeJSON, nil), Warmup: testWarmup(t, nil)}})
	eventually(t, b.Ready, "never ready", func() string { return c.Explain(b) })
	eventually(t, func() bool { return !stateOf(t, c, sim.Addr()).Warming }, "first warmup never ended")
	predictions := sim.Predictions()

	require.NoError(t, c.Rewarm(config.Blue))

	sawNotReady := false
	eventually(t, func() bool {
		if !b.Ready() {
			sawNotReady = true
		}
		warms, _, _ := w.counts(sim.Addr())
		return warms == 2 && !stateOf(t, c, sim.Addr()).Warming
	}, "rewarm did not run")
	assert.False(t, sawNotReady, "the backend stopped serving during a rewarm")
	assert.GreaterOrEqual(t, sim.Predictions(), predictions+3)
	assert.True(t, b.Ready())
}

func TestChecker_RewarmRefusesPoolsWithoutWarmupOrBackends(t *testing.T) {
	t.Parallel()
	f := startFake(t, func(w http.ResponseWriter, r *http.Request) { reply(w, 200, `{"status":"ok"}`) })
	c := newChecker(t, newWarmer(t), nil)
	c.Sync([]Target{{Backend: newRegistry(t).Get(f.addr()), Color: config.Blue, Health: testHealth(config.ProbeJSON, nil)}})

	err := c.Rewarm(config.Blue)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "pool blue has no warmup configured")

	err = c.Rewarm(config.Green)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "pool green has no backends")
}

func TestChecker_SyncRemovingABackendStopsItsMonitor(t *testing.T) {
	t.Parallel()
	ok := func(w http.ResponseWriter, r *http.Request) { reply(w, 200, `{"status":"ok"}`) }
	keep, drop := startFake(t, ok), startFake(t, ok)
	c := newChecker(t, nil, nil)
	reg := newRegistry(t)
	kb, db := reg.Get(keep.addr()), reg.Get(drop.addr())
	h := testHealth(config.ProbeJSON, nil)
	c.Sync([]Target{{Backend: kb, Color: config.Blue, Health: h}, {Backend: db, Color: config.Blue, Health: h}})
	eventually(t, func() bool { return kb.Ready() && db.Ready() }, "never ready")

	c.Sync([]Target{{Backend: kb, Color: config.Blue, Health: h}})

	eventually(t, func() bool { return !db.Ready() }, "a removed backend stayed ready")
	assert.Nil(t, c.Inspect(drop.addr()))
	assert.Equal(t, "not watched by the health checker", c.Explain(db))
	require.Len(t, c.Snapshot(), 1)
	assert.Equal(t, keep.addr(), c.Snapshot()[0].Addr)
	dropped, kept := drop.count("/health"), keep.count("/health")
	eventually(t, func() bool { return keep.count("/health") >= kept+3 }, "the kept backend is no longer probed")
	assert.Equal(t, dropped, drop.count("/health"), "the removed backend is still probed")
	assert.True(t, kb.Ready())
}

func TestChecker_SyncAppliesNewSettingsToAWatchedBackend(t *testing.T) {
	t.Parallel()
	f := startFake(t, routes(map[string]route{"/health": {200, `{"status":"ok"}`}}))
	c := newChecker(t, nil, nil)
	b := newRegistry(t).Get(f.addr())
	c.Sync([]Target{{Backend: b, Color: config.Blue, Version: "v1", Health: testHealth(config.ProbeJSON, nil)}})
	eventually(t, b.Ready, "never ready")

	c.Sync([]Target{{Backend: b, Color: config.Blue, Version: "v1.1", Health: testHealth(config.ProbeJSON, func(h *config.Health) { h.Path = "/healthz" })}})

	eventually(t, func() bool { return !b.Ready() }, "the new probe path was not used")
	assert.True(t, strings.HasPrefix(c.Explain(b), "unhealthy: GET /healthz: status 404"), c.Explain(b))
	assert.Equal(t, "v1.1", stateOf(t, c, f.addr()).Version)
}

func TestChecker_CloseMarksEveryBackendNotReady(t *testing.T) {
	t.Parallel()
	f := startFake(t, func(w http.ResponseWriter, r *http.Request) { reply(w, 200, `{"status":"ok"}`) })
	c := New(testLogger(t), nil, func() config.Color { return config.Blue })
	b := newRegistry(t).Get(f.addr())
	c.Sync([]Target{{Backend: b, Color: config.Blue, Health: testHealth(config.ProbeJSON, nil)}})
	eventually(t, b.Ready, "never ready")

	c.Close()

	assert.False(t, b.Ready())
}

func TestCollector_ExportsHealthAndGPUSignals(t *testing.T) {
	t.Parallel()
	f := startFake(t, routes(map[string]route{"/health": {200,
		`{"status":"ok","gpu_utilization":83,"gpu_memory_used_bytes":6e9,"gpu_memory_total_bytes":8e9,"queue_depth":2}`}}))
	c := newChecker(t, nil, nil)
	b := newRegistry(t).Get(f.addr())
	c.Sync([]Target{{Backend: b, Color: config.Green, Version: "v2", Health: testHealth(config.ProbeJSON, nil)}})
	eventually(t, b.Ready, "never ready")
	reg := prometheus.NewPedanticRegistry()
	require.NoError(t, reg.Register(NewCollector(c)))

	got := gather(t, reg)

	wantLabels := map[string]string{"backend": f.addr(), "color": "green", "version": "v2"}
	for name, want := range map[string]float64{
		"switchyard_backend_healthy":                1,
		"switchyard_backend_ready":                  1,
		"switchyard_backend_warm":                   1,
		"switchyard_backend_restarts_total":         0,
		"switchyard_backend_ejections_total":        0,
		"switchyard_backend_gpu_utilization_ratio":  0.83, // the server said 83 percent
		"switchyard_backend_gpu_memory_used_bytes":  6e9,
		"switchyard_backend_gpu_memory_total_bytes": 8e9,
		"switchyard_backend_queue_depth":            2,
	} {
		s, ok := got[name]
		if !assert.True(t, ok, "%s not exported", name) {
			continue
		}
		assert.InDelta(t, want, s.value, 1e-9, name)
		assert.Equal(t, wantLabels, s.labels, name)
	}
	assert.NotContains(t, got, "switchyard_backend_kv_cache_usage_ratio", "a signal the server did not report is exported")
	assert.NotContains(t, got, "switchyard_backend_warmup_latency_seconds", "latency exported without a warmup")

	c.Sync(nil)
	eventually(t, func() bool { return !b.Ready() }, "removed backend stayed ready")
	assert.Empty(t, gather(t, reg), "a removed backend left series behind")
}

// sample is one gathered series.
type sample struct {
	labels map[string]string
	value  float64
}

// gather collects reg's series by name; each name must have one series.
func gather(t *testing.T, reg *prometheus.Registry) map[string]sample {
	t.Helper()
	fams, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]sample{}
	for _, f := range fams {
		require.Len(t, f.GetMetric(), 1, f.GetName())
		m := f.GetMetric()[0]
		s := sample{labels: map[string]string{}}
		for _, l := range m.GetLabel() {
			s.labels[l.GetName()] = l.GetValue()
		}
		switch {
		case m.Gauge != nil:
			s.value = m.Gauge.GetValue()
		case m.Counter != nil:
			s.value = m.Counter.GetValue()
		}
		out[f.GetName()] = s
	}
	return out
}

func TestOnBeat_ProbesStartOnTheNearestBeat(t *testing.T) {
	t.Parallel()
	const interval, jitter = 2 * time.Second, 200 * time.Millisecond
	beat := interval / beats
	now := time.Unix(1700000000, 123456789)
	for _, d := range []time.Duration{1800 * time.Millisecond, 2 * time.Second, 2199 * time.Millisecond, 2024 * time.Millisecond} {
		wait := onBeat(now, d, interval, jitter)

		assert.Zero(t, now.Add(wait).UnixNano()%int64(beat), "%v: starts off the beat", d)
		assert.InDelta(t, float64(d), float64(wait), float64(beat/2), "%v: moved by more than half a beat", d)
	}
}

func TestOnBeat_WithoutJitterProbesKeepTheirPhase(t *testing.T) {
	t.Parallel()
	now := time.Unix(1700000000, 123456789)

	assert.Equal(t, 2*time.Second, onBeat(now, 2*time.Second, 2*time.Second, 0))
	// A beat is at most a quarter of the jitter.
	assert.InDelta(t, float64(2*time.Second), float64(onBeat(now, 2*time.Second, 2*time.Second, 4*time.Millisecond)),
		float64(time.Millisecond/2))
}

// checkSharing runs when a backend reports another GPU, and on Sync: a
// color changed by a reload is noticed though no GPU changed.
func TestChecker_GPUSharingFollowsAColorChangedBySync(t *testing.T) {
	t.Parallel()
	a := startSim(t, modelsim.Options{Color: "blue", Version: "v1"})
	b := startSim(t, modelsim.Options{Color: "blue", Version: "v1"})
	for _, s := range []*modelsim.Server{a, b} {
		s.SetHealthFields(map[string]any{"gpu_uuid": "GPU-5f6e0c1a"})
	}
	c := newChecker(t, nil, nil)
	reg := newRegistry(t)
	ta := Target{Backend: reg.Get(a.Addr()), Color: config.Blue, Health: testHealth(config.ProbeJSON, nil)}
	tb := Target{Backend: reg.Get(b.Addr()), Color: config.Blue, Health: testHealth(config.ProbeJSON, nil)}
	c.Sync([]Target{ta, tb})
	eventually(t, func() bool {
		return stateOf(t, c, a.Addr()).Report.GPUUUID != "" && stateOf(t, c, b.Addr()).Report.GPUUUID != ""
	}, "GPUs never reported")
	assert.Empty(t, stateOf(t, c, a.Addr()).SharedGPUWith, "same-color sharing is not reported")

	tb.Color = config.Green
	c.Sync([]Target{ta, tb})

	assert.Equal(t, []string{b.Addr()}, stateOf(t, c, a.Addr()).SharedGPUWith)
	assert.Equal(t, []string{a.Addr()}, stateOf(t, c, b.Addr()).SharedGPUWith)
}
