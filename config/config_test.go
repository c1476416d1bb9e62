package config

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// minimal is the smallest valid file: both pools, the active one with a
// backend.
const minimal = `pools:
  blue: {version: v1, backends: [10.0.0.1:5000]}
  green: {version: v2}
`

func TestParse_MinimalConfigGetsDefaults(t *testing.T) {
	cfg, err := Parse([]byte(minimal))

	require.NoError(t, err)
	assert.Equal(t, DefaultListen, cfg.Listen)
	assert.Equal(t, DefaultAdminListen, cfg.Admin.Listen)
	assert.Equal(t, Blue, cfg.Active)
	assert.Equal(t, "json", cfg.Log.Format)
	assert.Equal(t, "info", cfg.Log.Level)
	assert.Equal(t, DefaultMaxRequestBodyBytes, cfg.Proxy.MaxRequestBodyBytes)
	assert.Equal(t, DefaultConnectTimeout, cfg.Proxy.Timeouts.Connect.D())
	assert.Equal(t, DefaultResponseHeader, cfg.Proxy.Timeouts.ResponseHeader.D())
	assert.Zero(t, cfg.Proxy.Timeouts.Total)
	assert.Equal(t, "100%", cfg.Switch.MinReady)
	assert.Equal(t, DefaultDrainTimeout, cfg.Switch.DrainTimeout.D())
	for _, c := range []Color{Blue, Green} {
		p := cfg.Pools.Get(c)
		require.NotNil(t, p.Health, "pools.%s.health", c)
		require.NotNil(t, p.Warmup, "pools.%s.warmup", c)
		assert.Equal(t, BalanceLeastInflight, p.Balance)
		assert.Equal(t, ProbeJSON, p.Health.Kind)
		assert.Equal(t, "/health", p.Health.Path)
		assert.Equal(t, DefaultProbeInterval, p.Health.Interval.D())
		assert.Equal(t, DefaultProbeInterval/10, p.Health.Jitter.D())
		assert.False(t, p.Warmup.On(), "warmup without a path is off")
	}
	assert.Equal(t, []string{"10.0.0.1:5000"}, cfg.Pools.Blue.Backends)
	assert.Empty(t, cfg.Pools.Green.Backends)
}

func TestParse_PoolsInheritGlobalHealthAndWarmupAndOverridesWin(t *testing.T) {
	const y = `health:
  interval: 5s
  timeout: 2s
  healthy_threshold: 4
warmup:
  path: /predict
  body: '{"inputs": [[1]]}'
  requests: 2
pools:
  blue:
    version: v1
    backends: [10.0.0.1:5000]
  green:
    version: v2
    health: {interval: 3s, unhealthy_threshold: 7}
    warmup: {requests: 5, path: /v2/predict}
`
	cfg, err := Parse([]byte(y))
	require.NoError(t, err)

	blue, green := cfg.Pools.Blue, cfg.Pools.Green
	assert.Equal(t, 5*time.Second, blue.Health.Interval.D(), "blue inherits the global interval")
	assert.Equal(t, 2*time.Second, blue.Health.Timeout.D())
	assert.Equal(t, 4, blue.Health.HealthyThreshold)
	assert.Equal(t, 3, blue.Health.UnhealthyThreshold, "built-in default")
	assert.Equal(t, "/predict", blue.Warmup.Path)
	assert.Equal(t, 2, blue.Warmup.Requests)
	assert.True(t, blue.Warmup.On())

	assert.Equal(t, 3*time.Second, green.Health.Interval.D(), "green's override wins")
	assert.Equal(t, 7, green.Health.UnhealthyThreshold, "green's override wins")
	assert.Equal(t, 2*time.Second, green.Health.Timeout.D(), "green inherits what it does not override")
	assert.Equal(t, 4, green.Health.HealthyThreshold)
	assert.Equal(t, "/v2/predict", green.Warmup.Path)
	assert.Equal(t, 5, green.Warmup.Requests)
	assert.Equal(t, `{"inputs": [[1]]}`, green.Warmup.Body, "green inherits the body")
	assert.Equal(t, "POST", green.Warmup.Method)

	assert.Equal(t, 5*time.Second, cfg.Health.Interval.D(), "the global section is not changed by an override")
	assert.Equal(t, 2, cfg.Warmup.Requests)
}

