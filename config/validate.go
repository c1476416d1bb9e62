package config

import (
	"fmt"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Defaults, exported so documentation and tests can refer to them.
const (
	DefaultListen              = "127.0.0.1:8080"
	DefaultAdminListen         = "127.0.0.1:9901"
	DefaultMaxRequestBodyBytes = 10 << 20
	DefaultMaxIdleConns        = 256
	DefaultConnectTimeout      = 2 * time.Second
	DefaultResponseHeader      = 60 * time.Second
	DefaultIdleTimeout         = time.Second
	DefaultDrainTimeout        = 30 * time.Second
	DefaultProbeInterval       = 2 * time.Second
	DefaultProbeTimeout        = time.Second
	DefaultWarmupRequests      = 3
	DefaultWarmupTimeout       = 30 * time.Second
	DefaultWarmupMaxRequests   = 50
	DefaultKeepWarmInterval    = 30 * time.Second
)

// Balance policies.
const (
	BalanceLeastInflight = "least_inflight"
	BalanceRoundRobin    = "round_robin"
	BalanceGPU           = "gpu"
)

// Probe kinds.
const (
	ProbeHTTP       = "http"
	ProbeJSON       = "json"
	ProbeKServe     = "kserve"
	ProbeTriton     = "triton"
	ProbeTorchServe = "torchserve"
	ProbeVLLM       = "vllm"
)

func (c *Config) applyDefaults() {
	setDefault(&c.Listen, DefaultListen)
	setDefault(&c.Admin.Listen, DefaultAdminListen)
	setDefault(&c.Active, Blue)
	setDefault(&c.DNSRefresh, Duration(10*time.Second))
	setDefault(&c.Log.Format, "json")
	setDefault(&c.Log.Level, "info")
	setDefault(&c.Log.Access.Sample, 1)
	setDefault(&c.Proxy.MaxRequestBodyBytes, DefaultMaxRequestBodyBytes)
	setDefault(&c.Proxy.MaxIdleConnsPerBackend, DefaultMaxIdleConns)
	t := &c.Proxy.Timeouts
	setDefault(&t.Connect, Duration(DefaultConnectTimeout))
	setDefault(&t.ResponseHeader, Duration(DefaultResponseHeader))
	setDefault(&t.Idle, Duration(DefaultIdleTimeout))
	setDefault(&c.Switch.DrainTimeout, Duration(DefaultDrainTimeout))
	setDefault(&c.Switch.MinReady, "100%")
	m := &c.Traffic.Mirror
	setDefault(&m.MaxBodyBytes, 1<<20)
	setDefault(&m.Concurrency, 16)
	setDefault(&m.Queue, 64)
	setDefault(&m.Timeout, Duration(10*time.Second))
	a := &c.Analysis
	setDefault(&a.Window, Duration(time.Minute))
	setDefault(&a.MinRequests, 50)
	setDefault(&a.MaxErrorRatio, 0.05)
	if a.MaxP99Ratio == nil {
		two := 2.0
		a.MaxP99Ratio = &two
	}
	setDefault(&a.P99Floor, Duration(10*time.Millisecond))
	setDefault(&a.MaxStatusDiffRatio, 0.05)
	setDefault(&a.Observe, Duration(time.Minute))
	if a.AutoRollback == nil {
		on := true
		a.AutoRollback = &on
	}
	setDefault(&c.Outlier.ConsecutiveFailures, 5)
	setDefault(&c.Outlier.BaseEjection, Duration(10*time.Second))
	setDefault(&c.Outlier.MaxEjectionPercent, 50)

	c.Health.applyDefaults(nil)
	c.Warmup.applyDefaults(nil)
	for _, color := range []Color{Blue, Green} {
		p := c.Pools.Get(color)
		setDefault(&p.Balance, BalanceLeastInflight)
		setDefault(&p.MaxQueue, 64)
		setDefault(&p.QueueTimeout, Duration(5*time.Second))
		h := Health{}
		if p.Health != nil {
			h = *p.Health
		}
		h.applyDefaults(&c.Health)
		p.Health = &h
		w := Warmup{}
		if p.Warmup != nil {
			w = *p.Warmup
		}
		w.applyDefaults(&c.Warmup)
		p.Warmup = &w
	}
}

// applyDefaults fills unset fields from parent, or from the built-in
// defaults when parent is nil.
func (h *Health) applyDefaults(parent *Health) {
	if parent != nil {
		setDefault(&h.Kind, parent.Kind)
		if h.Kind == parent.Kind {
			setDefault(&h.Path, parent.Path)
			setDefault(&h.Model, parent.Model)
		}
		// A kind of its own brings that kind's default path.
		setDefault(&h.Path, DefaultProbePath(h.Kind))
		setDefault(&h.MetricsPath, parent.MetricsPath)
		ownInterval := h.Interval != 0 && h.Interval != parent.Interval
		setDefault(&h.Interval, parent.Interval)
		setDefault(&h.Timeout, min(parent.Timeout, h.Interval))
		// The default jitter is a share of this pool's interval, not the
		// parent's absolute value.
		if ownInterval {
			setDefault(&h.Jitter, h.Interval/10)
		}
		setDefault(&h.Jitter, parent.Jitter)
		setDefault(&h.HealthyThreshold, parent.HealthyThreshold)
		setDefault(&h.UnhealthyThreshold, parent.UnhealthyThreshold)
		return
	}
	setDefault(&h.Kind, ProbeJSON)
	setDefault(&h.Path, DefaultProbePath(h.Kind))
	setDefault(&h.Interval, Duration(DefaultProbeInterval))
	setDefault(&h.Timeout, Duration(DefaultProbeTimeout))
	setDefault(&h.Jitter, h.Interval/10)
	setDefault(&h.HealthyThreshold, 2)
	setDefault(&h.UnhealthyThreshold, 3)
}

// DefaultProbePath is the path each probe kind uses when none is set.
func DefaultProbePath(kind string) string {
	switch kind {
	case ProbeKServe, ProbeTriton:
		return "/v2/health/ready"
	case ProbeTorchServe:
		return "/ping"
	default:
		return "/health"
	}
}

func (w *Warmup) applyDefaults(parent *Warmup) {
	if parent != nil {
		if w.Enabled == nil {
			w.Enabled = parent.Enabled
		}
		setDefault(&w.Method, parent.Method)
		setDefault(&w.Path, parent.Path)
		if w.Headers == nil {
			w.Headers = parent.Headers
		}
		if w.Body == "" && w.BodyFile == "" {
			w.Body, w.BodyFile = parent.Body, parent.BodyFile
		}
		setDefault(&w.Requests, parent.Requests)
		setDefault(&w.ExpectStatus, parent.ExpectStatus)
		setDefault(&w.ExpectJSONField, parent.ExpectJSONField)
		setDefault(&w.ExpectJSONValue, parent.ExpectJSONValue)
		setDefault(&w.ExpectBody, parent.ExpectBody)
		setDefault(&w.LatencyTarget, parent.LatencyTarget)
		setDefault(&w.MaxRequests, parent.MaxRequests)
		setDefault(&w.Timeout, parent.Timeout)
		setDefault(&w.KeepWarmInterval, parent.KeepWarmInterval)
		return
	}
	setDefault(&w.Method, http.MethodPost)
	setDefault(&w.Requests, DefaultWarmupRequests)
	setDefault(&w.ExpectStatus, http.StatusOK)
	setDefault(&w.MaxRequests, DefaultWarmupMaxRequests)
	setDefault(&w.Timeout, Duration(DefaultWarmupTimeout))
	setDefault(&w.KeepWarmInterval, Duration(DefaultKeepWarmInterval))
}

// On reports whether warmup runs: explicitly enabled, or a path is set and
// it was not explicitly disabled.
func (w *Warmup) On() bool {
	if w.Enabled != nil {
		return *w.Enabled && w.Path != ""
	}
	return w.Path != ""
}

func setDefault[T comparable](field *T, def T) {
	var zero T
	if *field == zero {
		*field = def
	}
}

// problems collects validation errors with the line of their path.
type problems struct {
	lines map[string]int
	errs  Errors
}

func (p *problems) add(path, format string, args ...any) {
	// A defaulted field has no line of its own: report the full path at
	// its nearest written parent's line.
	line, ok := p.lines[path]
	for parent := path; !ok && parent != ""; {
		i := strings.LastIndexAny(parent, ".[")
		if i < 0 {
			parent = ""
		} else {
			parent = parent[:i]
		}
		line, ok = p.lines[parent]
	}
	p.errs = append(p.errs, &Error{Path: path, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (c *Config) validate(lines map[string]int) Errors {
	p := &problems{lines: lines}
	checkListen(p, "listen", c.Listen)
	checkListen(p, "admin.listen", c.Admin.Listen)
	if c.Listen == c.Admin.Listen {
		p.add("admin.listen", "%q is also the traffic listener; the admin API needs its own port", c.Admin.Listen)
	}
	if !c.Active.Valid() {
		p.add("active", "%q is not a color (want blue or green)", c.Active)
	}
	switch c.Log.Format {
	case "json", "console":
	default:
		p.add("log.format", "%q is not a log format (want json or console)", c.Log.Format)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		p.add("log.level", "%q is not a log level (want debug, info, warn or error)", c.Log.Level)
	}
	if a := c.Log.Access.Sample; a <= 0 || a > 1 {
		p.add("log.access.sample", "%v is not a share in (0, 1] (want e.g. 0.01 for 1%%)", a)
	}
	if c.Proxy.MaxRequestBodyBytes < 0 {
		p.add("proxy.max_request_body_bytes", "must be positive, got %d", c.Proxy.MaxRequestBodyBytes)
	}
	if c.Proxy.MaxIdleConnsPerBackend < 0 {
		p.add("proxy.max_idle_conns_per_backend", "must be positive, got %d", c.Proxy.MaxIdleConnsPerBackend)
	}
	if t := c.Proxy.Timeouts; t.Total > 0 && t.Total < t.ResponseHeader {
		p.add("proxy.timeouts.total", "%s is shorter than response_header %s; raise it or set 0 for no limit", t.Total.D(), t.ResponseHeader.D())
	}
	if o := c.Outlier; o.ConsecutiveFailures < -1 || o.ConsecutiveFailures == 0 {
		p.add("outlier.consecutive_failures", "must be at least 1, or -1 to disable, got %d", o.ConsecutiveFailures)
	}
	if o := c.Outlier; o.MaxEjectionPercent < 0 || o.MaxEjectionPercent > 100 {
		p.add("outlier.max_ejection_percent", "must be within 0-100, got %d", o.MaxEjectionPercent)
	}
	c.validateTraffic(p)
	c.validateAnalysis(p)
	if _, err := ParseMinReady(c.Switch.MinReady, 1); err != nil {
		p.add("switch.min_ready", "%v", err)
	}
	c.Health.validate(p, "health")
	c.Warmup.validate(p, "warmup")

	seen := map[string]string{}
	for _, color := range []Color{Blue, Green} {
		pool := c.Pools.Get(color)
		path := "pools." + string(color)
		if _, ok := lines[path]; !ok {
			p.add(path, "missing; both pools must be declared (the standby one may have no backends yet)")
			continue
		}
		if pool.Version == "" {
			p.add(path+".version", "missing; name the model version this pool serves, e.g. v2.7")
		}
		if color == c.Active && len(pool.Backends) == 0 {
			p.add(path+".backends", "the active pool has no backends; add host:port addresses")
		}
		for i, b := range pool.Backends {
			bp := fmt.Sprintf("%s.backends[%d]", path, i)
			if msg := checkHostPort(b); msg != "" {
				p.add(bp, "%q %s", b, msg)
				continue
			}
			if prev, dup := seen[b]; dup {
				p.add(bp, "%q is already listed at %s; a backend belongs to one pool once", b, prev)
				continue
			}
			seen[b] = bp
		}
		switch pool.Balance {
		case BalanceLeastInflight, BalanceRoundRobin, BalanceGPU:
		default:
			p.add(path+".balance", "%q is not a policy (want least_inflight, round_robin or gpu)", pool.Balance)
		}
		if pool.MaxQueue < 0 {
			p.add(path+".max_queue", "must be 0 or positive, got %d", pool.MaxQueue)
		}
		if pool.MaxConcurrency < 0 {
			p.add(path+".max_concurrency", "must be 0 (no cap) or positive, got %d", pool.MaxConcurrency)
		}
		pool.Health.validate(p, path+".health")
		pool.Warmup.validate(p, path+".warmup")
	}
	return p.errs
}

func (h *Health) validate(p *problems, path string) {
	switch h.Kind {
	case ProbeHTTP, ProbeJSON, ProbeKServe, ProbeTriton, ProbeTorchServe, ProbeVLLM:
	default:
		p.add(path+".kind", "%q is not a probe kind (want http, json, kserve, triton, torchserve or vllm)", h.Kind)
	}
	checkPath(p, path+".path", h.Path)
	checkPath(p, path+".metrics_path", h.MetricsPath)
	if h.Interval <= 0 {
		p.add(path+".interval", "must be positive")
	}
	if h.Timeout > h.Interval {
		p.add(path+".timeout", "%s is longer than interval %s; probes would overlap", h.Timeout.D(), h.Interval.D())
	}
	if h.Jitter > h.Interval {
		p.add(path+".jitter", "%s is longer than interval %s", h.Jitter.D(), h.Interval.D())
	}
	if h.HealthyThreshold < 1 {
		p.add(path+".healthy_threshold", "must be at least 1, got %d", h.HealthyThreshold)
	}
	if h.UnhealthyThreshold < 1 {
		p.add(path+".unhealthy_threshold", "must be at least 1, got %d", h.UnhealthyThreshold)
	}
}

func (w *Warmup) validate(p *problems, path string) {
	if !w.On() {
		return
	}
	checkPath(p, path+".path", w.Path)
	if w.Method == "" || strings.ToUpper(w.Method) != w.Method || strings.ContainsAny(w.Method, " \t/") {
		p.add(path+".method", "%q is not an HTTP method (want e.g. POST)", w.Method)
	}
	if w.Body != "" && w.BodyFile != "" {
		p.add(path+".body_file", "set body or body_file, not both")
	}
	if w.Requests < 1 {
		p.add(path+".requests", "must be at least 1, got %d", w.Requests)
	}
	if w.MaxRequests < w.Requests {
		p.add(path+".max_requests", "%d is below requests %d", w.MaxRequests, w.Requests)
	}
	if w.ExpectStatus < 100 || w.ExpectStatus > 599 {
		p.add(path+".expect_status", "%d is not an HTTP status", w.ExpectStatus)
	}
	if w.ExpectJSONValue != "" && w.ExpectJSONField == "" {
		p.add(path+".expect_json_value", "set expect_json_field too")
	}
	if w.ExpectBody != "" {
		if _, err := regexp.Compile(w.ExpectBody); err != nil {
			p.add(path+".expect_body", "not a regular expression: %v", err)
		}
	}
	for k := range w.Headers {
		if k == "" || strings.ContainsAny(k, " :\r\n") {
			p.add(path+".headers", "%q is not a header name", k)
		}
	}
}

func checkPath(p *problems, path, v string) {
	if v != "" && !strings.HasPrefix(v, "/") {
		p.add(path, "%q must start with /", v)
	}
}

func checkListen(p *problems, path, addr string) {
	if msg := checkHostPort(addr); msg != "" {
		p.add(path, "%q %s", addr, msg)
	}
}

// checkHostPort returns "" when addr is a usable host:port, else what is wrong.
func checkHostPort(addr string) string {
	if strings.Contains(addr, "://") {
		return "has a scheme; write host:port only"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		if strings.Contains(err.Error(), "missing port") {
			return "has no port (want host:port)"
		}
		return "is not host:port"
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return "has an invalid port (want 1-65535)"
	}
	if strings.ContainsAny(host, " /") {
		return "has an invalid host"
	}
	return ""
}

// ParseMinReady turns a min_ready value into a backend count for a pool of
// size n: "2" means 2, "50%" means half rounded up, "" means all.
func ParseMinReady(v string, n int) (int, error) {
	if v == "" {
		return n, nil
	}
	if pct, ok := strings.CutSuffix(v, "%"); ok {
		f, err := strconv.ParseFloat(pct, 64)
		if err != nil || !(f > 0 && f <= 100) {
			return 0, fmt.Errorf("%q is not a percentage in (0, 100] (want e.g. \"50%%\")", v)
		}
		need := int(f*float64(n)/100 + 0.999999)
		return max(need, 1), nil
	}
	k, err := strconv.Atoi(v)
	if err != nil || k < 1 {
		return 0, fmt.Errorf("%q is neither a count of at least 1 nor a percentage (want e.g. \"2\" or \"50%%\")", v)
	}
	return k, nil
}

func (c *Config) validateTraffic(p *problems) {
	t := &c.Traffic
	for _, col := range []Color{Blue, Green} {
		w := t.Weight(col)
		path := "traffic." + string(col)
		switch {
		case w < 0 || w > 100:
			p.add(path, "%d is not a percent (want 0-100)", w)
		case w > 0 && col == c.Active:
			p.add(path, "%s is the active color and takes the rest; set the standby color's share instead (traffic.%s)", col, col.Other())
		}
	}
	if h := t.StickyHeader; h != "" && strings.ContainsAny(h, " :\r\n") {
		p.add("traffic.sticky_header", "%q is not a header name", h)
	}
	m := t.Mirror
	if m.Percent < 0 || m.Percent > 100 {
		p.add("traffic.mirror.percent", "%v is not a percent (want 0-100)", m.Percent)
	}
	if m.Percent > 0 {
		switch {
		case !m.To.Valid():
			p.add("traffic.mirror.to", "%q is not a color (want the standby color, %s)", m.To, c.Active.Other())
		case m.To == c.Active:
			p.add("traffic.mirror.to", "%s is the active color; mirror to the standby, %s", m.To, c.Active.Other())
		}
	}
	if m.Concurrency < 1 || m.Queue < 0 || m.MaxBodyBytes < 0 {
		p.add("traffic.mirror", "concurrency must be at least 1, queue and max_body_bytes at least 0")
	}
}

func (c *Config) validateAnalysis(p *problems) {
	a := &c.Analysis
	if a.Window.D() > 10*time.Minute {
		p.add("analysis.window", "%s is longer than the 10m of history kept", a.Window.D())
	}
	if a.MaxErrorRatio < 0 || a.MaxErrorRatio > 1 {
		p.add("analysis.max_error_ratio", "%v is not a ratio in [0, 1]", a.MaxErrorRatio)
	}
	if a.MaxStatusDiffRatio < 0 || a.MaxStatusDiffRatio > 1 {
		p.add("analysis.max_status_diff_ratio", "%v is not a ratio in [0, 1]", a.MaxStatusDiffRatio)
	}
	if *a.MaxP99Ratio < 0 {
		p.add("analysis.max_p99_ratio", "must be 0 (off) or positive, got %v", *a.MaxP99Ratio)
	}
	if a.MinRequests < 1 {
		p.add("analysis.min_requests", "must be at least 1, got %d", a.MinRequests)
	}
}
