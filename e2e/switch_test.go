//go:build e2e

package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Green's cold start in TestSwitch_RefusedUntilGreenLoadedAndWarm: the
// model loads 5s late and its first inferences take 2s each, like a cold
// GPU. The gateway's warmup (3 requests) must absorb the slow ones.
const (
	greenLoadDelay   = "5"
	greenSlowCount   = "2"
	greenSlowSeconds = 2 * time.Second
)

// TestSwitch_RefusedUntilGreenLoadedAndWarm: green's process starts only
// after the gateway, and then loads slowly. A switch to green is refused
// with 409 and the reason, naming green's backend, until green is loaded
// and warm; then it succeeds, and answers come from green's model. No
// request fails throughout.
func TestSwitch_RefusedUntilGreenLoadedAndWarm(t *testing.T) {
	client := newClient(t)
	blue := startModel(t, "blue", blueVersion, freeAddr(t))
	greenAddr := freeAddr(t) // nothing listens here yet
	blue.waitHealthy(t, client)
	want := expected{}
	want.reference(t, client, blue)

	gw := startGateway(t, client, gatewayConfig{Blue: blue.addr, Green: greenAddr})
	gw.waitReady(t, "blue")
	l := startLoad(t, client, gw.cfg.Traffic)
	l.waitFor(t, 30*time.Second, "blue answers through the gateway", 20, fromColor("blue"))

	// Green's port is closed: refused, and the body says which backend and why.
	code, body := post(t, client, gw.adminURL("/admin/switch"), `{"to":"green"}`)
	require.Equal(t, http.StatusConflict, code, "switch to green with nothing on %s: %s", greenAddr, body)
	why := requireRefusal(t, body, greenAddr)
	t.Logf("green not started: 409, %s: %s", greenAddr, why)

	green := startModel(t, "green", greenVersion, greenAddr,
		"LOAD_DELAY_SECONDS="+greenLoadDelay, "WARMUP_SLOW_REQUESTS="+greenSlowCount,
		"WARMUP_SLOW_SECONDS="+strings.TrimSuffix(greenSlowSeconds.String(), "s"))
	greenStarted := time.Now()

	// Ask again and again; every answer until the switch is a 409 naming
	// green's backend.
	var reasons []string
	var switchSent, switched time.Time
	eventually(t, 90*time.Second, 250*time.Millisecond, "switch to green accepted", func() (bool, string) {
		require.True(t, green.alive(), "green's model server exited")
		switchSent = time.Now()
		code, body := post(t, client, gw.adminURL("/admin/switch"), `{"to":"green"}`)
		switched = time.Now()
		if code == http.StatusOK {
			var res switchResult
			require.NoError(t, json.Unmarshal(body, &res), "%s", body)
			assert.Equal(t, switchResult{From: "blue", To: "green", Version: greenVersion}, res)
			return true, ""
		}
		require.Equal(t, http.StatusConflict, code, "switch to green: %s", body)
		why := requireRefusal(t, body, greenAddr)
		if len(reasons) == 0 || reasons[len(reasons)-1] != why {
			t.Logf("%5.1fs after green started: 409, %s", time.Since(greenStarted).Seconds(), why)
		}
		reasons = append(reasons, why)
		return false, why
	})
	t.Logf("switch accepted %.1fs after green's process started, after %d refusals", switched.Sub(greenStarted).Seconds(), len(reasons))

	// The refusals gave the real reasons: loading, then warming.
	assert.True(t, anyContains(reasons, `"loading"`), "no refusal said green's model is loading: %q", reasons)
	assert.True(t, anyContains(reasons, "not warm"), "no refusal said green is not warm yet: %q", reasons)
	st := gw.status(t)
	assert.Equal(t, "green", st.Active)
	if h := st.backend(t, "green").Health; assert.NotNil(t, h) {
		assert.True(t, h.Healthy && h.Warm, "green switched to while not healthy and warm: %+v", *h)
	}

	l.waitFor(t, 30*time.Second, "green answers after the switch", 100, func(a answer) bool {
		return a.start.After(switched) && fromColor("green")(a)
	})
	answers := l.stop()
	want.reference(t, client, green)
	require.False(t, sameOutputs(want["blue"], want["green"]), "blue and green answer alike; the test cannot tell them apart")

	want.requireAllGood(t, "all requests", answers)
	for _, a := range filter(answers, endedBefore(switchSent)) {
		require.Equal(t, "blue", a.body.Color, "answered before the switch was asked for")
	}
	for _, a := range filter(answers, startedAfter(switched)) {
		require.Equal(t, "green", a.body.Color, "started after the switch was accepted")
	}
	// Warmup took green's slow first inferences; no client waited for one.
	for _, a := range filter(answers, fromColor("green")) {
		require.Less(t, a.latency(), greenSlowSeconds*3/4, "a client got one of green's cold inferences: warmup did not absorb them")
	}
	t.Logf("%d requests, none failed: %d by blue, %d by green", len(answers),
		count(answers, fromColor("blue")), count(answers, fromColor("green")))
}

