package proxy

import (
	"context"
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

// status returns a copy with live numbers. The router's mu must be held.
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

// startDrain tracks old's in-flight requests down to zero after traffic
// moved to active. A drain of the color that just became active again is
// cancelled: its requests are live traffic now. r.mu must be held.
func (r *Router) startDrain(old *Pool, active config.Color) *drain {
	if prev := r.drains[colorIndex(active)]; prev != nil && prev.st.State == DrainRunning {
		prev.cancel()
		now := r.now()
		prev.st.State, prev.st.Finished = DrainCancelled, &now
	}
	if prev := r.drains[colorIndex(old.Color)]; prev != nil && prev.st.State == DrainRunning {
		// Drained again before the last drain ended: the new drain
		// tracks the same requests from here.
		prev.cancel()
		now := r.now()
		prev.st.State, prev.st.Finished = DrainCancelled, &now
	}
	ctx, cancel := context.WithCancel(r.ctx)
	d := &drain{
		pool:   old,
		cancel: cancel,
		st: DrainStatus{Color: old.Color, Version: old.Version, Started: r.now(), State: DrainRunning,
			AtSwap: old.inflight.Load()},
	}
	r.drains[colorIndex(old.Color)] = d
	timeout := r.cfg.Switch.DrainTimeout.D()
	r.wg.Add(1)
	go r.watchDrain(ctx, d, timeout)
	return d
}

func (r *Router) watchDrain(ctx context.Context, d *drain, timeout time.Duration) {
	defer r.wg.Done()
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-deadline.C:
			r.endDrain(ctx, d, DrainTimedOut)
			return
		case <-tick.C:
			if d.pool.inflight.Load() == 0 {
				r.endDrain(ctx, d, DrainDone)
				return
			}
		}
	}
}

func (r *Router) endDrain(ctx context.Context, d *drain, state string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ctx.Err() != nil || d.st.State != DrainRunning {
		return
	}
	now := r.now()
	d.st.State, d.st.Finished = state, &now
	left := d.pool.inflight.Load()
	fields := []zap.Field{zap.String("env", string(d.pool.Color)), zap.String("version", d.pool.Version),
		zap.Duration("took", now.Sub(d.st.Started)), zap.Int64("inflight_at_swap", d.st.AtSwap)}
	r.metrics.drain.WithLabelValues(string(d.pool.Color), state).Observe(now.Sub(d.st.Started).Seconds())
	if state == DrainTimedOut {
		d.st.Straggler = left
		r.metrics.stragglers.WithLabelValues(string(d.pool.Color)).Add(float64(left))
		r.log.Warn("drain timed out; stragglers keep running", append(fields, zap.Int64("stragglers", left))...)
		return
	}
	r.log.Info("drained", fields...)
	// Nothing of this color is in flight: idle connections only hold
	// backend sockets open, and the backend may be going away.
	for _, b := range d.pool.Backends {
		b.CloseIdleConns()
	}
}

// Drains returns the last drain of each color that had one.
func (r *Router) Drains() []DrainStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []DrainStatus
	for _, d := range r.drains {
		if d != nil {
			out = append(out, d.status())
		}
	}
	return out
}
