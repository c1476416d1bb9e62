package proxy

import (
	"bufio"
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Buffer sizes per upstream connection. Response headers must fit in the
// reader; 8 KiB is what most servers allow for a header block.
const (
	connReadBufferSize  = 8 << 10
	connWriteBufferSize = 4 << 10
)

// upstreamConn is one keep-alive connection to a backend, with its buffers.
// It is allocated once per connection, never per request.
type upstreamConn struct {
	nc        net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	idleSince time.Time
	// reused is true once the connection has served a request.
	reused bool
	// rc and probe check an idle connection before reuse; nil for
	// connections that are not sockets (in-memory pipes in tests).
	rc    syscall.RawConn
	probe func(fd uintptr)
	quiet bool
}

// idleAlive reports whether an idle connection may carry a request: the
// backend has neither closed it nor sent anything since its last answer.
//
// The rule is that nothing may arrive on a connection outside an exchange:
// bytes that come while no request is outstanding are a stray answer (a
// buggy backend, a second response, the tail of a smuggled one), and a
// connection that got them is closed, never reused. put enforces it for
// bytes that came with the answer, this check (run just before a request
// is written, and by the reaper) for bytes that came later.
//
// What this cannot cover: HTTP/1.1 answers carry no request id, so bytes
// that arrive after a request was written on the connection are, on the
// wire, that request's answer. Such a stray goes to that one client. The
// backend's real answer then arrives after it; if the connection is idle
// by then, the rule closes it and the answer reaches no one, but if the
// next request was already written, that request takes it, and the shift
// lasts until the connection falls idle or breaks. So we guarantee that
// bytes arriving while no request is outstanding never reach a client,
// not that a backend which answers unasked cannot misdirect an answer.
func (c *upstreamConn) idleAlive() bool {
	if c.br.Buffered() > 0 {
		return false // bytes nobody asked for: the stream is out of step
	}
	if c.rc == nil {
		return true
	}
	c.quiet = false
	// Control, not Read: Read fails once the last exchange's deadline has
	// passed, which would drop every connection idle for longer than the
	// response_header timeout.
	if err := c.rc.Control(c.probe); err != nil {
		return false
	}
	return c.quiet
}

// transport is a keep-alive HTTP/1.1 connection pool to one backend.
//
// We keep our own pool instead of fasthttp.HostClient because its streamed
// responses allocate several closures per request, and the proxy must both
// stream chunked replies and stay allocation-free. fasthttp still parses and
// writes every header.
type transport struct {
	addr string
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// idle holds reusable connections. A channel keeps the pool lock-free
	// for callers; FIFO order is fine because stale ones are dropped by age.
	idle chan *upstreamConn
	// slots holds one token per open connection, idle or busy, up to
	// proxy.max_conns_per_backend. A connection is dialled only with a free
	// slot, so a burst of clients queues for the connections there are
	// instead of opening (and soon closing) one each.
	slots chan struct{}
	// open counts connections, idle or busy, for status and tests.
	open atomic.Int64
	// retired is set once the backend left every pool: connections coming
	// back from their last request are closed instead of kept.
	retired atomic.Bool
}

func newTransport(addr string, maxIdle, maxConns int, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *transport {
	maxConns = max(maxConns, 1)
	return &transport{
		addr:  addr,
		dial:  dial,
		idle:  make(chan *upstreamConn, min(max(maxIdle, 1), maxConns)),
		slots: make(chan struct{}, maxConns),
	}
}

// errConnWait is a request that waited for one of the backend's
// connections until its header deadline: every one stayed busy.
var errConnWait = &connWaitError{}

type connWaitError struct{}

func (*connWaitError) Error() string {
	return "every connection to the backend stayed busy (proxy.max_conns_per_backend) until the response header timeout"
}
func (*connWaitError) Timeout() bool { return true }

// get returns an idle connection younger than maxIdle, or dials a new one
// within dialTimeout, or, when the backend already has its most
// connections open, waits until deadline for one to come back or close.
func (t *transport) get(now time.Time, maxIdle, dialTimeout time.Duration, deadline time.Time) (*upstreamConn, error) {
	for {
		c, err := t.idleOrSlot(deadline)
		if err != nil {
			return nil, err
		}
		if c == nil {
			return t.dialNew(dialTimeout) // the slot is ours
		}
		// One that came back while we waited went idle after now: fresh.
		if now.Sub(c.idleSince) < maxIdle && c.idleAlive() {
			return c, nil
		}
		// The backend may already have closed it; never gamble on it.
		t.close(c)
	}
}

// idleOrSlot takes an idle connection, or else a slot to dial one (nil);
// when the backend has its most connections open, it waits for either.
func (t *transport) idleOrSlot(deadline time.Time) (*upstreamConn, error) {
	select {
	case c := <-t.idle:
		return c, nil
	default:
	}
	select {
	case t.slots <- struct{}{}:
		return nil, nil
	default:
	}
	return t.wait(deadline)
}

// wait blocks until a connection comes back (returned), a slot frees up
// (nil, with the slot taken for the caller), or deadline passes.
func (t *transport) wait(deadline time.Time) (*upstreamConn, error) {
	d := time.Until(deadline)
	if d <= 0 {
		return nil, errConnWait
	}
	tm := acquireTimer(d)
	defer releaseTimer(tm)
	select {
	case c := <-t.idle:
		return c, nil
	case t.slots <- struct{}{}:
		return nil, nil
	case <-tm.C:
		return nil, errConnWait
	}
}

// timerPool keeps the waits for a busy backend's connections free of
// allocations: under a burst of clients every request may wait.
var timerPool sync.Pool

func acquireTimer(d time.Duration) *time.Timer {
	if v := timerPool.Get(); v != nil {
		tm := v.(*time.Timer)
		tm.Reset(d)
		return tm
	}
	return time.NewTimer(d)
}

// releaseTimer stops tm and pools it. Since Go 1.23 a stopped timer's
// channel holds no stale value, so the next Reset starts clean.
func releaseTimer(tm *time.Timer) {
	tm.Stop()
	timerPool.Put(tm)
}

// dialNew dials a connection for a slot the caller took.
func (t *transport) dialNew(timeout time.Duration) (*upstreamConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	nc, err := t.dial(ctx, "tcp", t.addr)
	if err != nil {
		<-t.slots
		return nil, &dialError{err: err}
	}
	t.open.Add(1)
	c := &upstreamConn{
		nc: nc,
		br: bufio.NewReaderSize(nc, connReadBufferSize),
		bw: bufio.NewWriterSize(nc, connWriteBufferSize),
	}
	if sc, ok := nc.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			// Built once per connection so the check allocates nothing.
			var buf [1]byte
			c.rc = rc
			c.probe = func(fd uintptr) {
				// Peek one byte without blocking. Only EAGAIN means open
				// and quiet (the raw syscall then returns n = -1); a byte
				// is a stray answer, n = 0 with no error is the backend's
				// FIN, and any other error a reset: all unusable. Decide
				// on err alone, so that no return value is misread.
				_, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
				c.quiet = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
			}
		}
	}
	return c, nil
}

