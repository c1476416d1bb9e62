package config

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pools is the pools section the tests below append their own sections to.
const pools = `pools:
  blue: {version: v1, backends: [10.0.0.1:5000]}
  green: {version: v2}
`

// Regression test for issues 11 and 13: defaults were filled after
// decoding wherever a field was zero, so an explicit 0 documented as "off"
// (or otherwise accepted) silently became the default.
func TestParse_ExplicitZeroIsKept(t *testing.T) {
	testCases := []struct {
		desc  string
		yaml  string
		check func(t *testing.T, c *Config)
	}{
		{
			desc:  "dns_refresh 0 resolves only at load",
			yaml:  "dns_refresh: 0s\n",
			check: func(t *testing.T, c *Config) { assert.Zero(t, c.DNSRefresh) },
		},
		{
			desc: "proxy timeouts total, body_idle and idle 0",
			yaml: "proxy:\n  timeouts: {total: 0s, body_idle: 0s, idle: 0s}\n",
			check: func(t *testing.T, c *Config) {
				assert.Zero(t, c.Proxy.Timeouts.Total)
				assert.Zero(t, c.Proxy.Timeouts.BodyIdle)
				assert.Zero(t, c.Proxy.Timeouts.Idle)
				assert.Equal(t, DefaultConnectTimeout, c.Proxy.Timeouts.Connect.D(), "an unwritten sibling keeps its default")
			},
		},
		{
			desc: "client timeouts 0 are no limit",
			yaml: "proxy:\n  client: {header_timeout: 0s, read_timeout: 0s, write_timeout: 0s, idle_timeout: 0s}\n",
			check: func(t *testing.T, c *Config) {
				assert.Equal(t, ClientLimits{MaxHeaderBytes: 8192}, c.Proxy.Client)
			},
		},
		{
			desc: "health jitter 0 in the top-level section reaches both pools",
			yaml: "health: {jitter: 0s}\n",
			check: func(t *testing.T, c *Config) {
				assert.Zero(t, c.Health.Jitter)
				assert.Zero(t, c.Pools.Blue.Health.Jitter)
				assert.Zero(t, c.Pools.Green.Health.Jitter)
			},
		},
		{
			desc: "health jitter 0 next to an interval stays 0",
			yaml: "health: {interval: 5s, jitter: 0s}\n",
			check: func(t *testing.T, c *Config) {
				assert.Zero(t, c.Health.Jitter)
				assert.Equal(t, 5*time.Second, c.Health.Interval.D())
			},
		},
		{
			desc: "warmup keep_warm_interval 0 is off",
			yaml: "warmup: {path: /predict, keep_warm_interval: 0s}\n",
			check: func(t *testing.T, c *Config) {
				assert.Zero(t, c.Warmup.KeepWarmInterval)
				assert.Zero(t, c.Pools.Blue.Warmup.KeepWarmInterval)
				assert.Zero(t, c.Pools.Green.Warmup.KeepWarmInterval)
			},
		},
		{
			desc: "warmup latency_target 0 is none",
			yaml: "warmup: {path: /predict, latency_target: 0s}\n",
			check: func(t *testing.T, c *Config) {
				assert.Zero(t, c.Pools.Blue.Warmup.LatencyTarget)
			},
		},
		{
			desc: "warmup enabled false is off",
			yaml: "warmup: {path: /predict, enabled: false}\n",
			check: func(t *testing.T, c *Config) {
				assert.False(t, c.Pools.Blue.Warmup.On())
				assert.False(t, c.Pools.Green.Warmup.On())
			},
		},
		{
			desc: "a pool's 0 overrides the top-level value and leaves the other pool alone",
			yaml: "warmup: {path: /predict, keep_warm_interval: 20s}\nhealth: {jitter: 100ms}\n" + `pools:
  blue: {version: v1, backends: [10.0.0.1:5000]}
  green:
    version: v2
    health: {jitter: 0s}
    warmup: {keep_warm_interval: 0s, enabled: false}
`,
			check: func(t *testing.T, c *Config) {
				assert.Zero(t, c.Pools.Green.Warmup.KeepWarmInterval)
				assert.Zero(t, c.Pools.Green.Health.Jitter)
				assert.False(t, c.Pools.Green.Warmup.On())
				assert.Equal(t, 20*time.Second, c.Pools.Blue.Warmup.KeepWarmInterval.D())
				assert.Equal(t, 100*time.Millisecond, c.Pools.Blue.Health.Jitter.D())
				assert.True(t, c.Pools.Blue.Warmup.On(), "green's enabled: false must not reach blue")
				assert.True(t, c.Warmup.On(), "green's enabled: false must not reach the top-level section")
			},
		},
		{
			desc: "outlier max_ejection_percent 0 never ejects",
			yaml: "outlier: {max_ejection_percent: 0}\n",
			check: func(t *testing.T, c *Config) {
				assert.Zero(t, c.Outlier.MaxEjectionPercent)
				assert.Equal(t, 5, c.Outlier.ConsecutiveFailures)
			},
		},
		{
			desc: "pool max_concurrency and max_queue 0",
			yaml: "pools:\n  blue: {version: v1, backends: [10.0.0.1:5000], max_concurrency: 0, max_queue: 0}\n  green: {version: v2}\n",
			check: func(t *testing.T, c *Config) {
				assert.Zero(t, c.Pools.Blue.MaxConcurrency)
				assert.Zero(t, c.Pools.Blue.MaxQueue)
				assert.Equal(t, 64, c.Pools.Green.MaxQueue, "the other pool keeps the default")
			},
		},
		{
			desc: "switch drain_timeout 0 reports stragglers at once, min_ready empty means all",
			yaml: "switch: {drain_timeout: 0s, min_ready: \"\"}\n",
			check: func(t *testing.T, c *Config) {
				assert.Zero(t, c.Switch.DrainTimeout)
				assert.Empty(t, c.Switch.MinReady)
			},
		},
		{
			desc: "traffic and mirror zeros",
			yaml: "traffic:\n  green: 0\n  mirror: {percent: 0, max_body_bytes: 0, queue: 0}\n",
			check: func(t *testing.T, c *Config) {
				assert.Zero(t, c.Traffic.Green)
				assert.Zero(t, c.Traffic.Mirror.Percent)
				assert.Zero(t, c.Traffic.Mirror.MaxBodyBytes)
				assert.Zero(t, c.Traffic.Mirror.Queue)
				assert.Equal(t, 16, c.Traffic.Mirror.Concurrency)
			},
		},
		{
			desc: "analysis zeros",
			yaml: "analysis: {max_error_ratio: 0, max_p99_ratio: 0, max_p99: 0s, p99_floor: 0s, max_status_diff_ratio: 0, observe: 0s, breach_for: 0s, auto_rollback: false}\n",
			check: func(t *testing.T, c *Config) {
				a := c.Analysis
				assert.Zero(t, a.MaxErrorRatio)
				require.NotNil(t, a.MaxP99Ratio)
				assert.Zero(t, *a.MaxP99Ratio)
				assert.Zero(t, a.MaxP99)
				assert.Zero(t, a.P99Floor)
				assert.Zero(t, a.MaxStatusDiffRatio)
				assert.Zero(t, a.Observe)
				assert.Zero(t, a.BreachFor)
				require.NotNil(t, a.AutoRollback)
				assert.False(t, *a.AutoRollback)
				assert.Equal(t, time.Minute, a.Window.D())
			},
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			y := test.yaml
			if !strings.Contains(y, "pools:") {
				y += pools
			}

			cfg, err := Parse([]byte(y))

			require.NoError(t, err)
			test.check(t, cfg)
		})
	}
}

