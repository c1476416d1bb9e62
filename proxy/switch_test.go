package proxy

import (
	"fmt"
	"io"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// newTestRouter returns a router over cfg whose backends start ready; no
// traffic flows, so the addresses need not exist.
func newTestRouter(t *testing.T, cfg *config.Config, explain func(*Backend) string) *Router {
	t.Helper()
	r := NewRouter(cfg, Options{
		Registry: NewRegistry(RegistryOptions{StartReady: true}),
		Metrics:  NewMetrics(prometheus.NewRegistry()),
		Log:      zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
		Explain:  explain,
	})
	t.Cleanup(r.Close)
	return r
}

var (
	blueAddrs  = []string{"10.0.0.1:5000", "10.0.0.3:5000"}
	greenAddrs = []string{"10.0.0.2:5000", "10.0.0.4:5000"}
)

func TestSwitch_ToActiveColorIsNoOp(t *testing.T) {
	testCases := []struct {
		desc string
		req  SwitchRequest
	}{
		{desc: "by name", req: SwitchRequest{To: config.Blue, Trigger: TriggerAdmin}},
		{desc: "by name with the current generation", req: SwitchRequest{To: config.Blue, IfGeneration: 1, Trigger: TriggerAdmin}},
		{desc: "forced", req: SwitchRequest{To: config.Blue, Force: true, Trigger: TriggerAdmin}},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			r := newTestRouter(t, testConfig(t, blueAddrs, greenAddrs, ""), nil)
			before := r.Snapshot()
			res, err := r.Switch(test.req)
			require.NoError(t, err)
			assert.True(t, res.NoOp)
			assert.NotEmpty(t, res.Message)
			assert.Equal(t, config.Blue, res.To)
			assert.EqualValues(t, 1, res.Generation)
			assert.Nil(t, res.Drain)
			assert.Same(t, before, r.Snapshot(), "a no-op switch published a snapshot")
			assert.Empty(t, r.History())
			assert.Empty(t, r.Drains())
		})
	}
}

func TestSwitch_ToggleAlternatesColors(t *testing.T) {
	r := newTestRouter(t, testConfig(t, blueAddrs, greenAddrs, ""), nil)
	want := []struct {
		from, to config.Color
		version  string
	}{
		{config.Blue, config.Green, "v2"},
		{config.Green, config.Blue, "v1"},
		{config.Blue, config.Green, "v2"},
	}
	for i, w := range want {
		res, err := r.Switch(SwitchRequest{Toggle: true, Trigger: TriggerAdmin})
		require.NoError(t, err)
		assert.False(t, res.NoOp)
		assert.Equal(t, w.from, res.From)
		assert.Equal(t, w.to, res.To)
		assert.Equal(t, w.version, res.Version)
		assert.EqualValues(t, i+2, res.Generation)
		require.NotNil(t, res.Drain)
		assert.Equal(t, w.from, res.Drain.Color)
		snap := r.Snapshot()
		assert.Equal(t, w.to, snap.Active)
		assert.Equal(t, w.to, snap.ActivePool().Color)
		assert.EqualValues(t, i+2, snap.Generation)
	}
	h := r.History()
	require.Len(t, h, 3)
	for i, rec := range h {
		assert.Equal(t, want[i].from, rec.From)
		assert.Equal(t, want[i].to, rec.To)
		assert.Equal(t, TriggerAdmin, rec.Trigger)
		assert.EqualValues(t, i+2, rec.Generation)
		assert.False(t, rec.Forced)
	}
}

func TestSwitch_LeavesPublishedSnapshotUnchanged(t *testing.T) {
	r := newTestRouter(t, testConfig(t, blueAddrs, greenAddrs, ""), nil)
	old := r.Snapshot()
	_, err := r.Switch(SwitchRequest{To: config.Green, Trigger: TriggerAdmin})
	require.NoError(t, err)
	// A request that loaded the old snapshot keeps routing to blue.
	assert.Equal(t, config.Blue, old.Active)
	assert.EqualValues(t, 1, old.Generation)
	assert.Equal(t, config.Green, r.Snapshot().Active)
	// Backends and their state are shared, not copied.
	assert.Same(t, old.Pool(config.Green).Backends[0], r.Snapshot().Pool(config.Green).Backends[0])
}

func TestSwitch_RejectsUnknownColor(t *testing.T) {
	r := newTestRouter(t, testConfig(t, blueAddrs, greenAddrs, ""), nil)
	_, err := r.Switch(SwitchRequest{To: "purple", Trigger: TriggerAdmin})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "purple")
	assert.EqualValues(t, 1, r.Snapshot().Generation)
	assert.Empty(t, r.History())
}

