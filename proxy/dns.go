package proxy

import (
	"context"
	"net"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Resolver looks up a hostname's addresses; net.DefaultResolver.LookupHost
// is the real one.
type Resolver func(ctx context.Context, host string) ([]string, error)

// resolveTimeout bounds one DNS lookup.
const resolveTimeout = 2 * time.Second

// hostResolver keeps the addresses each hostname backend resolves to. A
// hostname, such as a Kubernetes headless Service, stands for every
// address it resolves to; a failed lookup keeps the last ones.
type hostResolver struct {
	resolve Resolver
	log     *zap.Logger

	mu sync.Mutex
	// resolved caches addresses by config entry (host:port).
	resolved map[string][]string
}

func newHostResolver(resolve Resolver, log *zap.Logger) *hostResolver {
	if resolve == nil {
		resolve = net.DefaultResolver.LookupHost
	}
	return &hostResolver{resolve: resolve, log: log, resolved: map[string][]string{}}
}

// expand turns a configured backend (IP:port or hostname:port) into the
// addresses to route to, looking a hostname up on first use.
func (h *hostResolver) expand(ctx context.Context, entry string) []string {
	host, port, err := net.SplitHostPort(entry)
	if err != nil || net.ParseIP(host) != nil {
		return []string{entry}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if addrs, ok := h.resolved[entry]; ok {
		return addrs
	}
	addrs := h.lookup(ctx, host, port)
	h.resolved[entry] = addrs
	return addrs
}

// forget drops every cached address, so a new config resolves afresh.
func (h *hostResolver) forget() {
	h.mu.Lock()
	defer h.mu.Unlock()
	clear(h.resolved)
}

func (h *hostResolver) lookup(ctx context.Context, host, port string) []string {
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	ips, err := h.resolve(ctx, host)
	if err != nil {
		h.log.Warn("resolving backend hostname failed; keeping its last addresses",
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

// refresh looks every cached hostname up again and reports whether any
// address set changed. Lookups run without the lock.
func (h *hostResolver) refresh(ctx context.Context) bool {
	h.mu.Lock()
	entries := make([]string, 0, len(h.resolved))
	for e := range h.resolved {
		entries = append(entries, e)
	}
	h.mu.Unlock()

	fresh := make(map[string][]string, len(entries))
	for _, e := range entries {
		host, port, _ := net.SplitHostPort(e)
		if addrs := h.lookup(ctx, host, port); addrs != nil {
			fresh[e] = addrs
		}
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	changed := false
	for e, addrs := range fresh {
		if old, ok := h.resolved[e]; ok && !slices.Equal(old, addrs) {
			h.log.Info("backend hostname resolves to new addresses", zap.String("backend", e),
				zap.Strings("old", old), zap.Strings("new", addrs))
			h.resolved[e] = addrs
			changed = true
		}
	}
	return changed
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
			if r.dns.refresh(r.ctx) {
				r.mu.Lock()
				r.rebuildLocked(r.cfg)
				r.mu.Unlock()
			}
		}
	}
}
