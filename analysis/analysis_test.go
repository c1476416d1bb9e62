package analysis

import (
	"errors"
	"fmt"
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
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
)

func ratio(f float64) *float64 { return &f }

func TestEvaluate(t *testing.T) {
	a := config.Analysis{MinRequests: 50, MaxErrorRatio: 0.05, MaxP99Ratio: ratio(2), MaxStatusDiffRatio: 0.05,
		P99Floor: config.Duration(10 * time.Millisecond)}
	withMaxP99 := a
	withMaxP99.MaxP99 = config.Duration(500 * time.Millisecond)
	noRatio := a
	noRatio.MaxP99Ratio = ratio(0)
	// A P99 is judged only on minP99Samples requests or more, on both
	// sides.
	const many = minP99Samples
	fast := proxy.Window{Requests: 1000, Errors: 1, P99: 100 * time.Millisecond}
	noBaseline := []string{"max_p99_ratio not judged: the seconds both colors had traffic in hold 200 candidate and 0 baseline requests"}
	testCases := []struct {
		desc       string
		a          config.Analysis
		cand, base proxy.Window
		shadow     bool
		wantEnough bool
		wantPass   bool
		// wantReasons are fragments, one per reason, in order.
		wantReasons []string
		// wantNotes are fragments, one per note, in order.
		wantNotes []string
	}{
		{
			desc: "not enough requests", a: a, cand: proxy.Window{Requests: 49}, base: fast,
			wantReasons: []string{"not enough requests yet: 49 of min_requests 50"},
		},
		{
			desc: "not enough requests hides failures", a: a, cand: proxy.Window{Requests: 10, Errors: 10, P99: time.Minute}, base: fast,
			wantReasons: []string{"not enough requests yet: 10 of min_requests 50"},
		},
		{
			desc: "just enough and clean", a: a, cand: proxy.Window{Requests: 50, P99: 100 * time.Millisecond}, base: fast,
			wantEnough: true, wantPass: true,
		},
		{
			desc: "error ratio at the threshold", a: a, cand: proxy.Window{Requests: 100, Errors: 5, P99: 100 * time.Millisecond}, base: fast,
			wantEnough: true, wantPass: true,
		},
		{
			desc: "error ratio above", a: a, cand: proxy.Window{Requests: 100, Errors: 6, P99: 100 * time.Millisecond}, base: fast,
			wantEnough:  true,
			wantReasons: []string{"error ratio 0.060 is above max_error_ratio 0.050 (6 of 100)"},
		},
		{
			desc: "P99 above the absolute bound", a: withMaxP99, cand: proxy.Window{Requests: many, P99: time.Second},
			wantEnough:  true,
			wantReasons: []string{"P99 1s is above max_p99 500ms"},
			wantNotes:   noBaseline,
		},
		{
			desc: "P99 at the absolute bound", a: withMaxP99, cand: proxy.Window{Requests: many, P99: 500 * time.Millisecond},
			wantEnough: true, wantPass: true,
			wantNotes: noBaseline,
		},
		{
			desc: "P99 above the absolute bound from too few requests", a: withMaxP99, cand: proxy.Window{Requests: many - 1, P99: time.Second},
			wantEnough: true, wantPass: true,
		},
		{
			desc: "no absolute bound", a: a, cand: proxy.Window{Requests: many, P99: 30 * time.Second},
			wantEnough: true, wantPass: true,
			wantNotes: noBaseline,
		},
		{
			desc: "P99 ratio above the baseline's", a: a, cand: proxy.Window{Requests: many, P99: 250 * time.Millisecond}, base: fast,
			wantEnough:  true,
			wantReasons: []string{"P99 250ms is 2.50x the baseline's 100ms in the same seconds, above max_p99_ratio 2.00"},
		},
		{
			desc: "P99 ratio at the threshold", a: a, cand: proxy.Window{Requests: many, P99: 200 * time.Millisecond}, base: fast,
			wantEnough: true, wantPass: true,
		},
		{
			desc: "P99 ratio from too few candidate requests", a: a, cand: proxy.Window{Requests: many - 1, P99: 10 * time.Second}, base: fast,
			wantEnough: true, wantPass: true,
		},
		{
			desc: "P99 ratio without enough baseline", a: a, cand: proxy.Window{Requests: many, P99: 10 * time.Second},
			base:       proxy.Window{Requests: many - 1, P99: time.Millisecond},
			wantEnough: true, wantPass: true,
			wantNotes: []string{"max_p99_ratio not judged: the seconds both colors had traffic in hold 200 candidate and 199 baseline requests, 200 a side needed"},
		},
		{
			desc: "P99 ratio without a baseline", a: a, cand: proxy.Window{Requests: many, P99: 10 * time.Second},
			wantEnough: true, wantPass: true,
			wantNotes: noBaseline,
		},
		{
			desc: "P99 ratio against a baseline without latency", a: a, cand: proxy.Window{Requests: many, P99: 10 * time.Second},
			base:       proxy.Window{Requests: many},
			wantEnough: true, wantPass: true,
		},
		{
			desc: "P99 ratio below the floor", a: a, cand: proxy.Window{Requests: many, P99: 10 * time.Millisecond},
			base:       proxy.Window{Requests: many, P99: time.Millisecond},
			wantEnough: true, wantPass: true,
		},
		{
			desc: "P99 ratio just above the floor", a: a, cand: proxy.Window{Requests: many, P99: 11 * time.Millisecond},
			base:        proxy.Window{Requests: many, P99: time.Millisecond},
			wantEnough:  true,
			wantReasons: []string{"P99 11ms is 11.00x the baseline's 1ms"},
		},
		{
			desc: "P99 ratio off", a: noRatio, cand: proxy.Window{Requests: many, P99: 10 * time.Second}, base: fast,
			wantEnough: true, wantPass: true,
		},
		{
			desc: "shadow status differences above", a: a, shadow: true, base: fast,
			cand:        proxy.Window{Requests: 100, Differs: 6, P99: 100 * time.Millisecond},
			wantEnough:  true,
			wantReasons: []string{"0.060 of mirrored answers differ in status from the live ones, above max_status_diff_ratio 0.050"},
		},
		{
			desc: "shadow status differences at the threshold", a: a, shadow: true, base: fast,
			cand:       proxy.Window{Requests: 100, Differs: 5, P99: 100 * time.Millisecond},
			wantEnough: true, wantPass: true,
		},
		{
			desc: "status differences count only for shadow traffic", a: a, base: fast,
			cand:       proxy.Window{Requests: 100, Differs: 100, P99: 100 * time.Millisecond},
			wantEnough: true, wantPass: true,
		},
		{
			desc: "every broken threshold is listed", a: withMaxP99, shadow: true, base: fast,
			cand:       proxy.Window{Requests: 1000, Errors: 500, Differs: 500, P99: 2500 * time.Millisecond},
			wantEnough: true,
			wantReasons: []string{
				"error ratio 0.500 is above max_error_ratio 0.050 (500 of 1000)",
				"P99 2.5s is above max_p99 500ms",
				"P99 2.5s is 25.00x the baseline's 100ms",
				"0.500 of mirrored answers differ",
			},
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			v := Evaluate(test.a, test.cand, test.base, test.shadow)

			assert.Equal(t, test.wantEnough, v.Enough)
			assert.Equal(t, test.wantPass, v.Pass)
			require.Len(t, v.Reasons, len(test.wantReasons), "%q", v.Reasons)
			for i, want := range test.wantReasons {
				assert.Contains(t, v.Reasons[i], want)
			}
			require.Len(t, v.Notes, len(test.wantNotes), "%q", v.Notes)
			for i, want := range test.wantNotes {
				assert.Contains(t, v.Notes[i], want)
			}
			assert.Equal(t, test.cand, v.CandidateStats)
			assert.Equal(t, test.base, v.BaselineStats)
		})
	}
}

