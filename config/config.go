// Package config defines Switchyard's configuration file: its schema, a
// strict YAML decoder that reports unknown keys with their line, defaults,
// and validation that names the field path and the fix.
//
// The pipeline is decode strictly → apply defaults → validate the whole. A
// file that fails any step is rejected whole; nothing falls back silently.
package config

import (
	"time"
)

// Color names one of the two upstream pools.
type Color string

// The two pool colors. Blue is conventionally live and green the release
// candidate, but either can be active.
const (
	Blue  Color = "blue"
	Green Color = "green"
)

// Other returns the color that is not c.
func (c Color) Other() Color {
	if c == Blue {
		return Green
	}
	return Blue
}

// Valid reports whether c is blue or green.
func (c Color) Valid() bool { return c == Blue || c == Green }

// Config is the whole configuration file.
type Config struct {
	// Listen is the traffic listener, host:port. Default 127.0.0.1:8080.
	// Changing it needs a restart.
	Listen string `yaml:"listen"`
	// Admin configures the admin API listener.
	Admin Admin `yaml:"admin"`
	// Active is the color that receives traffic: blue or green. Default blue.
	Active Color `yaml:"active"`
	// DNSRefresh is how often backends given as hostnames (a Kubernetes
	// headless Service) are re-resolved. Default 10s.
	DNSRefresh Duration `yaml:"dns_refresh"`
	// StateDir is where the last admin switch is persisted so it survives a
	// restart. Empty disables persistence.
	StateDir string `yaml:"state_dir"`
	// Log configures the zap logger.
	Log Log `yaml:"log"`
	// Proxy configures how requests are forwarded to backends.
	Proxy Proxy `yaml:"proxy"`
	// Health holds the probe defaults that both pools inherit.
	Health Health `yaml:"health"`
	// Warmup holds the warmup defaults that both pools inherit.
	Warmup Warmup `yaml:"warmup"`
	// Pools holds the blue and the green pool. Both must be present; the
	// standby pool may have no backends yet.
	Pools Pools `yaml:"pools"`
	// Switch configures switching and draining.
	Switch Switch `yaml:"switch"`
	// Outlier configures passive health: ejecting backends that fail live
	// traffic.
	Outlier Outlier `yaml:"outlier"`
	// Traffic splits live traffic for a canary and mirrors a share of it
	// to the standby pool.
	Traffic Traffic `yaml:"traffic"`
	// Analysis compares the two colors and decides promotion and rollback.
	Analysis Analysis `yaml:"analysis"`
}

// Traffic configures a canary split and shadow traffic. Both end when the
// active color changes.
type Traffic struct {
	// Blue and Green are the percent (0-100) of requests sent to that
	// color while it is the standby; the active color takes the rest. Only
	// the standby color may be non-zero.
	Blue  int `yaml:"blue"`
	Green int `yaml:"green"`
	// StickyHeader, when set, names a request header (e.g. X-User-ID)
	// whose hash picks the color, so one user stays on one color.
	StickyHeader string `yaml:"sticky_header"`
	// Mirror copies a share of requests to the standby pool.
	Mirror Mirror `yaml:"mirror"`
}

// Weight returns the canary percent of color c.
func (t *Traffic) Weight(c Color) int {
	if c == Green {
		return t.Green
	}
	return t.Blue
}

// Mirror configures shadow traffic: copies of requests sent to the
// standby pool, whose answers are recorded and discarded.
type Mirror struct {
	// To is the color receiving the copies; it must be the standby.
	To Color `yaml:"to"`
	// Percent of requests copied, 0-100; 0 is off.
	Percent float64 `yaml:"percent"`
	// MaxBodyBytes: larger requests are not mirrored. Default 1 MiB.
	MaxBodyBytes int `yaml:"max_body_bytes"`
	// Concurrency bounds mirrored requests in flight. Default 16.
	Concurrency int `yaml:"concurrency"`
	// Queue bounds copies waiting for a free slot; more are dropped and
	// counted, never queued without bound. Default 64.
	Queue int `yaml:"queue"`
	// Timeout bounds one mirrored request. Default 10s.
	Timeout Duration `yaml:"timeout"`
}

