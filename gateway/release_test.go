package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/analysis"
	"github.com/switchyard/switchyard/config"
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
	c := strings.Replace(b.config(fileConfig{Active: "blue"}), "unhealthy_threshold: 3", "unhealthy_threshold: 10", 1)
	c += "analysis:\n"
	for _, line := range strings.Split(strings.TrimSpace(analysisSection), "\n") {
		c += "  " + strings.TrimSpace(line) + "\n"
	}
	return c
}

// put sends a PUT to the admin API.
func (g *gw) put(t *testing.T, path, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, g.admin+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := g.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, data
}

func (l *load) failed() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.failures...)
}

// waitRelease is waitStatus that, when it gives up, says what the
// analysis saw last.
func (g *gw) waitRelease(t *testing.T, what string, cond func(statusDoc) bool) statusDoc {
	t.Helper()
	var last statusDoc
	ok := assert.Eventually(t, func() bool {
		st, err := g.getStatus()
		if err != nil {
			return false
		}
		last = st
		return cond(st)
	}, waitFor, tick, what)
	if !ok {
		a, _ := json.Marshal(last.Analysis)
		require.FailNow(t, "gave up waiting", "%s; active %s, switches %+v, analysis %s", what, last.Active, last.Switches, a)
	}
	return g.status(t)
}

// verdict returns the analysis verdict of a status, or the zero one.
func verdict(st statusDoc) analysis.Verdict {
	if st.Analysis == nil {
		return analysis.Verdict{}
	}
	return st.Analysis.Verdict
}

func TestRelease_AutoRollbackWhenTheNewColorStartsFailing(t *testing.T) {
	b := startBackends(t, 0)
	path := newConfigFile(t, releaseConfig(b, `
		window: 5s
		min_requests: 30
		max_error_ratio: 0.1
		observe: 20s
		auto_rollback: true`))
	g := startGateway(t, path)
	g.waitReady(t, config.Blue, config.Green)
	l := g.startLoad(t, 8)
	require.Eventually(t, func() bool { return l.count(config.Blue) >= 100 }, waitFor, tick, "load never reached blue")
	g.adminSwitch(t, config.Green)
	require.Eventually(t, func() bool { return l.count(config.Green) >= 100 }, waitFor, tick, "load never reached green")
	require.Empty(t, l.failed(), "requests failed before green broke")
	require.Equal(t, config.Green, g.status(t).Active, "rolled back before green broke")

	breach := time.Now()
	b.green.FailEvery(3)

	st := g.waitRelease(t, "the gateway rolls back by itself", func(st statusDoc) bool { return st.Active == config.Blue })
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
	assert.NotEmpty(t, l.failed(), "green never failed a request")
	// Green still fails every third request, and gets none of them.
	before := b.green.Predictions()
	for i := range 200 {
		got, err := g.predict()
		require.NoError(t, err, "request %d after the rollback", i)
		require.Equal(t, string(config.Blue), got, "request %d after the rollback", i)
	}
	assert.Equal(t, before, b.green.Predictions(), "green got requests after the rollback")
	n, err := g.metric(`switchyard_switches_total{result="rolled_back",trigger="auto-rollback"}`)
	require.NoError(t, err)
	assert.Equal(t, 1.0, n)
}