// Regression test (fixed): config documents analysis.max_p99_ratio "0
// disables the relative check", but defaults filled after decoding used to
// replace 0 with 2, so the check could not be turned off.
func TestEvaluate_MaxP99RatioZeroFromTheConfigDisablesTheCheck(t *testing.T) {
	cfg, err := config.Parse([]byte("pools:\n  blue: {version: v1, backends: [10.0.0.1:5000]}\n" +
		"  green: {version: v2, backends: [10.0.0.2:5000]}\nanalysis:\n  max_p99_ratio: 0\n"))
	require.NoError(t, err)

	v := Evaluate(cfg.Analysis, proxy.Window{Requests: 1000, P99: time.Second}, proxy.Window{Requests: 1000, P99: 10 * time.Millisecond}, false)

	assert.True(t, v.Pass, "%q", v.Reasons)
}

// clock is the controller's and the router's clock: real time until the
// test sets it, so that windows cover the requests the gateway records
// with the real time.
type clock struct{ at atomic.Pointer[time.Time] }

func (c *clock) Now() time.Time {
	if t := c.at.Load(); t != nil {
		return *t
	}
	return time.Now()
}

// Set stops the clock at t.
func (c *clock) Set(t time.Time) { c.at.Store(&t) }

// rig is a gateway in process: a real router, handler and mirror in front
// of two simulated model servers, with a controller on an injected clock
// that ticks only when the test says.
type rig struct {
	router      *proxy.Router
	ctl         *Controller
	clock       *clock
	blue, green *modelsim.Server
	url         string
	client      *http.Client
	prom        *prometheus.Registry
	// logs has the controller's log entries.
	logs *observer.ObservedLogs
}

