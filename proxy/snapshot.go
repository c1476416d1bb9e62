package proxy

import (
	"math/rand/v2"
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

	balance string
	rr      atomic.Uint64
	outlier outlierPolicy
	// Queueing when every backend is at MaxConcurrency.
	maxQueue     int64
	queueTimeout time.Duration
	waiting      atomic.Int64
	wake         chan struct{}
	// inflight is the color's counter, owned by the Router so it survives
	// snapshots: the drain watches it.
	inflight *atomic.Int64
	// stats is the color's rolling record for release analysis.
	stats   *Stats
	metrics *poolMetrics
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

// p2cThreshold is the pool size above which least_inflight samples two
// backends instead of scanning all: at 1,000 backends a full scan costs
// microseconds per request, while two random choices stay close to optimal.
const p2cThreshold = 32

// pick selects a usable backend other than skip, or nil.
func (p *Pool) pick(skip *Backend, now int64) *Backend {
	n := len(p.Backends)
	if n == 0 {
		return nil
	}
	switch {
	case p.balance == config.BalanceRoundRobin:
		start := int(p.rr.Add(1) % uint64(n))
		for i := range n {
			b := p.Backends[(start+i)%n]
			if b != skip && b.usable(now, p.MaxConcurrency) {
				return b
			}
		}
		return nil
	case p.balance == config.BalanceGPU || n > p2cThreshold:
		if b := p.pickTwo(skip, now); b != nil {
			return b
		}
	}
	return p.pickLeast(skip, now)
}

// pickLeast scans for the fewest in flight, starting at a random offset
// so that ties spread evenly without a shared counter bouncing between
// cores.
func (p *Pool) pickLeast(skip *Backend, now int64) *Backend {
	n := len(p.Backends)
	start := int(rand.Uint64N(uint64(n)))
	var best *Backend
	var bestLoad int64
	for i := range n {
		b := p.Backends[(start+i)%n]
		if b == skip || !b.usable(now, p.MaxConcurrency) {
			continue
		}
		if load := p.load(b); best == nil || load < bestLoad {
			best, bestLoad = b, load
		}
	}
	return best
}

// pickTwo is power of two choices: the less loaded of two random usable
// backends. It returns nil when sampling found none, and the caller scans.
func (p *Pool) pickTwo(skip *Backend, now int64) *Backend {
	n := uint64(len(p.Backends))
	var a, b *Backend
	for range 4 {
		c := p.Backends[rand.Uint64N(n)]
		if c == skip || !c.usable(now, p.MaxConcurrency) {
			continue
		}
		if a == nil {
			a = c
		} else if c != a {
			b = c
			break
		}
	}
	if b == nil || (a != nil && p.load(a) <= p.load(b)) {
		return a
	}
	return b
}

// load is the selection score: our own in-flight count, plus, for the gpu
// policy, the queue and memory pressure the backend reports.
func (p *Pool) load(b *Backend) int64 {
	if p.balance == config.BalanceGPU {
		return b.inflight.Load() + b.score.Load()
	}
	return b.inflight.Load()
}
