package admin_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/admin"
	"github.com/switchyard/switchyard/analysis"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proxy"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// The backends never receive traffic in these tests; the registry marks
// them ready, as a health checker would.
const (
	blueAddr  = "10.0.0.1:5000"
	greenAddr = "10.0.0.2:5000"
)

// rig is an admin API over a real router, served on a loopback port.
type rig struct {
	url    string
	client *http.Client
	router *proxy.Router
	admin  *admin.Server
}

// withAnalyzer wires a release analysis controller into the admin API.
type rigOption func(r *proxy.Router, opts *admin.Options)

func withAnalyzer(r *proxy.Router, opts *admin.Options) {
	opts.Analyzer = analysis.New(r, zap.NewNop())
}

// newRig starts the admin API for a blue/green router with blue active
// until the test ends.
func newRig(t *testing.T, options ...rigOption) *rig {
	t.Helper()
	return newRigLog(t, zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)), options...)
}

// newRigLog is newRig logging to log.
func newRigLog(t *testing.T, log *zap.Logger, options ...rigOption) *rig {
	t.Helper()
	cfg, err := config.Parse([]byte("pools:\n  blue: {version: v1, backends: [" + blueAddr + "]}\n" +
		"  green: {version: v2, backends: [" + greenAddr + "]}\n"))
	require.NoError(t, err)
	promReg := prometheus.NewRegistry()
	reg := proxy.NewRegistry(proxy.RegistryOptions{StartReady: true})
	router := proxy.NewRouter(cfg, proxy.Options{Registry: reg, Metrics: proxy.NewMetrics(promReg), Log: log})
	t.Cleanup(router.Close)
	opts := admin.Options{Gatherer: promReg}
	for _, o := range options {
		o(router, &opts)
	}
	srv := admin.New(router, log, opts)
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return &rig{url: ts.URL, client: ts.Client(), router: router, admin: srv}
}

// reply is an admin answer with its JSON body decoded, when it is JSON.
type reply struct {
	status int
	header http.Header
	raw    string
	json   map[string]any
}

// message returns the "message" of an error answer.
func (r reply) message() string {
	s, _ := r.json["message"].(string)
	return s
}

func (rg *rig) do(t *testing.T, method, path, body string, header http.Header) reply {
	t.Helper()
	req, err := http.NewRequest(method, rg.url+path, strings.NewReader(body))
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := rg.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	rep := reply{status: resp.StatusCode, header: resp.Header, raw: string(data)}
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		require.NoError(t, json.Unmarshal(data, &rep.json), "body %q", data)
	}
	return rep
}

func TestSwitch_MalformedBodyIs400NamingTheProblem(t *testing.T) {
	testCases := []struct {
		desc       string
		body       string
		wantStatus int
		wantCode   string
		wantMsg    string
	}{
		{desc: "not JSON", body: `to=green`, wantStatus: http.StatusBadRequest, wantCode: "bad_request", wantMsg: "invalid character"},
		{desc: "empty", body: ``, wantStatus: http.StatusBadRequest, wantCode: "bad_request", wantMsg: "body: empty"},
		{desc: "unknown field", body: `{"to": "green", "colour": "green"}`, wantStatus: http.StatusBadRequest, wantCode: "bad_request", wantMsg: `unknown field "colour"`},
		{desc: "to missing", body: `{"force": true}`, wantStatus: http.StatusBadRequest, wantCode: "bad_request", wantMsg: `"to" is missing`},
		{desc: "to is not a color", body: `{"to": "purple"}`, wantStatus: http.StatusBadRequest, wantCode: "bad_request", wantMsg: `"to" is "purple"`},
		{desc: "to is not a string", body: `{"to": 1}`, wantStatus: http.StatusBadRequest, wantCode: "bad_request", wantMsg: "cannot unmarshal number"},
		{desc: "trailing data", body: `{"to": "green"} {"to": "blue"}`, wantStatus: http.StatusBadRequest, wantCode: "bad_request", wantMsg: "trailing data"},
		{desc: "trailing garbage", body: `{"to": "green"} x`, wantStatus: http.StatusBadRequest, wantCode: "bad_request", wantMsg: "trailing data"},
		{
			desc:       "body over 64 KiB",
			body:       `{"to": "green"}` + strings.Repeat(" ", 64<<10),
			wantStatus: http.StatusRequestEntityTooLarge, wantCode: "body_too_large", wantMsg: "64 KiB",
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			rg := newRig(t)

			rep := rg.do(t, http.MethodPost, "/admin/switch", test.body, nil)

			assert.Equal(t, test.wantStatus, rep.status, rep.raw)
			assert.Equal(t, test.wantCode, rep.json["error"])
			assert.Contains(t, rep.message(), test.wantMsg)
			assert.Equal(t, config.Blue, rg.router.Snapshot().Active, "a rejected body switched")
			assert.Empty(t, rg.router.History())
		})
	}
}