// rigOptions vary a rig.
type rigOptions struct {
	// analysis is the YAML body of the analysis section, one
	// "key: value" per line.
	analysis                  string
	blueLatency, greenLatency time.Duration
}

func newRig(t *testing.T, opts rigOptions) *rig {
	t.Helper()
	start := func(color, version string, latency time.Duration) *modelsim.Server {
		s, err := modelsim.Start("127.0.0.1:0", modelsim.Options{Color: color, Version: version, Latency: latency})
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	blue := start("blue", "v1", opts.blueLatency)
	green := start("green", "v2", opts.greenLatency)
	var section strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(opts.analysis), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			section.WriteString("  " + line + "\n")
		}
	}
	y := fmt.Sprintf("pools:\n  blue: {version: v1, backends: [%s]}\n  green: {version: v2, backends: [%s]}\n", blue.Addr(), green.Addr())
	if section.Len() > 0 {
		y += "analysis:\n" + section.String()
	}
	cfg, err := config.Parse([]byte(y))
	require.NoError(t, err)

	clk := &clock{}
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	core, logs := observer.New(zapcore.InfoLevel)
	prom := prometheus.NewRegistry()
	reg := proxy.NewRegistry(proxy.RegistryOptions{StartReady: true})
	router := proxy.NewRouter(cfg, proxy.Options{Registry: reg, Metrics: proxy.NewMetrics(prom), Log: log, Now: clk.Now})
	mirror := proxy.NewMirror(router, cfg.Traffic.Mirror, prom, log)
	h := proxy.NewHandler(router, log)
	h.SetMirror(mirror)
	srv := proxy.NewServer(h, cfg.Proxy.MaxRequestBodyBytes)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	tr := &http.Transport{MaxIdleConnsPerHost: 32}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		// Shutdown does nothing to a server whose Serve has not started
		// yet; closing the listener ends Serve either way.
		_ = srv.Shutdown()
		_ = ln.Close()
		<-done
		mirror.Close()
		router.Close()
		reg.CloseIdle()
	})
	ctl := New(router, zap.New(zapcore.NewTee(core, log.Core())))
	ctl.now = clk.Now
	return &rig{router: router, ctl: ctl, clock: clk, blue: blue, green: green, url: "http://" + ln.Addr().String(),
		client: &http.Client{Transport: tr, Timeout: 10 * time.Second}, prom: prom, logs: logs}
}