// TestRollback_BlueAnswersWithinOneSecond: after a switch to green, a
// rollback moves traffic back to blue, which stayed warm: the first answer
// from blue comes less than a second after the rollback is sent, and no
// request fails.
func TestRollback_BlueAnswersWithinOneSecond(t *testing.T) {
	client := newClient(t)
	blue, green := startModels(t, client)
	want := expected{}
	want.reference(t, client, blue)
	want.reference(t, client, green)
	gw := startGateway(t, client, gatewayConfig{Blue: blue.addr, Green: green.addr})
	gw.waitReady(t, "blue")
	gw.waitReady(t, "green")
	l := startLoad(t, client, gw.cfg.Traffic)
	l.waitFor(t, 30*time.Second, "blue answers", 20, fromColor("blue"))

	code, body := post(t, client, gw.adminURL("/admin/switch"), `{"to":"green"}`)
	require.Equal(t, http.StatusOK, code, "switch to green: %s", body)
	switched := time.Now()
	l.waitFor(t, 30*time.Second, "green answers after the switch", 50, func(a answer) bool {
		return a.start.After(switched) && fromColor("green")(a)
	})

	rollbackSent := time.Now()
	code, body = post(t, client, gw.adminURL("/admin/rollback"), "")
	rolledBack := time.Now()
	require.Equal(t, http.StatusOK, code, "rollback: %s", body)
	var res switchResult
	require.NoError(t, json.Unmarshal(body, &res), "%s", body)
	assert.Equal(t, switchResult{From: "green", To: "blue", Version: blueVersion}, res)
	l.waitFor(t, 30*time.Second, "blue answers after the rollback", 50, func(a answer) bool {
		return a.start.After(rolledBack) && fromColor("blue")(a)
	})
	answers := l.stop()

	want.requireAllGood(t, "all requests", answers)
	var firstBlue time.Time
	for _, a := range filter(answers, fromColor("blue")) {
		if a.start.After(switched) && (firstBlue.IsZero() || a.end.Before(firstBlue)) {
			firstBlue = a.end
		}
	}
	require.False(t, firstBlue.IsZero(), "no answer from blue after the rollback")
	took := firstBlue.Sub(rollbackSent)
	t.Logf("rollback: first answer from blue %s after POST /admin/rollback was sent (the call took %s); %d requests, none failed",
		took.Round(time.Microsecond), rolledBack.Sub(rollbackSent).Round(time.Microsecond), len(answers))
	assert.Less(t, took, time.Second, "traffic did not return to blue within a second of the rollback")
	for _, a := range filter(answers, startedAfter(rolledBack)) {
		require.Equal(t, "blue", a.body.Color, "started after the rollback was accepted")
	}
	for _, a := range filter(answers, func(a answer) bool { return a.start.After(switched) && a.end.Before(rollbackSent) }) {
		require.Equal(t, "green", a.body.Color, "answered between the switch and the rollback")
	}
	st := gw.status(t)
	assert.Equal(t, "blue", st.Active)
	if assert.NotEmpty(t, st.Switches) {
		last := st.Switches[len(st.Switches)-1]
		assert.Equal(t, switchRecord{From: "green", To: "blue", Version: blueVersion, Trigger: "rollback"}, last)
	}
}

// outageBudget bounds TestGreenKilled's outage, from the kill to the
// accepted rollback. Health needs unhealthy_threshold (3) failed probes
// 200ms apart (jitter 10%) to mark green unhealthy, about 0.7s; a killed
// server refuses connections at once, so no probe waits for its timeout;
// the first failed probe comes at most one interval after the kill, so
// about 0.9s at worst; the test polls status every 50ms and then rolls
// back over loopback. 1.5s leaves slack for a busy 2-core machine.
const outageBudget = 1500 * time.Millisecond