// Analysis configures the comparison of the candidate color with the
// baseline during a canary or shadow phase, and of the new active color
// with the previous one after a switch.
type Analysis struct {
	// Window is how far back the comparison looks. Default 60s, at most 10m.
	Window Duration `yaml:"window"`
	// MinRequests is how many requests the candidate needs before a
	// verdict. Default 50.
	MinRequests int `yaml:"min_requests"`
	// MaxErrorRatio is the highest 5xx-or-failure share the candidate may
	// have, 0-1. Default 0.05.
	MaxErrorRatio float64 `yaml:"max_error_ratio"`
	// MaxP99Ratio is the highest candidate P99 / baseline P99. Default 2;
	// 0 disables the relative check.
	MaxP99Ratio *float64 `yaml:"max_p99_ratio"`
	// MaxP99 is an absolute P99 bound; 0 disables it.
	MaxP99 Duration `yaml:"max_p99"`
	// P99Floor: a candidate P99 below it never breaks MaxP99Ratio, since
	// a few milliseconds of jitter are not a regression. Default 10ms.
	P99Floor Duration `yaml:"p99_floor"`
	// MaxStatusDiffRatio is, for shadow traffic, the highest share of
	// mirrored requests whose status class differs from the live answer.
	// Default 0.05.
	MaxStatusDiffRatio float64 `yaml:"max_status_diff_ratio"`
	// Observe is how long after a switch the new color is watched for
	// automatic rollback. Default 60s; set auto_rollback: false to turn
	// automatic rollback off.
	Observe Duration `yaml:"observe"`
	// AutoRollback switches back by itself when the new color breaks a
	// threshold within Observe and the previous color is still ready.
	// Default true.
	AutoRollback *bool `yaml:"auto_rollback"`
	// AutoPromote switches to the candidate by itself once a canary or
	// shadow phase has run a whole Window clean.
	AutoPromote bool `yaml:"auto_promote"`
}

// Outlier configures passive health checks on live traffic.
type Outlier struct {
	// ConsecutiveFailures ejects a backend after this many connect errors,
	// timeouts or 5xx answers in a row. Default 5; -1 disables.
	ConsecutiveFailures int `yaml:"consecutive_failures"`
	// BaseEjection is the first ejection's length; each repeat doubles it,
	// up to 32 times. Default 10s.
	BaseEjection Duration `yaml:"base_ejection"`
	// MaxEjectionPercent caps the share of a pool ejected at once, so a
	// pool-wide failure never ejects everything. Default 50.
	MaxEjectionPercent int `yaml:"max_ejection_percent"`
}

// Admin configures the admin listener, which also serves /metrics,
// /healthz and /readyz.
type Admin struct {
	// Listen is the admin listener, host:port. Default 127.0.0.1:9901. Keep
	// it on loopback or a private network: it can move all traffic.
	Listen string `yaml:"listen"`
	// TokenFile, when set, names a file holding the bearer token that every
	// /admin/ call must present. Surrounding whitespace is ignored.
	TokenFile string `yaml:"token_file"`
}

// Log configures logging.
type Log struct {
	// Format is json (default) or console.
	Format string `yaml:"format"`
	// Level is debug, info (default), warn or error.
	Level string `yaml:"level"`
	// Access configures the access log.
	Access AccessLog `yaml:"access"`
}

// AccessLog configures one log line per proxied request.
type AccessLog struct {
	// Enabled turns the access log on. Default off.
	Enabled bool `yaml:"enabled"`
	// Sample is the share of requests logged, in (0, 1]. Default 1.
	Sample float64 `yaml:"sample"`
}

// Proxy configures the request path.
type Proxy struct {
	// MaxRequestBodyBytes is the largest request body forwarded; larger
	// bodies get 413. Default 10 MiB. Raising it above the value the
	// gateway started with needs a restart.
	MaxRequestBodyBytes int `yaml:"max_request_body_bytes"`
	// Timeouts bound each phase of a proxied request.
	Timeouts Timeouts `yaml:"timeouts"`
	// MaxIdleConnsPerBackend caps the keep-alive connections kept open to
	// each backend. Default 256.
	MaxIdleConnsPerBackend int `yaml:"max_idle_conns_per_backend"`
}

// Timeouts bound a proxied request.
type Timeouts struct {
	// Connect bounds dialing a backend. Default 2s.
	Connect Duration `yaml:"connect"`
	// ResponseHeader bounds the wait for the response headers once the
	// request is sent: model inference time counts here. Default 60s.
	ResponseHeader Duration `yaml:"response_header"`
	// Total bounds the whole exchange, body streaming included. 0 (the
	// default) means no limit beyond ResponseHeader, which suits token
	// streams that run for minutes.
	Total Duration `yaml:"total"`
	// Idle is how long an unused keep-alive connection to a backend is
	// reused. Keep it below the backend's own keep-alive (gunicorn: 2s) so
	// that the gateway, not the backend, closes idle connections. Default 1s.
	Idle Duration `yaml:"idle"`
}

// Pools holds both colors.
type Pools struct {
	Blue  Pool `yaml:"blue"`
	Green Pool `yaml:"green"`
}

// Get returns the pool of color c.
func (p *Pools) Get(c Color) *Pool {
	if c == Green {
		return &p.Green
	}
	return &p.Blue
}

