package warmup

import (
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
)

func TestCompile_OffGivesNilSpec(t *testing.T) {
	t.Parallel()
	off, on := false, true
	testCases := []struct {
		desc string
		cfg  *config.Warmup
	}{
		{desc: "nil config", cfg: nil},
		{desc: "no path", cfg: &config.Warmup{Body: "{}"}},
		{desc: "enabled without path", cfg: &config.Warmup{Enabled: &on}},
		{desc: "explicitly disabled", cfg: &config.Warmup{Enabled: &off, Path: "/predict"}},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			spec, err := Compile(test.cfg)
			require.NoError(t, err)
			assert.Nil(t, spec)
		})
	}
}

func TestCompile_HandBuiltConfigGetsDefaultsOnlyWhereZeroIsInvalid(t *testing.T) {
	t.Parallel()
	spec, err := Compile(&config.Warmup{Path: "/predict"})

	require.NoError(t, err)
	assert.Equal(t, &Spec{
		Method:       http.MethodPost,
		Path:         "/predict",
		Headers:      map[string]string{},
		Requests:     config.DefaultWarmupRequests,
		MaxRequests:  config.DefaultWarmupMaxRequests,
		ExpectStatus: http.StatusOK,
		// 0 means no per-request timeout in a Spec too, so it is kept.
		Timeout: 0,
	}, spec)
}

// Regression test for issues 11 and 13: Compile replaced a zero Timeout
// with 30s, a second place that filled defaults after decoding. A parsed
// config is now used exactly as decoded.
func TestCompile_ParsedConfigIsUsedAsDecoded(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		desc    string
		warmup  string
		want    func(*Spec)
		wantOff bool
	}{
		{
			desc:   "defaults from config",
			warmup: "{path: /predict}",
			want: func(s *Spec) {
				s.Timeout = config.DefaultWarmupTimeout
			},
		},
		{
			desc:   "written values",
			warmup: "{path: /predict, latency_target: 80ms, timeout: 5s, requests: 1}",
			want: func(s *Spec) {
				s.LatencyTarget, s.Timeout, s.Requests = 80*time.Millisecond, 5*time.Second, 1
			},
		},
		{
			desc:    "explicitly disabled",
			warmup:  "{path: /predict, enabled: false}",
			wantOff: true,
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			cfg, err := config.Parse([]byte("warmup: " + test.warmup + "\npools:\n  blue: {version: v1, backends: [10.0.0.1:5000]}\n  green: {version: v2}\n"))
			require.NoError(t, err)

			spec, err := Compile(cfg.Pools.Blue.Warmup)

			require.NoError(t, err)
			if test.wantOff {
				assert.Nil(t, spec)
				return
			}
			want := &Spec{Method: http.MethodPost, Path: "/predict", Headers: map[string]string{},
				Requests: config.DefaultWarmupRequests, MaxRequests: config.DefaultWarmupMaxRequests, ExpectStatus: http.StatusOK}
			test.want(want)
			assert.Equal(t, want, spec)
		})
	}
}

func TestCompile_KeepsConfiguredFields(t *testing.T) {
	t.Parallel()
	cfg := &config.Warmup{
		Method: "PUT", Path: "/v2/models/m/infer", Headers: map[string]string{"content-type": "text/plain"},
		Body: "hello", Requests: 4, MaxRequests: 9, ExpectStatus: 201,
		ExpectJSONField: "model_version", ExpectJSONValue: `"v2.7"`, ExpectBody: `v2\.\d+`,
		LatencyTarget: config.Duration(80 * time.Millisecond), Timeout: config.Duration(5 * time.Second),
	}

	spec, err := Compile(cfg)

	require.NoError(t, err)
	assert.Equal(t, "PUT", spec.Method)
	assert.Equal(t, "/v2/models/m/infer", spec.Path)
	assert.Equal(t, map[string]string{"content-type": "text/plain"}, spec.Headers, "an explicit content type is kept")
	assert.Equal(t, []byte("hello"), spec.Body)
	assert.Equal(t, []int{4, 9, 201}, []int{spec.Requests, spec.MaxRequests, spec.ExpectStatus})
	assert.Equal(t, "model_version", spec.ExpectJSONField)
	assert.Equal(t, `"v2.7"`, spec.ExpectJSONValue)
	assert.Equal(t, `v2\.\d+`, spec.ExpectBody.String())
	assert.Equal(t, 80*time.Millisecond, spec.LatencyTarget)
	assert.Equal(t, 5*time.Second, spec.Timeout)

	cfg.Headers["X-Late"] = "1"
	assert.NotContains(t, spec.Headers, "X-Late", "the spec owns a copy of the headers")
}

func TestCompile_ReadsBodyFile(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		desc     string
		content  string
		wantType string
	}{
		{desc: "JSON body gets a JSON content type", content: `{"inputs": [[1, 2, 3]]}`, wantType: "application/json"},
		{desc: "other body gets none", content: "raw tensor bytes\x00\x01"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			name := filepath.Join(t.TempDir(), "body.json")
			require.NoError(t, os.WriteFile(name, []byte(test.content), 0o600))

			spec, err := Compile(&config.Warmup{Path: "/predict", BodyFile: name})

			require.NoError(t, err)
			assert.Equal(t, []byte(test.content), spec.Body)
			assert.Equal(t, test.wantType, spec.Headers["Content-Type"])
		})
	}
}

func TestCompile_RejectsBadConfig(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "nope.json")
	testCases := []struct {
		desc     string
		cfg      config.Warmup
		wantErr  []string
		wantIsNF bool
	}{
		{
			desc:     "missing body_file names it",
			cfg:      config.Warmup{Path: "/predict", BodyFile: missing},
			wantErr:  []string{`warmup: reading body_file "` + missing + `"`, "create the file or fix body_file"},
			wantIsNF: true,
		},
		{
			desc:    "bad regexp",
			cfg:     config.Warmup{Path: "/predict", ExpectBody: `outputs(`},
			wantErr: []string{`warmup: expect_body "outputs(" is not a regular expression`, "fix its syntax"},
		},
		{
			desc:    "expected value is not JSON",
			cfg:     config.Warmup{Path: "/predict", ExpectJSONField: "model_version", ExpectJSONValue: "v2.7"},
			wantErr: []string{`warmup: expect_json_value "v2.7" is not JSON text; quote a string as '"v2.7"'`},
		},
		{
			desc:    "expected value without field",
			cfg:     config.Warmup{Path: "/predict", ExpectJSONValue: "4"},
			wantErr: []string{"warmup: expect_json_value is set without expect_json_field"},
		},
		{
			desc:    "max_requests below requests",
			cfg:     config.Warmup{Path: "/predict", Requests: 60},
			wantErr: []string{"warmup: max_requests 50 is below requests 60; raise max_requests"},
		},
		{
			desc:    "body and body_file",
			cfg:     config.Warmup{Path: "/predict", Body: "{}", BodyFile: missing},
			wantErr: []string{"warmup: both body and body_file are set; keep one"},
		},
		{
			desc:    "path without slash",
			cfg:     config.Warmup{Path: "predict"},
			wantErr: []string{`warmup: path "predict" must start with /`},
		},
		{
			desc:    "status out of range",
			cfg:     config.Warmup{Path: "/predict", ExpectStatus: 700},
			wantErr: []string{"warmup: expect_status 700 is not an HTTP status"},
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			spec, err := Compile(&test.cfg)

			require.Error(t, err)
			assert.Nil(t, spec)
			for _, want := range test.wantErr {
				assert.Contains(t, err.Error(), want)
			}
			assert.Equal(t, test.wantIsNF, errorIsNotExist(err))
		})
	}
}

func errorIsNotExist(err error) bool { return err != nil && errors.Is(err, fs.ErrNotExist) }
