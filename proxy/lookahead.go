package proxy

import (
	"net"
	"sync"
)

// lookaheadSize is what one read of a new request takes: a whole
// inference request head, and a small body with it, in one syscall.
const lookaheadSize = 4 << 10

// lookaheadBufs holds the buffers of connections whose request is being
// read; an idle connection holds none.
var lookaheadBufs = sync.Pool{New: func() any { b := make([]byte, lookaheadSize); return &b }}

// lookaheadConn lets the lean fasthttp server (see leanAfter) drop a
// keep-alive connection's buffers while it waits for the next request
// (Server.ReduceMemoryUsage) without paying a syscall per request for it.
// fasthttp waits with a one-byte Read and then reads the request through
// a pooled bufio.Reader. Here the one-byte
// Read takes whatever has arrived into a pooled buffer, and the reads that
// follow are served from it until it is empty, when it goes back to the
// pool. So an idle connection costs its goroutine and socket, not the
// 12 KiB of buffers fasthttp would otherwise keep for it, and a request
// still costs one read.
//
// Only the goroutine serving the connection reads it, so no lock; Close,
// which may come from another goroutine, leaves a buffer still held to
// the garbage collector.
type lookaheadConn struct {
	net.Conn
	buf  *[]byte // pooled; nil when empty
	r, w int
}

func newLookaheadConn(c net.Conn) *lookaheadConn { return &lookaheadConn{Conn: c} }

// Read implements net.Conn.
func (c *lookaheadConn) Read(p []byte) (int, error) {
	if c.buf != nil {
		n := copy(p, (*c.buf)[c.r:c.w])
		c.r += n
		if c.r == c.w {
			c.release()
		}
		return n, nil
	}
	if len(p) >= lookaheadSize {
		return c.Conn.Read(p)
	}
	b := lookaheadBufs.Get().(*[]byte)
	n, err := c.Conn.Read(*b)
	m := copy(p, (*b)[:n])
	if m == n {
		lookaheadBufs.Put(b)
		return m, err
	}
	// More arrived than asked for: keep the rest for the next reads. An
	// error that came with data comes again on the next read from the
	// socket, once the buffer is drained.
	c.buf, c.r, c.w = b, m, n
	return m, nil
}

func (c *lookaheadConn) release() {
	if c.buf != nil {
		lookaheadBufs.Put(c.buf)
		c.buf, c.r, c.w = nil, 0, 0
	}
}
