package analysis

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proxy"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// replay is a controller on a real router whose traffic the test records
// itself, on a clock of its own: seconds pass only when the test says, so
// a test can replay minutes of traffic, and tick once a second, in
// milliseconds.
type replay struct {
	router *proxy.Router
	ctl    *Controller
	clock  *clock
}

// newReplay returns a replay whose pools are ready at once and whose
// analysis section is the given YAML body, one "key: value" a line.
func newReplay(t *testing.T, analysis string) *replay {
	t.Helper()
	var section strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(analysis), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			section.WriteString("  " + line + "\n")
		}
	}
	cfg, err := config.Parse([]byte("pools:\n  blue: {version: v1, backends: [127.0.0.1:1]}\n" +
		"  green: {version: v2, backends: [127.0.0.1:2]}\nanalysis:\n" + section.String()))
	require.NoError(t, err)
	clk := &clock{}
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	reg := proxy.NewRegistry(proxy.RegistryOptions{StartReady: true})
	router := proxy.NewRouter(cfg, proxy.Options{Registry: reg, Metrics: proxy.NewMetrics(prometheus.NewRegistry()), Log: log, Now: clk.Now})
	t.Cleanup(func() {
		router.Close()
		reg.CloseIdle()
	})
	ctl := New(router, log)
	ctl.now = clk.Now
	return &replay{router: router, ctl: ctl, clock: clk}
}

// flow is one color's traffic in one second: n requests, the first failed
// of them failing, each taking took.
type flow struct {
	color  config.Color
	n      int
	failed int
	took   time.Duration
}

// record spreads f over the second that starts at sec.
func (r *replay) record(sec time.Time, f flow) {
	for i := range f.n {
		at := sec.Add(time.Duration(i) * time.Second / time.Duration(f.n))
		r.router.Stats(f.color).Record(at, i < f.failed, false, f.took)
	}
}

// autoRollbacks counts the switches the controller made back.
func (r *replay) autoRollbacks() int {
	n := 0
	for _, rec := range r.router.History() {
		if rec.Trigger == proxy.TriggerAutoRollback {
			n++
		}
	}
	return n
}

// replayAnalysis: judge on at least 100 requests, a breach rolls back once
// it lasted 3s, relative P99 at the default 2x above the default 10ms
// floor.
const replayAnalysis = `
window: 10s
min_requests: 100
max_error_ratio: 0.1
breach_for: 3s
observe: 60s
`

