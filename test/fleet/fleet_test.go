//go:build k8s

package fleete2e

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startFleet starts n gateways over one pair of pools, their files saying
// blue, and waits until each is ready and sees all.
func startFleet(t *testing.T, n int) (*pools, []*gateway) {
	t.Helper()
	resetFleet(t)
	p := startPools(t)
	var gws []*gateway
	for i := range n {
		gws = append(gws, newGateway(t, fmt.Sprintf("gw-%d", i), p, "blue"))
	}
	waitReady(t, gws...)
	return p, gws
}

// switchTo asks g to switch the fleet to color and returns the fleet
// generation it committed.
func switchTo(t *testing.T, g *gateway, color string) uint64 {
	t.Helper()
	code, body := g.call(t, http.MethodPost, "/admin/switch", `{"to": "`+color+`"}`, nil)
	require.Equal(t, http.StatusOK, code, "switch to %s on %s: %v", color, g.name, body)
	require.Equal(t, false, body["noop"], "switch to %s on %s: %v", color, g.name, body)
	return uint64(body["generation"].(float64))
}

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	i := int(p*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// TestFleet_HundredSwitchesUnderLoadFailNoRequestAndServeNoOldColor: 64
// clients over three gateways; 100 switches asked on random replicas; not
// one request fails, and no replica answers with the old color after it
// reported the new generation. Prints the write-to-all-replicas
// convergence.
func TestFleet_HundredSwitchesUnderLoadFailNoRequestAndServeNoOldColor(t *testing.T) {
	const switches = 100
	_, gws := startFleet(t, 3)
	l := startLoad(t, gws, 64, 20)

	type applied struct {
		gen   uint64
		color string
		// committed is when the commit was written, before any gateway
		// could serve gen; at is when each gateway reported serving it.
		committed time.Time
		at        [3]time.Time
	}
	var steps []applied
	var convergence, latency []time.Duration
	color := "blue"
	for range switches {
		if color == "blue" {
			color = "green"
		} else {
			color = "blue"
		}
		g := gws[rand.IntN(len(gws))]
		t0 := time.Now()
		gen := switchTo(t, g, color)
		latency = append(latency, time.Since(t0))
		step := applied{gen: gen, color: color}
		var committed time.Time
		for i, gw := range gws {
			st := waitServing(t, gw, gen)
			r := self(st)
			require.Equal(t, gen, r.Generation, "%s skipped a generation", gw.name)
			require.Equal(t, color, string(st.Active), "%s serves generation %d", gw.name, gen)
			step.at[i] = r.AppliedAt
			if committed.IsZero() && st.Fleet.Intent != nil {
				committed = st.Fleet.Intent.At
			}
		}
		last := slices.MaxFunc(step.at[:], func(a, b time.Time) int { return a.Compare(b) })
		convergence = append(convergence, last.Sub(committed))
		step.committed = committed
		steps = append(steps, step)
	}
	samples := l.Stop()

	assert.Empty(t, failures(samples), "failed requests out of %d", len(samples))
	// A request sent after a gateway reported serving generation k, and
	// answered before k+1 was committed (so before any gateway could serve
	// it), loaded the snapshot of k: it must have k's color. (One still
	// running when k+1 came may have been read after it: either is right.)
	wrong, checked := 0, 0
	for _, s := range samples {
		for k, step := range steps {
			next := time.Time{}
			if k+1 < len(steps) {
				next = steps[k+1].committed
			}
			if !s.sent.After(step.at[s.gw]) || (!next.IsZero() && !s.sent.Add(s.took).Before(next)) {
				continue
			}
			checked++
			if s.color != step.color {
				wrong++
				if wrong <= 5 {
					t.Errorf("%s answered %s to a request sent at %s and answered %s later, after it reported generation %d (%s) at %s",
						gws[s.gw].name, s.color, s.sent.Format(time.RFC3339Nano), s.took, step.gen, step.color, step.at[s.gw].Format(time.RFC3339Nano))
				}
			}
		}
	}
	assert.Zero(t, wrong, "answers with the old color after the new generation was reported, of %d checked", checked)
	assert.Greater(t, checked, len(samples)/2, "most requests fall within one generation's window")

	report := fmt.Sprintf("fleet convergence, commit write to the last of 3 replicas serving it, %d switches under %d requests: P50 %s, P99 %s, max %s; switch call P50 %s, P99 %s",
		switches, len(samples), percentile(convergence, .5).Round(10*time.Microsecond), percentile(convergence, .99).Round(10*time.Microsecond),
		slices.Max(convergence).Round(10*time.Microsecond), percentile(latency, .5).Round(10*time.Microsecond), percentile(latency, .99).Round(10*time.Microsecond))
	t.Log(report)
	fmt.Println(report)
	if out := os.Getenv("SWITCHYARD_FLEET_REPORT"); out != "" {
		require.NoError(t, os.WriteFile(out, []byte(report+"\n"), 0o644))
	}
}

// TestFleet_ConcurrentSwitchesOnTwoReplicasExactlyOneWins: two operators
// switch at once on two replicas; exactly one change is committed, the
// other is told why, and every replica ends on the winner's generation.
func TestFleet_ConcurrentSwitchesOnTwoReplicasExactlyOneWins(t *testing.T) {
	_, gws := startFleet(t, 3)
	for round := range 10 {
		st, err := gws[2].status()
		require.NoError(t, err)
		gen, history := st.Generation, len(st.Fleet.Intent.History)
		to := string(st.Active.Other())
		header := map[string]string{"If-Match": strconv.Quote(strconv.FormatUint(gen, 10))}
		if round%2 == 1 {
			header = nil // same target without If-Match: one switch, the other a no-op or refused
		}
		var wg sync.WaitGroup
		codes := make([]int, 2)
		bodies := make([]map[string]any, 2)
		for i := range 2 {
			wg.Go(func() {
				codes[i], bodies[i] = gws[i].call(t, http.MethodPost, "/admin/switch", `{"to": "`+to+`"}`, header)
			})
		}
		wg.Wait()

		won := 0
		for i := range 2 {
			switch {
			case codes[i] == http.StatusOK && bodies[i]["noop"] == false:
				won++
			case codes[i] == http.StatusOK:
				assert.Nil(t, header, "a no-op answer to a switch with If-Match: %v", bodies[i])
			default:
				assert.Contains(t, []int{http.StatusConflict, http.StatusPreconditionFailed}, codes[i], "%v", bodies[i])
				if codes[i] == http.StatusPreconditionFailed {
					assert.Contains(t, bodies[i], "active", "412 carries the state in force")
				}
			}
		}
		require.Equal(t, 1, won, "round %d: exactly one of two concurrent switches wins: %v %v", round, bodies[0], bodies[1])
		for _, g := range gws {
			st := waitServing(t, g, gen+1)
			assert.Equal(t, to, string(st.Active), "%s", g.name)
			assert.EqualValues(t, gen+1, st.Generation, "%s: one commit", g.name)
		}
		st, err = gws[2].status()
		require.NoError(t, err)
		assert.Len(t, st.Fleet.Intent.History, min(history+1, 20), "one switch, one history entry")
		assert.Nil(t, st.Fleet.Pending, "nothing left half-prepared")
	}
}

// TestFleet_SwitchRefusedNamingTheReplicaThatFindsTheTargetNotReady: green
// is ready for two replicas but one of its backends is unreachable from
// the third: the switch is refused naming that replica and the backend,
// and nothing moved anywhere.
func TestFleet_SwitchRefusedNamingTheReplicaThatFindsTheTargetNotReady(t *testing.T) {
	resetFleet(t)
	p := startPools(t)
	fwd := newForwarder(t, p.green[1].Addr())
	gws := []*gateway{newGateway(t, "gw-0", p, "blue"), newGateway(t, "gw-1", p, "blue"),
		newGateway(t, "gw-2", p, "blue", p.green[0].Addr(), fwd.addr)}
	waitReady(t, gws...)
	fwd.Block()
	eventually(t, 10*time.Second, "gw-2 finds a green backend not ready", func() (bool, string) {
		st, err := gws[2].status()
		if err != nil {
			return false, err.Error()
		}
		return st.Pools["green"].ReadyBackends == 1, fmt.Sprintf("%d ready", st.Pools["green"].ReadyBackends)
	})
	before := intent(t)

	code, body := gws[0].call(t, http.MethodPost, "/admin/switch", `{"to": "green"}`, nil)

	require.Equal(t, http.StatusConflict, code, "%v", body)
	assert.Equal(t, "refused", body["error"])
	msg, _ := body["message"].(string)
	assert.Contains(t, msg, "refused by replica gw-2")
	refused, _ := body["refused"].(map[string]any)
	backends, _ := refused["backends"].(map[string]any)
	assert.Contains(t, backends, fwd.addr, "the backend and why: %v", body)
	after := intent(t)
	assert.Equal(t, before["generation"], after["generation"], "nothing committed")
	assert.Equal(t, "blue", after["active"])
	assert.Empty(t, after["pending"], "the prepare was taken back")
	for _, g := range gws {
		st, err := g.status()
		require.NoError(t, err)
		assert.Equal(t, "blue", string(st.Active), "%s moved", g.name)
	}

	fwd.Unblock(t)
	eventually(t, 10*time.Second, "gw-2 finds green ready again", func() (bool, string) {
		st, err := gws[2].status()
		return err == nil && st.Pools["green"].ReadyBackends == 2, fmt.Sprint(err)
	})
	gen := switchTo(t, gws[0], "green")
	for _, g := range gws {
		waitServing(t, g, gen)
	}
}

// TestFleet_APIServerGoneKeepsServingRefusesSwitchesAndCatchesUp: with the
// API server stopped under load, every replica keeps serving the last
// color without a failed request, a switch answers 503, each replica turns
// /readyz 503 after stale_timeout; once it is back they catch up and the
// next switch moves them all.
func TestFleet_APIServerGoneKeepsServingRefusesSwitchesAndCatchesUp(t *testing.T) {
	_, gws := startFleet(t, 3)
	gen := switchTo(t, gws[0], "green")
	for _, g := range gws {
		waitServing(t, g, gen)
	}
	l := startLoad(t, gws, 24, 20)

	cluster.StopAPIServer()
	restarted := false
	t.Cleanup(func() {
		if !restarted {
			require.NoError(t, cluster.StartAPIServer())
		}
	})
	code, body := gws[1].call(t, http.MethodPost, "/admin/switch", `{"to": "blue"}`, nil)
	assert.Equal(t, http.StatusServiceUnavailable, code, "%v", body)
	assert.Equal(t, "fleet_unavailable", body["error"])
	assert.Contains(t, body["message"], "Kubernetes API cannot be reached")
	for _, g := range gws {
		eventually(t, 15*time.Second, g.name+" turns unready without the API server", func() (bool, string) {
			code, body := g.get("/readyz")
			return code == http.StatusServiceUnavailable && strings.Contains(body, "no contact with the Kubernetes API"), body
		})
		st, err := g.status()
		require.NoError(t, err)
		assert.True(t, st.Fleet.Stale, "%s shows itself stale", g.name)
		assert.Equal(t, "green", string(st.Active), "%s keeps the last committed color", g.name)
	}

	require.NoError(t, cluster.StartAPIServer())
	restarted = true
	waitReady(t, gws...)
	samples := l.Stop()
	assert.Empty(t, failures(samples), "failed requests out of %d while the API server was gone", len(samples))
	for _, s := range samples {
		require.Equal(t, "green", s.color, "a replica flipped on its own")
	}
	gen = switchTo(t, gws[1], "blue")
	for _, g := range gws {
		waitServing(t, g, gen)
	}
}

// TestFleet_RestartedReplicaServesTheSwitchedColorFromItsFirstRequest: a
// replica whose file says blue, restarted after the fleet switched to
// green, answers green from its very first request.
func TestFleet_RestartedReplicaServesTheSwitchedColorFromItsFirstRequest(t *testing.T) {
	_, gws := startFleet(t, 3)
	gen := switchTo(t, gws[0], "green")
	for _, g := range gws {
		waitServing(t, g, gen)
	}
	g := gws[1]
	g.kill()

	var mu sync.Mutex
	var colors []string
	seen := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(colors)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		client := &http.Client{Timeout: 5 * time.Second}
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			resp, err := client.Post("http://"+g.traffic+"/predict", "application/json", strings.NewReader(`{"inputs": [[1]]}`))
			if err != nil {
				continue // not listening yet
			}
			resp.Body.Close()
			mu.Lock()
			colors = append(colors, resp.Header.Get("X-Switchyard-Color")+" "+strconv.Itoa(resp.StatusCode))
			mu.Unlock()
		}
	}()
	g.start(t)
	waitReady(t, gws...)
	eventually(t, 10*time.Second, "a 200 from the restarted replica", func() (bool, string) {
		return slices.Contains(seen(), "green 200"), fmt.Sprint(len(seen()), " answers")
	})
	close(stop)
	<-done

	colors = seen()
	require.NotEmpty(t, colors, "no answer from the restarted replica")
	for i, c := range colors {
		require.True(t, strings.HasPrefix(c, "green "), "answer %d of the restarted replica: %s (all: %v)", i, c, colors)
	}
}