func TestRelease_CleanCanaryIsPromotedByItself(t *testing.T) {
	b := startBackends(t, 0)
	path := newConfigFile(t, releaseConfig(b, `
		window: 3s
		min_requests: 30
		max_error_ratio: 0.1
		observe: 20s
		auto_promote: true`))
	g := startGateway(t, path)
	g.waitReady(t, config.Blue, config.Green)
	l := g.startLoad(t, 8)
	require.Eventually(t, func() bool { return l.count(config.Blue) >= 100 }, waitFor, tick, "load never reached blue")

	putAt := time.Now()
	resp, body := g.put(t, "/admin/traffic", `{"green": 10}`)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)

	st := g.waitRelease(t, "the gateway promotes green by itself", func(st statusDoc) bool { return st.Active == config.Green })
	rec := lastSwitch(t, st)
	assert.Equal(t, analysis.TriggerAutoPromote, rec.Trigger)
	assert.GreaterOrEqual(t, rec.At.Sub(putAt), 3*time.Second, "promoted before a whole window of canary")
	assert.Equal(t, map[config.Color]float64{config.Green: 100, config.Blue: 0}, st.Traffic.Weights, "the canary outlived the promotion")
	// Green is observed after the switch, and stays.
	st = g.waitRelease(t, "green is observed with enough requests", func(st statusDoc) bool {
		v := verdict(st)
		return st.Active != config.Green || v.Phase == analysis.PhaseObserve && v.Enough
	})
	if st.Active != config.Green {
		a, _ := json.Marshal(st.Analysis)
		require.FailNow(t, "green was rolled back after a clean promotion", "switches %+v, analysis %s", st.Switches, a)
	}
	greenNow := l.count(config.Green)
	require.Eventually(t, func() bool { return l.count(config.Green) >= greenNow+200 }, waitFor, tick, "load stopped reaching green")
	l.Stop()

	assert.Empty(t, l.failed(), "requests failed during the canary and promotion")
	st = g.status(t)
	assert.Equal(t, config.Green, st.Active)
	assert.Equal(t, analysis.TriggerAutoPromote, lastSwitch(t, st).Trigger, "switched again after the promotion")
	n, err := g.metric(`switchyard_switches_total{result="ok",trigger="auto-promote"}`)
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
			path := newConfigFile(t, releaseConfig(b, `
				window: 5s
				min_requests: 30
				max_error_ratio: 0.1
				observe: 20s`))
			g := startGateway(t, path)
			g.waitReady(t, config.Blue, config.Green)
			b.green.FailEvery(test.failEvery)
			l := g.startLoad(t, 8)
			resp, body := g.put(t, "/admin/traffic", test.canary)
			require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
			g.waitRelease(t, "a verdict on enough canary requests", func(st statusDoc) bool {
				v := verdict(st)
				return v.Phase == analysis.PhaseCanary && v.Enough
			})

			resp, body = g.post(t, "/admin/promote", "", nil)

			l.Stop()
			require.Equal(t, test.wantStatus, resp.StatusCode, "%s", body)
			var out struct {
				Error   string             `json:"error"`
				Switch  proxy.SwitchResult `json:"switch"`
				Verdict analysis.Verdict   `json:"verdict"`
			}
			require.NoError(t, json.Unmarshal(body, &out))
			st := g.status(t)
			assert.Equal(t, test.wantActive, st.Active)
			if test.wantStatus != http.StatusOK {
				assert.Equal(t, "refused", out.Error)
				assert.False(t, out.Verdict.Pass)
				assert.Contains(t, strings.Join(out.Verdict.Reasons, "; "), test.wantReason)
				assert.Empty(t, st.Switches)
				assert.Equal(t, float64(50), st.Traffic.Weights[config.Green], "a refused promotion ended the canary")
				return
			}
			assert.Empty(t, l.failed(), "requests failed during the canary and promotion")
			assert.True(t, out.Verdict.Pass, "%q", out.Verdict.Reasons)
			assert.Equal(t, config.Green, out.Switch.To)
			assert.Equal(t, resp.Header.Get("ETag"), st.ETag)
			assert.Equal(t, analysis.TriggerPromote, lastSwitch(t, st).Trigger)
			g.requireTraffic(t, config.Green)
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
	path := newConfigFile(t, b.config(fileConfig{Active: "blue"}))
	for try := range 5 {
		cfg, data, err := config.Load(path)
		require.NoError(t, err)
		cfg.Listen, cfg.Admin.Listen = "127.0.0.1:0", "127.0.0.1:0"
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		done := make(chan error, 1)
		go func() {
			done <- Run(ctx, Options{Config: cfg, ConfigPath: path, ConfigData: data, Version: "test",
				Log: zap.NewNop(), ShutdownTimeout: time.Second})
		}()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(waitFor):
			require.FailNow(t, "Run did not return after its context was cancelled", "try %d", try)
		}
	}
}