// The rule of docs/analysis.md, second by second: blue serves alone for
// 10s, green takes over at 0.5s into second 0, then each second s (1, 2,
// ...) gets the traffic of after(s) and one evaluation at its end.
func TestTick_AutoRollbackAfterASwitch(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	quiet := flow{color: config.Blue, n: 300, took: 5 * time.Millisecond}
	testCases := []struct {
		desc     string
		analysis string
		after    func(s int) []flow
		// wantBreach is the first second whose evaluation fails; 0 for
		// none.
		wantBreach int
		// wantRollback is the second whose evaluation rolls back; 0 for
		// none.
		wantRollback int
		wantReason   string
		wantNote     string
	}{
		{
			desc: "a color failing 30% of requests rolls back breach_for after the first failed evaluation",
			after: func(int) []flow {
				return []flow{{color: config.Green, n: 100, failed: 30, took: 5 * time.Millisecond}}
			},
			wantBreach: 1, wantRollback: 4, wantReason: "error ratio 0.300 is above max_error_ratio 0.100",
		},
		{
			desc: "a color failing 30% of requests at low traffic rolls back breach_for after it has min_requests",
			after: func(int) []flow {
				return []flow{{color: config.Green, n: 20, failed: 6, took: 5 * time.Millisecond}}
			},
			wantBreach: 5, wantRollback: 8, wantReason: "error ratio 0.300",
		},
		{
			desc: "a burst of errors that the next seconds dilute is not a regression",
			after: func(s int) []flow {
				if s == 1 {
					return []flow{{color: config.Green, n: 100, failed: 20, took: 5 * time.Millisecond}}
				}
				return []flow{{color: config.Green, n: 100, took: 5 * time.Millisecond}}
			},
			wantBreach: 1,
		},
		{
			desc: "a breach that clears and comes back starts over",
			after: func(s int) []flow {
				switch s {
				case 1:
					return []flow{{color: config.Green, n: 100, failed: 40, took: 5 * time.Millisecond}}
				case 2:
					return []flow{{color: config.Green, n: 1000, took: 5 * time.Millisecond}}
				}
				return []flow{{color: config.Green, n: 100, failed: 100, took: 5 * time.Millisecond}}
			},
			// Error ratios 40/100, 40/1100 (clear), 140/1200 (a new
			// breach), 240/1300, ...: rolled back 3s after second 3, not
			// after second 1.
			wantBreach: 1, wantRollback: 6, wantReason: "error ratio",
		},
		{
			// Regression test (issue 11): green was compared with blue's
			// last window before the switch. The machine got busier at the
			// switch and both colors would be 8x slower now; green looked
			// like an 8x regression and was rolled back on the first
			// evaluation.
			desc: "identical colors under a load that started with the switch",
			after: func(int) []flow {
				return []flow{{color: config.Green, n: 300, took: 40 * time.Millisecond}}
			},
			wantNote: "max_p99_ratio not judged: the seconds both colors had traffic in hold 0 candidate and 0 baseline requests",
		},
		{
			desc:     "a P99 above max_p99 after a full switch rolls back once it lasted",
			analysis: "max_p99: 20ms",
			after: func(int) []flow {
				return []flow{{color: config.Green, n: 300, took: 40 * time.Millisecond}}
			},
			wantBreach: 1, wantRollback: 4, wantReason: "is above max_p99 20ms",
		},
		{
			// The previous color still gets a canary share: both are
			// measured in the same seconds, under the same load.
			desc: "both colors slower in the same seconds",
			after: func(int) []flow {
				return []flow{
					{color: config.Green, n: 250, took: 40 * time.Millisecond},
					{color: config.Blue, n: 250, took: 40 * time.Millisecond},
				}
			},
		},
		{
			desc: "the new color slower than the previous one in the same seconds",
			after: func(int) []flow {
				return []flow{
					{color: config.Green, n: 250, took: 40 * time.Millisecond},
					{color: config.Blue, n: 250, took: 5 * time.Millisecond},
				}
			},
			wantBreach: 1, wantRollback: 4, wantReason: "in the same seconds, above max_p99_ratio 2.00",
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			r := newReplay(t, replayAnalysis+test.analysis)
			for s := -10; s < 0; s++ {
				r.record(t0.Add(time.Duration(s)*time.Second), quiet)
			}
			r.clock.Set(t0.Add(500 * time.Millisecond))
			_, err := r.router.Switch(proxy.SwitchRequest{To: config.Green, Trigger: proxy.TriggerAdmin})
			require.NoError(t, err)

			var breach, rollback int
			var last Status
			for s := 1; s <= 10 && rollback == 0; s++ {
				sec := t0.Add(time.Duration(s) * time.Second)
				for _, f := range test.after(s) {
					r.record(sec, f)
				}
				r.clock.Set(sec.Add(900 * time.Millisecond))
				r.ctl.Tick()
				st := r.ctl.Status()
				if breach == 0 && !st.Verdict.BreachSince.IsZero() {
					breach = s
					assert.Equal(t, sec.Add(900*time.Millisecond), st.Verdict.BreachSince)
				}
				if r.autoRollbacks() > 0 {
					rollback = s
				} else {
					last = st
				}
			}

			assert.Equal(t, test.wantBreach, breach, "first failed evaluation")
			assert.Equal(t, test.wantRollback, rollback, "rollback; last verdict %+v", last.Verdict)
			if test.wantRollback > 0 {
				assert.Equal(t, config.Blue, r.router.Snapshot().Active)
				assert.Contains(t, r.ctl.Status().LastAction, fmt.Sprintf("auto-rolled back green -> blue at %s after 3s of breach",
					t0.Add(time.Duration(rollback)*time.Second+900*time.Millisecond).Format(time.RFC3339)))
			}
			if test.wantReason != "" {
				assert.Contains(t, strings.Join(last.Verdict.Reasons, "; "), test.wantReason)
			}
			if test.wantNote != "" {
				assert.Equal(t, PhaseObserve, last.Verdict.Phase)
				assert.True(t, last.Verdict.Pass, "%q", last.Verdict.Reasons)
				assert.Contains(t, strings.Join(last.Verdict.Notes, "; "), test.wantNote, "%+v", last.Verdict)
			}
		})
	}
}