// send makes n inference requests through the gateway from 4 clients and
// counts the answers by color and status.
func (rg *rig) send(t *testing.T, n int) map[string]int {
	t.Helper()
	return rg.sendFrom(t, n, 4)
}

// sendFrom is send with the given number of clients.
func (rg *rig) sendFrom(t *testing.T, n, clients int) map[string]int {
	t.Helper()
	var (
		mu     sync.Mutex
		counts = map[string]int{}
		wg     sync.WaitGroup
		errs   []error
	)
	next := make(chan struct{})
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				resp, err := rg.client.Post(rg.url+"/predict", "application/json", strings.NewReader(`{"inputs": [[1, 2, 3]]}`))
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					counts[fmt.Sprintf("%s %d", resp.Header.Get(proxy.HeaderColor), resp.StatusCode)]++
				}
				mu.Unlock()
			}
		}()
	}
	for range n {
		next <- struct{}{}
	}
	close(next)
	wg.Wait()
	require.Empty(t, errs)
	return counts
}

func (rg *rig) setTraffic(t *testing.T, req proxy.TrafficRequest) {
	t.Helper()
	_, err := rg.router.SetTraffic(req)
	require.NoError(t, err)
}

func (rg *rig) switchTo(t *testing.T, c config.Color) {
	t.Helper()
	_, err := rg.router.Switch(proxy.SwitchRequest{To: c, Trigger: proxy.TriggerAdmin})
	require.NoError(t, err)
}

