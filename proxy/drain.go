package proxy

import (
	"context"
	"sync"
	"time"

	"github.com/switchyard/switchyard/config"
	"go.uber.org/zap"
)

// drainPoll is how often a drain looks at the old pool's in-flight count.
// Polling also covers the nanoseconds between a request loading the old
// snapshot and counting itself in, which a one-off check could miss.
const drainPoll = 5 * time.Millisecond

// DrainStatus reports the drain of the pool that lost traffic.
type DrainStatus struct {
	Color     config.Color `json:"color"`
	Version   string       `json:"version"`
	Started   time.Time    `json:"started"`
	Finished  *time.Time   `json:"finished,omitempty"`
	State     string       `json:"state"` // draining, drained, timed_out, cancelled
	AtSwap    int64        `json:"inflight_at_swap"`
	Inflight  int64        `json:"inflight"`
	Straggler int64        `json:"stragglers,omitempty"`
	Seconds   float64      `json:"seconds"`
}

// Drain states.
const (
	DrainRunning   = "draining"
	DrainDone      = "drained"
	DrainTimedOut  = "timed_out"
	DrainCancelled = "cancelled"
)

type drain struct {
	pool   *Pool
	st     DrainStatus
	cancel context.CancelFunc
}

// status returns a copy with live numbers. The tracker's mu must be held.
func (d *drain) status() DrainStatus {
	s := d.st
	s.Inflight = d.pool.inflight.Load()
	end := time.Now()
	if s.Finished != nil {
		end = *s.Finished
	}
	s.Seconds = end.Sub(s.Started).Seconds()
	return s
}

// drainTracker watches, per color, the pool that lost traffic until its
// in-flight requests are done. It owns the watching goroutines: close
// stops them and waits.
type drainTracker struct {
	metrics *Metrics
	log     *zap.Logger
	now     func() time.Time

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu   sync.Mutex
	last [2]*drain
}

func newDrainTracker(metrics *Metrics, log *zap.Logger, now func() time.Time) *drainTracker {
	ctx, cancel := context.WithCancel(context.Background())
	return &drainTracker{metrics: metrics, log: log, now: now, ctx: ctx, cancel: cancel}
}

// close stops every watcher and waits for them.
func (t *drainTracker) close() {
	t.cancel()
	t.wg.Wait()
}

// startDrain tracks old's in-flight requests down to zero after traffic
// moved to active, for up to the config's drain_timeout. r.mu must be
// held.
func (r *Router) startDrain(old *Pool, active config.Color) *drain {
	return r.drains.start(old, active, r.cfg.Switch.DrainTimeout.D())
}

// start begins the drain of old. A drain of the color that just became
// active again is cancelled: its requests are live traffic now.
func (t *drainTracker) start(old *Pool, active config.Color, timeout time.Duration) *drain {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range []config.Color{active, old.Color} {
		// An earlier drain of the old color is overtaken too: the new
		// drain tracks the same requests from here.
		if prev := t.last[colorIndex(c)]; prev != nil && prev.st.State == DrainRunning {
			prev.cancel()
			now := t.now()
			prev.st.State, prev.st.Finished = DrainCancelled, &now
		}
	}
	ctx, cancel := context.WithCancel(t.ctx)
	d := &drain{
		pool:   old,
		cancel: cancel,
		st: DrainStatus{Color: old.Color, Version: old.Version, Started: t.now(), State: DrainRunning,
			AtSwap: old.inflight.Load()},
	}
	t.last[colorIndex(old.Color)] = d
	t.wg.Add(1)
	go t.watch(ctx, d, timeout)
	return d
}

func (t *drainTracker) watch(ctx context.Context, d *drain, timeout time.Duration) {
	defer t.wg.Done()
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			t.end(ctx, d, DrainTimedOut)
			return
		case <-tick.C:
			if d.pool.inflight.Load() == 0 {
				t.end(ctx, d, DrainDone)
				return
			}
		}
	}
}

func (t *drainTracker) end(ctx context.Context, d *drain, state string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if ctx.Err() != nil || d.st.State != DrainRunning {
		return
	}
	now := t.now()
	d.st.State, d.st.Finished = state, &now
	left := d.pool.inflight.Load()
	fields := []zap.Field{zap.String("env", string(d.pool.Color)), zap.String("version", d.pool.Version),
		zap.Duration("took", now.Sub(d.st.Started)), zap.Int64("inflight_at_swap", d.st.AtSwap)}
	t.metrics.drain.WithLabelValues(string(d.pool.Color), state).Observe(now.Sub(d.st.Started).Seconds())
	if state == DrainTimedOut {
		d.st.Straggler = left
		t.metrics.stragglers.WithLabelValues(string(d.pool.Color)).Add(float64(left))
		t.log.Warn("drain timed out; stragglers keep running", append(fields, zap.Int64("stragglers", left))...)
		return
	}
	t.log.Info("drained", fields...)
	// Nothing of this color is in flight: idle connections only hold
	// backend sockets open, and the backend may be going away.
	for _, b := range d.pool.Backends {
		b.CloseIdleConns()
	}
}

// status returns the drain's current status.
func (t *drainTracker) status(d *drain) DrainStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	return d.status()
}

// Drains returns the last drain of each color that had one.
func (r *Router) Drains() []DrainStatus {
	t := r.drains
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []DrainStatus
	for _, d := range t.last {
		if d != nil {
			out = append(out, d.status())
		}
	}
	return out
}
