package proxy

import (
	"errors"
	"fmt"
	"time"

	"github.com/switchyard/switchyard/config"
	"go.uber.org/zap"
)

// Switch triggers, recorded with every switch.
const (
	TriggerAdmin    = "admin"
	TriggerRollback = "rollback"
	TriggerFile     = "file"
	// TriggerAutoRollback is a switch back made by the gateway itself
	// after the new color broke a threshold.
	TriggerAutoRollback = "auto-rollback"
)

// ErrStaleGeneration is returned when a switch names a generation that is
// no longer current (If-Match), so one writer cannot undo another unseen.
var ErrStaleGeneration = errors.New("proxy: routing state changed since the given generation")

// ErrNothingToRollBack is returned by Rollback before any switch happened.
var ErrNothingToRollBack = errors.New("proxy: no earlier switch to roll back")

// RefusedError says why a switch to a pool was refused.
type RefusedError struct {
	Color config.Color `json:"color"`
	// Ready and Need count the target's ready backends and how many
	// switch.min_ready demands.
	Ready int `json:"ready"`
	Need  int `json:"need"`
	// Backends says, per backend that is not ready, why.
	Backends map[string]string `json:"backends,omitempty"`
	// Reason is set when the refusal is not about readiness alone.
	Reason string `json:"reason,omitempty"`
}

func (e *RefusedError) Error() string {
	msg := fmt.Sprintf("proxy: switch to %s refused: %d of %d backends ready, %d needed", e.Color, e.Ready, e.Ready+len(e.Backends), e.Need)
	if e.Reason != "" {
		msg += ": " + e.Reason
	}
	return msg
}

// SwitchRequest asks to move traffic to a color.
type SwitchRequest struct {
	// To is the target color; empty with Toggle.
	To config.Color
	// Toggle switches to whichever color is not active.
	Toggle bool
	// Trigger records who asked: admin, rollback, file, ...
	Trigger string
	// Force skips the readiness gate; the switch is logged as forced.
	Force bool
	// IfGeneration, when non-zero, applies the switch only if the current
	// generation equals it.
	IfGeneration uint64
}

// SwitchRecord is one switch in the history.
type SwitchRecord struct {
	From       config.Color `json:"from"`
	To         config.Color `json:"to"`
	Version    string       `json:"version"`
	Trigger    string       `json:"trigger"`
	Forced     bool         `json:"forced"`
	At         time.Time    `json:"at"`
	SwapNanos  int64        `json:"swap_ns"`
	Generation uint64       `json:"generation"`
}

// SwitchResult is what a switch did.
type SwitchResult struct {
	From       config.Color `json:"from"`
	To         config.Color `json:"to"`
	Version    string       `json:"version"`
	NoOp       bool         `json:"noop"`
	Message    string       `json:"message,omitempty"`
	Forced     bool         `json:"forced"`
	SwapNanos  int64        `json:"swap_ns"`
	Generation uint64       `json:"generation"`
	Drain      *DrainStatus `json:"drain,omitempty"`
}

// Switch moves all new traffic to req.To. Requests already running keep
// their pool to the end; the old pool is drained. Concurrent calls are
// serialized, so none is lost or half-applied.
func (r *Router) Switch(req SwitchRequest) (SwitchResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.switchLocked(req)
}

// Rollback switches back to the color that was active before the last
// switch.
func (r *Router) Rollback(force bool) (SwitchResult, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.history) == 0 {
		return SwitchResult{}, ErrNothingToRollBack
	}
	last := r.history[len(r.history)-1]
	if last.Trigger == TriggerAutoRollback {
		// The gateway already rolled back; rolling back "again" would
		// bring the broken color back. Switch by name to undo it.
		cur := r.snap.Load()
		return SwitchResult{From: cur.Active, To: cur.Active, Version: cur.ActivePool().Version, NoOp: true, Generation: cur.Generation,
			Message: fmt.Sprintf("already rolled back automatically from %s to %s at %s; to return to %s, switch to it by name",
				last.From, last.To, last.At.Format(time.RFC3339), last.From)}, nil
	}
	return r.switchLocked(SwitchRequest{To: last.From, Trigger: TriggerRollback, Force: force})
}

func (r *Router) switchLocked(req SwitchRequest) (SwitchResult, error) {
	cur := r.snap.Load()
	if req.IfGeneration != 0 && req.IfGeneration != cur.Generation {
		return SwitchResult{Generation: cur.Generation}, ErrStaleGeneration
	}
	to := req.To
	if req.Toggle {
		to = cur.Active.Other()
	}
	if !to.Valid() {
		return SwitchResult{}, fmt.Errorf("proxy: %q is not a color (want blue, green or toggle)", to)
	}
	target := cur.Pool(to)
	res := SwitchResult{From: cur.Active, To: to, Version: target.Version, Generation: cur.Generation}
	if to == cur.Active {
		res.NoOp = true
		res.Message = fmt.Sprintf("%s (%s) is already active; nothing changed", to, target.Version)
		return res, nil
	}
	if err := r.gate(target); err != nil {
		if !req.Force {
			r.metrics.switches.WithLabelValues(req.Trigger, ResultRefused).Inc()
			r.log.Warn("switch refused", zap.String("env", string(to)), zap.String("version", target.Version),
				zap.String("trigger", req.Trigger), zap.Error(err))
			return res, err
		}
		res.Forced = true
	}

	next := *cur
	r.generation++
	next.Generation = r.generation
	next.Active = to
	// Switching ends a canary and a mirror: the standby changed.
	next.traffic.canary, next.traffic.mirror, next.traffic.mirrorTo = 0, 0, ""
	swap := r.publish(&next)

	res.Generation = next.Generation
	res.SwapNanos = swap.Nanoseconds()
	r.switched(cur, &next, req.Trigger, res.Forced, swap, &res)
	return res, nil
}

// switched does what follows the publication of a new active color, for a
// switch and a fleet intent alike: count and record it, start draining
// the pool that lost traffic, log it once and run the OnSwitch hooks.
// r.mu must be held.
func (r *Router) switched(cur, next *Snapshot, trigger string, forced bool, swap time.Duration, res *SwitchResult,
	extra ...zap.Field) {
	result := ResultOK
	switch {
	case forced:
		result = ResultForced
	case trigger == TriggerRollback || trigger == TriggerAutoRollback:
		result = ResultRolledBack
	}
	r.metrics.switches.WithLabelValues(trigger, result).Inc()
	r.metrics.swap.Observe(swap.Seconds())
	target := next.ActivePool()
	rec := SwitchRecord{From: cur.Active, To: next.Active, Version: target.Version, Trigger: trigger, Forced: forced,
		At: r.now(), SwapNanos: swap.Nanoseconds(), Generation: next.Generation}
	r.history = append(r.history, rec)
	if len(r.history) > historySize {
		r.history = r.history[len(r.history)-historySize:]
	}
	d := r.startDrain(cur.ActivePool(), next.Active)
	st := r.drains.status(d)
	res.Drain = &st
	fields := append([]zap.Field{zap.String("env", string(next.Active)), zap.String("version", target.Version),
		zap.String("from", string(cur.Active)), zap.String("from_version", cur.ActivePool().Version),
		zap.String("trigger", trigger), zap.Bool("forced", forced),
		zap.Duration("swap", swap), zap.Uint64("generation", next.Generation),
		zap.Int64("draining", st.Inflight)}, extra...)
	r.log.Info("switched", fields...)
	for _, fn := range r.onSwitch {
		fn(rec)
	}
}

// gate refuses a pool that lacks switch.min_ready ready backends.
func (r *Router) gate(p *Pool) error {
	need, _ := config.ParseMinReady(r.cfg.Switch.MinReady, len(p.Backends))
	ready := p.ReadyBackends()
	if ready >= need && len(p.Backends) > 0 {
		return r.capacityGate(p, ready)
	}
	e := &RefusedError{Color: p.Color, Ready: ready, Need: max(need, 1), Backends: map[string]string{}}
	for _, b := range p.Backends {
		if b.Ready() {
			continue
		}
		why := "not ready"
		if r.explain != nil {
			why = r.explain(b)
		}
		e.Backends[b.addr] = why
	}
	if len(p.Backends) == 0 {
		e.Reason = "the pool has no backends; add some to pools." + string(p.Color) + ".backends"
	}
	return e
}

// capacityGate, with switch.capacity_check, refuses a target whose ready
// backends cannot hold the active pool's in-flight load at
// max_concurrency: switching would only move the queue.
func (r *Router) capacityGate(p *Pool, ready int) error {
	if !r.cfg.Switch.CapacityCheck || p.MaxConcurrency == 0 {
		return nil
	}
	capacity := int64(ready) * p.MaxConcurrency
	load := r.snap.Load().ActivePool().Inflight()
	if capacity >= load {
		return nil
	}
	return &RefusedError{Color: p.Color, Ready: ready, Need: ready,
		Reason: fmt.Sprintf("capacity: %d ready backends x max_concurrency %d = %d, below the %d requests in flight on the active pool; scale %s up or pass force",
			ready, p.MaxConcurrency, capacity, load, p.Color)}
}

// History returns the recorded switches, oldest first.
func (r *Router) History() []SwitchRecord {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]SwitchRecord(nil), r.history...)
}
