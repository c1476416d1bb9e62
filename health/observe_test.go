package health

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
)

// These tests feed a monitor probe results one at a time through observe,
// so thresholds and state changes are checked step by step without timing.

var errProbe = errors.New("connection refused")

func TestObserve_ThresholdsDecideHealth(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		desc               string
		healthy, unhealthy int
		// probes are the results in order: true passes, false fails.
		probes []bool
		// want is Healthy (and, without warmup, Ready) after each probe.
		want []bool
	}{
		{desc: "first passing probe makes a new backend healthy at once", healthy: 3, unhealthy: 3,
			probes: []bool{true}, want: []bool{true}},
		{desc: "first failing probe leaves a new backend unhealthy", healthy: 1, unhealthy: 3,
			probes: []bool{false, true}, want: []bool{false, true}},
		{desc: "failures below the unhealthy threshold keep it healthy", healthy: 1, unhealthy: 3,
			probes: []bool{true, false, false, false}, want: []bool{true, true, true, false}},
		{desc: "one failure is enough at threshold one", healthy: 1, unhealthy: 1,
			probes: []bool{true, false, true}, want: []bool{true, false, true}},
		{desc: "a pass resets the failure count", healthy: 1, unhealthy: 3,
			probes: []bool{true, false, false, true, false, false}, want: []bool{true, true, true, true, true, true}},
		{desc: "recovery needs healthy_threshold passes in a row", healthy: 3, unhealthy: 1,
			probes: []bool{true, false, true, true, false, true, true, true},
			want:   []bool{true, false, false, false, false, false, false, true}},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			c := newChecker(t, nil, nil)
			b := newRegistry(t).Get("10.0.0.1:5000")
			m := addMonitor(c, Target{Backend: b, Color: config.Blue, Health: testHealth(config.ProbeJSON, func(h *config.Health) {
				h.HealthyThreshold, h.UnhealthyThreshold = test.healthy, test.unhealthy
			})})
			require.Len(t, test.want, len(test.probes))
			for i, ok := range test.probes {
				if ok {
					probePassed(m, Report{})
				} else {
					probeFailed(m, errProbe)
				}
				st := m.state()
				assert.Equal(t, test.want[i], st.Healthy, "healthy after probe %d", i+1)
				assert.Equal(t, test.want[i], st.Warm, "without warmup, warm follows healthy (probe %d)", i+1)
				assert.Equal(t, test.want[i], b.Ready(), "ready after probe %d", i+1)
			}
		})
	}
}

func TestObserve_ReportsLoadScoreToTheBackend(t *testing.T) {
	t.Parallel()
	c := newChecker(t, nil, nil)
	b := newRegistry(t).Get("10.0.0.1:5000")
	m := addMonitor(c, Target{Backend: b, Color: config.Blue, Health: testHealth(config.ProbeJSON, nil)})

	probePassed(m, Report{QueueDepth: ptr(6.0), KVCacheUsage: ptr(0.5)})

	st := m.state()
	assert.Equal(t, ptr(6.0), st.Report.QueueDepth)
	assert.True(t, b.Ready())
}

func TestObserve_PassingProbeEndsPassiveEjection(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	c := newChecker(t, nil, nil)
	c.now = clock.now
	b := newRegistry(t).Get("10.0.0.1:5000")
	m := addMonitor(c, Target{Backend: b, Color: config.Blue, Health: testHealth(config.ProbeJSON, nil)})
	probePassed(m, Report{})

	until := clock.now().Add(time.Minute)
	b.Eject(until)
	probePassed(m, Report{})
	assert.Equal(t, until.UnixNano(), b.EjectedUntil().UnixNano(), "an ejection was cut short before its deadline")
	assert.Contains(t, c.Explain(b), "ejected by passive health until")

	clock.advance(time.Minute)
	probePassed(m, Report{})
	assert.True(t, b.EjectedUntil().IsZero(), "a passing probe after the deadline did not end the ejection")
}

func TestExplain_SaysWhyABackendIsNotReady(t *testing.T) {
	t.Parallel()
	spec := testWarmup(t, nil)
	testCases := []struct {
		desc string
		// drive brings the monitor into the state under test.
		drive func(t *testing.T, m *monitor, w *gateWarmer)
		want  string
	}{
		{
			desc:  "not probed yet",
			drive: func(*testing.T, *monitor, *gateWarmer) {},
			want:  "not probed yet",
		},
		{
			desc:  "unhealthy with the probe error",
			drive: func(_ *testing.T, m *monitor, _ *gateWarmer) { probeFailed(m, errProbe) },
			want:  "unhealthy: connection refused",
		},
		{
			desc: "warming with progress",
			drive: func(t *testing.T, m *monitor, w *gateWarmer) {
				probePassed(m, Report{})
				w.waitStarted(t)
			},
			want: "not warm (warming, 1 of 3 done)",
		},
		{
			desc: "warmup failed",
			drive: func(t *testing.T, m *monitor, w *gateWarmer) {
				probePassed(m, Report{})
				w.waitStarted(t)
				w.finish(t, errors.New("warmup: gave up after 30 requests: last answer 500"))
				eventually(t, func() bool { return !m.state().Warming }, "warmup never ended")
			},
			want: "not warm (warmup failed: warmup: gave up after 30 requests: last answer 500)",
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			w := newGateWarmer()
			c := newChecker(t, w, nil)
			b := newRegistry(t).Get("10.0.0.1:5000")
			m := addMonitor(c, Target{Backend: b, Color: config.Blue, Health: testHealth(config.ProbeJSON, nil), Warmup: spec})

			test.drive(t, m, w)

			assert.Equal(t, test.want, c.Explain(b))
			assert.False(t, b.Ready())
		})
	}
}

