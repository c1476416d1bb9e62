package proxy

import (
	"github.com/switchyard/switchyard/config"
	"go.uber.org/zap"
)

// Apply rebuilds the routing state from cfg, keeping the active color:
// pools, timeouts, limits and policies take effect for new requests, and
// in-flight requests finish on the state they started with. Changing the
// active color is a separate, gated Switch.
func (r *Router) Apply(cfg *config.Config) *Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	// Hostnames are resolved afresh for a new config.
	r.dns.forget()
	return r.rebuildLocked(cfg)
}

// OnChange registers fn to run, under the writer lock, after every
// published change of pools (reload, DNS), with the new snapshot.
func (r *Router) OnChange(fn func(*config.Config, *Snapshot)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.onChange = append(r.onChange, fn)
}

func (r *Router) rebuildLocked(cfg *config.Config) *Snapshot {
	cur := r.snap.Load()
	r.generation++
	next := r.build(cfg, cur.Active, r.generation)
	// A split set through the admin API survives rebuilds that leave the
	// config's traffic section as it was (a DNS change, an unrelated edit).
	if cfg.Traffic == r.cfg.Traffic {
		next.traffic = cur.traffic
	}
	r.cfg = cfg
	r.publish(next)
	r.forgetUnused(cur, next)
	for _, fn := range r.onChange {
		fn(cfg, next)
	}
	return next
}

// forgetUnused retires backends that left every pool. Their in-flight
// requests finish on the old snapshot; their connections then close.
func (r *Router) forgetUnused(old, next *Snapshot) {
	inUse := map[*Backend]bool{}
	for _, p := range next.Pools {
		for _, b := range p.Backends {
			inUse[b] = true
		}
	}
	for _, p := range old.Pools {
		for _, b := range p.Backends {
			if !inUse[b] {
				r.log.Info("backend removed; draining its in-flight requests",
					zap.String("env", string(p.Color)), zap.String("version", p.Version),
					zap.String("backend", b.addr), zap.Int64("inflight", b.Inflight()))
				r.reg.Forget(b.addr)
			}
		}
	}
}