// Where 0 means nothing, an explicit 0 is refused with the field's path,
// instead of being replaced by the default.
func TestParse_ExplicitZeroWithoutMeaningIsRefused(t *testing.T) {
	testCases := []struct {
		desc string
		yaml string
		// path is the reported field; contains is a fragment of its message.
		path     string
		contains string
	}{
		{desc: "listen", yaml: "listen: \"\"\n", path: "listen", contains: "has no port"},
		{desc: "admin listen", yaml: "admin: {listen: \"\"}\n", path: "admin.listen", contains: "has no port"},
		{desc: "active", yaml: "active: \"\"\n", path: "active", contains: "is not a color"},
		{desc: "log sample", yaml: "log: {access: {sample: 0}}\n", path: "log.access.sample", contains: "set enabled: false"},
		{desc: "max_request_body_bytes", yaml: "proxy: {max_request_body_bytes: 0}\n", path: "proxy.max_request_body_bytes", contains: "at least 1, got 0"},
		{desc: "max_idle_conns_per_backend", yaml: "proxy: {max_idle_conns_per_backend: 0}\n", path: "proxy.max_idle_conns_per_backend", contains: "proxy.timeouts.idle: 0s"},
		{desc: "connect timeout", yaml: "proxy: {timeouts: {connect: 0s}}\n", path: "proxy.timeouts.connect", contains: "must be a positive duration such as 2s, got 0s"},
		{desc: "response_header timeout", yaml: "proxy: {timeouts: {response_header: 0s}}\n", path: "proxy.timeouts.response_header", contains: "positive"},
		{desc: "client max_header_bytes", yaml: "proxy: {client: {max_header_bytes: 0}}\n", path: "proxy.client.max_header_bytes", contains: "at least 1"},
		{desc: "probe kind", yaml: "health: {kind: \"\"}\n", path: "health.kind", contains: "is not a probe kind"},
		{desc: "probe path", yaml: "health: {path: \"\"}\n", path: "health.path", contains: "is empty; set the path to probe (the json default is /health)"},
		{desc: "probe interval", yaml: "health: {interval: 0s}\n", path: "health.interval", contains: "positive"},
		{desc: "probe timeout", yaml: "health: {timeout: 0s}\n", path: "health.timeout", contains: "positive"},
		{desc: "healthy threshold", yaml: "health: {healthy_threshold: 0}\n", path: "health.healthy_threshold", contains: "at least 1"},
		{desc: "unhealthy threshold", yaml: "health: {unhealthy_threshold: 0}\n", path: "health.unhealthy_threshold", contains: "at least 1"},
		{desc: "warmup method", yaml: "warmup: {path: /p, method: \"\"}\n", path: "warmup.method", contains: "not an HTTP method"},
		{desc: "warmup requests", yaml: "warmup: {path: /p, requests: 0}\n", path: "warmup.requests", contains: "at least 1"},
		{desc: "warmup max_requests", yaml: "warmup: {path: /p, max_requests: 0}\n", path: "warmup.max_requests", contains: "below requests"},
		{desc: "warmup expect_status", yaml: "warmup: {path: /p, expect_status: 0}\n", path: "warmup.expect_status", contains: "not an HTTP status"},
		{desc: "warmup timeout", yaml: "warmup: {path: /p, timeout: 0s}\n", path: "warmup.timeout", contains: "cold for good"},
		{desc: "consecutive failures", yaml: "outlier: {consecutive_failures: 0}\n", path: "outlier.consecutive_failures", contains: "-1 to disable"},
		{desc: "base ejection", yaml: "outlier: {base_ejection: 0s}\n", path: "outlier.base_ejection", contains: "consecutive_failures: -1"},
		{desc: "mirror concurrency", yaml: "traffic: {mirror: {concurrency: 0}}\n", path: "traffic.mirror", contains: "concurrency must be at least 1"},
		{desc: "mirror timeout", yaml: "traffic: {mirror: {timeout: 0s}}\n", path: "traffic.mirror.timeout", contains: "positive"},
		{desc: "analysis window", yaml: "analysis: {window: 0s}\n", path: "analysis.window", contains: "positive"},
		{desc: "analysis min_requests", yaml: "analysis: {min_requests: 0}\n", path: "analysis.min_requests", contains: "at least 1"},
		{
			desc: "pool balance",
			yaml: "pools:\n  blue: {version: v1, backends: [10.0.0.1:5000], balance: \"\"}\n  green: {version: v2}\n",
			path: "pools.blue.balance", contains: "is not a policy",
		},
		{
			desc: "pool queue_timeout",
			yaml: "pools:\n  blue: {version: v1, backends: [10.0.0.1:5000], queue_timeout: 0s}\n  green: {version: v2}\n",
			path: "pools.blue.queue_timeout", contains: "set max_queue: 0",
		},
		{
			desc: "pool health interval override",
			yaml: "pools:\n  blue: {version: v1, backends: [10.0.0.1:5000]}\n  green: {version: v2, health: {interval: 0s}}\n",
			path: "pools.green.health.interval", contains: "positive",
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			y := test.yaml
			if !strings.Contains(y, "pools:") {
				y += pools
			}

			cfg, err := Parse([]byte(y))

			require.Error(t, err)
			assert.Nil(t, cfg)
			var es Errors
			require.True(t, errors.As(err, &es))
			require.Len(t, es, 1, "one problem, reported once: %v", err)
			assert.Equal(t, test.path, es[0].Path)
			assert.Contains(t, es[0].Msg, test.contains)
			assert.Positive(t, es[0].Line, "the written zero has a line")
		})
	}
}

