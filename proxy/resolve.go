package proxy

import (
	"context"
	"net"
	"slices"
	"time"

	"github.com/switchyard/switchyard/config"
	"go.uber.org/zap"
)

// Resolver looks up a hostname's addresses; net.DefaultResolver.LookupHost
// is the real one.
type Resolver func(ctx context.Context, host string) ([]string, error)

// resolveTimeout bounds one DNS lookup.
const resolveTimeout = 2 * time.Second

// expand turns a configured backend (IP:port or hostname:port) into the
// addresses to route to. A hostname, such as a Kubernetes headless Service,
// stands for every address it resolves to. r.mu must be held.
func (r *Router) expand(entry string) []string {
	host, port, err := net.SplitHostPort(entry)
	if err != nil || net.ParseIP(host) != nil {
		return []string{entry}
	}
	if addrs, ok := r.resolved[entry]; ok {
		return addrs
	}
	addrs := r.lookup(host, port)
	r.resolved[entry] = addrs
	return addrs
}

func (r *Router) lookup(host, port string) []string {
	ctx, cancel := context.WithTimeout(r.ctx, resolveTimeout)
	defer cancel()
	ips, err := r.resolve(ctx, host)
	if err != nil {
		r.log.Warn("resolving backend hostname failed; keeping its last addresses",
			zap.String("host", host), zap.Error(err))
		return nil
	}
	addrs := make([]string, 0, len(ips))
	for _, ip := range ips {
		addrs = append(addrs, net.JoinHostPort(ip, port))
	}
	slices.Sort(addrs)
	return addrs
}

// refreshDNS re-resolves hostname backends every interval and publishes a
// new snapshot when any address set changed. New addresses start not
// ready, so they are probed and warmed before traffic; vanished ones
// finish what they have in flight and are forgotten.
func (r *Router) refreshDNS(interval time.Duration) {
	defer r.wg.Done()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-r.ctx.Done():
			return
		case <-t.C:
			r.reresolve()
		}
	}
}

func (r *Router) reresolve() {
	r.mu.Lock()
	entries := make([]string, 0, len(r.resolved))
	for e := range r.resolved {
		entries = append(entries, e)
	}
	r.mu.Unlock()

	fresh := make(map[string][]string, len(entries))
	for _, e := range entries {
		host, port, _ := net.SplitHostPort(e)
		if addrs := r.lookup(host, port); addrs != nil {
			fresh[e] = addrs
		}
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	changed := false
	for e, addrs := range fresh {
		if old, ok := r.resolved[e]; ok && !slices.Equal(old, addrs) {
			r.log.Info("backend hostname resolves to new addresses", zap.String("backend", e),
				zap.Strings("old", old), zap.Strings("new", addrs))
			r.resolved[e] = addrs
			changed = true
		}
	}
	if changed {
		r.rebuildLocked(r.cfg)
	}
}

// Apply rebuilds the routing state from cfg, keeping the active color:
// pools, timeouts, limits and policies take effect for new requests, and
// in-flight requests finish on the state they started with. Changing the
// active color is a separate, gated Switch.
func (r *Router) Apply(cfg *config.Config) *Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	// Hostnames are resolved afresh for a new config.
	clear(r.resolved)
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