func (rg *rig) switches(t *testing.T, trigger, result string) float64 {
	t.Helper()
	mfs, err := rg.prom.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "switchyard_switches_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["trigger"] == trigger && labels["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func lastSwitch(t *testing.T, r *proxy.Router) proxy.SwitchRecord {
	t.Helper()
	h := r.History()
	require.NotEmpty(t, h)
	return h[len(h)-1]
}

func percent(p float64) *float64 { return &p }

// Thresholds for the controller tests: they are about errors, so the P99
// ratio is off in effect. A breach rolls back once it lasted 2s.
const releaseAnalysis = `
window: 5s
min_requests: 20
max_error_ratio: 0.1
max_p99_ratio: 1000
observe: 20s
breach_for: 2s
`

func TestTick_IdleWithoutCanaryOrMirror(t *testing.T) {
	rg := newRig(t, rigOptions{analysis: releaseAnalysis + "auto_promote: true"})
	rg.send(t, 30)

	rg.ctl.Tick()

	st := rg.ctl.Status()
	assert.Equal(t, PhaseIdle, st.Verdict.Phase)
	assert.Empty(t, st.LastAction)
	assert.Empty(t, rg.router.History())
}

func TestTick_AutoPromote(t *testing.T) {
	testCases := []struct {
		desc        string
		autoPromote bool
		start       func(t *testing.T, rg *rig)
		failEvery   int64
		wantPhase   string
		wantPromote bool
		wantReason  string
	}{
		{
			desc: "clean canary", autoPromote: true, wantPhase: PhaseCanary, wantPromote: true,
			start: func(t *testing.T, rg *rig) {
				rg.setTraffic(t, proxy.TrafficRequest{Color: config.Green, Percent: percent(50)})
			},
		},
		{
			desc: "clean canary without auto_promote", wantPhase: PhaseCanary,
			start: func(t *testing.T, rg *rig) {
				rg.setTraffic(t, proxy.TrafficRequest{Color: config.Green, Percent: percent(50)})
			},
		},
		{
			desc: "failing canary", autoPromote: true, failEvery: 2, wantPhase: PhaseCanary, wantReason: "error ratio",
			start: func(t *testing.T, rg *rig) {
				rg.setTraffic(t, proxy.TrafficRequest{Color: config.Green, Percent: percent(50)})
			},
		},
		{
			desc: "clean shadow", autoPromote: true, wantPhase: PhaseShadow, wantPromote: true,
			start: func(t *testing.T, rg *rig) {
				rg.setTraffic(t, proxy.TrafficRequest{SetMirror: true, Mirror: &proxy.MirrorSetting{To: config.Green, Percent: 100}})
			},
		},
		{
			desc: "failing shadow", autoPromote: true, failEvery: 2, wantPhase: PhaseShadow, wantReason: "differ in status",
			start: func(t *testing.T, rg *rig) {
				rg.setTraffic(t, proxy.TrafficRequest{SetMirror: true, Mirror: &proxy.MirrorSetting{To: config.Green, Percent: 100}})
			},
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			rg := newRig(t, rigOptions{analysis: releaseAnalysis + fmt.Sprintf("auto_promote: %v", test.autoPromote)})
			rg.green.FailEvery(test.failEvery)
			t0 := time.Now()
			rg.clock.Set(t0)
			test.start(t, rg)
			rg.ctl.Tick()
			require.Equal(t, test.wantPhase, rg.ctl.Status().Verdict.Phase)
			rg.send(t, 60)
			if test.wantPhase == PhaseShadow {
				require.Eventually(t, func() bool {
					return rg.router.ShadowStats(config.Green).Summary(time.Now().Add(-time.Minute), time.Now()).Requests == 60
				}, 10*time.Second, 10*time.Millisecond, "the copies were not all answered")
			}

			// Before the window is over: a verdict, no action.
			rg.clock.Set(time.Now())
			require.Less(t, time.Since(t0), 4*time.Second, "too slow to test before the window")
			rg.ctl.Tick()
			v := rg.ctl.Status().Verdict
			assert.True(t, v.Enough, "%q", v.Reasons)
			assert.Empty(t, rg.router.History(), "promoted before the window was over")

			rg.clock.Set(t0.Add(5 * time.Second))
			rg.ctl.Tick()

			st := rg.ctl.Status()
			assert.Equal(t, test.wantPhase, st.Verdict.Phase)
			assert.Equal(t, config.Green, st.Verdict.Candidate)
			assert.Equal(t, config.Blue, st.Verdict.Baseline)
			assert.True(t, st.Verdict.Enough, "%q", st.Verdict.Reasons)
			if test.wantReason != "" {
				assert.False(t, st.Verdict.Pass)
				require.NotEmpty(t, st.Verdict.Reasons)
				assert.Contains(t, strings.Join(st.Verdict.Reasons, "; "), test.wantReason)
			} else {
				assert.True(t, st.Verdict.Pass, "%q", st.Verdict.Reasons)
			}
			if !test.wantPromote {
				assert.Equal(t, config.Blue, rg.router.Snapshot().Active)
				assert.Empty(t, rg.router.History())
				assert.Empty(t, st.LastAction)
				return
			}
			assert.Equal(t, config.Green, rg.router.Snapshot().Active)
			rec := lastSwitch(t, rg.router)
			assert.Equal(t, TriggerAutoPromote, rec.Trigger)
			assert.Contains(t, st.LastAction, "auto-promoted green")
			assert.Equal(t, 1.0, rg.switches(t, TriggerAutoPromote, proxy.ResultOK))
			// The promotion is not judged again: the clean new color is
			// observed, not rolled back.
			rg.clock.Set(t0.Add(5 * time.Second))
			rg.send(t, 30)
			rg.ctl.Tick()
			assert.Equal(t, PhaseObserve, rg.ctl.Status().Verdict.Phase)
			assert.Len(t, rg.router.History(), 1)
		})
	}
}

