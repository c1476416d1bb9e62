package admin_test

import (
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proxy"
)

// An admin body past 64 KiB is refused with 413 before it is decoded,
// whether or not it says its length, and nothing changes.
func TestAdminBody_OverTheLimitIs413AndChangesNothing(t *testing.T) {
	pad := func(body string) string { return body[:len(body)-1] + strings.Repeat(" ", 64<<10) + "}" }
	testCases := []struct {
		desc, method, path, body string
	}{
		{desc: "switch", method: http.MethodPost, path: "/admin/switch", body: pad(`{"to": "blue"}`)},
		{desc: "rollback", method: http.MethodPost, path: "/admin/rollback", body: pad(`{"force": true}`)},
		{desc: "warmup", method: http.MethodPost, path: "/admin/warmup", body: pad(`{"color": "blue"}`)},
		{desc: "traffic", method: http.MethodPut, path: "/admin/traffic", body: pad(`{"blue": 50}`)},
		{desc: "switch, a megabyte", method: http.MethodPost, path: "/admin/switch", body: `{"to": "blue", "x": "` + strings.Repeat("a", 1<<20) + `"}`},
	}
	for _, test := range testCases {
		for _, chunked := range []bool{false, true} {
			name := test.desc
			if chunked {
				name += ", chunked"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				warmer := &fakeWarmer{}
				rg := newRig(t, withWarmer(warmer))
				_, err := rg.router.Switch(proxy.SwitchRequest{To: config.Green, Trigger: proxy.TriggerAdmin})
				require.NoError(t, err)
				before := rg.router.Snapshot()
				var body io.Reader = strings.NewReader(test.body)
				if chunked {
					body = io.MultiReader(body) // no length known: sent chunked
				}
				req, err := http.NewRequest(test.method, rg.url+test.path, body)
				require.NoError(t, err)

				resp, err := rg.client.Do(req)

				require.NoError(t, err)
				defer resp.Body.Close()
				var out map[string]string
				require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
				assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
				assert.Equal(t, "body_too_large", out["error"])
				assert.Contains(t, out["message"], "64 KiB")
				after := rg.router.Snapshot()
				assert.Equal(t, before.Generation, after.Generation, "an oversized body changed the routing state")
				assert.Equal(t, config.Green, after.Active)
				assert.Len(t, rg.router.History(), 1)
				assert.Empty(t, warmer.called())
			})
		}
	}
}

// stormResult is one answer in the storm.
type stormResult struct {
	status int
	body   switchAnswer
}

type switchAnswer struct {
	From       config.Color `json:"from"`
	To         config.Color `json:"to"`
	NoOp       bool         `json:"noop"`
	Generation uint64       `json:"generation"`
	Error      string       `json:"error"`
}

// 200 concurrent switches and rollbacks, some with If-Match, leave the
// state consistent: every applied switch has its own generation, the
// generations run without a gap, each applied switch starts from the
// color the one before it ended on, and the color in force is the one the
// last applied switch chose. Run with -race.
func TestAdminStorm_ConcurrentSwitchesAndRollbacksStayConsistent(t *testing.T) {
	rg := newRig(t)
	const n = 200
	calls := make([]struct{ path, body, ifMatch string }, n)
	for i := range calls {
		switch i % 5 {
		case 0:
			calls[i].path, calls[i].body = "/admin/switch", `{"to": "green"}`
		case 1:
			calls[i].path, calls[i].body = "/admin/switch", `{"to": "blue"}`
		case 2:
			calls[i].path, calls[i].body = "/admin/switch", `{"to": "toggle"}`
		case 3:
			calls[i].path = "/admin/rollback"
		case 4:
			// Only one of these can win generation 1, and only if it
			// comes first.
			calls[i].path, calls[i].body, calls[i].ifMatch = "/admin/switch", `{"to": "toggle"}`, `"1"`
		}
	}
	results := make([]stormResult, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, err := http.NewRequest(http.MethodPost, rg.url+c.path, strings.NewReader(c.body))
			if !assert.NoError(t, err) {
				return
			}
			if c.ifMatch != "" {
				req.Header.Set("If-Match", c.ifMatch)
			}
			<-start
			resp, err := rg.client.Do(req)
			if !assert.NoError(t, err) {
				return
			}
			defer resp.Body.Close()
			results[i].status = resp.StatusCode
			assert.NoError(t, json.NewDecoder(resp.Body).Decode(&results[i].body))
		}()
	}
	close(start)
	wg.Wait()

	var applied []switchAnswer
	ifMatchWins := 0
	for i, r := range results {
		switch r.status {
		case http.StatusOK:
			if !r.body.NoOp {
				applied = append(applied, r.body)
				if calls[i].ifMatch != "" {
					ifMatchWins++
					assert.EqualValues(t, 2, r.body.Generation, "an If-Match \"1\" switch applied on another generation")
				}
			}
		case http.StatusPreconditionFailed:
			assert.NotEmpty(t, calls[i].ifMatch, "412 without If-Match")
			assert.Equal(t, "stale_generation", r.body.Error)
		case http.StatusConflict:
			assert.Equal(t, "/admin/rollback", calls[i].path, "409 for a switch between two ready pools")
			assert.Equal(t, "nothing_to_roll_back", r.body.Error)
		default:
			assert.Failf(t, "unexpected answer", "call %d (%s %s): %d %+v", i, calls[i].path, calls[i].body, r.status, r.body)
		}
	}
	assert.LessOrEqual(t, ifMatchWins, 1, "more than one switch won generation 1")
	require.NotEmpty(t, applied)

	sort.Slice(applied, func(i, j int) bool { return applied[i].Generation < applied[j].Generation })
	active := config.Blue
	for i, a := range applied {
		require.EqualValues(t, i+2, a.Generation, "generations of applied switches: one winner each, no gap")
		assert.Equal(t, active, a.From, "switch at generation %d did not start from the color before it", a.Generation)
		assert.NotEqual(t, a.From, a.To)
		active = a.To
	}
	snap := rg.router.Snapshot()
	assert.Equal(t, active, snap.Active, "the color in force is not the last applied switch's")
	assert.EqualValues(t, len(applied)+1, snap.Generation)
	h := rg.router.History()
	require.NotEmpty(t, h)
	last := h[len(h)-1]
	assert.Equal(t, applied[len(applied)-1].Generation, last.Generation)
	assert.Equal(t, active, last.To)
}
