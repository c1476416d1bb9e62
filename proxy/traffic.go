package proxy

import (
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/switchyard/switchyard/config"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// trafficPlan is a snapshot's canary split and mirror. Weights are in
// basis points (1/10000) so that a roll is one integer compare.
type trafficPlan struct {
	canary       uint32 // share of requests to the standby color
	stickyHeader string
	mirrorTo     config.Color
	mirror       uint32 // share of requests copied to mirrorTo
	mirrorMax    int    // larger bodies are not copied
}

const basisPoints = 10000

// Traffic is the split and mirror as the admin API shows and takes it.
type Traffic struct {
	// Weights gives each color's percent of live requests.
	Weights map[config.Color]float64 `json:"weights"`
	// StickyHeader names the header whose hash keeps a user on one color.
	StickyHeader string `json:"sticky_header"`
	// Mirror is nil when no shadow traffic is sent.
	Mirror     *MirrorSetting `json:"mirror"`
	Generation uint64         `json:"generation"`
}

// MirrorSetting is the shadow traffic part of Traffic.
type MirrorSetting struct {
	To      config.Color `json:"to"`
	Percent float64      `json:"percent"`
}

// TrafficRequest changes the split or the mirror; nil fields stay.
type TrafficRequest struct {
	// Color and Percent set the canary: Percent of requests to Color,
	// which must be the standby; 0 ends the canary.
	Color   config.Color
	Percent *float64
	// StickyHeader, when non-nil, replaces the sticky header.
	StickyHeader *string
	// Mirror, when SetMirror, replaces the mirror; nil turns it off.
	SetMirror bool
	Mirror    *MirrorSetting
}

// Traffic returns the current split.
func (s *Snapshot) Traffic() Traffic {
	t := Traffic{Weights: map[config.Color]float64{}, StickyHeader: s.traffic.stickyHeader, Generation: s.Generation}
	canary := float64(s.traffic.canary) / 100
	t.Weights[s.Active] = 100 - canary
	t.Weights[s.Active.Other()] = canary
	if s.traffic.mirror > 0 {
		t.Mirror = &MirrorSetting{To: s.traffic.mirrorTo, Percent: float64(s.traffic.mirror) / 100}
	}
	return t
}

// ErrBadTraffic marks a traffic request that is malformed rather than
// refused: a percent outside 0-100.
var ErrBadTraffic = errors.New("proxy: bad traffic request")

// SetTraffic applies req as a new snapshot. The canary and mirror may only
// target the standby color, and a pool that is not ready never gets a
// canary share: requests fall back to the active pool.
func (r *Router) SetTraffic(req TrafficRequest) (Traffic, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur := r.snap.Load()
	next := *cur
	standby := cur.Active.Other()
	if req.Percent != nil {
		p := *req.Percent
		if !(p >= 0 && p <= 100) {
			return cur.Traffic(), fmt.Errorf("%w: canary percent %v is not within 0-100", ErrBadTraffic, p)
		}
		if p > 0 && req.Color != standby {
			return cur.Traffic(), fmt.Errorf("proxy: %s is active and takes the rest; give the standby color, %s, a share", req.Color, standby)
		}
		next.traffic.canary = uint32(p*100 + 0.5)
	}
	if req.StickyHeader != nil {
		next.traffic.stickyHeader = *req.StickyHeader
	}
	if req.SetMirror {
		next.traffic.mirror, next.traffic.mirrorTo = 0, ""
		if m := req.Mirror; m != nil && m.Percent != 0 {
			if !(m.Percent > 0 && m.Percent <= 100) {
				return cur.Traffic(), fmt.Errorf("%w: mirror percent %v is not within 0-100", ErrBadTraffic, m.Percent)
			}
			if m.To != standby {
				return cur.Traffic(), fmt.Errorf("proxy: mirror to %q refused: only the standby color, %s, can be mirrored to", m.To, standby)
			}
			next.traffic.mirror, next.traffic.mirrorTo = uint32(m.Percent*100+0.5), m.To
		}
	}
	r.generation++
	next.Generation = r.generation
	r.publish(&next)
	t := next.Traffic()
	r.log.Info("traffic split changed", zap.String("env", string(standby)), zap.String("version", next.Pool(standby).Version),
		zap.Float64("canary_percent", t.Weights[standby]), zap.Any("mirror", t.Mirror), zap.Uint64("generation", next.Generation))
	return t, nil
}

func planFromConfig(cfg *config.Config, active config.Color, maxBody int) trafficPlan {
	t := cfg.Traffic
	p := trafficPlan{stickyHeader: t.StickyHeader, mirrorMax: t.Mirror.MaxBodyBytes}
	if active == cfg.Active {
		p.canary = uint32(t.Weight(active.Other()) * 100)
		if t.Mirror.Percent > 0 && t.Mirror.To == active.Other() {
			p.mirror, p.mirrorTo = uint32(t.Mirror.Percent*100+0.5), t.Mirror.To
		}
	}
	if p.mirrorMax == 0 {
		p.mirrorMax = maxBody
	}
	return p
}

// route picks the pool for one request: the standby for the canary share,
// by the sticky header's hash when present, else at random.
func (s *Snapshot) route(ctx *fasthttp.RequestCtx) (*Pool, bool) {
	if s.traffic.canary == 0 {
		return s.ActivePool(), false
	}
	var roll uint32
	if h := s.traffic.stickyHeader; h != "" {
		if v := ctx.Request.Header.Peek(h); len(v) > 0 {
			roll = fnv32a(v) % basisPoints
		} else {
			roll = randN(basisPoints)
		}
	} else {
		roll = randN(basisPoints)
	}
	if roll < s.traffic.canary {
		return s.Pools[colorIndex(s.Active.Other())], true
	}
	return s.ActivePool(), false
}

// fnv32a hashes a sticky key; FNV-1a spreads short IDs well and costs
// nothing to compute.
func randN(n uint32) uint32 { return rand.Uint32N(n) }

func fnv32a(b []byte) uint32 {
	h := uint32(2166136261)
	for _, c := range b {
		h ^= uint32(c)
		h *= 16777619
	}
	return h
}