func TestRollback_ReturnsToPreviousColor(t *testing.T) {
	r := newTestRouter(t, testConfig(t, blueAddrs, greenAddrs, ""), nil)
	_, err := r.Switch(SwitchRequest{To: config.Green, Trigger: TriggerAdmin})
	require.NoError(t, err)

	res, err := r.Rollback(false)
	require.NoError(t, err)
	assert.Equal(t, config.Green, res.From)
	assert.Equal(t, config.Blue, res.To)
	assert.EqualValues(t, 3, res.Generation)
	assert.Equal(t, config.Blue, r.Snapshot().Active)
	h := r.History()
	require.Len(t, h, 2)
	assert.Equal(t, TriggerRollback, h[1].Trigger)

	// Rolling back a rollback returns to where it started.
	res, err = r.Rollback(false)
	require.NoError(t, err)
	assert.Equal(t, config.Green, res.To)
	assert.Equal(t, config.Green, r.Snapshot().Active)
}

func TestRollback_BeforeAnySwitchFails(t *testing.T) {
	r := newTestRouter(t, testConfig(t, blueAddrs, greenAddrs, ""), nil)
	before := r.Snapshot()
	_, err := r.Rollback(false)
	require.ErrorIs(t, err, ErrNothingToRollBack)
	_, err = r.Rollback(true)
	require.ErrorIs(t, err, ErrNothingToRollBack)
	assert.Same(t, before, r.Snapshot())
	assert.Empty(t, r.History())
}

func TestSwitch_StaleGenerationIsRefused(t *testing.T) {
	r := newTestRouter(t, testConfig(t, blueAddrs, greenAddrs, ""), nil)
	seen := r.Snapshot().Generation

	// Writer A, having seen generation 1, switches.
	res, err := r.Switch(SwitchRequest{To: config.Green, IfGeneration: seen, Trigger: TriggerAdmin})
	require.NoError(t, err)
	assert.EqualValues(t, 2, res.Generation)

	// Writer B saw the same generation and must not silently undo A.
	for _, req := range []SwitchRequest{
		{To: config.Blue, IfGeneration: seen},
		{Toggle: true, IfGeneration: seen},
		{To: config.Blue, IfGeneration: seen, Force: true},
		{To: config.Green, IfGeneration: 99},
	} {
		res, err = r.Switch(req)
		require.ErrorIs(t, err, ErrStaleGeneration, "%+v", req)
		assert.EqualValues(t, 2, res.Generation, "the refusal must report the current generation")
	}
	assert.Equal(t, config.Green, r.Snapshot().Active)
	assert.EqualValues(t, 2, r.Snapshot().Generation)
	assert.Len(t, r.History(), 1)
}

func TestSwitch_RefusedUntilTargetReady(t *testing.T) {
	testCases := []struct {
		desc      string
		minReady  string
		green     []string
		notReady  []string
		wantReady int
		wantNeed  int
		reason    string // a fragment of RefusedError.Reason
	}{
		{desc: "all required, one not ready", minReady: "100%", green: greenAddrs, notReady: greenAddrs[1:], wantReady: 1, wantNeed: 2},
		{desc: "all required, none ready", minReady: "100%", green: greenAddrs, notReady: greenAddrs, wantReady: 0, wantNeed: 2},
		{desc: "count required", minReady: "2", green: greenAddrs, notReady: greenAddrs[:1], wantReady: 1, wantNeed: 2},
		{desc: "empty pool", minReady: "1", green: nil, wantReady: 0, wantNeed: 1, reason: "pools.green.backends"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			cfg := testConfig(t, blueAddrs, test.green, "switch: {min_ready: \""+test.minReady+"\"}\n")
			r := newTestRouter(t, cfg, func(b *Backend) string { return "warming up " + b.Addr() })
			for _, addr := range test.notReady {
				b, ok := r.Registry().Lookup(addr)
				require.True(t, ok)
				b.SetReady(false)
			}
			before := r.Snapshot()

			_, err := r.Switch(SwitchRequest{To: config.Green, Trigger: TriggerAdmin})
			var refused *RefusedError
			require.ErrorAs(t, err, &refused)
			assert.Equal(t, config.Green, refused.Color)
			assert.Equal(t, test.wantReady, refused.Ready)
			assert.Equal(t, test.wantNeed, refused.Need)
			wantBackends := map[string]string{}
			for _, addr := range test.notReady {
				wantBackends[addr] = "warming up " + addr
			}
			assert.Equal(t, wantBackends, refused.Backends)
			if test.reason != "" {
				assert.Contains(t, refused.Reason, test.reason)
			}
			assert.Same(t, before, r.Snapshot(), "a refused switch published a snapshot")
			assert.Empty(t, r.History())

			// Force goes through and says so.
			res, err := r.Switch(SwitchRequest{To: config.Green, Force: true, Trigger: TriggerAdmin})
			require.NoError(t, err)
			assert.True(t, res.Forced)
			assert.Equal(t, config.Green, r.Snapshot().Active)
			h := r.History()
			require.Len(t, h, 1)
			assert.True(t, h[0].Forced)
		})
	}
}