// TestGreenKilled_FailuresBoundedAndRollbackRestores: green's gunicorn is
// killed with SIGKILL while it takes all traffic. Requests fail only until
// the health checker marks green unhealthy (status shows it, with the
// error) and the operator's rollback, which needs no force since blue is
// warm, puts traffic back on blue; from then on every request succeeds.
//
// Automatic rollback (on by default) is off here: it would race the
// operator's, and when it wins, the operator's POST /admin/rollback rolls
// back that rollback, towards the killed color.
func TestGreenKilled_FailuresBoundedAndRollbackRestores(t *testing.T) {
	client := newClient(t)
	blue, green := startModels(t, client)
	want := expected{}
	want.reference(t, client, blue)
	want.reference(t, client, green)
	gw := startGateway(t, client, gatewayConfig{Blue: blue.addr, Green: green.addr, NoAutoRollback: true})
	gw.waitReady(t, "blue")
	gw.waitReady(t, "green")
	l := startLoad(t, client, gw.cfg.Traffic)
	l.waitFor(t, 30*time.Second, "blue answers", 20, fromColor("blue"))
	code, body := post(t, client, gw.adminURL("/admin/switch"), `{"to":"green"}`)
	require.Equal(t, http.StatusOK, code, "switch to green: %s", body)
	switched := time.Now()
	l.waitFor(t, 30*time.Second, "green answers after the switch", 100, func(a answer) bool {
		return a.start.After(switched) && fromColor("green")(a)
	})

	killed := time.Now()
	green.kill(t)
	var down backendStatus
	eventually(t, 10*time.Second, 50*time.Millisecond, "status shows green unhealthy", func() (bool, string) {
		down = gw.status(t).backend(t, "green")
		return down.Health != nil && !down.Health.Healthy && down.Health.LastError != "", jsonString(down)
	})
	unhealthy := time.Now()
	assert.False(t, down.Ready)
	assert.Contains(t, down.Health.LastError, "connection refused", "green's last_error")

	rollbackSent := time.Now()
	code, body = post(t, client, gw.adminURL("/admin/rollback"), "")
	rolledBack := time.Now()
	require.Equal(t, http.StatusOK, code, "rollback without force while blue is warm: %s", body)
	var res switchResult
	require.NoError(t, json.Unmarshal(body, &res), "%s", body)
	assert.Equal(t, switchResult{From: "green", To: "blue", Version: blueVersion}, res)
	l.waitFor(t, 30*time.Second, "blue answers after the rollback", 200, func(a answer) bool {
		return a.start.After(rolledBack) && fromColor("blue")(a)
	})
	answers := l.stop()
	st := gw.status(t)
	assert.Equal(t, "blue", st.Active)
	if assert.NotEmpty(t, st.Switches) {
		assert.Equal(t, switchRecord{From: "green", To: "blue", Version: blueVersion, Trigger: "rollback"}, st.Switches[len(st.Switches)-1])
	}

	want.requireAllGood(t, "requests answered before the kill", filter(answers, endedBefore(killed)))
	after := filter(answers, startedAfter(rolledBack))
	want.requireAllGood(t, "requests sent after the rollback", after)
	for _, a := range after {
		require.Equal(t, "blue", a.body.Color, "started after the rollback was accepted")
	}
	// In the outage, a failure is the gateway's own clean error for green,
	// never a dropped connection or a hang.
	outage := filter(answers, func(a answer) bool { return !a.end.Before(killed) && !a.start.After(rolledBack) })
	failed, byStatus := 0, map[int]int{}
	for _, a := range outage {
		if want.problem(a) == "" {
			continue
		}
		failed++
		byStatus[a.status]++
		require.NoError(t, a.err, "request in the outage")
		require.Contains(t, []int{http.StatusBadGateway, http.StatusServiceUnavailable}, a.status, "request in the outage: %s", a.raw)
		require.Equal(t, "green", a.color, "failed request in the outage: %s", a.raw)
		require.Less(t, a.latency(), time.Second, "failed request in the outage took long: %s", a.raw)
	}
	window := rolledBack.Sub(killed)
	t.Logf("green killed: unhealthy in status after %s (last_error %q); rollback call took %s, accepted %s after the kill",
		unhealthy.Sub(killed).Round(time.Millisecond), down.Health.LastError, rolledBack.Sub(rollbackSent).Round(time.Microsecond),
		window.Round(time.Millisecond))
	t.Logf("failed requests: %d of %d in the outage (by status: %v), %d of %d overall (%.1f%%); %d after the rollback, all good",
		failed, len(outage), byStatus, failed, len(answers), 100*float64(failed)/float64(len(answers)), len(after))
	assert.Less(t, window, outageBudget, "green was not marked unhealthy and rolled back in time")
	// The load offers at most loadWorkers requests per loadPace, so an
	// outage within budget fails at most this many.
	maxFailed := int(outageBudget/loadPace) * loadWorkers
	assert.LessOrEqual(t, failed, maxFailed, "more failures than the outage budget allows")
}