// Regression test (fixed): decodeBody checks for trailing data with json.Decoder.More, which
// is false before a closing '}' or ']'. A body with a stray closing
// bracket after the object is taken as valid, and the switch is applied.
func TestSwitch_TrailingClosingBracketIs400(t *testing.T) {
	for _, body := range []string{`{"to": "green"}}`, `{"to": "green"}]`} {
		t.Run(body, func(t *testing.T) {
			rg := newRig(t)

			rep := rg.do(t, http.MethodPost, "/admin/switch", body, nil)

			assert.Equal(t, http.StatusBadRequest, rep.status, rep.raw)
			assert.Contains(t, rep.message(), "trailing data")
			assert.Equal(t, config.Blue, rg.router.Snapshot().Active, "a malformed body switched")
		})
	}
}

func TestRollback_MalformedBodyIs400(t *testing.T) {
	testCases := []struct {
		desc    string
		body    string
		wantMsg string
	}{
		{desc: "not JSON", body: `force`, wantMsg: "invalid character"},
		{desc: "unknown field", body: `{"to": "blue"}`, wantMsg: `unknown field "to"`},
		{desc: "force is not a bool", body: `{"force": "yes"}`, wantMsg: "cannot unmarshal string"},
		{desc: "trailing data", body: `{} {}`, wantMsg: "trailing data"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			rg := newRig(t)
			_, err := rg.router.Switch(proxy.SwitchRequest{To: config.Green, Trigger: proxy.TriggerAdmin})
			require.NoError(t, err)

			rep := rg.do(t, http.MethodPost, "/admin/rollback", test.body, nil)

			assert.Equal(t, http.StatusBadRequest, rep.status, rep.raw)
			assert.Contains(t, rep.message(), test.wantMsg)
			assert.Equal(t, config.Green, rg.router.Snapshot().Active, "a rejected body rolled back")
		})
	}
}

func TestAuth_TokenGuardsEveryAdminEndpointButNotProbes(t *testing.T) {
	rg := newRig(t)
	rg.admin.SetToken("s3cret")
	endpoints := []struct{ method, path, body string }{
		{http.MethodGet, "/admin/status", ""},
		{http.MethodPost, "/admin/switch", `{"to": "green"}`},
		{http.MethodPost, "/admin/rollback", ""},
		{http.MethodPost, "/admin/warmup", `{"color": "green"}`},
		{http.MethodPost, "/admin/reload", ""},
		{http.MethodGet, "/admin/traffic", ""},
		{http.MethodPut, "/admin/traffic", `{"green": 50}`},
		{http.MethodPost, "/admin/promote", ""},
		{http.MethodGet, "/admin/no-such-endpoint", ""},
	}
	badAuth := []struct {
		desc   string
		header http.Header
	}{
		{desc: "no Authorization", header: nil},
		{desc: "wrong token", header: http.Header{"Authorization": {"Bearer s3cre"}}},
		{desc: "token with a suffix", header: http.Header{"Authorization": {"Bearer s3cret2"}}},
		{desc: "token without the scheme", header: http.Header{"Authorization": {"s3cret"}}},
		{desc: "basic scheme", header: http.Header{"Authorization": {"Basic s3cret"}}},
		{desc: "empty bearer", header: http.Header{"Authorization": {"Bearer "}}},
	}
	for _, ep := range endpoints {
		for _, auth := range badAuth {
			t.Run(ep.method+" "+ep.path+"/"+auth.desc, func(t *testing.T) {
				rep := rg.do(t, ep.method, ep.path, ep.body, auth.header)

				assert.Equal(t, http.StatusUnauthorized, rep.status, rep.raw)
				assert.Equal(t, `Bearer realm="switchyard"`, rep.header.Get("WWW-Authenticate"))
				assert.Equal(t, "unauthorized", rep.json["error"])
			})
		}
	}
	assert.Equal(t, config.Blue, rg.router.Snapshot().Active, "an unauthorized call switched")
	assert.Equal(t, float64(0), rg.router.Snapshot().Traffic().Weights[config.Green], "an unauthorized call set traffic")

	t.Run("right token", func(t *testing.T) {
		ok := http.Header{"Authorization": {"Bearer s3cret"}}
		rep := rg.do(t, http.MethodGet, "/admin/status", "", ok)
		assert.Equal(t, http.StatusOK, rep.status, rep.raw)
		rep = rg.do(t, http.MethodGet, "/admin/traffic", "", ok)
		assert.Equal(t, http.StatusOK, rep.status, rep.raw)
		rep = rg.do(t, http.MethodPost, "/admin/switch", `{"to": "green"}`, ok)
		assert.Equal(t, http.StatusOK, rep.status, rep.raw)
		assert.Equal(t, config.Green, rg.router.Snapshot().Active)
	})
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		t.Run(path+" needs no token", func(t *testing.T) {
			rep := rg.do(t, http.MethodGet, path, "", nil)
			assert.Equal(t, http.StatusOK, rep.status, rep.raw)
		})
	}
	t.Run("empty token disables the check", func(t *testing.T) {
		rg.admin.SetToken("")
		rep := rg.do(t, http.MethodGet, "/admin/status", "", nil)
		assert.Equal(t, http.StatusOK, rep.status, rep.raw)
	})
}