func TestSwitch_AllowedWhenEnoughTargetBackendsReady(t *testing.T) {
	testCases := []struct {
		desc     string
		minReady string
	}{
		{desc: "half required", minReady: "50%"},
		{desc: "one required", minReady: "1"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			r := newTestRouter(t, testConfig(t, blueAddrs, greenAddrs, "switch: {min_ready: \""+test.minReady+"\"}\n"), nil)
			b, _ := r.Registry().Lookup(greenAddrs[1])
			b.SetReady(false)
			res, err := r.Switch(SwitchRequest{To: config.Green, Trigger: TriggerAdmin})
			require.NoError(t, err)
			assert.False(t, res.Forced)
			assert.Equal(t, config.Green, r.Snapshot().Active)
		})
	}
}

func TestSwitch_ConcurrentCallsKeepConsistentHistory(t *testing.T) {
	const writers = 50
	r := newTestRouter(t, testConfig(t, blueAddrs, greenAddrs, ""), nil)
	var calls atomic.Int64
	r.OnSwitch(func(SwitchRecord) { calls.Add(1) })

	start := make(chan struct{})
	results := make([]SwitchResult, writers)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		req := SwitchRequest{Toggle: true, Trigger: TriggerAdmin}
		switch i % 4 {
		case 2:
			req = SwitchRequest{To: config.Blue, Trigger: TriggerAdmin}
		case 3:
			req = SwitchRequest{To: config.Green, Trigger: TriggerAdmin}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i], errs[i] = r.Switch(req)
		}()
	}
	close(start)
	wg.Wait()

	var gens []int
	for i, res := range results {
		require.NoError(t, errs[i])
		if res.NoOp {
			assert.Equal(t, res.From, res.To)
			continue
		}
		assert.NotEqual(t, res.From, res.To)
		gens = append(gens, int(res.Generation))
	}
	applied := len(gens)
	require.Positive(t, applied)
	// Every applied switch got its own generation, with no gap.
	sort.Ints(gens)
	for i, g := range gens {
		assert.Equal(t, i+2, g)
	}
	snap := r.Snapshot()
	assert.EqualValues(t, 1+applied, snap.Generation)
	assert.EqualValues(t, applied, calls.Load())

	h := r.History()
	require.Len(t, h, min(applied, historySize))
	for i, rec := range h {
		assert.NotEqual(t, rec.From, rec.To)
		if i > 0 {
			assert.Equal(t, h[i-1].To, rec.From, "history record %d does not continue from the one before", i)
			assert.Equal(t, h[i-1].Generation+1, rec.Generation)
		}
	}
	last := h[len(h)-1]
	assert.Equal(t, snap.Active, last.To)
	assert.Equal(t, snap.Generation, last.Generation)
}

// drainOf returns the last drain of color c.
func drainOf(r *Router, c config.Color) (DrainStatus, bool) {
	for _, d := range r.Drains() {
		if d.Color == c {
			return d, true
		}
	}
	return DrainStatus{}, false
}

func drainState(r *Router, c config.Color) string {
	d, _ := drainOf(r, c)
	return d.State
}

