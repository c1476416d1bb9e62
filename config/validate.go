package config

import (
	"fmt"
	"maps"
	"math"
	"net"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Balance policies.
const (
	BalanceLeastInflight = "least_inflight"
	BalanceRoundRobin    = "round_robin"
	BalanceGPU           = "gpu"
)

// BalancePolicies lists the balancing policies pools.*.balance accepts;
// the proxy's selector registry is tested to match it.
func BalancePolicies() []string {
	return []string{BalanceLeastInflight, BalanceRoundRobin, BalanceGPU}
}

// Probe kinds.
const (
	ProbeHTTP       = "http"
	ProbeJSON       = "json"
	ProbeKServe     = "kserve"
	ProbeTriton     = "triton"
	ProbeTorchServe = "torchserve"
	ProbeVLLM       = "vllm"
	// ProbeGRPC asks grpc.health.v1.Health/Check; ProbeKServeGRPC asks
	// the KServe v2 gRPC API (ServerReady, ModelReady, ModelMetadata).
	ProbeGRPC       = "grpc"
	ProbeKServeGRPC = "kserve-grpc"
)

// Warmup kinds.
const (
	WarmupHTTP       = "http"
	WarmupKServeGRPC = "kserve-grpc"
)

// On reports whether warmup runs: a path (for kserve-grpc, a model) is
// set and Enabled is not false.
func (w *Warmup) On() bool {
	target := w.Path
	if w.Kind == WarmupKServeGRPC {
		target = w.Model
	}
	if w.Enabled != nil {
		return *w.Enabled && target != ""
	}
	return target != ""
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
	listenOK := checkListen(p, "listen", c.Listen)
	adminOK := checkListen(p, "admin.listen", c.Admin.Listen)
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
	if a := c.Log.Access.Sample; !(a > 0 && a <= 1) {
		p.add("log.access.sample", "%v is not a share in (0, 1] (want e.g. 0.01 for 1%%; to log nothing, set enabled: false)", a)
	}
	c.validateProxy(p)
	if o := c.Outlier; o.ConsecutiveFailures < -1 || o.ConsecutiveFailures == 0 {
		p.add("outlier.consecutive_failures", "must be at least 1, or -1 to disable, got %d", o.ConsecutiveFailures)
	}
	checkPositive(p, "outlier.base_ejection", c.Outlier.BaseEjection, "; to stop ejecting, set consecutive_failures: -1")
	if o := c.Outlier; o.MaxEjectionPercent < 0 || o.MaxEjectionPercent > 100 {
		p.add("outlier.max_ejection_percent", "must be within 0-100, got %d", o.MaxEjectionPercent)
	}
	c.validateTraffic(p)
	c.validateTLS(p)
	c.validateAnalysis(p)
	c.validateFleet(p)
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
			if listenOK && reachesListener(b, c.Listen, localIPs) {
				p.add(bp, "%q is the gateway's own listen address (listen: %q); a backend must be a model server, or every request would loop back into the gateway", b, c.Listen)
				continue
			}
			if adminOK && reachesListener(b, c.Admin.Listen, localIPs) {
				p.add(bp, "%q is the gateway's own admin address (admin.listen: %q); a backend must be a model server, not the gateway's admin API", b, c.Admin.Listen)
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
		checkPositive(p, path+".queue_timeout", pool.QueueTimeout, "; for no queue, set max_queue: 0")
		// A pool section equal to the top-level one has its problems
		// reported once, at the top level.
		if *pool.Health != c.Health {
			pool.Health.validate(p, path+".health")
		}
		if !reflect.DeepEqual(pool.Warmup, &c.Warmup) {
			pool.Warmup.validate(p, path+".warmup")
		}
	}
	return p.errs
}

func (c *Config) validateProxy(p *problems) {
	if n := c.Proxy.MaxRequestBodyBytes; n < 1 {
		p.add("proxy.max_request_body_bytes", "must be at least 1, got %d", n)
	}
	if n := c.Proxy.MaxIdleConnsPerBackend; n < 1 {
		p.add("proxy.max_idle_conns_per_backend", "must be at least 1, got %d; to stop reusing connections, set proxy.timeouts.idle: 0s", n)
	}
	if n := c.Proxy.MaxConnsPerBackend; n < 1 {
		p.add("proxy.max_conns_per_backend", "must be at least 1, got %d", n)
	} else if c.Proxy.MaxIdleConnsPerBackend > n {
		p.add("proxy.max_idle_conns_per_backend", "%d is more than proxy.max_conns_per_backend %d; lower it or raise max_conns_per_backend", c.Proxy.MaxIdleConnsPerBackend, n)
	}
	t := c.Proxy.Timeouts
	checkPositive(p, "proxy.timeouts.connect", t.Connect, "")
	checkPositive(p, "proxy.timeouts.response_header", t.ResponseHeader, "; it is how long inference may take")
	if t.Total > 0 && t.Total < t.ResponseHeader {
		p.add("proxy.timeouts.total", "%s is shorter than response_header %s; raise it or set 0 for no limit", t.Total.D(), t.ResponseHeader.D())
	}
	if n := c.Proxy.Client.MaxHeaderBytes; n < 1 {
		p.add("proxy.client.max_header_bytes", "must be at least 1, got %d (want e.g. 8192)", n)
	}
}

// checkPositive reports a duration field that must be positive and is 0:
// its default was overridden by an explicit 0 that means nothing for it.
// Negative durations never get here: the decoder refuses them.
func checkPositive(p *problems, path string, d Duration, hint string) {
	if d <= 0 {
		p.add(path, "must be a positive duration such as 2s, got %s%s", d.D(), hint)
	}
}

func (h *Health) validate(p *problems, path string) {
	switch h.Kind {
	case ProbeHTTP, ProbeJSON, ProbeKServe, ProbeTriton, ProbeTorchServe, ProbeVLLM, ProbeGRPC, ProbeKServeGRPC:
	default:
		p.add(path+".kind", "%q is not a probe kind (want http, json, kserve, triton, torchserve, vllm, grpc or kserve-grpc)", h.Kind)
	}
	if h.Path == "" && DefaultProbePath(h.Kind) != "" {
		p.add(path+".path", "is empty; set the path to probe (the %s default is %s) or leave the key out", h.Kind, DefaultProbePath(h.Kind))
	}
	checkPath(p, path+".path", h.Path)
	checkPath(p, path+".metrics_path", h.MetricsPath)
	checkPositive(p, path+".interval", h.Interval, "")
	if h.Interval > 0 {
		// A 0 interval also caps an unwritten timeout at 0: report only
		// the interval.
		checkPositive(p, path+".timeout", h.Timeout, "")
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
	switch w.Kind {
	case WarmupHTTP, WarmupKServeGRPC:
	default:
		p.add(path+".kind", "%q is not a warmup kind (want http or kserve-grpc)", w.Kind)
	}
	if !w.On() {
		return
	}
	if w.Kind == WarmupKServeGRPC && w.Body == "" && w.BodyFile == "" {
		p.add(path+".body", "kserve-grpc warmup needs the inference request as KServe v2 JSON, e.g. '{\"inputs\": [{\"name\": \"input\", \"datatype\": \"FP32\", \"shape\": [1, 4], \"data\": [0, 0, 0, 0]}]}'")
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
		p.add(path+".expect_status", "%d is not an HTTP status (want 100-599)", w.ExpectStatus)
	}
	checkPositive(p, path+".timeout", w.Timeout, "; a hung warmup request would keep the backend cold for good")
	if w.ExpectJSONValue != "" && w.ExpectJSONField == "" {
		p.add(path+".expect_json_value", "set expect_json_field too")
	}
	if w.ExpectBody != "" {
		if _, err := regexp.Compile(w.ExpectBody); err != nil {
			p.add(path+".expect_body", "not a regular expression: %v", err)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(w.Headers)) {
		if !ValidHeaderName(k) {
			p.add(path+".headers", "%q is not a header name (want letters, digits and !#$%%&'*+-.^_`|~ only, e.g. X-Api-Key)", k)
		}
	}
}

func checkPath(p *problems, path, v string) {
	if v != "" && !strings.HasPrefix(v, "/") {
		p.add(path, "%q must start with /", v)
	}
}

// checkListen reports whether addr is a usable listen address, adding a
// problem when it is not.
func checkListen(p *problems, path, addr string) bool {
	if msg := checkHostPort(addr); msg != "" {
		p.add(path, "%q %s", addr, msg)
		return false
	}
	return true
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
	if h := t.StickyHeader; h != "" && !ValidHeaderName(h) {
		p.add("traffic.sticky_header", "%q is not a header name (want letters, digits and !#$%%&'*+-.^_`|~ only, e.g. X-User-ID)", h)
	}
	m := t.Mirror
	if !(m.Percent >= 0 && m.Percent <= 100) {
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
	checkPositive(p, "traffic.mirror.timeout", m.Timeout, "")
}

// ValidHeaderName reports whether s is an HTTP field name: a token of
// RFC 9110 section 5.6.2 (letters, digits and !#$%&'*+-.^_`|~), so no
// space, colon or control character. The admin API checks
// traffic.sticky_header set at run time with it too.
func ValidHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func (c *Config) validateAnalysis(p *problems) {
	a := &c.Analysis
	checkPositive(p, "analysis.window", a.Window, "")
	if a.Window.D() > 10*time.Minute {
		p.add("analysis.window", "%s is longer than the 10m of history kept", a.Window.D())
	}
	if !(a.MaxErrorRatio >= 0 && a.MaxErrorRatio <= 1) {
		p.add("analysis.max_error_ratio", "%v is not a ratio in [0, 1]", a.MaxErrorRatio)
	}
	if !(a.MaxStatusDiffRatio >= 0 && a.MaxStatusDiffRatio <= 1) {
		p.add("analysis.max_status_diff_ratio", "%v is not a ratio in [0, 1]", a.MaxStatusDiffRatio)
	}
	if r := *a.MaxP99Ratio; !(r >= 0) || math.IsInf(r, 1) {
		p.add("analysis.max_p99_ratio", "must be 0 (off) or positive, got %v", *a.MaxP99Ratio)
	}
	if a.MinRequests < 1 {
		p.add("analysis.min_requests", "must be at least 1, got %d", a.MinRequests)
	}
}