func TestSwitch_ToActiveColorIs200NoOp(t *testing.T) {
	rg := newRig(t)

	rep := rg.do(t, http.MethodPost, "/admin/switch", `{"to": "blue"}`, nil)

	require.Equal(t, http.StatusOK, rep.status, rep.raw)
	assert.Equal(t, true, rep.json["noop"])
	assert.Equal(t, "blue", rep.json["to"])
	assert.NotEmpty(t, rep.json["message"])
	assert.Equal(t, `"1"`, rep.header.Get("ETag"))
	assert.Empty(t, rg.router.History())
}

func TestSwitch_AnswersWithTheSwitchAndItsETag(t *testing.T) {
	testCases := []struct {
		desc string
		body string
	}{
		{desc: "by name", body: `{"to": "green"}`},
		{desc: "toggle", body: `{"to": "toggle"}`},
		{desc: "forced", body: `{"to": "green", "force": true}`},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			rg := newRig(t)

			rep := rg.do(t, http.MethodPost, "/admin/switch", test.body, nil)

			require.Equal(t, http.StatusOK, rep.status, rep.raw)
			assert.Equal(t, "blue", rep.json["from"])
			assert.Equal(t, "green", rep.json["to"])
			assert.Equal(t, "v2", rep.json["version"])
			assert.Equal(t, false, rep.json["noop"])
			assert.Contains(t, rep.json, "swap_ns")
			assert.Equal(t, float64(2), rep.json["generation"])
			drain, ok := rep.json["drain"].(map[string]any)
			require.True(t, ok, "no drain object in %s", rep.raw)
			assert.NotEmpty(t, drain)
			assert.Equal(t, `"2"`, rep.header.Get("ETag"))
			assert.Equal(t, config.Green, rg.router.Snapshot().Active)
		})
	}
}

func TestSwitch_IfMatch(t *testing.T) {
	testCases := []struct {
		desc       string
		ifMatch    string
		wantStatus int
		wantActive config.Color
	}{
		{desc: "current generation", ifMatch: `"2"`, wantStatus: http.StatusOK, wantActive: config.Blue},
		{desc: "weak current generation", ifMatch: `W/"2"`, wantStatus: http.StatusOK, wantActive: config.Blue},
		{desc: "any", ifMatch: `*`, wantStatus: http.StatusOK, wantActive: config.Blue},
		{desc: "stale generation", ifMatch: `"1"`, wantStatus: http.StatusPreconditionFailed, wantActive: config.Green},
		{desc: "future generation", ifMatch: `"9"`, wantStatus: http.StatusPreconditionFailed, wantActive: config.Green},
		{desc: "not a number", ifMatch: `"abc"`, wantStatus: http.StatusBadRequest, wantActive: config.Green},
		{desc: "zero", ifMatch: `"0"`, wantStatus: http.StatusBadRequest, wantActive: config.Green},
		{desc: "negative", ifMatch: `"-2"`, wantStatus: http.StatusBadRequest, wantActive: config.Green},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			rg := newRig(t)
			// Generation 2: green is active.
			rep := rg.do(t, http.MethodPost, "/admin/switch", `{"to": "green"}`, nil)
			require.Equal(t, http.StatusOK, rep.status, rep.raw)

			rep = rg.do(t, http.MethodPost, "/admin/switch", `{"to": "blue"}`, http.Header{"If-Match": {test.ifMatch}})

			assert.Equal(t, test.wantStatus, rep.status, rep.raw)
			assert.Equal(t, test.wantActive, rg.router.Snapshot().Active)
			switch test.wantStatus {
			case http.StatusPreconditionFailed:
				assert.Equal(t, "stale_generation", rep.json["error"])
				assert.Equal(t, `"2"`, rep.header.Get("ETag"), "a 412 carries the current ETag")
			case http.StatusBadRequest:
				assert.Contains(t, rep.message(), "If-Match")
			}
		})
	}
}