func TestDrain_OldColorDrainsAfterSlowRequestCompletes(t *testing.T) {
	blue, green := newHoldServer(t, "blue"), colorServer(t, "green")
	gw := startGateway(t, testConfig(t, []string{hostPort(blue.Server)}, []string{hostPort(green)}, ""))
	defer blue.Release()
	client := newClient(t)

	slow := getAsync(client, gw.URL+"/hold")
	blue.waitArrived(t)
	res, err := gw.Router.Switch(SwitchRequest{To: config.Green, Trigger: TriggerAdmin})
	require.NoError(t, err)
	require.NotNil(t, res.Drain)
	assert.Equal(t, DrainRunning, res.Drain.State)
	assert.Equal(t, config.Blue, res.Drain.Color)
	assert.EqualValues(t, 1, res.Drain.AtSwap)

	// New traffic goes to green while blue's request is held.
	resp, err := client.Get(gw.URL + "/predict")
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	assert.Equal(t, "green", resp.Header.Get(HeaderColor))

	d, ok := drainOf(gw.Router, config.Blue)
	require.True(t, ok)
	assert.Equal(t, DrainRunning, d.State)
	assert.EqualValues(t, 1, d.Inflight)
	assert.Nil(t, d.Finished)
	_, ok = drainOf(gw.Router, config.Green)
	assert.False(t, ok, "green never lost traffic")

	released := time.Now()
	blue.Release()
	r := await(t, slow)
	require.NoError(t, r.err)
	assert.Equal(t, http.StatusOK, r.status)
	assert.Equal(t, "blue", r.header.Get(HeaderColor))
	assert.Equal(t, `{"backend":"blue"}`, r.body)

	require.Eventually(t, func() bool { return drainState(gw.Router, config.Blue) == DrainDone },
		5*time.Second, time.Millisecond)
	d, _ = drainOf(gw.Router, config.Blue)
	require.NotNil(t, d.Finished)
	assert.True(t, d.Finished.After(released), "the drain ended while its request was still running")
	assert.Zero(t, d.Inflight)
	assert.Zero(t, d.Straggler)
}

func TestDrain_TimesOutWithStragglersThatStillComplete(t *testing.T) {
	blue, green := newHoldServer(t, "blue"), colorServer(t, "green")
	gw := startGateway(t, testConfig(t, []string{hostPort(blue.Server)}, []string{hostPort(green)},
		"switch: {drain_timeout: 100ms}\n"))
	defer blue.Release()
	client := newClient(t)

	slow := getAsync(client, gw.URL+"/hold")
	blue.waitArrived(t)
	_, err := gw.Router.Switch(SwitchRequest{To: config.Green, Trigger: TriggerAdmin})
	require.NoError(t, err)

	require.Eventually(t, func() bool { return drainState(gw.Router, config.Blue) == DrainTimedOut },
		5*time.Second, time.Millisecond)
	d, _ := drainOf(gw.Router, config.Blue)
	assert.EqualValues(t, 1, d.Straggler)
	assert.EqualValues(t, 1, d.Inflight)
	require.NotNil(t, d.Finished)
	assert.GreaterOrEqual(t, d.Finished.Sub(d.Started), 100*time.Millisecond, "timed out before switch.drain_timeout")

	// The straggler is reported, not cut off.
	blue.Release()
	r := await(t, slow)
	require.NoError(t, r.err)
	assert.Equal(t, http.StatusOK, r.status)
	assert.Equal(t, "blue", r.header.Get(HeaderColor))
	require.Eventually(t, func() bool { return gw.Router.Snapshot().Pool(config.Blue).Inflight() == 0 },
		5*time.Second, time.Millisecond)
	assert.Equal(t, DrainTimedOut, drainState(gw.Router, config.Blue))
}

func TestDrain_SwitchBackCancelsDrainAndKeepsAccounting(t *testing.T) {
	blue, green := newHoldServer(t, "blue"), colorServer(t, "green")
	gw := startGateway(t, testConfig(t, []string{hostPort(blue.Server)}, []string{hostPort(green)}, ""))
	defer blue.Release()
	client := newClient(t)

	slow := getAsync(client, gw.URL+"/hold")
	blue.waitArrived(t)
	_, err := gw.Router.Switch(SwitchRequest{To: config.Green, Trigger: TriggerAdmin})
	require.NoError(t, err)
	require.Equal(t, DrainRunning, drainState(gw.Router, config.Blue))
	res, err := gw.Router.Switch(SwitchRequest{To: config.Blue, Trigger: TriggerAdmin})
	require.NoError(t, err)
	require.NotNil(t, res.Drain)
	assert.Equal(t, config.Green, res.Drain.Color)

	// Blue's request is live traffic again, not a drain straggler.
	d, _ := drainOf(gw.Router, config.Blue)
	assert.Equal(t, DrainCancelled, d.State)
	assert.NotNil(t, d.Finished)
	assert.EqualValues(t, 1, gw.Router.Snapshot().Pool(config.Blue).Inflight())
	require.Eventually(t, func() bool { return drainState(gw.Router, config.Green) == DrainDone },
		5*time.Second, time.Millisecond)

	blue.Release()
	r := await(t, slow)
	require.NoError(t, r.err)
	assert.Equal(t, http.StatusOK, r.status)
	assert.Equal(t, "blue", r.header.Get(HeaderColor))

	resp, err := client.Get(gw.URL + "/predict")
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	assert.Equal(t, "blue", resp.Header.Get(HeaderColor))

	require.Eventually(t, func() bool {
		s := gw.Router.Snapshot()
		return s.Pool(config.Blue).Inflight() == 0 && s.Pool(config.Green).Inflight() == 0
	}, 5*time.Second, time.Millisecond)
	assert.Equal(t, DrainCancelled, drainState(gw.Router, config.Blue), "a cancelled drain came back to life")
	assert.Equal(t, DrainDone, drainState(gw.Router, config.Green))
}

