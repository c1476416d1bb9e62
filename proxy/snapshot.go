package proxy

import (
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/config"
)

// Snapshot is the whole routing state at one generation. It is immutable
// once published: a change builds a new Snapshot and swaps the pointer, so
// the request path reads it without locks, and a request that loaded it
// keeps using it to the end, retries included.
type Snapshot struct {
	// Generation increases with every published change.
	Generation uint64
	// Active is the color that receives new traffic.
	Active config.Color
	// Pools is indexed by colorIndex.
	Pools [2]*Pool

	maxBody        int
	connectTimeout time.Duration
	headerTimeout  time.Duration
	totalTimeout   time.Duration
	idleTimeout    time.Duration
	bodyIdle       time.Duration
	// accessSample is the share of requests access-logged; 0 is off.
	accessSample float64
	traffic      trafficPlan
}

// Pool returns the pool of color c.
func (s *Snapshot) Pool(c config.Color) *Pool { return s.Pools[colorIndex(c)] }

// ActivePool returns the pool receiving traffic.
func (s *Snapshot) ActivePool() *Pool { return s.Pools[colorIndex(s.Active)] }

func colorIndex(c config.Color) int {
	if c == config.Green {
		return 1
	}
	return 0
}

// Pool is one color's backends as of one snapshot.
type Pool struct {
	// Color and Version label everything this pool serves.
	Color   config.Color
	Version string
	// Backends are shared with other snapshots through the Registry.
	Backends []*Backend
	// MaxConcurrency caps in-flight requests per backend; 0 is no cap.
	MaxConcurrency int64

	// colorValue and versionValue are the response header values.
	colorValue, versionValue []byte

	// selector is the balancing policy; loadReports is set when it asks
	// backends for in-band load reports.
	selector    Selector
	loadReports bool
	rr          atomic.Uint64
	outlier     outlierPolicy
	// Queueing when every backend is at MaxConcurrency.
	maxQueue     int64
	queueTimeout time.Duration
	// retryNonIdempotent allows one retry of any method, not just
	// idempotent ones.
	retryNonIdempotent bool
	waiting            atomic.Int64
	wake               chan struct{}
	// inflight is the color's counter, owned by the Router so it survives
	// snapshots: the drain watches it.
	inflight *atomic.Int64
	// stats is the color's rolling record for release analysis.
	stats   *Stats
	metrics *poolMetrics
	// protocol is what the backends speak (config.Protocol*), and
	// upstream how the HTTP/2 side reaches them (h2.go).
	protocol string
	upstream *upstream
	// h2only is set when the backends take HTTP/2 only (h2c, grpc), which
	// the HTTP/1.1 path cannot send.
	h2only bool
}

// Inflight returns the requests open on this color.
func (p *Pool) Inflight() int64 { return p.inflight.Load() }

// ReadyBackends counts the backends that are ready now.
func (p *Pool) ReadyBackends() int {
	n := 0
	for _, b := range p.Backends {
		if b.Ready() {
			n++
		}
	}
	return n
}

// pick selects a usable backend other than skip, or nil.
func (p *Pool) pick(skip *Backend, now int64) *Backend {
	return p.selector.Select(p, skip, now)
}