func TestRollback(t *testing.T) {
	t.Run("nothing to roll back is 409", func(t *testing.T) {
		rg := newRig(t)

		rep := rg.do(t, http.MethodPost, "/admin/rollback", "", nil)

		assert.Equal(t, http.StatusConflict, rep.status, rep.raw)
		assert.Equal(t, "nothing_to_roll_back", rep.json["error"])
		assert.Equal(t, config.Blue, rg.router.Snapshot().Active)
	})
	t.Run("after a switch goes back", func(t *testing.T) {
		rg := newRig(t)
		rep := rg.do(t, http.MethodPost, "/admin/switch", `{"to": "green"}`, nil)
		require.Equal(t, http.StatusOK, rep.status, rep.raw)

		rep = rg.do(t, http.MethodPost, "/admin/rollback", "", nil)

		require.Equal(t, http.StatusOK, rep.status, rep.raw)
		assert.Equal(t, "green", rep.json["from"])
		assert.Equal(t, "blue", rep.json["to"])
		assert.Equal(t, `"3"`, rep.header.Get("ETag"))
		assert.Equal(t, config.Blue, rg.router.Snapshot().Active)
		h := rg.router.History()
		require.Len(t, h, 2)
		assert.Equal(t, proxy.TriggerRollback, h[1].Trigger)
	})
	t.Run("to a pool that is not ready is 409", func(t *testing.T) {
		rg := newRig(t)
		rep := rg.do(t, http.MethodPost, "/admin/switch", `{"to": "green"}`, nil)
		require.Equal(t, http.StatusOK, rep.status, rep.raw)
		b, ok := rg.router.Registry().Lookup(blueAddr)
		require.True(t, ok)
		b.SetReady(false)

		rep = rg.do(t, http.MethodPost, "/admin/rollback", "", nil)

		assert.Equal(t, http.StatusConflict, rep.status, rep.raw)
		assert.Equal(t, "refused", rep.json["error"])
		assert.Equal(t, config.Green, rg.router.Snapshot().Active)
	})
}

func TestReadyz(t *testing.T) {
	testCases := []struct {
		desc       string
		setup      func(t *testing.T, rg *rig)
		wantStatus int
		wantCode   string
	}{
		{desc: "active pool ready", setup: func(*testing.T, *rig) {}, wantStatus: http.StatusOK},
		{
			desc: "no active backend ready",
			setup: func(t *testing.T, rg *rig) {
				b, ok := rg.router.Registry().Lookup(blueAddr)
				require.True(t, ok)
				b.SetReady(false)
			},
			wantStatus: http.StatusServiceUnavailable, wantCode: "not_ready",
		},
		{
			desc: "only the standby not ready",
			setup: func(t *testing.T, rg *rig) {
				b, ok := rg.router.Registry().Lookup(greenAddr)
				require.True(t, ok)
				b.SetReady(false)
			},
			wantStatus: http.StatusOK,
		},
		{
			desc:       "shutting down",
			setup:      func(_ *testing.T, rg *rig) { rg.admin.SetShuttingDown() },
			wantStatus: http.StatusServiceUnavailable, wantCode: "shutting_down",
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			rg := newRig(t)
			test.setup(t, rg)

			rep := rg.do(t, http.MethodGet, "/readyz", "", nil)

			assert.Equal(t, test.wantStatus, rep.status, rep.raw)
			if test.wantCode != "" {
				assert.Equal(t, test.wantCode, rep.json["error"])
			}
		})
	}
}

