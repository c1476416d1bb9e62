package console

import (
	"encoding/json"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/admin"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proxy"
	"go.uber.org/zap"
)

const testConfig = `
listen: 127.0.0.1:18080
admin: {listen: 127.0.0.1:19901}
active: blue
analysis: {min_requests: 20, max_error_ratio: 0.1, max_p99: 250ms}
pools:
  blue:  {version: v1, backends: [127.0.0.1:5001, 127.0.0.1:5002]}
  green: {version: v2, backends: [127.0.0.1:5003]}
`

// newRouter returns a router over testConfig, closed when the test ends.
func newRouter(t *testing.T) *proxy.Router {
	t.Helper()
	cfg, err := config.Parse([]byte(testConfig))
	require.NoError(t, err)
	r := proxy.NewRouter(cfg, proxy.Options{Registry: proxy.NewRegistry(proxy.RegistryOptions{}),
		Metrics: proxy.NewMetrics(prometheus.NewRegistry()), Log: zap.NewNop()})
	t.Cleanup(r.Close)
	return r
}

func get(t *testing.T, h http.Handler, target string, header http.Header) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestAssets_ServePageWithStrictSecurityHeaders(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		desc, path, contentType string
	}{
		{desc: "page", path: "/ui/", contentType: "text/html"},
		{desc: "page by name", path: "/ui/index.html", contentType: "text/html"},
		{desc: "script", path: "/ui/console.js", contentType: "javascript"},
		{desc: "styles", path: "/ui/console.css", contentType: "text/css"},
		{desc: "icon", path: "/ui/favicon.svg", contentType: "image/svg+xml"},
	}
	h := Assets()
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			rec := get(t, h, test.path, nil)
			require.Equal(t, http.StatusOK, rec.Code)
			assert.Contains(t, rec.Header().Get("Content-Type"), test.contentType)
			assert.Contains(t, rec.Header().Get("Content-Security-Policy"), "script-src 'self'")
			assert.Contains(t, rec.Header().Get("Content-Security-Policy"), "connect-src 'self'")
			assert.Equal(t, "nosniff", rec.Header().Get("X-Content-Type-Options"))
			assert.Equal(t, "no-referrer", rec.Header().Get("Referrer-Policy"))
			assert.Equal(t, "no-cache", rec.Header().Get("Cache-Control"))
			assert.NotEmpty(t, rec.Header().Get("ETag"))
			assert.NotZero(t, rec.Body.Len())
		})
	}
}

func TestAssets_RevalidateWithETag(t *testing.T) {
	t.Parallel()
	h := Assets()
	first := get(t, h, "/ui/console.js", nil)
	require.Equal(t, http.StatusOK, first.Code)
	again := get(t, h, "/ui/console.js", http.Header{"If-None-Match": {first.Header().Get("ETag")}})
	assert.Equal(t, http.StatusNotModified, again.Code)
	assert.Zero(t, again.Body.Len())
}

func TestAssets_UnknownFileIsNotFound(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"/ui/nope.js", "/ui/static/index.html", "/ui/../console.go"} {
		assert.Equal(t, http.StatusNotFound, get(t, Assets(), p, nil).Code, p)
	}
}

// The console must work offline: every file the page loads is embedded,
// and nothing points at a CDN or a font service.
func TestAssets_ReferenceNothingOutsideTheBinary(t *testing.T) {
	t.Parallel()
	page, err := fs.ReadFile(static, "static/index.html")
	require.NoError(t, err)
	refs := regexp.MustCompile(`(?:src|href)="([^"#]+)"`).FindAllStringSubmatch(string(page), -1)
	require.NotEmpty(t, refs)
	for _, m := range refs {
		_, err := fs.Stat(static, "static/"+m[1])
		assert.NoError(t, err, "index.html loads %q, which is not embedded", m[1])
	}
	err = fs.WalkDir(static, "static", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(static, name)
		if err != nil {
			return err
		}
		// The SVG namespace is a name, not a fetch.
		text := strings.ReplaceAll(string(data), "http://www.w3.org/2000/svg", "")
		assert.NotRegexp(t, `https?://`, text, "%s refers to an outside URL", name)
		assert.NotContains(t, text, "innerHTML", "%s must build the DOM with textContent", name)
		return nil
	})
	require.NoError(t, err)
}

func TestMount_GuardsDataWithTheAdminTokenButNotThePage(t *testing.T) {
	t.Parallel()
	r := newRouter(t)
	adm := admin.New(r, zap.NewNop(), admin.Options{})
	Mount(adm, r)
	adm.SetToken("s3cret")
	bearer := http.Header{"Authorization": {"Bearer s3cret"}}
	testCases := []struct {
		desc   string
		path   string
		header http.Header
		want   int
	}{
		{desc: "page without token", path: "/ui/", want: http.StatusOK},
		{desc: "root redirects to the page", path: "/", want: http.StatusFound},
		{desc: "data without token", path: DataPath, want: http.StatusUnauthorized},
		{desc: "data with a wrong token", path: DataPath, header: http.Header{"Authorization": {"Bearer nope"}}, want: http.StatusUnauthorized},
		{desc: "data with the token", path: DataPath, header: bearer, want: http.StatusOK},
		{desc: "status still needs the token", path: "/admin/status", want: http.StatusUnauthorized},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			rec := get(t, adm, test.path, test.header)
			assert.Equal(t, test.want, rec.Code, rec.Body.String())
			if test.want == http.StatusFound {
				assert.Equal(t, Path, rec.Header().Get("Location"))
			}
		})
	}
}

// decodeData reads GET /admin/console from h at now.
func decodeData(t *testing.T, h http.Handler, query string) Data {
	t.Helper()
	rec := get(t, h, DataPath+query, nil)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
	var d Data
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &d))
	return d
}

func TestData_SplitsEachColorIntoAlignedPointsThatEndAtTheLastWholeSecond(t *testing.T) {
	t.Parallel()
	r := newRouter(t)
	now := time.Unix(1_700_000_105, 400_000_000) // 105.4 s: second 105 is not over
	blue, green := r.Stats(config.Blue), r.Stats(config.Green)
	for i := range 10 {
		// Second 100: ten fast answers, one failed.
		blue.Record(time.Unix(1_700_000_100, 0), i == 0, false, 2*time.Millisecond)
	}
	for range 4 {
		// Second 103: four slow answers on green, counted in the last point.
		green.Record(time.Unix(1_700_000_103, 0), false, false, 80*time.Millisecond)
	}
	green.Record(time.Unix(1_700_000_105, 0), false, false, time.Millisecond) // under way: left out

	d := decodeData(t, NewData(r, func() time.Time { return now }), "?window=10&step=5")
	assert.Equal(t, now.UTC(), d.Now.UTC())
	s := d.Series
	assert.Equal(t, 5, s.Step)
	// Seconds 95..104 end at 104; points start on multiples of 5.
	assert.Equal(t, []int64{1_700_000_095, 1_700_000_100}, s.Start)
	assert.Equal(t, []int{5, 5}, s.Seconds)

	b := s.Colors[config.Blue]
	assert.Equal(t, "v1", b.Version)
	assert.Equal(t, []uint64{0, 10}, b.Requests)
	assert.Equal(t, []float64{0, 2}, b.RPS)
	require.Nil(t, b.ErrorRatio[0], "a point without requests has no ratio")
	require.NotNil(t, b.ErrorRatio[1])
	assert.InDelta(t, 0.1, *b.ErrorRatio[1], 1e-9)
	require.NotNil(t, b.P50[1])
	require.NotNil(t, b.P99[1])
	assert.InDelta(t, 2, *b.P50[1], 0.6, "P50 is the upper bound of a 25%-wide bucket")
	assert.LessOrEqual(t, *b.P50[1], *b.P99[1])

	g := s.Colors[config.Green]
	assert.Equal(t, "v2", g.Version)
	assert.Equal(t, []uint64{0, 4}, g.Requests)
	require.NotNil(t, g.P99[1])
	assert.InDelta(t, 80, *g.P99[1], 20)
	assert.Empty(t, d.Shadow, "no mirrored requests")
}

