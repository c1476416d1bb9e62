package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/analysis"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/gateway"
	"github.com/switchyard/switchyard/gatewaytest"
	"github.com/switchyard/switchyard/proxy"
	"go.uber.org/zap"
)

// releaseConfig is the config file of gateway_test.go (probes every 50ms
// with a 50ms timeout, healthy after 1) with the given analysis section,
// one "key: value" a line. Its unhealthy_threshold is 10, not 1 or 3: on a
// busy machine under -race a few 50ms probes in a row time out, which
// takes the only backend of a pool out, and the load sees 503s that have
// nothing to do with the release under test.
func releaseConfig(b *backends, analysisSection string) string {
	return releaseConfigWith(b, fileConfig{Active: "blue"}, analysisSection)
}

// releaseConfigWith is releaseConfig with the given file settings.
func releaseConfigWith(b *backends, fc fileConfig, analysisSection string) string {
	c := strings.Replace(b.config(fc), "unhealthy_threshold: 3", "unhealthy_threshold: 10", 1)
	c += "analysis:\n"
	for _, line := range strings.Split(strings.TrimSpace(analysisSection), "\n") {
		c += "  " + strings.TrimSpace(line) + "\n"
	}
	return c
}

// waitRelease is g.WaitStatus that, when it gives up, says what the
// analysis saw last.
func waitRelease(t *testing.T, g *gatewaytest.Gateway, what string, cond func(gatewaytest.Status) bool) gatewaytest.Status {
	t.Helper()
	var last gatewaytest.Status
	ok := assert.Eventually(t, func() bool {
		st, err := g.ReadStatus()
		if err != nil {
			return false
		}
		last = st
		return cond(st)
	}, gatewaytest.WaitFor, gatewaytest.Tick, what)
	if !ok {
		a, _ := json.Marshal(last.Analysis)
		require.FailNow(t, "gave up waiting", "%s; active %s, switches %+v, analysis %s", what, last.Active, last.Switches, a)
	}
	return g.Status(t)
}

// verdict returns the analysis verdict of a status, or the zero one.
func verdict(st gatewaytest.Status) analysis.Verdict {
	if st.Analysis == nil {
		return analysis.Verdict{}
	}
	return st.Analysis.Verdict
}

func TestRelease_AutoRollbackWhenTheNewColorStartsFailing(t *testing.T) {
	b := startBackends(t, 0)
	path := gatewaytest.NewConfigFile(t, releaseConfig(b, `
		window: 5s
		min_requests: 30
		max_error_ratio: 0.1
		observe: 20s
		auto_rollback: true`))
	g := startGateway(t, path)
	g.WaitReady(t, config.Blue, config.Green)
	l := g.StartLoad(t, 8)
	require.Eventually(t, func() bool { return l.Count(config.Blue) >= 100 }, gatewaytest.WaitFor, gatewaytest.Tick, "load never reached blue")
	g.Switch(t, config.Green)
	require.Eventually(t, func() bool { return l.Count(config.Green) >= 100 }, gatewaytest.WaitFor, gatewaytest.Tick, "load never reached green")
	require.Empty(t, l.Failed(), "requests failed before green broke")
	require.Equal(t, config.Green, g.Status(t).Active, "rolled back before green broke")

	breach := time.Now()
	b.green.FailEvery(3)

	st := waitRelease(t, g, "the gateway rolls back by itself", func(st gatewaytest.Status) bool { return st.Active == config.Blue })
	took := time.Since(breach)
	l.Stop()

	t.Logf("rolled back %s after green started failing", took)
	assert.Less(t, took, 10*time.Second, "rolled back %s after green started failing", took)
	rec := lastSwitch(t, st)
	assert.Equal(t, proxy.TriggerAutoRollback, rec.Trigger)
	assert.Equal(t, config.Green, rec.From)
	assert.Equal(t, config.Blue, rec.To)
	require.NotNil(t, st.Analysis)
	assert.Contains(t, st.Analysis.LastAction, "auto-rolled back green -> blue")
	assert.NotEmpty(t, l.Failed(), "green never failed a request")
	// Green still fails every third request, and gets none of them.
	before := b.green.Predictions()
	for i := range 200 {
		got, err := g.Predict()
		require.NoError(t, err, "request %d after the rollback", i)
		require.Equal(t, string(config.Blue), got, "request %d after the rollback", i)
	}
	assert.Equal(t, before, b.green.Predictions(), "green got requests after the rollback")
	n, err := g.Metric(`switchyard_switches_total{result="rolled_back",trigger="auto-rollback"}`)
	require.NoError(t, err)
	assert.Equal(t, 1.0, n)
}