// TestConfigEdit_ActiveGreenSwitchesWithoutFailures: rewriting the config
// file with active: green, as an editor does (write a temporary file,
// rename it over the old one), moves traffic to green through the same
// gate as the admin API, with no failed request.
func TestConfigEdit_ActiveGreenSwitchesWithoutFailures(t *testing.T) {
	client := newClient(t)
	blue, green := startModels(t, client)
	want := expected{}
	want.reference(t, client, blue)
	want.reference(t, client, green)
	gw := startGateway(t, client, gatewayConfig{Blue: blue.addr, Green: green.addr})
	gw.waitReady(t, "blue")
	gw.waitReady(t, "green")
	l := startLoad(t, client, gw.cfg.Traffic)
	l.waitFor(t, 30*time.Second, "blue answers", 20, fromColor("blue"))

	edited := gw.cfg
	edited.Active = "green"
	tmp := filepath.Join(filepath.Dir(gw.configPath), ".switchyard.yaml.swp")
	require.NoError(t, os.WriteFile(tmp, []byte(edited.yaml()), 0o644))
	editedAt := time.Now()
	require.NoError(t, os.Rename(tmp, gw.configPath))

	var firstGreen answer
	eventually(t, 10*time.Second, 20*time.Millisecond, "traffic moves to green after the edit", func() (bool, string) {
		for _, a := range filter(l.snapshot(), fromColor("green")) {
			if firstGreen.end.IsZero() || a.end.Before(firstGreen.end) {
				firstGreen = a
			}
		}
		return !firstGreen.end.IsZero(), "no answer from green yet"
	})
	t.Logf("config edit: first answer from green %s after the rename", firstGreen.end.Sub(editedAt).Round(time.Millisecond))
	l.waitFor(t, 30*time.Second, "green answers after the flip", 100, func(a answer) bool {
		return a.start.After(firstGreen.end) && fromColor("green")(a)
	})
	answers := l.stop()

	want.requireAllGood(t, "all requests", answers)
	for _, a := range filter(answers, startedAfter(firstGreen.end)) {
		require.Equal(t, "green", a.body.Color, "traffic went back to blue after the flip")
	}
	st := gw.status(t)
	assert.Equal(t, "green", st.Active)
	if assert.NotEmpty(t, st.Switches) {
		assert.Equal(t, switchRecord{From: "blue", To: "green", Version: greenVersion, Trigger: "file"}, st.Switches[len(st.Switches)-1])
	}
	if assert.NotNil(t, st.Config) {
		assert.Equal(t, 2, st.Config.Generation, "config generation after one edit")
		assert.Empty(t, st.Config.LastError)
		assert.Empty(t, st.Config.PendingSwitch)
	}
	t.Logf("%d requests, none failed: %d by blue, %d by green", len(answers),
		count(answers, fromColor("blue")), count(answers, fromColor("green")))
}

// requireRefusal checks a 409 body from /admin/switch to green: it names
// green's backend and why it is not ready, which it returns.
func requireRefusal(t *testing.T, body []byte, greenAddr string) string {
	t.Helper()
	var r refusal
	require.NoError(t, json.Unmarshal(body, &r), "409 body: %s", body)
	require.Equal(t, "refused", r.Error, "409 body: %s", body)
	require.Equal(t, "green", r.Refused.Color, "409 body: %s", body)
	require.Zero(t, r.Refused.Ready, "409 body: %s", body)
	why := r.Refused.Backends[greenAddr]
	require.NotEmpty(t, why, "409 body does not say why green's backend %s is not ready: %s", greenAddr, body)
	require.Contains(t, r.Message, "green", "409 message")
	return why
}

func anyContains(list []string, sub string) bool {
	for _, s := range list {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func jsonString(v any) string {
	data, _ := json.Marshal(v)
	return string(data)
}