func TestPromote(t *testing.T) {
	testCases := []struct {
		desc      string
		failEvery int64
		setup     func(t *testing.T, rg *rig)
		// requests are sent after setup and a first tick.
		requests    int
		wantErr     error
		wantRefused bool
		wantReason  string
	}{
		{
			desc: "idle", setup: func(*testing.T, *rig) {},
			wantErr: ErrNothingToPromote,
		},
		{
			desc: "clean canary",
			setup: func(t *testing.T, rg *rig) {
				rg.setTraffic(t, proxy.TrafficRequest{Color: config.Green, Percent: percent(50)})
			},
			requests: 80,
		},
		{
			desc: "canary without enough requests",
			setup: func(t *testing.T, rg *rig) {
				rg.setTraffic(t, proxy.TrafficRequest{Color: config.Green, Percent: percent(50)})
			},
			requests: 4, wantRefused: true, wantReason: "not enough requests yet",
		},
		{
			desc: "failing canary", failEvery: 2,
			setup: func(t *testing.T, rg *rig) {
				rg.setTraffic(t, proxy.TrafficRequest{Color: config.Green, Percent: percent(50)})
			},
			requests: 80, wantRefused: true, wantReason: "error ratio",
		},
		{
			desc: "in the observe window after a switch",
			setup: func(t *testing.T, rg *rig) {
				rg.switchTo(t, config.Green)
				rg.setTraffic(t, proxy.TrafficRequest{Color: config.Blue, Percent: percent(50)})
			},
			requests: 40, wantErr: ErrNothingToPromote,
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			rg := newRig(t, rigOptions{analysis: releaseAnalysis})
			rg.green.FailEvery(test.failEvery)
			test.setup(t, rg)
			rg.ctl.Tick()
			if test.requests > 0 {
				rg.send(t, test.requests)
			}
			before := rg.router.Snapshot().Active

			res, v, err := rg.ctl.Promote()

			assert.Equal(t, v, rg.ctl.Status().Verdict, "Promote did not record its verdict")
			var refused *RefusedError
			switch {
			case test.wantErr != nil:
				assert.ErrorIs(t, err, test.wantErr)
				assert.Equal(t, before, rg.router.Snapshot().Active)
			case test.wantRefused:
				require.ErrorAs(t, err, &refused)
				assert.Equal(t, v, refused.Verdict)
				assert.False(t, v.Pass)
				assert.Contains(t, strings.Join(v.Reasons, "; "), test.wantReason)
				assert.Contains(t, err.Error(), test.wantReason)
				assert.Equal(t, before, rg.router.Snapshot().Active)
				assert.Empty(t, rg.router.History())
			default:
				require.NoError(t, err)
				assert.True(t, v.Pass)
				assert.Equal(t, config.Green, res.To)
				assert.Equal(t, config.Green, rg.router.Snapshot().Active)
				assert.Equal(t, TriggerPromote, lastSwitch(t, rg.router).Trigger)
				assert.Contains(t, rg.ctl.Status().LastAction, "promoted green")
			}
		})
	}
}

// Regression: Stats used to report a P99 as the bound of buckets 2.5x
// apart (100ms, 250ms, ...), above the default max_p99_ratio of 2, so a
// candidate a little slower than the baseline, straddling a bound, was
// refused as 2.5x slower.
func TestPromote_SlightlySlowerCandidateIsNotARegression(t *testing.T) {
	rg := newRig(t, rigOptions{
		analysis:     "window: 5m\nmin_requests: 20\nmax_p99_ratio: 2",
		blueLatency:  90 * time.Millisecond,
		greenLatency: 110 * time.Millisecond,
	})
	rg.setTraffic(t, proxy.TrafficRequest{Color: config.Green, Percent: percent(50)})
	rg.ctl.Tick()
	// Enough on each side for the P99s to be judged.
	for rg.green.Predictions() < minP99Samples+10 || rg.blue.Predictions() < minP99Samples+10 {
		rg.sendFrom(t, 100, 25)
	}

	_, v, err := rg.ctl.Promote()

	assert.NoError(t, err, "candidate P99 %s vs baseline %s", v.CandidateStats.P99, v.BaselineStats.P99)
	assert.Less(t, float64(v.CandidateStats.P99)/float64(v.BaselineStats.P99), 2.0)
}