// startFailingModel starts a model server for green whose predictions
// fail 3 in every 10 (the 2nd, 5th and 8th): 30%, never two in a row, so
// passive health never ejects it, and its first answer (the warmup's)
// passes. It returns its address.
func startFailingModel(t *testing.T) string {
	t.Helper()
	var n atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"status": "ok", "model_loaded": true}`)
	})
	mux.HandleFunc("POST /predict", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		switch n.Add(1) % 10 {
		case 2, 5, 8:
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, `{"error": "simulated failure"}`)
			return
		}
		_, _ = io.WriteString(w, `{"outputs": [[1, 2]], "model_version": "v2", "color": "green"}`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// docs/analysis.md: a color failing more than max_error_ratio is rolled
// back at the evaluation breach_for after the first one that saw it with
// min_requests requests; evaluations run once a second, so that is at
// most breach_for + 1s after the switch, plus the time min_requests
// requests take. The bounds allow half a second of timer jitter.
func TestRelease_AColorFailing30PercentIsRolledBackBreachForAfterItsFirstFailedEvaluation(t *testing.T) {
	const breachFor = 2 * time.Second
	b := startBackends(t, 0)
	path := gatewaytest.NewConfigFile(t, releaseConfigWith(b, fileConfig{Active: "blue", GreenBackend: startFailingModel(t)}, `
		window: 5s
		min_requests: 30
		max_error_ratio: 0.1
		observe: 30s
		breach_for: 2s`))
	g := startGateway(t, path)
	g.WaitReady(t, config.Blue, config.Green)
	l := g.StartLoad(t, 8)
	require.Eventually(t, func() bool { return l.Count(config.Blue) >= 100 }, gatewaytest.WaitFor, gatewaytest.Tick, "load never reached blue")
	require.Empty(t, l.Failed(), "requests failed before the switch")

	g.Switch(t, config.Green)

	var breach time.Time
	st := waitRelease(t, g, "the gateway rolls back by itself", func(st gatewaytest.Status) bool {
		if v := verdict(st); breach.IsZero() && !v.BreachSince.IsZero() {
			breach = v.BreachSince
		}
		return st.Active == config.Blue
	})
	l.Stop()
	require.GreaterOrEqual(t, len(st.Switches), 2)
	switched, rolledBack := st.Switches[len(st.Switches)-2], st.Switches[len(st.Switches)-1]
	assert.Equal(t, config.Green, switched.To)
	assert.Equal(t, proxy.TriggerAutoRollback, rolledBack.Trigger)
	require.False(t, breach.IsZero(), "the status never showed the breach before the rollback")
	t.Logf("first failed evaluation %s after the switch, rollback %s after it", breach.Sub(switched.At), rolledBack.At.Sub(breach))
	jitter := analysis.Interval / 2
	assert.Less(t, breach.Sub(switched.At), analysis.Interval+jitter, "the first evaluation with min_requests did not see the breach")
	assert.GreaterOrEqual(t, rolledBack.At.Sub(breach), breachFor-jitter, "rolled back before the breach lasted breach_for")
	assert.Less(t, rolledBack.At.Sub(breach), breachFor+jitter, "not rolled back at the evaluation breach_for after the first failed one")
	assert.Less(t, rolledBack.At.Sub(switched.At), breachFor+analysis.Interval+jitter)
	assert.Contains(t, st.Analysis.LastAction, "auto-rolled back green -> blue")
	assert.Contains(t, st.Analysis.LastAction, "error ratio")
	assert.NotEmpty(t, l.Failed(), "green never failed a request")
}

func TestRelease_CleanCanaryIsPromotedByItself(t *testing.T) {
	b := startBackends(t, 0)
	path := gatewaytest.NewConfigFile(t, releaseConfig(b, `
		window: 3s
		min_requests: 30
		max_error_ratio: 0.1
		observe: 20s
		auto_promote: true`))
	g := startGateway(t, path)
	g.WaitReady(t, config.Blue, config.Green)
	l := g.StartLoad(t, 8)
	require.Eventually(t, func() bool { return l.Count(config.Blue) >= 100 }, gatewaytest.WaitFor, gatewaytest.Tick, "load never reached blue")

	putAt := time.Now()
	resp, body := g.Put(t, "/admin/traffic", `{"green": 10}`, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)

	st := waitRelease(t, g, "the gateway promotes green by itself", func(st gatewaytest.Status) bool { return st.Active == config.Green })
	rec := lastSwitch(t, st)
	assert.Equal(t, analysis.TriggerAutoPromote, rec.Trigger)
	assert.GreaterOrEqual(t, rec.At.Sub(putAt), 3*time.Second, "promoted before a whole window of canary")
	assert.Equal(t, map[config.Color]float64{config.Green: 100, config.Blue: 0}, st.Traffic.Weights, "the canary outlived the promotion")
	// Green is observed after the switch, and stays.
	st = waitRelease(t, g, "green is observed with enough requests", func(st gatewaytest.Status) bool {
		v := verdict(st)
		return st.Active != config.Green || v.Phase == analysis.PhaseObserve && v.Enough
	})
	if st.Active != config.Green {
		a, _ := json.Marshal(st.Analysis)
		require.FailNow(t, "green was rolled back after a clean promotion", "switches %+v, analysis %s", st.Switches, a)
	}
	greenNow := l.Count(config.Green)
	require.Eventually(t, func() bool { return l.Count(config.Green) >= greenNow+200 }, gatewaytest.WaitFor, gatewaytest.Tick, "load stopped reaching green")
	l.Stop()

	assert.Empty(t, l.Failed(), "requests failed during the canary and promotion")
	st = g.Status(t)
	assert.Equal(t, config.Green, st.Active)
	assert.Equal(t, analysis.TriggerAutoPromote, lastSwitch(t, st).Trigger, "switched again after the promotion")
	n, err := g.Metric(`switchyard_switches_total{result="ok",trigger="auto-promote"}`)
	require.NoError(t, err)
	assert.Equal(t, 1.0, n)
}

func TestRelease_AdminPromote(t *testing.T) {
	testCases := []struct {
		desc       string
		failEvery  int64
		canary     string
		wantStatus int
		wantActive config.Color
		wantReason string
	}{
		{desc: "clean canary", canary: `{"green": 10}`, wantStatus: http.StatusOK, wantActive: config.Green},
		{desc: "failing canary", failEvery: 2, canary: `{"green": 50}`, wantStatus: http.StatusConflict, wantActive: config.Blue, wantReason: "error ratio"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			b := startBackends(t, 0)
			path := gatewaytest.NewConfigFile(t, releaseConfig(b, `
				window: 5s
				min_requests: 30
				max_error_ratio: 0.1
				observe: 20s`))
			g := startGateway(t, path)
			g.WaitReady(t, config.Blue, config.Green)
			b.green.FailEvery(test.failEvery)
			l := g.StartLoad(t, 8)
			resp, body := g.Put(t, "/admin/traffic", test.canary, nil)
			require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
			waitRelease(t, g, "a verdict on enough canary requests", func(st gatewaytest.Status) bool {
				v := verdict(st)
				return v.Phase == analysis.PhaseCanary && v.Enough
			})

			resp, body = g.Post(t, "/admin/promote", "", nil)

			l.Stop()
			require.Equal(t, test.wantStatus, resp.StatusCode, "%s", body)
			var out struct {
				Error   string             `json:"error"`
				Switch  proxy.SwitchResult `json:"switch"`
				Verdict analysis.Verdict   `json:"verdict"`
			}
			require.NoError(t, json.Unmarshal(body, &out))
			st := g.Status(t)
			assert.Equal(t, test.wantActive, st.Active)
			if test.wantStatus != http.StatusOK {
				assert.Equal(t, "refused", out.Error)
				assert.False(t, out.Verdict.Pass)
				assert.Contains(t, strings.Join(out.Verdict.Reasons, "; "), test.wantReason)
				assert.Empty(t, st.Switches)
				assert.Equal(t, float64(50), st.Traffic.Weights[config.Green], "a refused promotion ended the canary")
				return
			}
			assert.Empty(t, l.Failed(), "requests failed during the canary and promotion")
			assert.True(t, out.Verdict.Pass, "%q", out.Verdict.Reasons)
			assert.Equal(t, config.Green, out.Switch.To)
			assert.Equal(t, resp.Header.Get("ETag"), st.ETag)
			assert.Equal(t, analysis.TriggerPromote, lastSwitch(t, st).Trigger)
			g.RequireColor(t, config.Green)
		})
	}
}

// Regression test (fixed): Run cancelled as it starts (a SIGTERM during a rollout) can hang
// for good. It starts traffic.Serve in a goroutine (gateway.go:201) and,
// when ctx is already done, calls traffic.ShutdownWithContext
// (gateway.go:222) at once. fasthttp's Shutdown returns without doing
// anything when Serve has not registered its listener yet; Serve then
// runs forever, Run never closes trafficLn, and waits on errc
// (gateway.go:227) forever. It hangs in most tries (5 of 6 here); the
// test stops at the first hang, leaving that Run behind.
func TestRun_ReturnsWhenCancelledAsItStarts(t *testing.T) {
	b := startBackends(t, 0)
	path := gatewaytest.NewConfigFile(t, b.config(fileConfig{Active: "blue"}))
	for try := range 5 {
		cfg, data, err := config.Load(path)
		require.NoError(t, err)
		cfg.Listen, cfg.Admin.Listen = "127.0.0.1:0", "127.0.0.1:0"
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		done := make(chan error, 1)
		go func() {
			done <- gateway.Run(ctx, gateway.Options{Config: cfg, ConfigPath: path, ConfigData: data, Version: "test",
				Log: zap.NewNop(), ShutdownTimeout: time.Second})
		}()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(gatewaytest.WaitFor):
			require.FailNow(t, "Run did not return after its context was cancelled", "try %d", try)
		}
	}
}
