package config

import (
	"maps"
	"net/http"
	"time"

	"go.yaml.in/yaml/v3"
)

// Defaults, exported so documentation and tests can refer to them. Default
// is where they are applied.
const (
	DefaultListen              = "127.0.0.1:8080"
	DefaultAdminListen         = "127.0.0.1:9901"
	DefaultMaxRequestBodyBytes = 10 << 20
	DefaultMaxIdleConns        = 256
	DefaultMaxConns            = 256
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

// Default returns a new Config holding every default: what a field gets
// when the file does not mention it. It is the one place defaults are
// written; Parse decodes the file onto it, so a value the file writes, 0
// included, always wins.
//
// Its pools have no version and no backends, and their Health and Warmup
// are nil: Parse gives each pool the top-level sections as decoded, with
// the pool's own sections written over them.
func Default() *Config {
	pool := Pool{
		Balance:      BalanceLeastInflight,
		Protocol:     ProtocolHTTP1,
		MaxQueue:     64,
		QueueTimeout: Duration(5 * time.Second),
	}
	return &Config{
		Listen:     DefaultListen,
		TLS:        ListenerTLS{MinVersion: TLS12},
		Admin:      Admin{Listen: DefaultAdminListen},
		Active:     Blue,
		DNSRefresh: Duration(10 * time.Second),
		Log:        Log{Format: "json", Level: "info", Access: AccessLog{Sample: 1}},
		Proxy: Proxy{
			MaxRequestBodyBytes: DefaultMaxRequestBodyBytes,
			Timeouts: Timeouts{
				Connect:        Duration(DefaultConnectTimeout),
				ResponseHeader: Duration(DefaultResponseHeader),
				BodyIdle:       Duration(DefaultResponseHeader),
				Idle:           Duration(DefaultIdleTimeout),
			},
			MaxIdleConnsPerBackend: DefaultMaxIdleConns,
			MaxConnsPerBackend:     DefaultMaxConns,
			Client: ClientLimits{
				HeaderTimeout:  Duration(10 * time.Second),
				ReadTimeout:    Duration(60 * time.Second),
				WriteTimeout:   Duration(30 * time.Second),
				IdleTimeout:    Duration(90 * time.Second),
				MaxHeaderBytes: 8192,
			},
		},
		Health: Health{
			Kind:               ProbeJSON,
			Path:               DefaultProbePath(ProbeJSON),
			Interval:           Duration(DefaultProbeInterval),
			Timeout:            Duration(DefaultProbeTimeout),
			Jitter:             Duration(DefaultProbeInterval / 10),
			HealthyThreshold:   2,
			UnhealthyThreshold: 3,
		},
		Warmup: Warmup{
			Enabled:          ptr(true),
			Kind:             WarmupHTTP,
			Method:           http.MethodPost,
			Headers:          map[string]string{},
			Requests:         DefaultWarmupRequests,
			ExpectStatus:     http.StatusOK,
			MaxRequests:      DefaultWarmupMaxRequests,
			Timeout:          Duration(DefaultWarmupTimeout),
			KeepWarmInterval: Duration(DefaultKeepWarmInterval),
		},
		Pools:   Pools{Blue: pool, Green: pool},
		Switch:  Switch{DrainTimeout: Duration(DefaultDrainTimeout), MinReady: "100%"},
		Outlier: Outlier{ConsecutiveFailures: 5, BaseEjection: Duration(10 * time.Second), MaxEjectionPercent: 50},
		Traffic: Traffic{Mirror: Mirror{
			MaxBodyBytes: 1 << 20,
			Concurrency:  16,
			Queue:        64,
			Timeout:      Duration(10 * time.Second),
		}},
		Analysis: Analysis{
			Window:             Duration(time.Minute),
			MinRequests:        50,
			MaxErrorRatio:      0.05,
			MaxP99Ratio:        ptr(2.0),
			P99Floor:           Duration(10 * time.Millisecond),
			MaxStatusDiffRatio: 0.05,
			Observe:            Duration(time.Minute),
			BreachFor:          Duration(3 * time.Second),
			AutoRollback:       ptr(true),
		},
		Fleet: Fleet{
			Heartbeat:      Duration(DefaultFleetHeartbeat),
			MemberTimeout:  Duration(DefaultFleetMemberTimeout),
			PrepareTimeout: Duration(DefaultFleetPrepareTimeout),
			StaleTimeout:   Duration(DefaultFleetStaleTimeout),
			StartTimeout:   Duration(DefaultFleetStartTimeout),
		},
	}
}

// DefaultProbePath is the path each probe kind uses when none is set.
func DefaultProbePath(kind string) string {
	switch kind {
	case ProbeKServe, ProbeTriton:
		return "/v2/health/ready"
	case ProbeTorchServe:
		return "/ping"
	case ProbeGRPC, ProbeKServeGRPC:
		return ""
	default:
		return "/health"
	}
}

// healthFields is Health without its UnmarshalYAML, for decoding the
// fields themselves.
type healthFields Health

// UnmarshalYAML decodes a health section onto h, which holds what the
// section inherits: the defaults for the top-level section, the top-level
// section for a pool's. A field the section does not write keeps its
// inherited value; one it writes, 0 included, takes the written value. The
// fields whose default follows another field written in the same section
// are set as the Health doc says.
func (h *Health) UnmarshalYAML(n *yaml.Node) error {
	inherited := *h
	if err := n.Decode((*healthFields)(h)); err != nil {
		return err
	}
	written := writtenKeys(n)
	if written["interval"] {
		if !written["jitter"] {
			h.Jitter = h.Interval / 10
		}
		if !written["timeout"] {
			h.Timeout = min(inherited.Timeout, h.Interval)
		}
	}
	if h.Kind != inherited.Kind {
		if !written["path"] {
			h.Path = DefaultProbePath(h.Kind)
		}
		if !written["model"] {
			h.Model = ""
		}
	}
	return nil
}

// warmupFields is Warmup without its UnmarshalYAML, for decoding the
// fields themselves.
type warmupFields Warmup

// UnmarshalYAML decodes a warmup section onto w, which holds what the
// section inherits, as Health.UnmarshalYAML does, with the exceptions the
// Warmup doc lists.
func (w *Warmup) UnmarshalYAML(n *yaml.Node) error {
	written := writtenKeys(n)
	// Decoding writes through pointers and into maps: this section gets
	// its own, so that a pool's section never changes the top-level one.
	if w.Enabled != nil {
		w.Enabled = ptr(*w.Enabled)
	}
	w.Headers = maps.Clone(w.Headers)
	if written["headers"] {
		w.Headers = nil
	}
	if written["body"] || written["body_file"] {
		w.Body, w.BodyFile = "", ""
	}
	return n.Decode((*warmupFields)(w))
}

// inherit returns a copy of w for a pool section to start from, sharing
// no pointer or map with w.
func (w *Warmup) inherit() *Warmup {
	c := *w
	if c.Enabled != nil {
		c.Enabled = ptr(*c.Enabled)
	}
	c.Headers = maps.Clone(c.Headers)
	return &c
}

// writtenKeys returns the keys a mapping node writes. Merge keys ("<<")
// never get this far: walkKeys rejects them as unknown.
func writtenKeys(n *yaml.Node) map[string]bool {
	keys := map[string]bool{}
	if n.Kind != yaml.MappingNode {
		return keys
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		keys[n.Content[i].Value] = true
	}
	return keys
}

func ptr[T any](v T) *T { return &v }
