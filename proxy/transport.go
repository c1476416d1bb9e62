package proxy

import (
	"bufio"
	"context"
	"errors"
	"net"
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
	probe func(fd uintptr) bool
	alive bool
}

// idleAlive reports whether an idle connection is still open: the backend
// has neither closed it nor sent anything unasked. It peeks at the socket
// without blocking, so a request is never written into a connection the
// backend already closed; once written, a request that gets no answer may
// have run, and only idempotent ones are replayed.
func (c *upstreamConn) idleAlive() bool {
	if c.br.Buffered() > 0 {
		return false // bytes nobody asked for: the stream is out of step
	}
	if c.rc == nil {
		return true
	}
	c.alive = false
	if err := c.rc.Read(c.probe); err != nil {
		return false
	}
	return c.alive
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
	// open counts connections, idle or busy, for status and tests.
	open atomic.Int64
	// retired is set once the backend left every pool: connections coming
	// back from their last request are closed instead of kept.
	retired atomic.Bool
}

func newTransport(addr string, maxIdle int, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *transport {
	return &transport{
		addr: addr,
		dial: dial,
		idle: make(chan *upstreamConn, max(maxIdle, 1)),
	}
}

// get returns an idle connection younger than maxIdle, or dials a new one
// within dialTimeout.
func (t *transport) get(now time.Time, maxIdle, dialTimeout time.Duration) (*upstreamConn, error) {
	for {
		select {
		case c := <-t.idle:
			if now.Sub(c.idleSince) < maxIdle && c.idleAlive() {
				return c, nil
			}
			// The backend may already have closed it; never gamble on it.
			t.close(c)
			continue
		default:
		}
		return t.dialNew(dialTimeout)
	}
}

func (t *transport) dialNew(timeout time.Duration) (*upstreamConn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	nc, err := t.dial(ctx, "tcp", t.addr)
	if err != nil {
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
			c.probe = func(fd uintptr) bool {
				n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
				// EAGAIN: open and quiet. 0 bytes: closed. Data or any
				// other error: unusable.
				c.alive = n < 0 && (err == syscall.EAGAIN || err == syscall.EWOULDBLOCK)
				return true
			}
		}
	}
	return c, nil
}

// put returns a connection whose exchange completed cleanly.
func (t *transport) put(c *upstreamConn, now time.Time) {
	c.idleSince = now
	c.reused = true
	if t.retired.Load() {
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

// dialError marks a failure to connect: the request was never sent, so it
// is always safe to try another backend.
type dialError struct{ err error }

func (e *dialError) Error() string { return "dial: " + e.err.Error() }
func (e *dialError) Unwrap() error { return e.err }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded)
}
