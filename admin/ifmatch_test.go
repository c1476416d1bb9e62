package admin_test

import (
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/admin"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proxy"
)

// countingReloader counts reloads.
type countingReloader struct {
	fakeReloader
	n atomic.Int32
}

func (c *countingReloader) Reload(trigger string) error {
	c.n.Add(1)
	return c.fakeReloader.Reload(trigger)
}

// stateChangingCalls are every admin call that changes state, with a
// body each accepts while green is active.
var stateChangingCalls = []struct {
	desc, method, path, body string
}{
	{desc: "switch", method: http.MethodPost, path: "/admin/switch", body: `{"to": "blue"}`},
	{desc: "rollback", method: http.MethodPost, path: "/admin/rollback", body: ``},
	{desc: "traffic", method: http.MethodPut, path: "/admin/traffic", body: `{"blue": 10}`},
	{desc: "promote", method: http.MethodPost, path: "/admin/promote", body: ``},
	{desc: "warmup", method: http.MethodPost, path: "/admin/warmup", body: `{"color": "blue"}`},
	{desc: "reload", method: http.MethodPost, path: "/admin/reload", body: ``},
}

// ifMatchRig is a rig with every collaborator, at generation 2 with green
// active.
func ifMatchRig(t *testing.T) (*rig, *fakeWarmer, *countingReloader) {
	t.Helper()
	warmer, reloader := &fakeWarmer{}, &countingReloader{}
	rg := newRig(t, withAnalyzer, withWarmer(warmer), withReloader(reloader))
	rep := rg.do(t, http.MethodPost, "/admin/switch", `{"to": "green"}`, nil)
	require.Equal(t, http.StatusOK, rep.status, rep.raw)
	require.Equal(t, `"2"`, rep.header.Get("ETag"))
	return rg, warmer, reloader
}

// Regression test (fixed): If-Match was honoured by POST /admin/switch
// only; a rollback, traffic change, promote, warmup or reload sent with a
// stale generation went through. Each is refused with 412 now, with the
// state in force, and changes nothing.
func TestIfMatch_StaleGenerationIs412WithTheCurrentStateOnEveryCall(t *testing.T) {
	for _, call := range stateChangingCalls {
		for _, stale := range []string{`"1"`, `W/"1"`, `"3"`} {
			t.Run(call.desc+" "+stale, func(t *testing.T) {
				t.Parallel()
				rg, warmer, reloader := ifMatchRig(t)

				rep := rg.do(t, call.method, call.path, call.body, http.Header{"If-Match": {stale}})

				require.Equal(t, http.StatusPreconditionFailed, rep.status, rep.raw)
				assert.Equal(t, "stale_generation", rep.json["error"])
				assert.Contains(t, rep.message(), "generation 2")
				assert.Equal(t, `"2"`, rep.header.Get("ETag"))
				assert.Equal(t, float64(2), rep.json["generation"])
				assert.Equal(t, "green", rep.json["active"])
				assert.Equal(t, "v2", rep.json["active_version"])
				assert.Contains(t, rep.json, "traffic")

				snap := rg.router.Snapshot()
				assert.EqualValues(t, 2, snap.Generation, "a stale call changed the routing state")
				assert.Equal(t, config.Green, snap.Active)
				assert.Len(t, rg.router.History(), 1)
				assert.Empty(t, warmer.called(), "a stale call started a warmup")
				assert.Zero(t, reloader.n.Load(), "a stale call reloaded")
			})
		}
	}
}

