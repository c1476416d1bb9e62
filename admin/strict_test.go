package admin_test

import (
	"net/http"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/admin"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proxy"
)

// fakeWarmer records the pools it was asked to warm.
type fakeWarmer struct {
	mu    sync.Mutex
	calls []config.Color
}

func (f *fakeWarmer) Rewarm(c config.Color) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, c)
	return nil
}

func (f *fakeWarmer) called() []config.Color {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]config.Color(nil), f.calls...)
}

func withWarmer(w admin.Warmer) rigOption {
	return func(_ *proxy.Router, opts *admin.Options) { opts.Warmer = w }
}

// Regression test (fixed): encoding/json takes the last of duplicate keys
// and matches keys to fields case-insensitively, so {"to": "blue", "to":
// "green"} switched to green and {"TO": "green"} switched too. Every admin
// body is strict now: 400 naming the key, and nothing changes.
func TestAdminJSON_DuplicateAndCaseVariantKeysAre400AndChangeNothing(t *testing.T) {
	testCases := []struct {
		desc    string
		method  string
		path    string
		body    string
		wantMsg string
	}{
		{desc: "switch: duplicate key", method: http.MethodPost, path: "/admin/switch", body: `{"to": "blue", "to": "green"}`, wantMsg: `key "to" appears twice`},
		{desc: "switch: duplicate key, escaped", method: http.MethodPost, path: "/admin/switch", body: `{"to": "blue", "t\u006f": "green"}`, wantMsg: `key "to" appears twice`},
		{desc: "switch: duplicate force", method: http.MethodPost, path: "/admin/switch", body: `{"to": "green", "force": false, "force": true}`, wantMsg: `key "force" appears twice`},
		{desc: "switch: upper case key", method: http.MethodPost, path: "/admin/switch", body: `{"TO": "green"}`, wantMsg: `unknown field "TO": field names are case-sensitive; did you mean "to"?`},
		{desc: "switch: title case key", method: http.MethodPost, path: "/admin/switch", body: `{"To": "green"}`, wantMsg: `unknown field "To"`},
		{desc: "switch: title case force", method: http.MethodPost, path: "/admin/switch", body: `{"to": "green", "Force": true}`, wantMsg: `did you mean "force"?`},
		{desc: "switch: keys differing in case", method: http.MethodPost, path: "/admin/switch", body: `{"to": "blue", "To": "green"}`, wantMsg: `keys "to" and "To" differ only in case`},
		{desc: "switch: unknown field", method: http.MethodPost, path: "/admin/switch", body: `{"to": "green", "colour": "green"}`, wantMsg: `unknown field "colour"`},
		{desc: "rollback: title case key", method: http.MethodPost, path: "/admin/rollback", body: `{"Force": true}`, wantMsg: `did you mean "force"?`},
		{desc: "rollback: duplicate key", method: http.MethodPost, path: "/admin/rollback", body: `{"force": true, "force": false}`, wantMsg: `appears twice`},
		{desc: "warmup: duplicate key", method: http.MethodPost, path: "/admin/warmup", body: `{"color": "blue", "color": "green"}`, wantMsg: `key "color" appears twice`},
		{desc: "warmup: upper case key", method: http.MethodPost, path: "/admin/warmup", body: `{"COLOR": "green"}`, wantMsg: `did you mean "color"?`},
		{desc: "warmup: unknown field", method: http.MethodPost, path: "/admin/warmup", body: `{"color": "green", "pool": "green"}`, wantMsg: `unknown field "pool"`},
		{desc: "traffic: duplicate color", method: http.MethodPut, path: "/admin/traffic", body: `{"green": 1, "green": 50}`, wantMsg: `key "green" appears twice`},
		{desc: "traffic: colors differing in case", method: http.MethodPut, path: "/admin/traffic", body: `{"green": 1, "GREEN": 50}`, wantMsg: `differ only in case`},
		{desc: "traffic: upper case color", method: http.MethodPut, path: "/admin/traffic", body: `{"Green": 5}`, wantMsg: `unknown field "Green"`},
		{desc: "traffic: duplicate sticky header", method: http.MethodPut, path: "/admin/traffic", body: `{"sticky_header": "A", "sticky_header": "B"}`, wantMsg: `appears twice`},
		{desc: "traffic: duplicate key in mirror", method: http.MethodPut, path: "/admin/traffic", body: `{"mirror": {"to": "blue", "to": "green", "percent": 1}}`, wantMsg: `"mirror"."to": key "to" appears twice`},
		{desc: "traffic: upper case key in mirror", method: http.MethodPut, path: "/admin/traffic", body: `{"mirror": {"TO": "green", "percent": 1}}`, wantMsg: `did you mean "to"?`},
		{desc: "traffic: title case percent in mirror", method: http.MethodPut, path: "/admin/traffic", body: `{"mirror": {"to": "green", "Percent": 1}}`, wantMsg: `did you mean "percent"?`},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			warmer := &fakeWarmer{}
			rg := newRig(t, withWarmer(warmer))
			// Generation 2, green active: a rollback has something to undo.
			_, err := rg.router.Switch(proxy.SwitchRequest{To: config.Green, Trigger: proxy.TriggerAdmin})
			require.NoError(t, err)
			before := rg.router.Snapshot()

			rep := rg.do(t, test.method, test.path, test.body, nil)

			assert.Equal(t, http.StatusBadRequest, rep.status, rep.raw)
			assert.Equal(t, "bad_request", rep.json["error"])
			assert.Contains(t, rep.message(), test.wantMsg)
			after := rg.router.Snapshot()
			assert.Equal(t, before.Generation, after.Generation, "a refused body changed the routing state")
			assert.Equal(t, config.Green, after.Active)
			assert.Equal(t, before.Traffic(), after.Traffic())
			assert.Len(t, rg.router.History(), 1)
			assert.Empty(t, warmer.called(), "a refused body started a warmup")
		})
	}
}

// Exact keys, given once, still work everywhere.
func TestAdminJSON_ExactKeysAreAccepted(t *testing.T) {
	testCases := []struct {
		desc       string
		method     string
		path       string
		body       string
		wantStatus int
	}{
		{desc: "switch", method: http.MethodPost, path: "/admin/switch", body: `{"to": "green", "force": false}`, wantStatus: http.StatusOK},
		{desc: "rollback", method: http.MethodPost, path: "/admin/rollback", body: `{"force": false}`, wantStatus: http.StatusConflict},
		{desc: "warmup", method: http.MethodPost, path: "/admin/warmup", body: `{"color": "green"}`, wantStatus: http.StatusAccepted},
		{desc: "traffic with a mirror", method: http.MethodPut, path: "/admin/traffic", body: `{"green": 5, "sticky_header": "X-User-ID", "mirror": {"to": "green", "percent": 1}}`, wantStatus: http.StatusOK},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			rg := newRig(t, withWarmer(&fakeWarmer{}))

			rep := rg.do(t, test.method, test.path, test.body, nil)

			assert.Equal(t, test.wantStatus, rep.status, rep.raw)
		})
	}
}