// Regression test (fixed): Jitter defaults to 10% of the interval, but a pool that sets only a
// shorter interval inherits the global jitter (10% of the global 2s), which
// validation then rejects as longer than the pool's interval.
func TestParse_PoolIntervalOverrideGetsItsOwnDefaultJitter(t *testing.T) {
	const y = `pools:
  blue:
    version: v1
    backends: [10.0.0.1:5000]
    health: {interval: 100ms, timeout: 50ms}
  green: {version: v2}
`
	cfg, err := Parse([]byte(y))

	require.NoError(t, err, "no jitter was written anywhere, yet the inherited 200ms jitter is rejected")
	assert.Equal(t, 10*time.Millisecond, cfg.Pools.Blue.Health.Jitter.D())
}

// Regression test (fixed): a pool that changes the probe kind gets an empty path instead of
// that kind's default, so it would probe GET "".
func TestParse_PoolKindOverrideGetsThatKindsDefaultPath(t *testing.T) {
	const y = `pools:
  blue: {version: v1, backends: [10.0.0.1:5000]}
  green:
    version: v2
    health: {kind: kserve}
`
	cfg, err := Parse([]byte(y))

	require.NoError(t, err)
	assert.Equal(t, ProbeKServe, cfg.Pools.Green.Health.Kind)
	assert.Equal(t, "/v2/health/ready", cfg.Pools.Green.Health.Path)
	assert.Equal(t, "/health", cfg.Pools.Blue.Health.Path)
}

func TestParse_ErrorsNameThePathLineAndFix(t *testing.T) {
	testCases := []struct {
		desc string
		yaml string
		// want is the complete message when set; contains are fragments
		// the message must hold.
		want     string
		contains []string
	}{
		{
			desc: "unknown key with a close known key",
			yaml: `pools:
  blue: {version: v1, backends: [10.0.0.1:5000]}
  green:
    verison: v2
`,
			want: `config: line 4: pools.green.verison: unknown key "verison" (did you mean "version"?)`,
		},
		{
			desc: "unknown key with no close known key lists the known ones",
			yaml: `colour: green
pools:
  blue: {version: v1, backends: [10.0.0.1:5000]}
  green: {version: v2}
`,
			contains: []string{"line 1", "colour", "unknown key", "known keys:", "active", "pools"},
		},
		{
			desc: "backend without a port",
			yaml: `pools:
  blue: {version: v1, backends: [10.0.0.1:5000]}
  green:
    version: v2
    backends:
      - 10.0.0.4:5000
      - 10.0.0.5
`,
			want: `config: line 7: pools.green.backends[1]: "10.0.0.5" has no port (want host:port)`,
		},
		{
			desc: "backend with a scheme",
			yaml: `pools:
  blue: {version: v1, backends: ["http://10.0.0.1:5000"]}
  green: {version: v2}
`,
			want: `config: line 2: pools.blue.backends[0]: "http://10.0.0.1:5000" has a scheme; write host:port only`,
		},
		{
			desc: "backend port out of range",
			yaml: `pools:
  blue: {version: v1, backends: [10.0.0.1:70000]}
  green: {version: v2}
`,
			want: `config: line 2: pools.blue.backends[0]: "10.0.0.1:70000" has an invalid port (want 1-65535)`,
		},
		{
			desc: "unknown active color",
			yaml: `active: purple
pools:
  blue: {version: v1, backends: [10.0.0.1:5000]}
  green: {version: v2}
`,
			want: `config: line 1: active: "purple" is not a color (want blue or green)`,
		},
		{
			desc: "backend in both pools",
			yaml: `pools:
  blue: {version: v1, backends: [10.0.0.1:5000]}
  green:
    version: v2
    backends: [10.0.0.1:5000]
`,
			want: `config: line 5: pools.green.backends[0]: "10.0.0.1:5000" is already listed at pools.blue.backends[0]; a backend belongs to one pool once`,
		},
		{
			desc: "backend twice in one pool",
			yaml: `pools:
  blue:
    version: v1
    backends:
      - 10.0.0.1:5000
      - 10.0.0.1:5000
  green: {version: v2}
`,
			contains: []string{"line 6", "pools.blue.backends[1]", "already listed at pools.blue.backends[0]"},
		},
		{
			desc: "active pool without backends",
			yaml: `active: green
pools:
  blue: {version: v1, backends: [10.0.0.1:5000]}
  green: {version: v2}
`,
			contains: []string{"pools.green", "active pool has no backends"},
		},
		{
			desc: "pool without a version",
			yaml: `pools:
  blue: {backends: [10.0.0.1:5000]}
  green: {version: v2}
`,
			contains: []string{"line 2", "pools.blue", "version", "missing"},
		},
		{
			desc: "negative duration",
			yaml: `pools:
  blue: {version: v1, backends: [10.0.0.1:5000]}
  green: {version: v2}
proxy:
  timeouts: {connect: -1s}
`,
			contains: []string{"line 5", "negative"},
		},
		{
			desc: "listen equal to admin.listen",
			yaml: `listen: 127.0.0.1:9000
admin:
  listen: 127.0.0.1:9000
pools:
  blue: {version: v1, backends: [10.0.0.1:5000]}
  green: {version: v2}
`,
			want: `config: line 3: admin.listen: "127.0.0.1:9000" is also the traffic listener; the admin API needs its own port`,
		},
		{
			desc: "bad min_ready",
			yaml: `pools:
  blue: {version: v1, backends: [10.0.0.1:5000]}
  green: {version: v2}
switch: {min_ready: "150%"}
`,
			contains: []string{"line 4", "switch.min_ready", `"150%"`},
		},
		{
			desc: "probe timeout longer than interval",
			yaml: `health:
  interval: 1s
  timeout: 2s
pools:
  blue: {version: v1, backends: [10.0.0.1:5000]}
  green: {version: v2}
`,
			contains: []string{`config: line 3: health.timeout: 2s is longer than interval 1s; probes would overlap`},
		},
		{
			desc: "bad YAML",
			yaml: `pools:
  blue: {version: v1, backends: [10.0.0.1:5000
  green: {version: v2}
`,
			contains: []string{"config: line "},
		},
		{
			desc:     "tab indentation",
			yaml:     "pools:\n\tblue: {version: v1}\n",
			contains: []string{"config: line 2"},
		},
		{
			desc:     "empty file",
			yaml:     "",
			contains: []string{"empty"},
		},
		{
			desc:     "not a mapping",
			yaml:     "- active: blue\n",
			contains: []string{"line 1", "mapping"},
		},
		{
			desc:     "two documents",
			yaml:     minimal + "---\n" + minimal,
			contains: []string{"line 4", "more than one YAML document"},
		},
		{
			desc: "wrong scalar type",
			yaml: `pools:
  blue: {version: v1, backends: [10.0.0.1:5000], max_queue: lots}
  green: {version: v2}
`,
			contains: []string{"line 2", "lots"},
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()

			cfg, err := Parse([]byte(test.yaml))

			require.Error(t, err)
			assert.Nil(t, cfg)
			assert.ErrorIs(t, err, ErrInvalid)
			var es Errors
			require.True(t, errors.As(err, &es), "Parse returns Errors, got %T", err)
			require.NotEmpty(t, es)
			if test.want != "" {
				assert.Equal(t, test.want, err.Error())
			}
			for _, c := range test.contains {
				assert.Contains(t, err.Error(), c)
			}
		})
	}
}