// TestFleet_ConfigEditOfActiveSeenAtDifferentTimesIsOneSwitch: the
// ConfigMap's active reaches each pod's file at a different time; the
// first replica to see it switches the fleet, the others' sightings
// change nothing.
func TestFleet_ConfigEditOfActiveSeenAtDifferentTimesIsOneSwitch(t *testing.T) {
	_, gws := startFleet(t, 3)
	st, err := gws[0].status()
	require.NoError(t, err)
	gen := st.Generation

	require.NoError(t, os.WriteFile(gws[0].cfgPath, []byte(gws[0].yaml("green")), 0o644))
	for _, g := range gws {
		st := waitServing(t, g, gen+1)
		assert.Equal(t, "green", string(st.Active))
	}
	for _, g := range gws[1:] {
		before, err := g.status()
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(g.cfgPath, []byte(g.yaml("green")), 0o644))
		eventually(t, 10*time.Second, g.name+" reloads its file", func() (bool, string) {
			st, err := g.status()
			if err != nil {
				return false, err.Error()
			}
			return st.Config.Generation > before.Config.Generation, fmt.Sprint(st.Config.Generation)
		})
	}

	st, err = gws[2].status()
	require.NoError(t, err)
	assert.EqualValues(t, gen+1, st.Generation, "one fleet switch")
	require.Len(t, st.Fleet.Intent.History, 1, "one history entry")
	assert.Equal(t, "file", st.Fleet.Intent.History[0].Trigger)
	assert.Empty(t, st.Fleet.FilePending)
}