func TestTick_AutoRollback(t *testing.T) {
	testCases := []struct {
		desc      string
		analysis  string
		failEvery int64
		// after runs after the switch to green and the requests.
		after        func(t *testing.T, rg *rig)
		requests     int
		wantRollback bool
	}{
		{desc: "new color fails", analysis: releaseAnalysis, failEvery: 3, requests: 60, wantRollback: true},
		{desc: "new color fails every request", analysis: releaseAnalysis, failEvery: 1, requests: 30, wantRollback: true},
		{desc: "new color healthy", analysis: releaseAnalysis, requests: 60},
		{desc: "not enough requests yet", analysis: releaseAnalysis, failEvery: 1, requests: 10},
		{desc: "auto_rollback off", analysis: releaseAnalysis + "auto_rollback: false", failEvery: 1, requests: 30},
		{
			desc: "observe window over", analysis: releaseAnalysis, failEvery: 1, requests: 30,
			after: func(t *testing.T, rg *rig) { rg.clock.Set(lastSwitch(t, rg.router).At.Add(21 * time.Second)) },
		},
		{
			desc: "the last switch was a rollback", analysis: releaseAnalysis, failEvery: 1, requests: 30,
			after: func(t *testing.T, rg *rig) {
				// Back to blue by hand, then blue fails in turn.
				_, err := rg.router.Rollback(false)
				require.NoError(t, err)
				rg.blue.FailEvery(1)
				rg.send(t, 30)
			},
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			rg := newRig(t, rigOptions{analysis: test.analysis})
			rg.send(t, 30) // the baseline
			rg.switchTo(t, config.Green)
			rg.green.FailEvery(test.failEvery)
			rg.send(t, test.requests)
			if test.after != nil {
				test.after(t, rg)
			}
			before := rg.router.History()
			at := rg.clock.Now()
			rg.clock.Set(at)

			// The first failed evaluation starts the breach; the one
			// breach_for later rolls back.
			rg.ctl.Tick()
			assert.Equal(t, before, rg.router.History(), "rolled back before the breach lasted breach_for")
			if test.wantRollback {
				assert.Equal(t, at, rg.ctl.Status().Verdict.BreachSince)
			}
			rg.clock.Set(at.Add(2 * time.Second))
			rg.ctl.Tick()

			st := rg.ctl.Status()
			if !test.wantRollback {
				assert.Equal(t, before, rg.router.History(), "switched: %s", st.LastAction)
				assert.Empty(t, st.LastAction)
				return
			}
			assert.Equal(t, PhaseObserve, st.Verdict.Phase)
			assert.Equal(t, config.Green, st.Verdict.Candidate)
			assert.Equal(t, config.Blue, st.Verdict.Baseline)
			assert.False(t, st.Verdict.Pass)
			assert.Contains(t, strings.Join(st.Verdict.Reasons, "; "), "error ratio")
			assert.Equal(t, config.Blue, rg.router.Snapshot().Active)
			rec := lastSwitch(t, rg.router)
			assert.Equal(t, proxy.TriggerAutoRollback, rec.Trigger)
			assert.Equal(t, config.Green, rec.From)
			assert.Contains(t, st.LastAction, "auto-rolled back green -> blue")
			assert.Equal(t, 1.0, rg.switches(t, proxy.TriggerAutoRollback, proxy.ResultRolledBack))
			assert.Equal(t, 1, rg.logs.FilterMessageSnippet("auto-rollback").Len())

			// Once is enough: later ticks leave blue alone.
			counts := rg.send(t, 30)
			assert.Equal(t, map[string]int{"blue 200": 30}, counts)
			for range 3 {
				rg.ctl.Tick()
			}
			assert.Len(t, rg.router.History(), 2)
			assert.Equal(t, config.Blue, rg.router.Snapshot().Active)
		})
	}
}