// Regression test (fixed): problems.add reports a field that was not written under its nearest
// written parent and drops the rest of the path, so the message no longer
// says which pool is missing or which listener clashes.
func TestParse_ErrorOnAnUnwrittenFieldKeepsItsFullPath(t *testing.T) {
	testCases := []struct {
		desc     string
		yaml     string
		contains []string
	}{
		{
			desc: "missing green pool",
			yaml: `active: blue
pools:
  blue: {version: v1, backends: [10.0.0.1:5000]}
`,
			contains: []string{"pools.green", "missing"},
		},
		{
			desc: "listen equal to the default admin.listen",
			yaml: `listen: 127.0.0.1:9901
pools:
  blue: {version: v1, backends: [10.0.0.1:5000]}
  green: {version: v2}
`,
			contains: []string{"admin.listen", "127.0.0.1:9901", "also the traffic listener"},
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()

			_, err := Parse([]byte(test.yaml))

			require.Error(t, err)
			for _, c := range test.contains {
				assert.Contains(t, err.Error(), c)
			}
		})
	}
}

// Regression test (fixed): a bad duration is reported with its line but without the field's
// path, unlike every other problem.
func TestParse_BadDurationNamesTheField(t *testing.T) {
	testCases := []struct {
		desc     string
		yaml     string
		contains []string
	}{
		{
			desc: "duration without a unit",
			yaml: `pools:
  blue: {version: v1, backends: [10.0.0.1:5000]}
  green: {version: v2}
health:
  interval: 2
`,
			contains: []string{"line 5", "health.interval", `"2" is not a duration`},
		},
		{
			desc: "duration that is not one",
			yaml: `pools:
  blue: {version: v1, backends: [10.0.0.1:5000]}
  green: {version: v2}
switch:
  drain_timeout: soon
`,
			contains: []string{"line 5", "switch.drain_timeout", `"soon" is not a duration`},
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()

			_, err := Parse([]byte(test.yaml))

			require.Error(t, err)
			for _, c := range test.contains {
				assert.Contains(t, err.Error(), c)
			}
		})
	}
}

