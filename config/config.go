// Package config defines Switchyard's configuration file: its schema, a
// strict YAML decoder that reports unknown keys with their line, defaults,
// and validation that names the field path and the fix.
//
// The pipeline is: start from the defaults (Default, the one place they
// are written) → decode the file strictly onto them → validate the whole.
// Because the file is decoded onto the defaults, a field the file does not
// mention keeps its default and a field it sets to 0 stays 0: zero is
// either a documented setting ("0 = off") or rejected by validation, never
// silently replaced. A file that fails any step is rejected whole.
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
	// Changing it needs a restart. No backend may be this address.
	Listen string `yaml:"listen"`
	// TLS, when set, serves the traffic listener over TLS (HTTP/2 by
	// ALPN). Default: off, plain TCP, where HTTP/2 is accepted in
	// cleartext with prior knowledge (h2c).
	TLS ListenerTLS `yaml:"tls"`
	// Admin configures the admin API listener.
	Admin Admin `yaml:"admin"`
	// Active is the color that receives traffic: blue or green. Default blue.
	Active Color `yaml:"active"`
	// DNSRefresh is how often backends given as hostnames (a Kubernetes
	// headless Service) are re-resolved. Default 10s; 0 resolves them only
	// when a config is loaded.
	DNSRefresh Duration `yaml:"dns_refresh"`
	// StateDir is where the last admin switch is persisted so it survives a
	// restart. Default "": no persistence.
	StateDir string `yaml:"state_dir"`
	// Log configures the zap logger.
	Log Log `yaml:"log"`
	// Proxy configures how requests are forwarded to backends.
	Proxy Proxy `yaml:"proxy"`
	// Health holds the probe settings that both pools inherit; a pool's
	// own health section overrides the fields it writes.
	Health Health `yaml:"health"`
	// Warmup holds the warmup settings that both pools inherit; a pool's
	// own warmup section overrides the fields it writes.
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
	// Fleet, when fleet.kubernetes.name is set, makes every replica follow
	// one routing intent kept in the Kubernetes API. Default: off.
	Fleet Fleet `yaml:"fleet"`
}

// Traffic configures a canary split and shadow traffic. Both end when the
// active color changes.
type Traffic struct {
	// Blue and Green are the percent (0-100) of requests sent to that
	// color while it is the standby; the active color takes the rest. Only
	// the standby color may be non-zero. Default 0: no canary.
	Blue  int `yaml:"blue"`
	Green int `yaml:"green"`
	// StickyHeader, when set, names a request header (e.g. X-User-ID)
	// whose hash picks the color, so one user stays on one color. It must
	// be an HTTP header name token (RFC 9110). Default "": a random pick.
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
	// Percent of requests copied, 0-100. Default 0: off.
	Percent float64 `yaml:"percent"`
	// MaxBodyBytes: requests with a larger body are not mirrored. Default
	// 1 MiB; 0 sets no limit of its own (proxy.max_request_body_bytes
	// still applies).
	MaxBodyBytes int `yaml:"max_body_bytes"`
	// Concurrency bounds mirrored requests in flight, at least 1. Default
	// 16.
	Concurrency int `yaml:"concurrency"`
	// Queue bounds copies waiting for a free slot; more are dropped and
	// counted, never queued without bound. Default 64; 0 copies only when
	// a worker is free at that moment.
	Queue int `yaml:"queue"`
	// Timeout bounds one mirrored request; it must be positive. Default
	// 10s.
	Timeout Duration `yaml:"timeout"`
}