// Pool is one color's set of backends serving one model version.
type Pool struct {
	// Version is the model version this pool serves, e.g. v2.7. It labels
	// responses, metrics and logs. Required.
	Version string `yaml:"version"`
	// Backends lists host:port addresses. A hostname is re-resolved
	// periodically and each address becomes a backend.
	Backends []string `yaml:"backends"`
	// Balance picks a backend per request: least_inflight (default),
	// round_robin, or gpu (power of two choices scored by in-flight
	// requests and the load the backend reports).
	Balance string `yaml:"balance"`
	// MaxConcurrency caps in-flight requests per backend; 0 means no cap.
	// A GPU holds only so many requests; beyond it they queue here.
	MaxConcurrency int `yaml:"max_concurrency"`
	// MaxQueue is how many requests may wait for a free backend when all
	// are at MaxConcurrency; more get 503 with Retry-After. Default 64.
	MaxQueue int `yaml:"max_queue"`
	// QueueTimeout is how long a request waits in that queue. Default 5s.
	QueueTimeout Duration `yaml:"queue_timeout"`
	// Health overrides the global probe settings for this pool.
	Health *Health `yaml:"health"`
	// Warmup overrides the global warmup settings for this pool.
	Warmup *Warmup `yaml:"warmup"`
}

// Health configures active probing of every backend.
type Health struct {
	// Kind is the probe protocol: json (default), http, kserve, triton,
	// torchserve or vllm.
	Kind string `yaml:"kind"`
	// Path overrides the kind's default path (/health for json, http and
	// vllm; /v2/health/ready for kserve and triton; /ping for torchserve).
	Path string `yaml:"path"`
	// Model, for kserve and triton, also checks /v2/models/{model}/ready.
	Model string `yaml:"model"`
	// MetricsPath, when set, is scraped on every probe for queue and GPU
	// signals in the Prometheus text format.
	MetricsPath string `yaml:"metrics_path"`
	// Interval between probes of one backend. Default 2s.
	Interval Duration `yaml:"interval"`
	// Timeout bounds one probe. Default 1s.
	Timeout Duration `yaml:"timeout"`
	// Jitter spreads probes randomly by up to this much. Default 10% of
	// Interval.
	Jitter Duration `yaml:"jitter"`
	// HealthyThreshold is the number of consecutive passes that make an
	// unhealthy backend healthy. Default 2.
	HealthyThreshold int `yaml:"healthy_threshold"`
	// UnhealthyThreshold is the number of consecutive failures that make a
	// healthy backend unhealthy. Default 3.
	UnhealthyThreshold int `yaml:"unhealthy_threshold"`
}

// Warmup configures the dummy inference a backend must pass before it
// receives traffic.
type Warmup struct {
	// Enabled turns warmup on. Default true when Path is set.
	Enabled *bool `yaml:"enabled"`
	// Method of the warmup request. Default POST.
	Method string `yaml:"method"`
	// Path of the warmup request, e.g. /predict.
	Path string `yaml:"path"`
	// Headers sent with each warmup request.
	Headers map[string]string `yaml:"headers"`
	// Body of each warmup request.
	Body string `yaml:"body"`
	// BodyFile, instead of Body, names a file holding the body.
	BodyFile string `yaml:"body_file"`
	// Requests is how many warmup requests must succeed. Default 3.
	Requests int `yaml:"requests"`
	// ExpectStatus is the status each warmup answer must have. Default 200.
	ExpectStatus int `yaml:"expect_status"`
	// ExpectJSONField, when set, names a top-level JSON field that must be
	// present in the answer (and equal ExpectJSONValue when that is set).
	ExpectJSONField string `yaml:"expect_json_field"`
	// ExpectJSONValue is the value ExpectJSONField must have, compared as
	// JSON text, e.g. '"v2.7"' or '4'.
	ExpectJSONValue string `yaml:"expect_json_value"`
	// ExpectBody, when set, is a regular expression the answer must match.
	ExpectBody string `yaml:"expect_body"`
	// LatencyTarget, when set, keeps warming until the last Requests
	// answers each took less than this.
	LatencyTarget Duration `yaml:"latency_target"`
	// MaxRequests gives up after this many warmup requests. Default 50.
	MaxRequests int `yaml:"max_requests"`
	// Timeout bounds one warmup request. Default 30s: a cold GPU is slow.
	Timeout Duration `yaml:"timeout"`
	// KeepWarmInterval sends one dummy inference per standby backend this
	// often. 0 disables keep-warm. Default 30s.
	KeepWarmInterval Duration `yaml:"keep_warm_interval"`
}

// Switch configures color switches.
type Switch struct {
	// DrainTimeout is how long the old pool's in-flight requests are
	// tracked after a switch before the stragglers are reported. Default 30s.
	DrainTimeout Duration `yaml:"drain_timeout"`
	// MinReady is how many of the target's backends must be ready for a
	// switch: a count ("2") or a percentage ("50%"). Default "100%".
	MinReady string `yaml:"min_ready"`
	// CapacityCheck also refuses a switch when the target's ready backends
	// cannot hold the active pool's in-flight load at MaxConcurrency.
	CapacityCheck bool `yaml:"capacity_check"`
}

// Duration is a time.Duration written with a unit in YAML ("500ms", "2s").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalYAML writes d as "2s".
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }
