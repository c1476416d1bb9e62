package admin_test

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/admin"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proxy"
	"github.com/switchyard/switchyard/state"
)

// withState persists every switch to store, as the gateway does, and
// reports it through the admin API.
func withState(store *state.Store) rigOption {
	return func(r *proxy.Router, opts *admin.Options) {
		r.OnSwitch(func(rec proxy.SwitchRecord) {
			_ = store.Save(state.Record{Active: rec.To, Version: rec.Version, Trigger: rec.Trigger, At: rec.At, Generation: rec.Generation})
		})
		opts.State = store
	}
}

// Regression test (fixed): with a state_dir the gateway cannot write, a
// switch answered 200 as if it would survive a restart, and only the log
// said otherwise. The answer and GET /admin/status say the switch is in
// force but not persisted, until a switch is written again.
func TestSwitch_NotPersistedIsReportedInTheAnswerAndTheStatus(t *testing.T) {
	testCases := []struct {
		desc, path, body string
	}{
		{desc: "switch", path: "/admin/switch", body: `{"to": "green"}`},
		{desc: "toggle", path: "/admin/switch", body: `{"to": "toggle"}`},
		{desc: "rollback", path: "/admin/rollback"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(t.TempDir(), "state")
			store, err := state.Open(dir)
			require.NoError(t, err)
			rg := newRig(t, withState(store))
			if test.path == "/admin/rollback" {
				rep := rg.do(t, http.MethodPost, "/admin/switch", `{"to": "green"}`, nil)
				require.Equal(t, http.StatusOK, rep.status, rep.raw)
				require.Equal(t, true, rep.json["persisted"], rep.raw)
			}
			// The volume goes away: even root cannot write there now.
			require.NoError(t, os.RemoveAll(dir))

			rep := rg.do(t, http.MethodPost, test.path, test.body, nil)

			require.Equal(t, http.StatusOK, rep.status, rep.raw)
			assert.Equal(t, false, rep.json["persisted"], rep.raw)
			assert.Contains(t, rep.json["warning"], "NOT persisted")
			assert.Contains(t, rep.json["warning"], dir)
			assert.NotEqual(t, rep.json["from"], rep.json["to"], "the switch itself was applied")

			st := rg.do(t, http.MethodGet, "/admin/status", "", nil)
			require.Equal(t, http.StatusOK, st.status, st.raw)
			stateDoc, ok := st.json["state"].(map[string]any)
			require.True(t, ok, st.raw)
			assert.Equal(t, false, stateDoc["persisted"])
			assert.Equal(t, float64(1), stateDoc["write_failures"])
			assert.Contains(t, stateDoc["last_error"], dir)
			warns, _ := st.json["warnings"].([]any)
			require.Len(t, warns, 1, st.raw)
			assert.Contains(t, warns[0], "NOT persisted")

			// Writable again: the next switch is persisted and the warning
			// goes.
			require.NoError(t, os.MkdirAll(dir, 0o755))
			rep = rg.do(t, http.MethodPost, "/admin/switch", `{"to": "toggle"}`, nil)
			require.Equal(t, http.StatusOK, rep.status, rep.raw)
			assert.Equal(t, true, rep.json["persisted"], rep.raw)
			assert.NotContains(t, rep.json, "warning")
			st = rg.do(t, http.MethodGet, "/admin/status", "", nil)
			assert.NotContains(t, st.json, "warnings")
			assert.Equal(t, true, st.json["state"].(map[string]any)["persisted"])
		})
	}
}

func TestSwitch_PersistedIsAbsentWithoutAStateDirOrForANoOp(t *testing.T) {
	testCases := []struct {
		desc     string
		withDir  bool
		body     string
		wantNoOp bool
	}{
		{desc: "no state_dir", body: `{"to": "green"}`},
		{desc: "no-op with a state_dir", withDir: true, body: `{"to": "blue"}`, wantNoOp: true},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			var opts []rigOption
			if test.withDir {
				store, err := state.Open(t.TempDir())
				require.NoError(t, err)
				opts = append(opts, withState(store))
			}
			rg := newRig(t, opts...)

			rep := rg.do(t, http.MethodPost, "/admin/switch", test.body, nil)

			require.Equal(t, http.StatusOK, rep.status, rep.raw)
			assert.Equal(t, test.wantNoOp, rep.json["noop"])
			assert.NotContains(t, rep.json, "persisted")
			assert.NotContains(t, rep.json, "warning")
			assert.Equal(t, test.wantNoOp, rg.router.Snapshot().Active == config.Blue)
		})
	}
}