func TestParse_ReportsEveryProblemAtOnce(t *testing.T) {
	const y = `active: purple
pools:
  blue: {version: v1, backends: [10.0.0.1]}
  green: {version: v2, balance: random}
`
	_, err := Parse([]byte(y))

	var es Errors
	require.True(t, errors.As(err, &es))
	msg := err.Error()
	assert.Len(t, es, 3, msg)
	assert.Contains(t, msg, `active: "purple"`)
	assert.Contains(t, msg, `pools.blue.backends[0]: "10.0.0.1" has no port`)
	assert.Contains(t, msg, `pools.green.balance: "random" is not a policy`)
	for _, e := range es {
		assert.Positive(t, e.Line, "%s has no line", e)
	}
}

func TestParse_UnknownKeysAreReportedBeforeDecoding(t *testing.T) {
	// Every unknown key in the file is reported, each with its own path.
	const y = `pools:
  blue: {version: v1, backends: [10.0.0.1:5000], weight: 3}
  green: {version: v2}
health:
  intervall: 2s
`
	_, err := Parse([]byte(y))

	var es Errors
	require.True(t, errors.As(err, &es))
	require.Len(t, es, 2, err.Error())
	assert.Equal(t, "pools.blue.weight", es[0].Path)
	assert.Equal(t, 2, es[0].Line)
	assert.Equal(t, "health.intervall", es[1].Path)
	assert.Equal(t, 5, es[1].Line)
	assert.Contains(t, es[1].Msg, `did you mean "interval"?`)
}

func TestError_Format(t *testing.T) {
	testCases := []struct {
		desc string
		err  Error
		want string
	}{
		{desc: "line and path", err: Error{Path: "active", Line: 3, Msg: "bad"}, want: "config: line 3: active: bad"},
		{desc: "path only", err: Error{Path: "active", Msg: "bad"}, want: "config: active: bad"},
		{desc: "line only", err: Error{Line: 3, Msg: "bad"}, want: "config: line 3: bad"},
		{desc: "message only", err: Error{Msg: "bad"}, want: "config: bad"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			assert.Equal(t, test.want, test.err.Error())
		})
	}
}

func TestLoad_UnreadableFileIsNotErrInvalid(t *testing.T) {
	path := t.TempDir() + "/absent.yaml"

	_, _, err := Load(path)

	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrInvalid)
	assert.Contains(t, err.Error(), path)
}

func TestParseMinReady(t *testing.T) {
	testCases := []struct {
		desc    string
		v       string
		n       int
		want    int
		wantErr string
	}{
		{desc: "empty means all", v: "", n: 4, want: 4},
		{desc: "count", v: "2", n: 4, want: 2},
		{desc: "count above the pool size is kept", v: "5", n: 4, want: 5},
		{desc: "100 percent", v: "100%", n: 4, want: 4},
		{desc: "50 percent of 4", v: "50%", n: 4, want: 2},
		{desc: "50 percent of 3 rounds up", v: "50%", n: 3, want: 2},
		{desc: "1 percent of 3 is at least one", v: "1%", n: 3, want: 1},
		{desc: "percent of an empty pool is at least one", v: "50%", n: 0, want: 1},
		{desc: "fractional percent", v: "33.4%", n: 3, want: 2},
		{desc: "zero count", v: "0", n: 4, wantErr: `"0" is neither a count`},
		{desc: "negative count", v: "-1", n: 4, wantErr: `"-1" is neither a count`},
		{desc: "words", v: "all", n: 4, wantErr: `"all" is neither a count`},
		{desc: "zero percent", v: "0%", n: 4, wantErr: `"0%" is not a percentage`},
		{desc: "over 100 percent", v: "101%", n: 4, wantErr: `"101%" is not a percentage`},
		{desc: "percent sign only", v: "%", n: 4, wantErr: `"%" is not a percentage`},
		// Regression (fixed): NaN fails neither f <= 0 nor f > 100, so "NaN%" is accepted.
		{desc: "NaN percent", v: "NaN%", n: 4, wantErr: `"NaN%" is not a percentage`},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()

			got, err := ParseMinReady(test.v, test.n)

			if test.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), test.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, test.want, got)
		})
	}
}

func TestColor(t *testing.T) {
	assert.Equal(t, Green, Blue.Other())
	assert.Equal(t, Blue, Green.Other())
	assert.True(t, Blue.Valid())
	assert.True(t, Green.Valid())
	assert.False(t, Color("").Valid())
	assert.False(t, Color(strings.ToUpper(string(Blue))).Valid())
}