// A key with no value ("health:" whose keys are all commented out, "key:
// ~") keeps its default exactly as an absent key does.
func TestParse_NullValueKeepsTheDefault(t *testing.T) {
	const y = `health:
  # interval: 5s
warmup:
analysis:
  max_p99_ratio: ~
  auto_rollback:
pools:
  blue:
    version: v1
    backends: [10.0.0.1:5000]
    health:
    max_queue:
  green: {version: v2, warmup: null}
`
	cfg, err := Parse([]byte(y))

	require.NoError(t, err)
	def := Default()
	assert.Equal(t, def.Health, cfg.Health)
	assert.Equal(t, def.Warmup, cfg.Warmup)
	assert.Equal(t, def.Analysis, cfg.Analysis)
	assert.Equal(t, def.Health, *cfg.Pools.Blue.Health)
	assert.Equal(t, def.Warmup, *cfg.Pools.Green.Warmup)
	assert.Equal(t, 64, cfg.Pools.Blue.MaxQueue)
}

func TestParse_SectionDefaultsFollowFieldsWrittenBesideThem(t *testing.T) {
	testCases := []struct {
		desc  string
		yaml  string
		check func(t *testing.T, c *Config)
	}{
		{
			desc: "top-level kind brings its path to both pools",
			yaml: "health: {kind: torchserve}\n",
			check: func(t *testing.T, c *Config) {
				assert.Equal(t, "/ping", c.Health.Path)
				assert.Equal(t, "/ping", c.Pools.Blue.Health.Path)
				assert.Equal(t, "/ping", c.Pools.Green.Health.Path)
			},
		},
		{
			desc: "a pool that repeats the inherited kind keeps the inherited path and model",
			yaml: "health: {kind: kserve, path: /ready, model: resnet}\n" + `pools:
  blue: {version: v1, backends: [10.0.0.1:5000], health: {kind: kserve, interval: 4s}}
  green: {version: v2, health: {kind: json}}
`,
			check: func(t *testing.T, c *Config) {
				assert.Equal(t, "/ready", c.Pools.Blue.Health.Path)
				assert.Equal(t, "resnet", c.Pools.Blue.Health.Model)
				assert.Equal(t, "/health", c.Pools.Green.Health.Path, "a new kind brings its own path")
				assert.Empty(t, c.Pools.Green.Health.Model, "and no model")
			},
		},
		{
			desc: "top-level interval brings 10% jitter and caps the timeout",
			yaml: "health: {interval: 500ms}\n",
			check: func(t *testing.T, c *Config) {
				assert.Equal(t, 50*time.Millisecond, c.Health.Jitter.D())
				assert.Equal(t, 500*time.Millisecond, c.Health.Timeout.D())
			},
		},
		{
			desc: "a longer interval keeps the inherited timeout",
			yaml: "health: {interval: 5s}\n",
			check: func(t *testing.T, c *Config) {
				assert.Equal(t, 500*time.Millisecond, c.Health.Jitter.D())
				assert.Equal(t, DefaultProbeTimeout, c.Health.Timeout.D())
			},
		},
		{
			desc: "pools inherit the top-level sections wherever the file writes them",
			yaml: pools + "health: {healthy_threshold: 5}\nwarmup: {path: /predict}\n",
			check: func(t *testing.T, c *Config) {
				assert.Equal(t, 5, c.Pools.Blue.Health.HealthyThreshold)
				assert.Equal(t, "/predict", c.Pools.Green.Warmup.Path)
			},
		},
		{
			desc: "a pool's body_file replaces the inherited body",
			yaml: "warmup: {path: /predict, body: '{}'}\n" + `pools:
  blue: {version: v1, backends: [10.0.0.1:5000], warmup: {body_file: /etc/body.json}}
  green: {version: v2}
`,
			check: func(t *testing.T, c *Config) {
				assert.Empty(t, c.Pools.Blue.Warmup.Body)
				assert.Equal(t, "/etc/body.json", c.Pools.Blue.Warmup.BodyFile)
				assert.Equal(t, "{}", c.Pools.Green.Warmup.Body)
			},
		},
		{
			desc: "a pool's headers replace the inherited ones whole",
			yaml: "warmup: {path: /predict, headers: {X-A: a, X-B: b}}\n" + `pools:
  blue: {version: v1, backends: [10.0.0.1:5000], warmup: {headers: {X-C: c}}}
  green: {version: v2}
`,
			check: func(t *testing.T, c *Config) {
				assert.Equal(t, map[string]string{"X-C": "c"}, c.Pools.Blue.Warmup.Headers)
				assert.Equal(t, map[string]string{"X-A": "a", "X-B": "b"}, c.Pools.Green.Warmup.Headers)
				assert.Equal(t, map[string]string{"X-A": "a", "X-B": "b"}, c.Warmup.Headers)
			},
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			y := test.yaml
			if !strings.Contains(y, "pools:") {
				y += pools
			}

			cfg, err := Parse([]byte(y))

			require.NoError(t, err)
			test.check(t, cfg)
		})
	}
}

// The README's complete example claims to show every default: decoded, it
// must equal Default with the example's pools, so the reference cannot
// drift from the code.
func TestParse_ReadmeExampleShowsTheDefaults(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	example := readmeBlock(t, string(readme), "A complete example with defaults shown")

	cfg, err := Parse([]byte(example))
	require.NoError(t, err)

	want := Default()
	for c, p := range map[Color]struct{ version, backend string }{Blue: {"v2.6", "127.0.0.1:5001"}, Green: {"v2.7", "127.0.0.1:5002"}} {
		pool := want.Pools.Get(c)
		pool.Version, pool.Backends = p.version, []string{p.backend}
		pool.Health, pool.Warmup = ptr(want.Health), want.Warmup.inherit()
	}
	assert.Equal(t, want, cfg)
}

// readmeBlock returns the first ```yaml block after the line holding
// heading in readme.
func readmeBlock(t *testing.T, readme, heading string) string {
	t.Helper()
	_, after, ok := strings.Cut(readme, heading)
	require.True(t, ok, "README has no %q", heading)
	_, after, ok = strings.Cut(after, "```yaml\n")
	require.True(t, ok, "no ```yaml block after %q", heading)
	block, _, ok := strings.Cut(after, "\n```")
	require.True(t, ok, "the ```yaml block after %q is not closed", heading)
	return block + "\n"
}