// Regression test (issue 11): in a canary the relative P99 compared green
// with everything blue served in the window. Here the machine was quiet
// while blue served alone and busy once green got its share: blue's quiet
// seconds made green, as slow as blue under the same load, look 8x slower.
func TestTick_CanaryComparesOnlyTheSecondsBothColorsServed(t *testing.T) {
	testCases := []struct {
		desc       string
		blueBusy   time.Duration
		wantPass   bool
		wantReason string
	}{
		{desc: "both slower under load", blueBusy: 40 * time.Millisecond, wantPass: true},
		{desc: "green slower than blue in the same seconds", blueBusy: 5 * time.Millisecond, wantReason: "x the baseline's"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			t0 := time.Unix(1_700_000_000, 0)
			r := newReplay(t, "window: 20s\nmin_requests: 100")
			r.clock.Set(t0)
			_, err := r.router.SetTraffic(proxy.TrafficRequest{Color: config.Green, Percent: percent(50)})
			require.NoError(t, err)
			r.ctl.Tick()
			// Seconds 0-9: blue alone (green's backends were not ready
			// yet), on a quiet machine.
			for s := range 10 {
				r.record(t0.Add(time.Duration(s)*time.Second), flow{color: config.Blue, n: 3000, took: 5 * time.Millisecond})
			}
			// Seconds 10-14: both, on a busy machine.
			for s := 10; s < 15; s++ {
				sec := t0.Add(time.Duration(s) * time.Second)
				r.record(sec, flow{color: config.Blue, n: 50, took: test.blueBusy})
				r.record(sec, flow{color: config.Green, n: 50, took: 40 * time.Millisecond})
			}
			r.clock.Set(t0.Add(15 * time.Second))

			r.ctl.Tick()

			v := r.ctl.Status().Verdict
			assert.Equal(t, PhaseCanary, v.Phase)
			assert.True(t, v.Enough)
			assert.EqualValues(t, 5*50, v.BaselineStats.Requests, "blue's seconds without green were compared")
			assert.Equal(t, test.wantPass, v.Pass, "%q", v.Reasons)
			if test.wantReason != "" {
				assert.Contains(t, strings.Join(v.Reasons, "; "), test.wantReason)
			}
		})
	}
}

// The controller's ticker fires a few milliseconds late or early: a
// breach first seen 7ms late has lasted 1.991s at the evaluation two
// seconds on, which is the one that must roll back with breach_for 2s.
func TestTick_TickerJitterDoesNotDelayTheRollback(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	r := newReplay(t, strings.Replace(replayAnalysis, "breach_for: 3s", "breach_for: 2s", 1))
	r.clock.Set(t0.Add(500 * time.Millisecond))
	_, err := r.router.Switch(proxy.SwitchRequest{To: config.Green, Trigger: proxy.TriggerAdmin})
	require.NoError(t, err)
	ticks := []time.Duration{1007 * time.Millisecond, 2001 * time.Millisecond, 2998 * time.Millisecond}
	for i, at := range ticks {
		r.record(t0.Add(time.Duration(i+1)*time.Second), flow{color: config.Green, n: 100, failed: 50})
		r.clock.Set(t0.Add(at))

		r.ctl.Tick()

		if i < len(ticks)-1 {
			require.Zero(t, r.autoRollbacks(), "rolled back at %s, before the breach lasted 2s", at)
		}
	}
	assert.Equal(t, 1, r.autoRollbacks())
	assert.Contains(t, r.ctl.Status().LastAction, "after 2s of breach")
}
