package proxy

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Backend is one model server address. It outlives snapshots: a config
// reload that keeps an address keeps its Backend, so a warm GPU stays warm
// and in-flight counts stay true across reloads.
type Backend struct {
	addr string
	t    *transport

	inflight atomic.Int64
	// ready is set by the health checker: healthy and warm. Selection only
	// considers ready backends.
	ready atomic.Bool
	// ejectedUntil is a UnixNano deadline set by passive health; 0 when
	// the backend is not ejected.
	ejectedUntil atomic.Int64
	// score is extra load the backend reported (queue depth, KV-cache
	// pressure) in in-flight-request units, for the gpu policy.
	score atomic.Int64
	// passive is consecutive failures seen on live traffic.
	passive atomic.Int32
	// ejections counts passive-health ejections; each doubles the next.
	ejections atomic.Uint32
	// capWarned is set once "not ejected: share reached" was logged.
	capWarned atomic.Bool
	// requests counts proxied requests, for status and tests.
	requests atomic.Uint64
	// h2 is the net/http transport the HTTP/2 side reaches the backend
	// through (h2.go), built on first use.
	h2 atomic.Pointer[h2Transport]
}

// Addr returns the backend's host:port.
func (b *Backend) Addr() string { return b.addr }

// Inflight returns the requests the gateway has open on this backend.
func (b *Backend) Inflight() int64 { return b.inflight.Load() }

// Requests returns how many requests were sent to this backend.
func (b *Backend) Requests() uint64 { return b.requests.Load() }

// Ready reports whether the backend may get traffic (healthy and warm).
func (b *Backend) Ready() bool { return b.ready.Load() }

// SetReady is called by the health checker on every state transition.
func (b *Backend) SetReady(v bool) { b.ready.Store(v) }

// SetLoadScore records the load the backend reported, in units of one
// in-flight request, for the gpu balancing policy.
func (b *Backend) SetLoadScore(v int64) { b.score.Store(v) }

// Eject keeps the backend out of selection until the deadline.
func (b *Backend) Eject(until time.Time) { b.ejectedUntil.Store(until.UnixNano()) }

// Uneject returns an ejected backend to selection, e.g. after a passing
// active probe.
func (b *Backend) Uneject() { b.ejectedUntil.Store(0); b.passive.Store(0) }

// EjectedUntil returns the ejection deadline, or the zero time.
func (b *Backend) EjectedUntil() time.Time {
	if n := b.ejectedUntil.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}

// Ejections returns how often passive health ejected the backend.
func (b *Backend) Ejections() uint32 { return b.ejections.Load() }

// OpenConns returns the connections open to the backend, idle or busy.
func (b *Backend) OpenConns() int64 { return b.t.open.Load() }

// CloseIdleConns closes the backend's idle keep-alive connections.
func (b *Backend) CloseIdleConns() { b.t.closeIdle(); b.closeH2Idle() }

// usable reports whether b can take one more request at time now.
func (b *Backend) usable(now int64, maxConcurrency int64) bool {
	if !b.ready.Load() {
		return false
	}
	if until := b.ejectedUntil.Load(); until != 0 && now < until {
		return false
	}
	return maxConcurrency == 0 || b.inflight.Load() < maxConcurrency
}

// Registry owns every Backend by address, so that state survives snapshots.
type Registry struct {
	mu       sync.Mutex
	backends map[string]*Backend
	dial     func(ctx context.Context, network, addr string) (net.Conn, error)
	maxIdle  int
	maxConns int
	// startReady is the ready state of a new backend: false when a health
	// checker will decide, true when none runs (tests, the bench).
	startReady bool
}

// RegistryOptions configure a Registry.
type RegistryOptions struct {
	// MaxIdleConns caps the keep-alive connections kept per backend.
	MaxIdleConns int
	// MaxConns caps the connections open to each backend, idle or busy;
	// a request finding all of them busy waits for one. Default 256.
	MaxConns int
	// StartReady is the ready state a new backend starts with. Keep it
	// false whenever a health checker runs, so that no request reaches a
	// backend before it is probed and warmed.
	StartReady bool
	// Dial connects to a backend; a net.Dialer when nil. Tests and the
	// benchmark pass in-memory listeners here.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// NewRegistry returns an empty registry.
func NewRegistry(opts RegistryOptions) *Registry {
	r := &Registry{
		backends:   make(map[string]*Backend),
		dial:       opts.Dial,
		maxIdle:    opts.MaxIdleConns,
		maxConns:   opts.MaxConns,
		startReady: opts.StartReady,
	}
	if r.dial == nil {
		r.dial = (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext
	}
	if r.maxIdle <= 0 {
		r.maxIdle = 256
	}
	if r.maxConns <= 0 {
		r.maxConns = 256
	}
	return r
}

// Get returns the backend for addr, creating it on first use.
func (r *Registry) Get(addr string) *Backend {
	r.mu.Lock()
	defer r.mu.Unlock()
	if b, ok := r.backends[addr]; ok {
		return b
	}
	b := &Backend{addr: addr, t: newTransport(addr, r.maxIdle, r.maxConns, r.dial)}
	b.ready.Store(r.startReady)
	r.backends[addr] = b
	return b
}

// Lookup returns the backend for addr if it exists.
func (r *Registry) Lookup(addr string) (*Backend, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, ok := r.backends[addr]
	return b, ok
}

// Forget drops addr from the registry once nothing routes to it, closing
// its idle connections. Busy connections close as their requests finish.
func (r *Registry) Forget(addr string) {
	r.mu.Lock()
	b, ok := r.backends[addr]
	delete(r.backends, addr)
	r.mu.Unlock()
	if ok {
		b.t.retired.Store(true)
		b.t.closeIdle()
		b.closeH2Idle()
	}
}

// CloseIdle closes idle connections to every backend.
func (r *Registry) CloseIdle() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range r.backends {
		b.t.closeIdle()
		b.closeH2Idle()
	}
}

// ReapIdle closes idle connections once they have been unused for idle(),
// and those the backend closed or wrote to while idle, until ctx is
// cancelled. Without it an idle connection is only checked when a request
// picks it, so the sockets a burst opened would stay open until the next
// burst. It sweeps every half idle timeout and reads idle() before each
// sweep, so a reload applies; the caller runs it in a goroutine it owns.
func (r *Registry) ReapIdle(ctx context.Context, idle func() time.Duration) {
	timer := time.NewTimer(reapInterval(idle()))
	defer timer.Stop()
	var ts []*transport
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		d := idle()
		ts = r.reap(time.Now(), d, ts[:0])
		timer.Reset(reapInterval(d))
	}
}

// reap sweeps every backend's idle connections once. The transports are
// listed under the lock and swept outside it, so that Get and Lookup never
// wait on a sweep; ts is reused between sweeps.
func (r *Registry) reap(now time.Time, idle time.Duration, ts []*transport) []*transport {
	r.mu.Lock()
	for _, b := range r.backends {
		ts = append(ts, b.t)
	}
	r.mu.Unlock()
	for i, t := range ts {
		t.reap(now, idle)
		ts[i] = nil // keep no forgotten transport alive until the next sweep
	}
	return ts
}

// reapInterval is the pause between sweeps: half the idle timeout, so a
// connection is closed at most 1.5 idle timeouts after its last use, and
// never so short that sweeping becomes busy work.
func reapInterval(idle time.Duration) time.Duration {
	const floor = 10 * time.Millisecond
	if idle <= 0 {
		return time.Second
	}
	return max(idle/2, floor)
}