func TestUnknownAdminPathIs404JSON(t *testing.T) {
	rg := newRig(t)

	rep := rg.do(t, http.MethodGet, "/admin/swtich", "", nil)

	assert.Equal(t, http.StatusNotFound, rep.status, rep.raw)
	assert.Equal(t, "application/json", rep.header.Get("Content-Type"))
	assert.Equal(t, "not_found", rep.json["error"])
	assert.Contains(t, rep.message(), "/admin/swtich")
}

func TestTraffic_Put(t *testing.T) {
	mirrorOn := func(t *testing.T, rg *rig) {
		t.Helper()
		rep := rg.do(t, http.MethodPut, "/admin/traffic", `{"mirror": {"to": "green", "percent": 1}}`, nil)
		require.Equal(t, http.StatusOK, rep.status, rep.raw)
	}
	testCases := []struct {
		desc       string
		setup      func(t *testing.T, rg *rig)
		body       string
		wantStatus int
		wantMsg    string
		// want is the traffic in force afterwards.
		want proxy.Traffic
	}{
		{
			desc: "canary to the standby", body: `{"green": 5}`, wantStatus: http.StatusOK,
			want: proxy.Traffic{Weights: map[config.Color]float64{config.Blue: 95, config.Green: 5}},
		},
		{
			desc: "fractional canary", body: `{"green": 0.5}`, wantStatus: http.StatusOK,
			want: proxy.Traffic{Weights: map[config.Color]float64{config.Blue: 99.5, config.Green: 0.5}},
		},
		{
			desc: "canary to the active color", body: `{"blue": 5}`, wantStatus: http.StatusConflict, wantMsg: "blue is active",
			want: proxy.Traffic{Weights: map[config.Color]float64{config.Blue: 100, config.Green: 0}},
		},
		{
			desc: "canary above 100", body: `{"green": 101}`, wantStatus: http.StatusBadRequest, wantMsg: "not within 0-100",
			want: proxy.Traffic{Weights: map[config.Color]float64{config.Blue: 100, config.Green: 0}},
		},
		{
			desc: "negative canary", body: `{"green": -1}`, wantStatus: http.StatusBadRequest, wantMsg: "not within 0-100",
			want: proxy.Traffic{Weights: map[config.Color]float64{config.Blue: 100, config.Green: 0}},
		},
		{
			desc: "canary not a number", body: `{"green": "x"}`, wantStatus: http.StatusBadRequest, wantMsg: `"green" must be a percent number`,
			want: proxy.Traffic{Weights: map[config.Color]float64{config.Blue: 100, config.Green: 0}},
		},
		{
			desc: "both colors", body: `{"green": 5, "blue": 95}`, wantStatus: http.StatusBadRequest, wantMsg: "one color's share",
			want: proxy.Traffic{Weights: map[config.Color]float64{config.Blue: 100, config.Green: 0}},
		},
		{
			desc: "mirror to the standby", body: `{"mirror": {"to": "green", "percent": 1}}`, wantStatus: http.StatusOK,
			want: proxy.Traffic{Weights: map[config.Color]float64{config.Blue: 100, config.Green: 0},
				Mirror: &proxy.MirrorSetting{To: config.Green, Percent: 1}},
		},
		{
			desc: "mirror null turns it off", setup: mirrorOn, body: `{"mirror": null}`, wantStatus: http.StatusOK,
			want: proxy.Traffic{Weights: map[config.Color]float64{config.Blue: 100, config.Green: 0}},
		},
		{
			desc: "mirror to the active color", body: `{"mirror": {"to": "blue", "percent": 1}}`, wantStatus: http.StatusConflict, wantMsg: "only the standby",
			want: proxy.Traffic{Weights: map[config.Color]float64{config.Blue: 100, config.Green: 0}},
		},
		{
			desc: "mirror above 100", body: `{"mirror": {"to": "green", "percent": 150}}`, wantStatus: http.StatusBadRequest, wantMsg: "not within 0-100",
			want: proxy.Traffic{Weights: map[config.Color]float64{config.Blue: 100, config.Green: 0}},
		},
		{
			desc: "mirror with an unknown field", body: `{"mirror": {"to": "green", "percent": 1, "queue": 5}}`, wantStatus: http.StatusBadRequest, wantMsg: `unknown field "queue"`,
			want: proxy.Traffic{Weights: map[config.Color]float64{config.Blue: 100, config.Green: 0}},
		},
		{
			desc: "sticky header", body: `{"sticky_header": "X-User-ID"}`, wantStatus: http.StatusOK,
			want: proxy.Traffic{Weights: map[config.Color]float64{config.Blue: 100, config.Green: 0}, StickyHeader: "X-User-ID"},
		},
		{
			desc: "sticky header not a header name", body: `{"sticky_header": "X-User: ID"}`, wantStatus: http.StatusBadRequest, wantMsg: "sticky_header",
			want: proxy.Traffic{Weights: map[config.Color]float64{config.Blue: 100, config.Green: 0}},
		},
		{
			desc: "sticky header with a control character", body: `{"sticky_header": "X-User\u0001"}`, wantStatus: http.StatusBadRequest, wantMsg: "sticky_header",
			want: proxy.Traffic{Weights: map[config.Color]float64{config.Blue: 100, config.Green: 0}},
		},
		{
			desc: "empty sticky header turns it off", body: `{"sticky_header": ""}`, wantStatus: http.StatusOK,
			want: proxy.Traffic{Weights: map[config.Color]float64{config.Blue: 100, config.Green: 0}},
		},
		{
			desc: "unknown field", body: `{"grene": 5}`, wantStatus: http.StatusBadRequest, wantMsg: `unknown field "grene"`,
			want: proxy.Traffic{Weights: map[config.Color]float64{config.Blue: 100, config.Green: 0}},
		},
		{
			desc: "unknown field next to a good one", body: `{"green": 5, "grene": 5}`, wantStatus: http.StatusBadRequest, wantMsg: `unknown field "grene"`,
			want: proxy.Traffic{Weights: map[config.Color]float64{config.Blue: 100, config.Green: 0}},
		},
		{
			desc: "not an object", body: `[5]`, wantStatus: http.StatusBadRequest, wantMsg: "cannot unmarshal array",
			want: proxy.Traffic{Weights: map[config.Color]float64{config.Blue: 100, config.Green: 0}},
		},
		{
			desc: "empty", body: ``, wantStatus: http.StatusBadRequest, wantMsg: "body: empty",
			want: proxy.Traffic{Weights: map[config.Color]float64{config.Blue: 100, config.Green: 0}},
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			rg := newRig(t)
			if test.setup != nil {
				test.setup(t, rg)
			}
			before := rg.router.Snapshot().Generation

			rep := rg.do(t, http.MethodPut, "/admin/traffic", test.body, nil)

			require.Equal(t, test.wantStatus, rep.status, rep.raw)
			got := rg.router.Snapshot().Traffic()
			assert.Equal(t, test.want.Weights, got.Weights)
			assert.Equal(t, test.want.StickyHeader, got.StickyHeader)
			assert.Equal(t, test.want.Mirror, got.Mirror)
			if test.wantStatus != http.StatusOK {
				assert.Contains(t, rep.message(), test.wantMsg)
				assert.Equal(t, before, rg.router.Snapshot().Generation, "a refused change published a snapshot")
				return
			}
			var answered proxy.Traffic
			require.NoError(t, json.Unmarshal([]byte(rep.raw), &answered))
			assert.Equal(t, got, answered, "the answer is not the traffic in force")
			assert.Equal(t, `"`+jsonNumber(got.Generation)+`"`, rep.header.Get("ETag"))
			if test.want.Mirror == nil {
				assert.Nil(t, rep.json["mirror"])
			}
		})
	}
}

