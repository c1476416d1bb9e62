package fleet

import (
	"context"
	"fmt"
	"time"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proxy"
)

// Switch moves the whole fleet to req.To (the other color with Toggle):
// prepared on every live replica, committed when all agree, then applied
// by each replica the moment it sees the commit. A switch ends the canary
// and the mirror, as on one gateway.
func (f *Fleet) Switch(ctx context.Context, req proxy.SwitchRequest) (proxy.SwitchResult, error) {
	out, err := f.do(ctx, change{trigger: req.Trigger, ifGen: req.IfGeneration, force: req.Force,
		reason: "switch asked on replica " + f.replica,
		plan: func(cur *Intent) (Routing, *proxy.SwitchResult, error) {
			to := req.To
			if req.Toggle {
				to = cur.Active.Other()
			}
			if !to.Valid() {
				return Routing{}, nil, fmt.Errorf("fleet: %q is not a color (want blue, green or toggle)", to)
			}
			if to == cur.Active {
				return Routing{}, f.noop(to, fmt.Sprintf("%s (%s) is already active in the fleet; nothing changed", to, f.version(to))), nil
			}
			return Routing{Active: to, StickyHeader: cur.StickyHeader}, nil, nil
		}})
	return out.res, err
}

// Rollback switches the fleet back to the color before its last switch.
func (f *Fleet) Rollback(ctx context.Context, force bool) (proxy.SwitchResult, error) {
	out, err := f.do(ctx, change{trigger: proxy.TriggerRollback, force: force, reason: "rollback asked on replica " + f.replica,
		plan: func(cur *Intent) (Routing, *proxy.SwitchResult, error) {
			if len(cur.History) == 0 {
				return Routing{}, nil, proxy.ErrNothingToRollBack
			}
			last := cur.History[len(cur.History)-1]
			if last.Trigger == proxy.TriggerAutoRollback {
				return Routing{}, f.noop(cur.Active, fmt.Sprintf("already rolled back automatically from %s to %s at %s; to return to %s, switch to it by name",
					last.From, last.To, last.At.Format(time.RFC3339), last.From)), nil
			}
			if last.From == cur.Active {
				return Routing{}, f.noop(cur.Active, fmt.Sprintf("%s is already active in the fleet; nothing changed", cur.Active)), nil
			}
			return Routing{Active: last.From, StickyHeader: cur.StickyHeader}, nil, nil
		}})
	return out.res, err
}

// SetTraffic changes the fleet's canary split, sticky header or mirror,
// committed at once: a canary share to a pool that is not ready falls
// back to the active pool on each replica, so no gate is needed.
func (f *Fleet) SetTraffic(ctx context.Context, req proxy.TrafficRequest) (proxy.Traffic, error) {
	out, err := f.do(ctx, change{trigger: proxy.TriggerAdmin, reason: "traffic change asked on replica " + f.replica,
		plan: func(cur *Intent) (Routing, *proxy.SwitchResult, error) {
			r := cur.Routing()
			standby := cur.Active.Other()
			if req.Percent != nil {
				p := *req.Percent
				if !(p >= 0 && p <= 100) {
					return r, nil, fmt.Errorf("%w: canary percent %v is not within 0-100", proxy.ErrBadTraffic, p)
				}
				if p > 0 && req.Color != standby {
					return r, nil, fmt.Errorf("fleet: %s is active and takes the rest; give the standby color, %s, a share", req.Color, standby)
				}
				r.Canary = p
			}
			if req.StickyHeader != nil {
				r.StickyHeader = *req.StickyHeader
			}
			if req.SetMirror {
				r.Mirror = nil
				if m := req.Mirror; m != nil && m.Percent != 0 {
					if !(m.Percent > 0 && m.Percent <= 100) {
						return r, nil, fmt.Errorf("%w: mirror percent %v is not within 0-100", proxy.ErrBadTraffic, m.Percent)
					}
					if m.To != standby {
						return r, nil, fmt.Errorf("fleet: mirror to %q refused: only the standby color, %s, can be mirrored to", m.To, standby)
					}
					r.Mirror = &proxy.MirrorSetting{To: m.To, Percent: m.Percent}
				}
			}
			return r, nil, nil
		}})
	if out.intent == nil {
		return f.traffic(f.intent.Load()), err
	}
	return f.traffic(out.intent), err
}