// Analysis configures the comparison of the candidate color with the
// baseline during a canary or shadow phase, and of the new active color
// with the previous one after a switch.
type Analysis struct {
	// Window is how far back the comparison looks: positive, at most 10m.
	// Default 60s.
	Window Duration `yaml:"window"`
	// MinRequests is how many requests the candidate needs before a
	// verdict, at least 1. Default 50.
	MinRequests int `yaml:"min_requests"`
	// MaxErrorRatio is the highest 5xx-or-failure share the candidate may
	// have, 0-1. Default 0.05; 0 tolerates no error at all.
	MaxErrorRatio float64 `yaml:"max_error_ratio"`
	// MaxP99Ratio is the highest candidate P99 / baseline P99. Default 2;
	// 0 disables the relative check. Parse always sets it.
	MaxP99Ratio *float64 `yaml:"max_p99_ratio"`
	// MaxP99 is an absolute P99 bound. Default 0: off.
	MaxP99 Duration `yaml:"max_p99"`
	// P99Floor: a candidate P99 below it never breaks MaxP99Ratio, since
	// a few milliseconds of jitter are not a regression. Default 10ms; 0
	// sets no floor.
	P99Floor Duration `yaml:"p99_floor"`
	// MaxStatusDiffRatio is, for shadow traffic, the highest share of
	// mirrored requests whose status class differs from the live answer,
	// 0-1. Default 0.05; 0 tolerates no difference.
	MaxStatusDiffRatio float64 `yaml:"max_status_diff_ratio"`
	// Observe is how long after a switch the new color is watched for
	// automatic rollback. Default 60s; 0 watches not at all, so there is
	// no automatic rollback (as with auto_rollback: false).
	Observe Duration `yaml:"observe"`
	// BreachFor is how long a threshold must stay broken before the
	// gateway rolls back by itself within Observe: the rollback comes at
	// the evaluation (they run once a second) BreachFor after the first
	// one that found a threshold broken, if every evaluation in between
	// found one broken too. A burst of errors that the following traffic
	// dilutes is not a regression. Counted in whole seconds. Default 3s;
	// 0 rolls back at the first failed evaluation.
	BreachFor Duration `yaml:"breach_for"`
	// AutoRollback switches back by itself when the new color keeps
	// breaking a threshold for BreachFor within Observe and the previous
	// color is still ready. Default true. Parse always sets it.
	AutoRollback *bool `yaml:"auto_rollback"`
	// AutoPromote switches to the candidate by itself once a canary or
	// shadow phase has run a whole Window clean. Default false.
	AutoPromote bool `yaml:"auto_promote"`
}

// Outlier configures passive health checks on live traffic.
type Outlier struct {
	// ConsecutiveFailures ejects a backend after this many connect errors,
	// timeouts or 5xx answers in a row. Default 5; -1 disables.
	ConsecutiveFailures int `yaml:"consecutive_failures"`
	// BaseEjection is the first ejection's length; each repeat doubles it,
	// up to 32 times. It must be positive. Default 10s.
	BaseEjection Duration `yaml:"base_ejection"`
	// MaxEjectionPercent caps the share of a pool ejected at once, 0-100,
	// so a pool-wide failure never ejects everything. Default 50; 0 never
	// ejects.
	MaxEjectionPercent int `yaml:"max_ejection_percent"`
}

// Admin configures the admin listener, which also serves /metrics,
// /healthz and /readyz.
type Admin struct {
	// Listen is the admin listener, host:port. Default 127.0.0.1:9901. Keep
	// it on loopback or a private network: it can move all traffic. No
	// backend may be this address.
	Listen string `yaml:"listen"`
	// TokenFile, when set, names a file holding the bearer token that every
	// /admin/ call must present. Surrounding whitespace is ignored.
	// Default "": no token.
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
	// Enabled turns the access log on. Default false.
	Enabled bool `yaml:"enabled"`
	// Sample is the share of requests logged, in (0, 1]. Default 1.
	Sample float64 `yaml:"sample"`
}

// Proxy configures the request path.
type Proxy struct {
	// MaxRequestBodyBytes is the largest request body forwarded, at least
	// 1; larger bodies get 413. Default 10 MiB. Raising it above the value
	// the gateway started with needs a restart.
	MaxRequestBodyBytes int `yaml:"max_request_body_bytes"`
	// Timeouts bound each phase of a proxied request.
	Timeouts Timeouts `yaml:"timeouts"`
	// MaxIdleConnsPerBackend caps the keep-alive connections kept open to
	// each backend, at least 1. Default 256.
	MaxIdleConnsPerBackend int `yaml:"max_idle_conns_per_backend"`
	// MaxConnsPerBackend caps the connections open to each backend, idle
	// or busy, at least 1. A request that finds them all busy waits for
	// one until its response header timeout, so a burst of clients
	// queues in the gateway instead of dialling (and soon closing) a
	// connection each. Default 256. Restart to change.
	MaxConnsPerBackend int `yaml:"max_conns_per_backend"`
	// Client bounds what one client connection may cost. Restart to change.
	Client ClientLimits `yaml:"client"`
}

// ClientLimits bound each client connection of the traffic listener, so
// that a slow, silent or oversized client costs only its own connection.
// A 0 duration means no limit.
type ClientLimits struct {
	// HeaderTimeout bounds the request line and headers, from their first
	// byte (slowloris). Default 10s.
	HeaderTimeout Duration `yaml:"header_timeout"`
	// ReadTimeout bounds a request body larger than MaxHeaderBytes once
	// the head arrived; a smaller body is read within HeaderTimeout.
	// Default 60s.
	ReadTimeout Duration `yaml:"read_timeout"`
	// WriteTimeout bounds each wait for the client to take more of the
	// answer: a buffered answer as a whole, each piece of a streamed one.
	// A client that stops reading loses its connection and its slot after
	// this. Default 30s.
	WriteTimeout Duration `yaml:"write_timeout"`
	// IdleTimeout closes a keep-alive connection that sends no request.
	// Default 90s.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxHeaderBytes caps the request line and headers together, at least
	// 1; beyond it the client gets 431 (or 414 for a request line alone).
	// Default 8192.
	MaxHeaderBytes int `yaml:"max_header_bytes"`
}