// Regression test (fixed): PUT /admin/traffic {"mirror": {"to": "green", "percent": -1}} is
// answered 200 and silently turns the mirror off, where {"green": -1} and a
// mirror percent above 100 are answered 400, and config validation rejects
// a negative traffic.mirror.percent. proxy.SetTraffic checks the mirror
// range only inside `if m.Percent > 0`.
func TestTraffic_NegativeMirrorPercentIsRefused(t *testing.T) {
	rg := newRig(t)
	rep := rg.do(t, http.MethodPut, "/admin/traffic", `{"mirror": {"to": "green", "percent": 2}}`, nil)
	require.Equal(t, http.StatusOK, rep.status, rep.raw)

	rep = rg.do(t, http.MethodPut, "/admin/traffic", `{"mirror": {"to": "green", "percent": -1}}`, nil)

	assert.Equal(t, http.StatusBadRequest, rep.status, rep.raw)
	assert.Equal(t, &proxy.MirrorSetting{To: config.Green, Percent: 2}, rg.router.Snapshot().Traffic().Mirror,
		"a refused mirror change changed the mirror")
}

func jsonNumber(n uint64) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func TestTraffic_GetAndStatusShowTheSplit(t *testing.T) {
	rg := newRig(t)
	rep := rg.do(t, http.MethodPut, "/admin/traffic", `{"green": 5, "sticky_header": "X-User-ID"}`, nil)
	require.Equal(t, http.StatusOK, rep.status, rep.raw)

	rep = rg.do(t, http.MethodGet, "/admin/traffic", "", nil)
	require.Equal(t, http.StatusOK, rep.status, rep.raw)
	assert.Equal(t, map[string]any{"blue": float64(95), "green": float64(5)}, rep.json["weights"])

	rep = rg.do(t, http.MethodGet, "/admin/status", "", nil)
	require.Equal(t, http.StatusOK, rep.status, rep.raw)
	var st admin.Status
	require.NoError(t, json.Unmarshal([]byte(rep.raw), &st))
	assert.Equal(t, map[config.Color]float64{config.Blue: 95, config.Green: 5}, st.Traffic.Weights)
	assert.Equal(t, "X-User-ID", st.Traffic.StickyHeader)
	assert.Equal(t, config.Blue, st.Active)
	assert.Equal(t, `"2"`, rep.header.Get("ETag"))
	assert.Contains(t, rep.json, "traffic")

	// A switch ends the canary.
	rep = rg.do(t, http.MethodPost, "/admin/switch", `{"to": "green"}`, nil)
	require.Equal(t, http.StatusOK, rep.status, rep.raw)
	rep = rg.do(t, http.MethodGet, "/admin/traffic", "", nil)
	assert.Equal(t, map[string]any{"blue": float64(0), "green": float64(100)}, rep.json["weights"])
}

func TestPromote(t *testing.T) {
	t.Run("without an analyzer is 409", func(t *testing.T) {
		rg := newRig(t)

		rep := rg.do(t, http.MethodPost, "/admin/promote", "", nil)

		assert.Equal(t, http.StatusConflict, rep.status, rep.raw)
		assert.Equal(t, "analysis_disabled", rep.json["error"])
		assert.Equal(t, config.Blue, rg.router.Snapshot().Active)
	})
	t.Run("without a canary is 409 with the verdict", func(t *testing.T) {
		rg := newRig(t, withAnalyzer)

		rep := rg.do(t, http.MethodPost, "/admin/promote", "", nil)

		assert.Equal(t, http.StatusConflict, rep.status, rep.raw)
		assert.Equal(t, "nothing_to_promote", rep.json["error"])
		assert.Contains(t, rep.message(), "no canary or shadow traffic")
		require.Contains(t, rep.json, "verdict")
		assert.Equal(t, config.Blue, rg.router.Snapshot().Active)
	})
	t.Run("a canary without enough requests is 409 with reasons", func(t *testing.T) {
		rg := newRig(t, withAnalyzer)
		rep := rg.do(t, http.MethodPut, "/admin/traffic", `{"green": 10}`, nil)
		require.Equal(t, http.StatusOK, rep.status, rep.raw)

		rep = rg.do(t, http.MethodPost, "/admin/promote", "", nil)

		assert.Equal(t, http.StatusConflict, rep.status, rep.raw)
		assert.Equal(t, "refused", rep.json["error"])
		verdict, ok := rep.json["verdict"].(map[string]any)
		require.True(t, ok, rep.raw)
		assert.Equal(t, "canary", verdict["phase"])
		assert.Contains(t, verdict["reasons"], "not enough requests yet: 0 of min_requests 50")
		assert.Equal(t, config.Blue, rg.router.Snapshot().Active)
	})
	t.Run("status shows the analysis", func(t *testing.T) {
		rg := newRig(t, withAnalyzer)

		rep := rg.do(t, http.MethodGet, "/admin/status", "", nil)

		require.Equal(t, http.StatusOK, rep.status, rep.raw)
		assert.Contains(t, rep.json, "analysis")
	})
}