// traffic is in's split as the admin API shows it.
func (f *Fleet) traffic(in *Intent) proxy.Traffic {
	if in == nil {
		return proxy.Traffic{Weights: map[config.Color]float64{}}
	}
	t := proxy.Traffic{Weights: map[config.Color]float64{in.Active: 100 - in.Canary, in.Active.Other(): in.Canary},
		StickyHeader: in.StickyHeader, Generation: in.Generation}
	if in.Mirror != nil {
		m := *in.Mirror
		t.Mirror = &m
	}
	return t
}

func (f *Fleet) noop(c config.Color, msg string) *proxy.SwitchResult {
	return &proxy.SwitchResult{From: c, To: c, Version: f.version(c), NoOp: true, Message: msg}
}

func (f *Fleet) version(c config.Color) string { return f.router.Snapshot().Pool(c).Version }

// History returns the fleet's latest switches, oldest first, with the
// fleet's generations.
func (f *Fleet) History() []proxy.SwitchRecord {
	in := f.intent.Load()
	if in == nil {
		return nil
	}
	out := make([]proxy.SwitchRecord, 0, len(in.History))
	for _, h := range in.History {
		out = append(out, proxy.SwitchRecord{From: h.From, To: h.To, Version: h.Version, Trigger: h.Trigger, Forced: h.Forced,
			At: h.At, Generation: h.Generation})
	}
	return out
}

// Local is this replica's own router as the admin API and the analysis
// read it; *proxy.Router implements it.
type Local interface {
	Target
	Config() *config.Config
	Drains() []proxy.DrainStatus
	Stats(config.Color) *proxy.Stats
	ShadowStats(config.Color) *proxy.Stats
}

var _ Local = (*proxy.Router)(nil)

// Router is what the admin API and the release analysis drive in fleet
// mode: reads come from this replica's router with the fleet's
// generation, changes go to the fleet's intent. It implements the admin
// and analysis packages' Router interfaces.
type Router struct {
	f     *Fleet
	local Local
}

// Router returns the admin and analysis view of the fleet over local.
func (f *Fleet) Router(local Local) *Router { return &Router{f: f, local: local} }

// callTimeout bounds one admin change: a prepare and three writes.
func (r *Router) callTimeout() time.Duration { return r.f.cfg.PrepareTimeout.D() + 3*apiTimeout }

// Snapshot returns this replica's routing state with the fleet's
// generation, so ETags and If-Match mean the same on every replica.
func (r *Router) Snapshot() *proxy.Snapshot {
	s := *r.local.Snapshot()
	s.Generation = r.f.Generation()
	return &s
}

// Config returns this replica's config.
func (r *Router) Config() *config.Config { return r.local.Config() }

// Drains returns this replica's drains.
func (r *Router) Drains() []proxy.DrainStatus { return r.local.Drains() }

// Stats returns this replica's record of live requests of color c: its
// own share of the fleet's traffic.
func (r *Router) Stats(c config.Color) *proxy.Stats { return r.local.Stats(c) }

// ShadowStats returns this replica's record of mirrored requests.
func (r *Router) ShadowStats(c config.Color) *proxy.Stats { return r.local.ShadowStats(c) }

// History returns the fleet's switches.
func (r *Router) History() []proxy.SwitchRecord { return r.f.History() }

// Switch switches the fleet; the answer carries this replica's drain.
func (r *Router) Switch(req proxy.SwitchRequest) (proxy.SwitchResult, error) {
	ctx, cancel := context.WithTimeout(r.f.ctx, r.callTimeout())
	defer cancel()
	res, err := r.f.Switch(ctx, req)
	r.withDrain(&res)
	return res, err
}

// Rollback rolls the fleet back.
func (r *Router) Rollback(force bool) (proxy.SwitchResult, error) {
	ctx, cancel := context.WithTimeout(r.f.ctx, r.callTimeout())
	defer cancel()
	res, err := r.f.Rollback(ctx, force)
	r.withDrain(&res)
	return res, err
}

// SetTraffic changes the fleet's split.
func (r *Router) SetTraffic(req proxy.TrafficRequest) (proxy.Traffic, error) {
	ctx, cancel := context.WithTimeout(r.f.ctx, r.callTimeout())
	defer cancel()
	return r.f.SetTraffic(ctx, req)
}

// withDrain adds this replica's drain of the color a switch left.
func (r *Router) withDrain(res *proxy.SwitchResult) {
	if res.NoOp || !res.From.Valid() || res.From == res.To {
		return
	}
	for _, d := range r.local.Drains() {
		if d.Color == res.From {
			res.Drain = &d
			return
		}
	}
}