// Timeouts bound a proxied request.
type Timeouts struct {
	// Connect bounds dialing a backend; it must be positive. Default 2s.
	Connect Duration `yaml:"connect"`
	// ResponseHeader bounds the wait for the response headers once the
	// request is sent: model inference time counts here. It must be
	// positive. Default 60s.
	ResponseHeader Duration `yaml:"response_header"`
	// Total bounds the whole exchange, body streaming included. 0 (the
	// default) means no limit: token streams run for minutes.
	Total Duration `yaml:"total"`
	// BodyIdle bounds each wait for more of a response body once the
	// headers arrived: a backend that keeps sending is never cut, one that
	// stalls this long is. 0 means no bound. Default 60s.
	BodyIdle Duration `yaml:"body_idle"`
	// Idle is how long an unused keep-alive connection to a backend is
	// reused. Keep it below the backend's own keep-alive (gunicorn: 2s) so
	// that the gateway, not the backend, closes idle connections. Default
	// 1s; 0 never reuses a connection.
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
	// MaxConcurrency caps in-flight requests per backend. Default 0: no
	// cap. A GPU holds only so many requests; beyond it they queue here.
	MaxConcurrency int `yaml:"max_concurrency"`
	// MaxQueue is how many requests may wait for a free backend when all
	// are at MaxConcurrency; more get 503 with Retry-After. Default 64; 0
	// queues none.
	MaxQueue int `yaml:"max_queue"`
	// QueueTimeout is how long a request waits in that queue; it must be
	// positive (for no queue, set max_queue: 0). Default 5s.
	QueueTimeout Duration `yaml:"queue_timeout"`
	// RetryNonIdempotent lets a POST (or PATCH) that failed after it was
	// sent go to another backend once, as an idempotent request does.
	// Inference is usually pure, so a retry costs only GPU time; turn it
	// on when a duplicated request is harmless. A connect failure, or a
	// connection a stopped backend closed under the request, is retried
	// either way; a timeout never is. Default false.
	RetryNonIdempotent bool `yaml:"retry_non_idempotent"`
	// Protocol is what the backends speak: http1 (default), h2c (HTTP/2
	// with prior knowledge, any request) or grpc (gRPC over HTTP/2; other
	// HTTP/2 requests are refused at the gateway). Both pools must speak
	// the same protocol.
	Protocol string `yaml:"protocol"`
	// TLS dials the backends with TLS (h2c and grpc only). Default: off.
	TLS UpstreamTLS `yaml:"tls"`
	// Health is this pool's probe settings: the top-level health section,
	// with the fields this pool's health section writes overriding it.
	// Parse always sets it.
	Health *Health `yaml:"health"`
	// Warmup is this pool's warmup settings: the top-level warmup section,
	// with the fields this pool's warmup section writes overriding it.
	// Parse always sets it.
	Warmup *Warmup `yaml:"warmup"`
}

// Health configures active probing of every backend.
//
// A health section (the top-level one, or a pool's, which starts from the
// top-level one) keeps every field it does not write. Three defaults follow
// other fields written in the same section: a section that sets Kind to a
// new kind without Path and Model gets that kind's default path and no
// model; one that sets Interval without Jitter gets 10% of that interval;
// one that sets Interval without Timeout gets the timeout it had, capped
// at that interval.
type Health struct {
	// Kind is the probe protocol: json (default), http, kserve, triton,
	// torchserve, vllm, grpc (grpc.health.v1 Check) or kserve-grpc
	// (KServe v2 ServerReady, and ModelReady and ModelMetadata of Model).
	Kind string `yaml:"kind"`
	// Path is the path probed; it must start with /. Default: the kind's
	// path (DefaultProbePath: /health for json, http and vllm;
	// /v2/health/ready for kserve and triton; /ping for torchserve; none
	// for the gRPC kinds, which call methods instead).
	Path string `yaml:"path"`
	// Model, for kserve, triton and kserve-grpc, also checks that model
	// (/v2/models/{model}/ready, or ModelReady and ModelMetadata).
	// Default "": not checked.
	Model string `yaml:"model"`
	// Service, for grpc, is the grpc.health.v1 service name asked about.
	// Default "": the server as a whole.
	Service string `yaml:"service"`
	// MetricsPath, when set, is scraped on every probe for queue and GPU
	// signals in the Prometheus text format. Default "": off.
	MetricsPath string `yaml:"metrics_path"`
	// Interval between probes of one backend; it must be positive.
	// Default 2s.
	Interval Duration `yaml:"interval"`
	// Timeout bounds one probe: positive, at most Interval. Default 1s
	// (capped at Interval, see above).
	Timeout Duration `yaml:"timeout"`
	// Jitter spreads probes randomly by up to this much, at most
	// Interval. Default 10% of Interval (200ms); 0 probes on the beat.
	Jitter Duration `yaml:"jitter"`
	// HealthyThreshold is the number of consecutive passes that make an
	// unhealthy backend healthy, at least 1. Default 2.
	HealthyThreshold int `yaml:"healthy_threshold"`
	// UnhealthyThreshold is the number of consecutive failures that make a
	// healthy backend unhealthy, at least 1. Default 3.
	UnhealthyThreshold int `yaml:"unhealthy_threshold"`
}

// Warmup configures the dummy inference a backend must pass before it
// receives traffic.
//
// A warmup section (the top-level one, or a pool's, which starts from the
// top-level one) keeps every field it does not write, with two exceptions:
// a section that writes Body or BodyFile drops the inherited other one, and
// a section that writes Headers replaces the inherited headers whole.
type Warmup struct {
	// Enabled turns warmup off when false. Default true: warmup runs
	// whenever Path is set. Parse always sets it; nil counts as true.
	Enabled *bool `yaml:"enabled"`
	// Kind is how the warmup request is sent: http (default), or
	// kserve-grpc: ModelInfer of Model over gRPC, with Body (or BodyFile)
	// the KServe v2 JSON inference request ({"inputs": [{"name", "shape",
	// "datatype", "data"}]}), and the answer checked in the same JSON form
	// ({"model_name", "model_version", "outputs": [...]}) by the expect_
	// fields. Method, Path and ExpectStatus do not apply to kserve-grpc.
	Kind string `yaml:"kind"`
	// Model is the model kserve-grpc warmup infers with. Default "":
	// kserve-grpc warmup off.
	Model string `yaml:"model"`
	// Method of the warmup request. Default POST.
	Method string `yaml:"method"`
	// Path of the warmup request, e.g. /predict. Default "": warmup off.
	Path string `yaml:"path"`
	// Headers sent with each warmup request; names must be HTTP header
	// tokens. Default none (a JSON body still gets Content-Type:
	// application/json).
	Headers map[string]string `yaml:"headers"`
	// Body of each warmup request. Default "": none.
	Body string `yaml:"body"`
	// BodyFile, instead of Body, names a file holding the body.
	BodyFile string `yaml:"body_file"`
	// Requests is how many consecutive warmup answers must pass, at least
	// 1. Default 3.
	Requests int `yaml:"requests"`
	// ExpectStatus is the status each warmup answer must have, 100-599.
	// Default 200.
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
	// answers each took less than this. Default 0: none.
	LatencyTarget Duration `yaml:"latency_target"`
	// MaxRequests gives up after this many warmup requests, at least
	// Requests. Default 50.
	MaxRequests int `yaml:"max_requests"`
	// Timeout bounds one warmup request; it must be positive. Default 30s:
	// a cold GPU is slow.
	Timeout Duration `yaml:"timeout"`
	// KeepWarmInterval sends one dummy inference per standby backend this
	// often. Default 30s; 0 disables keep-warm.
	KeepWarmInterval Duration `yaml:"keep_warm_interval"`
}

// Switch configures color switches.
type Switch struct {
	// DrainTimeout is how long the old pool's in-flight requests are
	// tracked after a switch before the stragglers are reported (they are
	// never killed). Default 30s; 0 reports them at once.
	DrainTimeout Duration `yaml:"drain_timeout"`
	// MinReady is how many of the target's backends must be ready for a
	// switch: a count ("2") or a percentage ("50%"). Default "100%"; ""
	// also means all of them.
	MinReady string `yaml:"min_ready"`
	// CapacityCheck also refuses a switch when the target's ready backends
	// cannot hold the active pool's in-flight load at MaxConcurrency.
	// Default false.
	CapacityCheck bool `yaml:"capacity_check"`
}

// Duration is a time.Duration written with a unit in YAML ("500ms", "2s").
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalYAML writes d as "2s".
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }
