package proxy

import (
	"fmt"

	"github.com/switchyard/switchyard/config"
	"go.uber.org/zap"
)

// Intent is routing decided outside this Router, by the fleet of replicas
// that share one intent (package fleet). ApplyIntent follows it without a
// gate: the fleet checked the target on every replica before committing.
type Intent struct {
	// Active is the color to serve.
	Active config.Color
	// Canary is the percent (0-100) of live requests to the standby color.
	Canary float64
	// StickyHeader names the header whose hash keeps a user on one color.
	StickyHeader string
	// Mirror is the shadow traffic; nil is none.
	Mirror *MirrorSetting
	// Trigger and Forced are recorded in the history when Active changes.
	Trigger string
	Forced  bool
}

// CheckSwitch runs the switch gate (switch.min_ready, capacity_check) on
// color to without switching: nil when a switch to it would go through
// now, a *RefusedError saying why not otherwise. The active color passes.
func (r *Router) CheckSwitch(to config.Color) error {
	if !to.Valid() {
		return fmt.Errorf("proxy: %q is not a color (want blue or green)", to)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.snap.Load()
	if to == cur.Active {
		return nil
	}
	return r.gate(cur.Pool(to))
}

// ApplyIntent publishes one snapshot with in's color and traffic plan, so
// a new color and its canary arrive together. A change of color is
// recorded, drains the old pool and runs the OnSwitch hooks as a switch
// does; the gate is not consulted. A snapshot that already matches is left
// alone (NoOp).
func (r *Router) ApplyIntent(in Intent) (SwitchResult, error) {
	if !in.Active.Valid() {
		return SwitchResult{}, fmt.Errorf("proxy: intent: %q is not a color (want blue or green)", in.Active)
	}
	if !(in.Canary >= 0 && in.Canary <= 100) {
		return SwitchResult{}, fmt.Errorf("%w: intent: canary percent %v is not within 0-100", ErrBadTraffic, in.Canary)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.snap.Load()
	plan := cur.traffic
	plan.canary, plan.stickyHeader = uint32(in.Canary*100+0.5), in.StickyHeader
	plan.mirror, plan.mirrorTo = 0, ""
	if m := in.Mirror; m != nil && m.Percent > 0 && m.To == in.Active.Other() && m.Percent <= 100 {
		plan.mirror, plan.mirrorTo = uint32(m.Percent*100+0.5), m.To
	}
	target := cur.Pool(in.Active)
	res := SwitchResult{From: cur.Active, To: in.Active, Version: target.Version, Generation: cur.Generation}
	if in.Active == cur.Active && plan == cur.traffic {
		res.NoOp = true
		return res, nil
	}
	next := *cur
	r.generation++
	next.Generation, next.Active, next.traffic = r.generation, in.Active, plan
	swap := r.publish(&next)
	res.Generation, res.SwapNanos = next.Generation, swap.Nanoseconds()
	if in.Active == cur.Active {
		res.NoOp = true
		t := next.Traffic()
		r.log.Info("traffic split changed", zap.String("env", string(in.Active.Other())), zap.String("version", next.Pool(in.Active.Other()).Version),
			zap.Float64("canary_percent", t.Weights[in.Active.Other()]), zap.Any("mirror", t.Mirror),
			zap.String("trigger", in.Trigger), zap.Uint64("generation", next.Generation))
		return res, nil
	}

	res.Forced = in.Forced
	r.switched(cur, &next, in.Trigger, in.Forced, swap, &res, zap.Bool("intent", true))
	return res, nil
}