func TestDefault_ReturnsAFreshConfigEachCall(t *testing.T) {
	a, b := Default(), Default()
	*a.Analysis.AutoRollback = false
	*a.Warmup.Enabled = false
	a.Warmup.Headers["X"] = "y"

	assert.True(t, *b.Analysis.AutoRollback)
	assert.True(t, *b.Warmup.Enabled)
	assert.Empty(t, b.Warmup.Headers)
}

func TestParse_ScalarOrListWhereASectionBelongsNamesThePath(t *testing.T) {
	testCases := []struct {
		desc string
		yaml string
		want string
	}{
		{desc: "list", yaml: "health: [1]\n" + pools, want: `config: line 1: health: is a list, not a section; write its fields as key: value under it`},
		{desc: "scalar", yaml: "pools:\n  blue: {version: v1, backends: [10.0.0.1:5000], warmup: 3}\n  green: {version: v2}\n", want: `config: line 2: pools.blue.warmup: is "3", not a section; write its fields as key: value under it`},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()

			_, err := Parse([]byte(test.yaml))

			require.Error(t, err)
			assert.Equal(t, test.want, err.Error())
		})
	}
}

func TestParse_AnchorsAndAliasesWorkForSectionsAndDurations(t *testing.T) {
	const y = `health: &h {interval: &i 4s, timeout: *i}
warmup: {path: /predict, timeout: *i}
pools:
  blue: {version: v1, backends: [10.0.0.1:5000], health: *h}
  green: {version: v2, health: *h, queue_timeout: *i}
`
	cfg, err := Parse([]byte(y))

	require.NoError(t, err)
	assert.Equal(t, 4*time.Second, cfg.Health.Timeout.D())
	assert.Equal(t, 4*time.Second, cfg.Warmup.Timeout.D())
	assert.Equal(t, cfg.Health, *cfg.Pools.Blue.Health)
	assert.Equal(t, cfg.Health, *cfg.Pools.Green.Health)
	assert.Equal(t, 4*time.Second, cfg.Pools.Green.QueueTimeout.D())
}