func TestIfMatch_CurrentGenerationGoesThroughOnEveryCall(t *testing.T) {
	testCases := []struct {
		call       int // index in stateChangingCalls
		wantStatus int
		check      func(t *testing.T, rg *rig, warmer *fakeWarmer, reloader *countingReloader)
	}{
		{call: 0, wantStatus: http.StatusOK, check: func(t *testing.T, rg *rig, _ *fakeWarmer, _ *countingReloader) {
			assert.Equal(t, config.Blue, rg.router.Snapshot().Active)
		}},
		{call: 1, wantStatus: http.StatusOK, check: func(t *testing.T, rg *rig, _ *fakeWarmer, _ *countingReloader) {
			assert.Equal(t, config.Blue, rg.router.Snapshot().Active)
			h := rg.router.History()
			require.Len(t, h, 2)
			assert.Equal(t, proxy.TriggerRollback, h[1].Trigger)
		}},
		{call: 2, wantStatus: http.StatusOK, check: func(t *testing.T, rg *rig, _ *fakeWarmer, _ *countingReloader) {
			assert.Equal(t, float64(10), rg.router.Snapshot().Traffic().Weights[config.Blue])
		}},
		// Nothing to promote: the analysis refuses, not the precondition.
		{call: 3, wantStatus: http.StatusConflict},
		{call: 4, wantStatus: http.StatusAccepted, check: func(t *testing.T, _ *rig, warmer *fakeWarmer, _ *countingReloader) {
			assert.Equal(t, []config.Color{config.Blue}, warmer.called())
		}},
		{call: 5, wantStatus: http.StatusOK, check: func(t *testing.T, _ *rig, _ *fakeWarmer, reloader *countingReloader) {
			assert.EqualValues(t, 1, reloader.n.Load())
		}},
	}
	for _, test := range testCases {
		call := stateChangingCalls[test.call]
		for _, current := range []string{`"2"`, `W/"2"`, `*`} {
			t.Run(call.desc+" "+current, func(t *testing.T) {
				t.Parallel()
				rg, warmer, reloader := ifMatchRig(t)

				rep := rg.do(t, call.method, call.path, call.body, http.Header{"If-Match": {current}})

				require.Equal(t, test.wantStatus, rep.status, rep.raw)
				if test.check != nil {
					test.check(t, rg, warmer, reloader)
				}
			})
		}
	}
}

func TestIfMatch_MalformedIs400OnEveryCall(t *testing.T) {
	for _, call := range stateChangingCalls {
		t.Run(call.desc, func(t *testing.T) {
			t.Parallel()
			rg, warmer, reloader := ifMatchRig(t)

			rep := rg.do(t, call.method, call.path, call.body, http.Header{"If-Match": {`"two"`}})

			assert.Equal(t, http.StatusBadRequest, rep.status, rep.raw)
			assert.Contains(t, rep.message(), "If-Match")
			assert.EqualValues(t, 2, rg.router.Snapshot().Generation)
			assert.Empty(t, warmer.called())
			assert.Zero(t, reloader.n.Load())
		})
	}
}

// After an automatic rollback, a rollback is a no-op saying so, with
// If-Match as without.
func TestRollback_AfterAnAutomaticRollbackIsANoOpWithOrWithoutIfMatch(t *testing.T) {
	for _, header := range []http.Header{nil, {"If-Match": {`"3"`}}} {
		t.Run(header.Get("If-Match"), func(t *testing.T) {
			rg := newRig(t)
			_, err := rg.router.Switch(proxy.SwitchRequest{To: config.Green, Trigger: proxy.TriggerAdmin})
			require.NoError(t, err)
			_, err = rg.router.Switch(proxy.SwitchRequest{To: config.Blue, Trigger: proxy.TriggerAutoRollback})
			require.NoError(t, err)

			rep := rg.do(t, http.MethodPost, "/admin/rollback", "", header)

			require.Equal(t, http.StatusOK, rep.status, rep.raw)
			assert.Equal(t, true, rep.json["noop"])
			assert.Contains(t, rep.json["message"], "already rolled back automatically from green to blue")
			assert.Equal(t, config.Blue, rg.router.Snapshot().Active)
			assert.EqualValues(t, 3, rg.router.Snapshot().Generation)
		})
	}
}

var _ admin.Reloader = (*countingReloader)(nil)