func TestSwitch_UnderLoadZeroFailures(t *testing.T) {
	const (
		clients  = 64
		switches = 200
		// perSwitch is how many requests that started after a switch
		// returned must complete before the next switch, so that every
		// generation is checked under traffic.
		perSwitch = 8
		slowAt    = switches / 2
	)
	blue, green := newHoldServer(t, "blue"), newHoldServer(t, "green")
	gw := startGateway(t, testConfig(t, []string{hostPort(blue.Server)}, []string{hostPort(green.Server)}, ""))
	defer blue.Release()
	defer green.Release()
	client := newClient(t)

	// colorAfter is the active color once n toggles from blue returned.
	colorAfter := func(n int64) string {
		if n%2 == 0 {
			return "blue"
		}
		return "green"
	}
	var (
		started, returned atomic.Int64 // switches begun, switches returned
		stop              atomic.Bool
		total, checked    atomic.Int64
		mu                sync.Mutex
		failures          []string
		failed            int
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		failed++
		if len(failures) < 10 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}
	// progress carries the switch count a checked request started under.
	progress := make(chan int64, clients)
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				at := returned.Load()
				resp, err := client.Get(gw.URL + "/predict")
				if err != nil {
					fail("request error: %v", err)
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				end := started.Load()
				total.Add(1)
				color := resp.Header.Get(HeaderColor)
				switch {
				case err != nil:
					fail("reading the body: %v", err)
				case resp.StatusCode != http.StatusOK:
					fail("status %d: %s", resp.StatusCode, body)
				case string(body) != `{"backend":"`+color+`"}`:
					fail("the %s pool header came with the body %s", color, body)
				case end == at:
					// No switch began while this request ran, so it must
					// have been routed by the snapshot switch #at published.
					checked.Add(1)
					if color != colorAfter(at) {
						fail("started after switch %d returned, answered by %s, want %s", at, color, colorAfter(at))
					}
					select {
					case progress <- at:
					default:
					}
				}
			}
		}()
	}
	defer func() {
		stop.Store(true)
		wg.Wait()
	}()

	t0 := time.Now()
	for i := range switches {
		for n := 0; n < perSwitch; {
			select {
			case at := <-progress:
				if at == int64(i) {
					n++
				}
			case <-time.After(10 * time.Second):
				require.FailNow(t, "no request completed in 10s", "after %d switches", i)
			}
		}
		var slow <-chan result
		hold := blue
		if i == slowAt {
			// A slow request on the pool about to lose traffic.
			if colorAfter(int64(i)) == "green" {
				hold = green
			}
			slow = getAsync(client, gw.URL+"/hold")
			hold.waitArrived(t)
		}
		started.Add(1)
		_, err := gw.Router.Switch(SwitchRequest{Toggle: true, Trigger: TriggerAdmin})
		require.NoError(t, err)
		returned.Store(int64(i + 1))
		if slow != nil {
			hold.Release()
			r := await(t, slow)
			require.NoError(t, r.err)
			assert.Equal(t, http.StatusOK, r.status)
			assert.Equal(t, colorAfter(int64(i)), r.header.Get(HeaderColor), "the slow request changed pools")
			assert.Equal(t, `{"backend":"`+colorAfter(int64(i))+`"}`, r.body)
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d requests (%d checked against the color at their start) during %d switches in %s",
		total.Load(), checked.Load(), switches, time.Since(t0).Round(time.Millisecond))

	mu.Lock()
	assert.Zero(t, failed, "failures (first %d): %v", len(failures), failures)
	mu.Unlock()
	assert.GreaterOrEqual(t, checked.Load(), int64(switches*perSwitch), "too few requests ran between switches to judge")
	assert.EqualValues(t, 1+switches, gw.Router.Snapshot().Generation)
	assert.Equal(t, config.Color(colorAfter(switches)), gw.Router.Snapshot().Active)
	require.Eventually(t, func() bool {
		s := gw.Router.Snapshot()
		return s.Pool(config.Blue).Inflight() == 0 && s.Pool(config.Green).Inflight() == 0
	}, 5*time.Second, time.Millisecond)
}