func TestData_LastPointCoversOnlyTheSecondsThatEnded(t *testing.T) {
	t.Parallel()
	r := newRouter(t)
	now := time.Unix(1_700_000_102, 0) // seconds up to 101 are over
	for range 6 {
		r.Stats(config.Blue).Record(time.Unix(1_700_000_101, 0), false, false, time.Millisecond)
	}
	d := decodeData(t, NewData(r, func() time.Time { return now }), "?window=7&step=5")
	assert.Equal(t, []int64{1_700_000_095, 1_700_000_100}, d.Series.Start)
	assert.Equal(t, []int{5, 2}, d.Series.Seconds)
	assert.Equal(t, []float64{0, 3}, d.Series.Colors[config.Blue].RPS, "6 requests over the 2 seconds that ended")
}

func TestData_ShowsShadowTrafficOnlyForAColorThatGotCopies(t *testing.T) {
	t.Parallel()
	r := newRouter(t)
	now := time.Unix(1_700_000_010, 0)
	r.ShadowStats(config.Green).Record(time.Unix(1_700_000_008, 0), false, true, time.Millisecond)
	d := decodeData(t, NewData(r, func() time.Time { return now }), "?window=10&step=1")
	require.Contains(t, d.Shadow, config.Green)
	assert.NotContains(t, d.Shadow, config.Blue)
	assert.Equal(t, uint64(1), d.Shadow[config.Green].total())
}

func TestData_ReportsEveryBackendAndTheAnalysisThresholds(t *testing.T) {
	t.Parallel()
	r := newRouter(t)
	// Seconds 1_699_999_801..1_700_000_100 are not on the 2 s grid: the
	// first point starts a second early and the last covers one second.
	d := decodeData(t, NewData(r, func() time.Time { return time.Unix(1_700_000_101, 0) }), "")
	assert.Len(t, d.Series.Start, DefaultWindow/DefaultStep+1)
	assert.Equal(t, int64(1_699_999_800), d.Series.Start[0])
	assert.Equal(t, 1, d.Series.Seconds[len(d.Series.Seconds)-1])
	assert.Equal(t, map[string]BackendExtra{"127.0.0.1:5001": {}, "127.0.0.1:5002": {}, "127.0.0.1:5003": {}}, d.Backends)
	th := d.Thresholds
	assert.Equal(t, 20, th.MinRequests)
	assert.InDelta(t, 0.1, th.MaxErrorRatio, 1e-9)
	assert.InDelta(t, 250, th.MaxP99Ms, 1e-9)
	assert.InDelta(t, 60, th.WindowSeconds, 1e-9, "default window")
	assert.InDelta(t, 2, th.MaxP99Ratio, 1e-9, "default ratio")
	assert.True(t, th.AutoRollback, "default auto_rollback")
}

func TestData_RejectsABadWindowOrStep(t *testing.T) {
	t.Parallel()
	h := NewData(newRouter(t), nil)
	testCases := []struct {
		desc, query, want string
	}{
		{desc: "zero window", query: "?window=0", want: "window"},
		{desc: "window past the history", query: "?window=601", want: "window"},
		{desc: "not a number", query: "?step=2s", want: "step"},
		{desc: "negative step", query: "?step=-1", want: "step"},
		{desc: "step too wide", query: "?step=61", want: "step"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			rec := get(t, h, DataPath+test.query, nil)
			require.Equal(t, http.StatusBadRequest, rec.Code)
			var body map[string]string
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
			assert.Equal(t, "bad_request", body["error"])
			assert.Contains(t, body["message"], test.want)
		})
	}
}

func FuzzSeconds(f *testing.F) {
	for _, s := range []string{"", "1", "600", "601", "-1", "0", "2s", "1e3", " 5", "0x10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		n, err := seconds(v, DefaultWindow, MaxWindow)
		if err != nil {
			return
		}
		if n < 1 || n > MaxWindow {
			t.Fatalf("seconds(%q) = %d, outside 1..%d", v, n, MaxWindow)
		}
	})
}