func TestTick_AutoRollbackRefusedWhenThePreviousColorIsNotReady(t *testing.T) {
	rg := newRig(t, rigOptions{analysis: releaseAnalysis})
	rg.switchTo(t, config.Green)
	rg.green.FailEvery(1)
	rg.send(t, 30)
	b, ok := rg.router.Registry().Lookup(rg.blue.Addr())
	require.True(t, ok)
	b.SetReady(false)
	at := time.Now()
	rg.clock.Set(at)
	rg.ctl.Tick()
	rg.clock.Set(at.Add(2 * time.Second))

	rg.ctl.Tick()

	assert.Equal(t, config.Green, rg.router.Snapshot().Active)
	assert.Len(t, rg.router.History(), 1)
	assert.Contains(t, rg.ctl.Status().LastAction, "auto-rollback refused")
	assert.Equal(t, 1, rg.logs.FilterMessageSnippet("not rolling back").Len())

	// Blue is back: the next tick rolls back.
	b.SetReady(true)
	rg.clock.Set(at.Add(3 * time.Second))
	rg.ctl.Tick()
	assert.Equal(t, config.Blue, rg.router.Snapshot().Active)
	assert.Equal(t, proxy.TriggerAutoRollback, lastSwitch(t, rg.router).Trigger)
}

// Regression: a refused auto-rollback was logged on every tick, once a
// second, for as long as the previous color stayed down.
func TestTick_RefusedAutoRollbackIsLoggedOncePerSwitch(t *testing.T) {
	rg := newRig(t, rigOptions{analysis: releaseAnalysis})
	rg.switchTo(t, config.Green)
	rg.green.FailEvery(1)
	rg.send(t, 30)
	b, ok := rg.router.Registry().Lookup(rg.blue.Addr())
	require.True(t, ok)
	b.SetReady(false)
	at := time.Now()

	for i := range 5 {
		rg.clock.Set(at.Add(time.Duration(i) * time.Second))
		rg.ctl.Tick()
	}

	assert.Equal(t, config.Green, rg.router.Snapshot().Active)
	assert.Equal(t, 1, rg.logs.FilterMessageSnippet("not rolling back").Len())
}

func TestPromote_ErrorsAreTyped(t *testing.T) {
	e := &RefusedError{Verdict: Verdict{Candidate: config.Green, Reasons: []string{"error ratio 0.5"}}}
	var target *RefusedError
	assert.True(t, errors.As(fmt.Errorf("wrapped: %w", e), &target))
	assert.Contains(t, e.Error(), "promotion of green refused")
	assert.Contains(t, e.Error(), "error ratio 0.5")
	assert.Contains(t, ErrNothingToPromote.Error(), "analysis:")
}

// Reasons are read by operators in the console and the CLI: latencies are
// rounded to what matters, not printed to the nanosecond.
func TestRoundLatency_KeepsTheDigitsThatMatter(t *testing.T) {
	testCases := []struct {
		in   time.Duration
		want string
	}{
		{in: 41358703 * time.Nanosecond, want: "41.4ms"},
		{in: 1234567 * time.Nanosecond, want: "1.2ms"},
		{in: 987654 * time.Nanosecond, want: "988µs"},
		{in: 2345678901 * time.Nanosecond, want: "2.35s"},
	}
	for _, test := range testCases {
		t.Run(test.want, func(t *testing.T) {
			assert.Equal(t, test.want, roundLatency(test.in).String())
		})
	}
}