// put returns a connection whose exchange completed cleanly.
func (t *transport) put(c *upstreamConn, now time.Time) {
	c.idleSince = now
	c.reused = true
	// Bytes read past the end of the answer came outside any exchange.
	if t.retired.Load() || c.br.Buffered() > 0 {
		t.close(c)
		return
	}
	select {
	case t.idle <- c:
	default:
		t.close(c)
	}
}

func (t *transport) close(c *upstreamConn) {
	_ = c.nc.Close()
	t.open.Add(-1)
	<-t.slots
}

// closeIdle closes every idle connection, e.g. once a drained pool has no
// more use for them. Busy connections are left to finish.
func (t *transport) closeIdle() {
	for {
		select {
		case c := <-t.idle:
			t.close(c)
		default:
			return
		}
	}
}

// reap closes the idle connections that are maxIdle old or more, or that
// the backend closed or wrote to while idle, and keeps the others in their
// order. Each connection leaves the pool only while it is checked, so a
// request arriving meanwhile finds the rest.
func (t *transport) reap(now time.Time, maxIdle time.Duration) {
	for n := len(t.idle); n > 0; n-- {
		var c *upstreamConn
		select {
		case c = <-t.idle:
		default:
			return // requests took the rest
		}
		if now.Sub(c.idleSince) >= maxIdle || !c.idleAlive() {
			t.close(c)
			continue
		}
		select {
		case t.idle <- c:
		default:
			t.close(c) // the pool filled up meanwhile
		}
	}
}

// dialError marks a failure to connect: the request was never sent, so it
// is always safe to try another backend.
type dialError struct{ err error }

func (e *dialError) Error() string { return "dial: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

// isTimeout reports whether err is a deadline that passed. It asks for the
// Timeout method alone rather than net.Error: fasthttp.ErrTimeout, which
// reading the headers returns when a deadline passes before their first
// byte (after an interim 1xx, say), has no Temporary method.
func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout() || errors.Is(err, context.DeadlineExceeded)
}