func TestExplain_UnwatchedBackend(t *testing.T) {
	t.Parallel()
	c := newChecker(t, nil, nil)
	assert.Equal(t, "not watched by the health checker", c.Explain(newRegistry(t).Get("10.0.0.9:5000")))
	assert.Nil(t, c.Inspect("10.0.0.9:5000"))
}

// Regression test: while an unhealthy backend collects the passes that
// healthy_threshold asks for, LastError is already cleared, so a switch
// refusal explained it as "unhealthy: " with no reason at all.
func TestExplain_RecoveringBackendStillGivesAReason(t *testing.T) {
	t.Parallel()
	c := newChecker(t, nil, nil)
	b := newRegistry(t).Get("10.0.0.1:5000")
	m := addMonitor(c, Target{Backend: b, Color: config.Blue, Health: testHealth(config.ProbeJSON, func(h *config.Health) {
		h.HealthyThreshold, h.UnhealthyThreshold = 3, 1
	})})
	probePassed(m, Report{})
	probeFailed(m, errProbe)
	probePassed(m, Report{})

	got := c.Explain(b)

	assert.False(t, b.Ready())
	assert.Regexp(t, `^unhealthy: \S`, got, "the explanation gives no reason")
}

// A warmup that was running when the backend went down, or restarted,
// warmed a GPU state that is gone. Regression test: such a warmup, ending
// after the fact, marked the backend warm, so when it came back it was
// ready at once with no warmup of the process now serving.
func TestObserve_StaleWarmupDoesNotMakeARecoveredBackendReady(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		desc string
		// interrupt happens while the first warmup runs.
		interrupt func(m *monitor)
		// recover is the probe that finds the backend fine again.
		recover func(m *monitor)
	}{
		{
			desc:      "backend went unhealthy during warmup",
			interrupt: func(m *monitor) { probeFailed(m, errProbe) },
			recover:   func(m *monitor) { probePassed(m, Report{BootID: "boot-1"}) },
		},
		{
			desc:      "backend restarted during warmup",
			interrupt: func(m *monitor) { probePassed(m, Report{BootID: "boot-2"}) },
			recover:   func(m *monitor) { probePassed(m, Report{BootID: "boot-2"}) },
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			w := newGateWarmer()
			c := newChecker(t, w, nil)
			b := newRegistry(t).Get("10.0.0.1:5000")
			m := addMonitor(c, Target{Backend: b, Color: config.Blue, Warmup: testWarmup(t, nil),
				Health: testHealth(config.ProbeJSON, func(h *config.Health) { h.HealthyThreshold, h.UnhealthyThreshold = 1, 1 })})

			probePassed(m, Report{BootID: "boot-1"})
			w.waitStarted(t)
			test.interrupt(m)
			require.False(t, m.state().Warm)
			w.finish(t, nil) // the stale warmup "succeeds"
			eventually(t, func() bool { return !m.state().Warming }, "warmup never ended")
			test.recover(m)

			assert.False(t, b.Ready(), "ready without a warmup since it came back: %+v", m.state())
			assert.True(t, m.state().Warming, "no new warmup started: %+v", m.state())
			// The new warmup runs on its own goroutine.
			eventually(t, func() bool { return w.calls.Load() == 2 }, "no second warmup ran")
		})
	}
}

func TestObserve_WarmupFailureBacksOffBeforeRetrying(t *testing.T) {
	t.Parallel()
	clock := newFakeClock()
	w := newGateWarmer()
	c := newChecker(t, w, nil)
	c.now = clock.now
	b := newRegistry(t).Get("10.0.0.1:5000")
	h := testHealth(config.ProbeJSON, nil)
	m := addMonitor(c, Target{Backend: b, Color: config.Blue, Health: h, Warmup: testWarmup(t, nil)})

	probePassed(m, Report{})
	w.waitStarted(t)
	w.finish(t, fmt.Errorf("warmup: gave up"))
	eventually(t, func() bool { return !m.state().Warming }, "warmup never ended")

	clock.advance(h.Interval.D())
	probePassed(m, Report{})
	assert.False(t, m.state().Warming, "warmup retried at once after failing")
	clock.advance(3 * h.Interval.D())
	probePassed(m, Report{})
	assert.True(t, m.state().Warming, "warmup not retried after the back-off")
	w.waitStarted(t)
	assert.EqualValues(t, 2, w.calls.Load())
}
