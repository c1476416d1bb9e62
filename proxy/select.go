package proxy

import (
	"math/rand/v2"

	"github.com/switchyard/switchyard/config"
)

// Selector is a balancing policy: it picks the backend for one request.
// Implementations keep no per-request state of their own (a pool's
// round-robin counter lives in the pool) and must not allocate.
type Selector interface {
	// Select returns a usable backend of p other than skip, or nil.
	Select(p *Pool, skip *Backend, now int64) *Backend
}

// loadReporting is implemented by policies that score backends by the
// load they report in band (ORCA): the request asks for a report and the
// answer's report updates the score.
type loadReporting interface {
	wantsLoadReports()
}

// selectors returns the built-in policies by their config name. Adding a
// policy is a file with its type and a line here; TestSelectors_MatchConfig
// keeps config's list of names in step.
func selectors() map[string]Selector {
	return map[string]Selector{
		config.BalanceLeastInflight: leastInflight{},
		config.BalanceRoundRobin:    roundRobin{},
		config.BalanceGPU:           gpuScore{},
	}
}

// p2cThreshold is the pool size above which least_inflight samples two
// backends instead of scanning all: at 1,000 backends a full scan costs
// microseconds per request, while two random choices stay close to optimal.
const p2cThreshold = 32

// pickLeast scans for the lowest load, starting at a random offset so
// that ties spread evenly without a shared counter bouncing between
// cores. withScore adds the load each backend reported.
func pickLeast(p *Pool, skip *Backend, now int64, withScore bool) *Backend {
	n := len(p.Backends)
	start := int(rand.Uint64N(uint64(n)))
	var best *Backend
	var bestLoad int64
	for i := range n {
		b := p.Backends[(start+i)%n]
		if b == skip || !b.usable(now, p.MaxConcurrency) {
			continue
		}
		if l := load(b, withScore); best == nil || l < bestLoad {
			best, bestLoad = b, l
		}
	}
	return best
}

// pickTwo is power of two choices: the less loaded of two random usable
// backends. It returns nil when sampling did not find two, and the caller
// scans.
func pickTwo(p *Pool, skip *Backend, now int64, withScore bool) *Backend {
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
	if b == nil {
		// Fewer than two distinct usable backends sampled: let the
		// caller scan, rather than send everything to the one it saw.
		return nil
	}
	if load(a, withScore) <= load(b, withScore) {
		return a
	}
	return b
}

// load is a selection score in in-flight-request units: our own count,
// plus, with score, the queue and memory pressure the backend reports.
func load(b *Backend, withScore bool) int64 {
	if withScore {
		return b.inflight.Load() + b.score.Load()
	}
	return b.inflight.Load()
}
