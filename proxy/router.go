package proxy

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/config"
	"go.uber.org/zap"
)

// Router owns the routing state: it builds snapshots and publishes them
// with one atomic store, for switches, traffic splits and reloads. Writers
// are serialized by a mutex; the request path never takes it. Two helpers
// have jobs of their own: drains watches the pool that lost traffic, dns
// keeps hostname backends' addresses.
type Router struct {
	snap atomic.Pointer[Snapshot]
	// inflight counts open requests per color. It outlives snapshots so
	// that a drain started under one generation sees requests that loaded
	// an older one.
	inflight [2]atomic.Int64
	// stats and shadow record live and mirrored requests per color.
	stats, shadow [2]Stats

	reg     *Registry
	metrics *Metrics
	log     *zap.Logger
	explain func(*Backend) string
	now     func() time.Time

	mu         sync.Mutex
	cfg        *config.Config
	generation uint64
	history    []SwitchRecord
	onSwitch   []func(SwitchRecord)
	onChange   []func(*config.Config, *Snapshot)

	drains *drainTracker
	dns    *hostResolver

	// ctx ends the DNS refresh loop, which wg waits for.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Options are a Router's collaborators.
type Options struct {
	// Registry holds backend state across snapshots. Required.
	Registry *Registry
	// Metrics receives request-path metrics. Required.
	Metrics *Metrics
	// Log receives switch and drain transitions. Required.
	Log *zap.Logger
	// Explain, when set, says why a backend is not ready, for refusals.
	Explain func(*Backend) string
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Resolve looks up hostname backends; net.DefaultResolver when nil.
	Resolve Resolver
	// DNSRefresh is how often hostname backends are re-resolved; 0 means
	// never after the first lookup.
	DNSRefresh time.Duration
}

// historySize bounds the switch history kept for status.
const historySize = 20

// NewRouter builds the first snapshot from cfg and publishes it.
func NewRouter(cfg *config.Config, opts Options) *Router {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Router{
		reg:     opts.Registry,
		metrics: opts.Metrics,
		log:     opts.Log,
		explain: opts.Explain,
		now:     opts.Now,
		cfg:     cfg,
		ctx:     ctx,
		cancel:  cancel,
	}
	if r.now == nil {
		r.now = time.Now
	}
	r.drains = newDrainTracker(r.metrics, r.log, r.now)
	r.dns = newHostResolver(opts.Resolve, r.log)
	r.generation = 1
	r.mu.Lock()
	r.snap.Store(r.build(cfg, cfg.Active, r.generation))
	r.mu.Unlock()
	if opts.DNSRefresh > 0 {
		r.wg.Add(1)
		go r.refreshDNS(opts.DNSRefresh)
	}
	return r
}

// Snapshot returns the routing state now. It is immutable.
func (r *Router) Snapshot() *Snapshot { return r.snap.Load() }

// ActiveColor returns the color receiving traffic now.
func (r *Router) ActiveColor() config.Color { return r.snap.Load().Active }

// SetExplainer sets what says why a backend is not ready, for switch
// refusals. The health checker, built after the router because it follows
// the router's active color, is set here during assembly.
func (r *Router) SetExplainer(explain func(*Backend) string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.explain = explain
}

// Registry returns the backend registry.
func (r *Router) Registry() *Registry { return r.reg }

// Config returns the config the current snapshot was built from.
func (r *Router) Config() *config.Config {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cfg
}

// OnSwitch registers fn to run, under the writer lock, after every
// successful switch, e.g. to persist the new active color.
func (r *Router) OnSwitch(fn func(SwitchRecord)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.onSwitch = append(r.onSwitch, fn)
}

// Close stops drain tracking and DNS refresh and waits for their
// goroutines.
func (r *Router) Close() {
	r.cancel()
	r.wg.Wait()
	r.drains.close()
}

// build makes a snapshot of cfg with the given active color. r.mu must be
// held.
func (r *Router) build(cfg *config.Config, active config.Color, gen uint64) *Snapshot {
	t := cfg.Proxy.Timeouts
	s := &Snapshot{
		Generation:     gen,
		Active:         active,
		maxBody:        cfg.Proxy.MaxRequestBodyBytes,
		connectTimeout: t.Connect.D(),
		headerTimeout:  t.ResponseHeader.D(),
		totalTimeout:   t.Total.D(),
		idleTimeout:    t.Idle.D(),
		bodyIdle:       t.BodyIdle.D(),
	}
	if cfg.Log.Access.Enabled {
		s.accessSample = cfg.Log.Access.Sample
	}
	s.traffic = planFromConfig(cfg, active, cfg.Proxy.MaxRequestBodyBytes)
	policies := selectors()
	for _, color := range []config.Color{config.Blue, config.Green} {
		pc := cfg.Pools.Get(color)
		p := &Pool{
			Color:          color,
			Version:        pc.Version,
			MaxConcurrency: int64(pc.MaxConcurrency),
			colorValue:     []byte(color),
			versionValue:   []byte(pc.Version),
			selector:       policies[pc.Balance],
			inflight:       &r.inflight[colorIndex(color)],
			stats:          &r.stats[colorIndex(color)],
			outlier: outlierPolicy{
				consecutive: int32(max(cfg.Outlier.ConsecutiveFailures, 0)),
				base:        cfg.Outlier.BaseEjection.D(),
				maxPercent:  cfg.Outlier.MaxEjectionPercent,
			},
			maxQueue:           int64(pc.MaxQueue),
			retryNonIdempotent: pc.RetryNonIdempotent,
			queueTimeout:       pc.QueueTimeout.D(),
			wake:               make(chan struct{}, 1),
			metrics:            r.metrics.forPool(string(color), pc.Version),
			protocol:           pc.Protocol,
			h2only:             pc.Protocol == config.ProtocolH2C || pc.Protocol == config.ProtocolGRPC,
			upstream:           newUpstream(pc, cfg, r.log),
		}
		if p.selector == nil {
			// Validation names every policy; an empty name is the default.
			p.selector = policies[config.BalanceLeastInflight]
		}
		_, p.loadReports = p.selector.(loadReporting)
		for _, entry := range pc.Backends {
			for _, addr := range r.dns.expand(r.ctx, entry) {
				p.Backends = append(p.Backends, r.reg.Get(addr))
			}
		}
		s.Pools[colorIndex(color)] = p
	}
	return s
}

// publish stores next as the current snapshot and returns how long the
// swap took. r.mu must be held.
func (r *Router) publish(next *Snapshot) time.Duration {
	t0 := time.Now()
	r.snap.Store(next)
	return time.Since(t0)
}

// Stats returns the rolling record of live requests of color c.
func (r *Router) Stats(c config.Color) *Stats { return &r.stats[colorIndex(c)] }

// ShadowStats returns the rolling record of mirrored requests to color c.
func (r *Router) ShadowStats(c config.Color) *Stats { return &r.shadow[colorIndex(c)] }
