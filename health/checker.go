package health

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proxy"
	"github.com/switchyard/switchyard/warmup"
	"go.uber.org/zap"
)

// Warmer sends dummy inference to a backend; *warmup.Warmer is the real one.
type Warmer interface {
	Warm(ctx context.Context, b warmup.Backend, spec *warmup.Spec, progress warmup.Progress) (warmup.Result, error)
	Ping(ctx context.Context, b warmup.Backend, spec *warmup.Spec) (time.Duration, error)
}

// Target is one backend to watch, with the settings of its pool.
type Target struct {
	Backend *proxy.Backend
	Color   config.Color
	Version string
	Health  config.Health
	// Warmup is nil when the pool has no warmup.
	Warmup *warmup.Spec
	// KeepWarm is the standby keep-warm interval; 0 disables it.
	KeepWarm time.Duration
	// TLS is the pool's backend TLS (pools.*.tls). When enabled, probes
	// and warmup dial the backend with the config the proxy dials it
	// with (proxy.NewUpstreamTLS): gRPC over TLS, https for the HTTP
	// kinds. A Sync that changes it re-creates the backend's probe and
	// warmup connections. Default: cleartext.
	TLS config.UpstreamTLS

	// tls is TLS built by Sync; nil in cleartext or when tlsErr says why
	// it did not load.
	tls    *tls.Config
	tlsErr error
}

// Checker probes and warms every backend it is given, one goroutine per
// backend, and marks each ready (healthy and warm) or not on the Backend
// the proxy selects from. Only transitions are logged.
type Checker struct {
	log    *zap.Logger
	prober *prober
	warmer Warmer
	// active reports the color receiving traffic, for keep-warm.
	active func() config.Color
	now    func() time.Time

	mu       sync.Mutex
	monitors map[string]*monitor
	// upstreams are the pools' backend TLS configs, built by Sync.
	upstreams map[config.UpstreamTLS]upstreamTLS
	// shared remembers GPU sharing already reported, to log it once.
	shared map[string]bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New returns a Checker. active tells which color is live, so standby
// backends get keep-warm inference.
func New(log *zap.Logger, warmer Warmer, active func() config.Color) *Checker {
	ctx, cancel := context.WithCancel(context.Background())
	return &Checker{
		log:      log,
		prober:   buildProber(&httpGetter{}),
		warmer:   warmer,
		active:   active,
		now:      time.Now,
		monitors: map[string]*monitor{},
		shared:   map[string]bool{},
		ctx:      ctx,
		cancel:   cancel,
	}
}

func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// Sync makes the set of watched backends equal targets: new ones start
// probing (not ready until probed and warmed), gone ones stop, and the
// rest take the new settings.
func (c *Checker) Sync(targets []Target) {
	c.mu.Lock()
	defer c.mu.Unlock()
	targets = slices.Clone(targets)
	c.upstreams = c.resolveTLS(targets)
	keep := make(map[string]bool, len(targets))
	for _, t := range targets {
		addr := t.Backend.Addr()
		keep[addr] = true
		if m, ok := c.monitors[addr]; ok {
			m.settings.Store(&t)
			continue
		}
		ctx, cancel := context.WithCancel(c.ctx)
		m := &monitor{c: c, addr: addr, b: t.Backend, cancel: cancel}
		m.settings.Store(&t)
		m.st.Since = c.now()
		c.monitors[addr] = m
		c.wg.Add(1)
		go m.run(ctx)
	}
	for addr, m := range c.monitors {
		if !keep[addr] {
			m.cancel()
			delete(c.monitors, addr)
			c.prober.grpc.forget(addr)
		}
	}
	// Colors may have changed and backends gone; a backend's own report
	// of another GPU checks again on its own (monitor.observe).
	c.checkSharingLocked()
}

// Close stops every probe and warmup and waits for them.
func (c *Checker) Close() {
	c.cancel()
	c.wg.Wait()
	c.prober.close()
}

// Inspect returns a backend's health state for GET /admin/status, nil
// when addr is not watched.
func (c *Checker) Inspect(addr string) *State {
	c.mu.Lock()
	m, ok := c.monitors[addr]
	c.mu.Unlock()
	if !ok {
		return nil
	}
	st := m.state()
	return &st
}

// Explain says why a backend is not ready, for switch refusals.
func (c *Checker) Explain(b *proxy.Backend) string {
	c.mu.Lock()
	m, ok := c.monitors[b.Addr()]
	c.mu.Unlock()
	if !ok {
		return "not watched by the health checker"
	}
	st := m.state()
	switch {
	case !st.Probed:
		return "not probed yet"
	case !st.Healthy && st.LastError == "":
		return fmt.Sprintf("unhealthy: recovering, %d of %d passing probes", st.passes, m.settings.Load().Health.HealthyThreshold)
	case !st.Healthy:
		return "unhealthy: " + st.LastError
	case st.Warming:
		return fmt.Sprintf("not warm (warming, %d of %d done)", st.WarmPassed, st.WarmNeeded)
	case !st.Warm && st.WarmupError != "":
		return "not warm (warmup failed: " + st.WarmupError + ")"
	case !st.Warm:
		return "not warm"
	case !b.EjectedUntil().IsZero() && b.EjectedUntil().After(c.now()):
		return "ejected by passive health until " + b.EjectedUntil().Format(time.RFC3339)
	}
	return "not ready"
}

// Rewarm runs warmup again on every backend of color, e.g. after a model
// cache was flushed. Backends keep serving while it runs.
func (c *Checker) Rewarm(color config.Color) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, m := range c.monitors {
		s := m.settings.Load()
		if s.Color != color {
			continue
		}
		if s.Warmup == nil {
			return fmt.Errorf("health: pool %s has no warmup configured; set warmup.path", color)
		}
		m.requestRewarm()
		n++
	}
	if n == 0 {
		return fmt.Errorf("health: pool %s has no backends", color)
	}
	return nil
}

// Snapshot returns every watched backend's state, sorted by address.
func (c *Checker) Snapshot() []State {
	c.mu.Lock()
	ms := make([]*monitor, 0, len(c.monitors))
	for _, m := range c.monitors {
		ms = append(ms, m)
	}
	c.mu.Unlock()
	out := make([]State, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.state())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Addr < out[j].Addr })
	return out
}

// checkSharing warns when backends of both colors report one GPU: two
// model versions on one GPU fight for memory and latency. It looks at
// every backend, so it runs when what it depends on changes (a GPU
// reported, a Sync), not on every probe.
func (c *Checker) checkSharing() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.checkSharingLocked()
}

// checkSharingLocked is checkSharing with c.mu held.
func (c *Checker) checkSharingLocked() {
	byGPU := map[string][]*monitor{}
	for _, m := range c.monitors {
		if uuid := m.gpuUUID(); uuid != "" {
			byGPU[uuid] = append(byGPU[uuid], m)
		} else {
			m.setSharedWith(nil)
		}
	}
	for uuid, ms := range byGPU {
		for _, a := range ms {
			var with []string
			for _, b := range ms {
				if a != b && a.settings.Load().Color != b.settings.Load().Color {
					with = append(with, b.addr)
				}
			}
			sort.Strings(with)
			a.setSharedWith(with)
			if len(with) > 0 && !c.shared[a.addr+uuid] {
				c.shared[a.addr+uuid] = true
				s := a.settings.Load()
				c.log.Warn("GPU shared across colors: two model versions compete for its memory and time",
					zap.String("env", string(s.Color)), zap.String("version", s.Version),
					zap.String("backend", a.addr), zap.String("gpu_uuid", uuid), zap.Strings("shared_with", with))
			}
		}
	}
}

// jittered returns interval ± jitter.
func jittered(interval, jitter time.Duration) time.Duration {
	if jitter <= 0 {
		return interval
	}
	return interval - jitter + time.Duration(rand.Int64N(int64(2*jitter)+1))
}

// beats is how many beats an interval has: probes start on a beat, a
// multiple of interval/beats of the wall clock, so that a fleet's probes
// go out in batches, one per beat, rather than one at a time. Each probe
// wakes goroutines and threads that then sleep again; a batch shares the
// wake-ups, which at 1,000 probes a second more than halved what
// probing cost. With the default interval, 2s, a beat is 50ms: 2,000
// backends are probed 50 at a time, 40 times in each interval.
const beats = 40

// onBeat returns the wait, about d, for the next probe to start on the
// beat nearest to d from now. The beat is at most a quarter of jitter, so
// that jitter keeps spreading a fleet's probes over the whole interval;
// with no jitter, probes keep the phase they have.
func onBeat(now time.Time, d, interval, jitter time.Duration) time.Duration {
	beat := min(interval/beats, jitter/4)
	if beat <= 0 {
		return d
	}
	return now.Add(d + beat/2).Truncate(beat).Sub(now)
}
