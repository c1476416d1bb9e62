package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// h2Preface opens every HTTP/2 connection (RFC 9113 §3.4). "PRI" is no
// HTTP/1.1 method, so its first four bytes tell the two protocols apart.
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// h2Sniff is how much of the preface decides: no HTTP/1.1 request line
// starts with "PRI ".
const h2Sniff = 4

// leanAfter is how many HTTP/1.1 client connections may be open before
// new ones go to the lean fasthttp server. The main server keeps each
// connection's buffers (12 KiB, and its request context) while it waits
// for the next request, which makes the common case allocation-free; the
// lean one gives them back (ReduceMemoryUsage) at the price of one
// one-byte allocation per request inside fasthttp. 10,000 idle keep-alive
// connections took 244 MiB all on the main server, 105 MiB on the lean one.
const leanAfter = 256

// TrafficServer is the traffic listener: one port, two HTTP stacks.
// HTTP/1.1 connections go to a fasthttp server untouched (the same
// *net.TCPConn, so its path and its zero allocations are unchanged);
// past leanAfter open connections, to a lean twin of it;
// HTTP/2 connections, told apart by their preface in cleartext (h2c with
// prior knowledge, what gRPC clients send) or by ALPN under TLS, go to the
// standard library's HTTP/2 server. Both stacks route by the same Router
// snapshot, so a switch means the same to both.
type TrafficServer struct {
	fast *fasthttp.Server
	// lean serves the HTTP/1.1 connections past leanAfter.
	lean *fasthttp.Server
	h2   *http.Server
	tls  *tls.Config
	log  *zap.Logger
	// sniffTimeout bounds the wait for a connection's first bytes or TLS
	// handshake: the client header timeout.
	sniffTimeout time.Duration

	fastLn, leanLn, h2Ln *chanListener
	// http1 counts the HTTP/1.1 connections open, to pick their server.
	http1 atomic.Int64
	// leanAfter is leanAfter; tests lower it.
	leanAfter int64

	mu     sync.Mutex
	ln     net.Listener
	closed bool
	// sniffing counts connections being told apart, for Shutdown.
	sniffing sync.WaitGroup
}

// NewTrafficServer returns the traffic listener serving HTTP/1.1 with
// fast and HTTP/2 with h's HTTP/2 handler. tlsConf, when not nil, makes
// the listener TLS-only (NewListenerTLS builds one that reloads its
// certificate).
func NewTrafficServer(h *Handler, fast *fasthttp.Server, tlsConf *tls.Config) *TrafficServer {
	s := &TrafficServer{
		fast:         fast,
		lean:         newServer(h, fast.MaxRequestBodySize, true),
		tls:          tlsConf,
		log:          h.log,
		sniffTimeout: h.client.HeaderTimeout,
		fastLn:       newChanListener(),
		leanLn:       newChanListener(),
		leanAfter:    leanAfter,
		h2Ln:         newChanListener(),
	}
	s.h2 = newH2Server(h)
	for _, srv := range []*fasthttp.Server{s.fast, s.lean} {
		srv.ConnState = chainConnState(srv.ConnState, s.http1Ended)
	}
	return s
}

// http1Ended counts an HTTP/1.1 connection out once fasthttp is done
// with it.
func (s *TrafficServer) http1Ended(_ net.Conn, st fasthttp.ConnState) {
	if st == fasthttp.StateClosed || st == fasthttp.StateHijacked {
		s.http1.Add(-1)
	}
}

func chainConnState(a, b func(net.Conn, fasthttp.ConnState)) func(net.Conn, fasthttp.ConnState) {
	if a == nil {
		return b
	}
	return func(c net.Conn, st fasthttp.ConnState) { a(c, st); b(c, st) }
}

// Serve accepts connections on ln until Shutdown, handing each to the
// stack its protocol needs. It returns nil after Shutdown.
func (s *TrafficServer) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.ln = ln
	s.fastLn.addr, s.leanLn.addr, s.h2Ln.addr = ln.Addr(), ln.Addr(), ln.Addr()
	s.mu.Unlock()

	var wg sync.WaitGroup
	errc := make(chan error, 3)
	wg.Add(3)
	go func() { defer wg.Done(); errc <- s.fast.Serve(s.fastLn) }()
	go func() { defer wg.Done(); errc <- s.lean.Serve(s.leanLn) }()
	go func() { defer wg.Done(); errc <- s.h2.Serve(s.h2Ln) }()

	var acceptErr error
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if !errors.Is(err, net.ErrClosed) {
				acceptErr = err
			}
			break
		}
		s.sniffing.Add(1)
		go s.dispatch(c)
	}
	// The listener is gone: stop the inner servers' accept loops once
	// the connections being sniffed were handed over.
	s.sniffing.Wait()
	s.fastLn.Close()
	s.leanLn.Close()
	s.h2Ln.Close()
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) && acceptErr == nil {
			acceptErr = err
		}
	}
	return acceptErr
}

// ShutdownWithContext stops accepting, tells HTTP/2 clients to go away
// (GOAWAY) and waits for in-flight requests and streams of both stacks to
// finish, or for ctx.
func (s *TrafficServer) ShutdownWithContext(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	if s.ln != nil {
		_ = s.ln.Close()
	}
	s.mu.Unlock()
	errc := make(chan error, 2)
	go func() { errc <- s.h2.Shutdown(ctx) }()
	go func() { errc <- s.lean.ShutdownWithContext(ctx) }()
	err := s.fast.ShutdownWithContext(ctx)
	for range 2 {
		if err2 := <-errc; err == nil {
			err = err2
		}
	}
	return err
}

// dispatch tells one connection's protocol and hands it over. Under TLS
// that is the handshake's ALPN; in cleartext, the first bytes, read with
// MSG_PEEK so that an HTTP/1.1 connection reaches fasthttp as it came.
func (s *TrafficServer) dispatch(c net.Conn) {
	defer s.sniffing.Done()
	if s.sniffTimeout > 0 {
		_ = c.SetDeadline(time.Now().Add(s.sniffTimeout))
	}
	var h2 bool
	if s.tls != nil {
		tc := tls.Server(c, s.tls)
		if err := tc.Handshake(); err != nil {
			s.connError("TLS handshake failed", c, err)
			_ = c.Close()
			return
		}
		h2 = tc.ConnectionState().NegotiatedProtocol == "h2"
		c = tc
	} else {
		var err error
		if c, h2, err = sniff(c); err != nil {
			s.connError("reading the first bytes failed", c, err)
			_ = c.Close()
			return
		}
	}
	_ = c.SetDeadline(time.Time{})
	if h2 {
		if !s.h2Ln.push(c) {
			_ = c.Close()
		}
		return
	}
	ln := s.fastLn
	if s.http1.Add(1) > s.leanAfter {
		ln = s.leanLn
		if s.tls == nil {
			// A TLS connection reads whole records into buffers of its
			// own; a socket gets one only while a request is read.
			c = newLookaheadConn(c)
		}
	}
	if !ln.push(c) {
		s.http1.Add(-1)
		_ = c.Close()
	}
}

func (s *TrafficServer) connError(msg string, c net.Conn, err error) {
	if ce := s.log.Check(zap.DebugLevel, msg); ce != nil {
		ce.Write(zap.Stringer("client", c.RemoteAddr()), zap.Error(err))
	}
}

// sniff reports whether c starts with the HTTP/2 preface. On a socket it
// peeks without consuming, and returns c itself; only when the first read
// is too short to decide (a client that sends "P" alone) does it read the
// bytes and return a conn that replays them.
func sniff(c net.Conn) (net.Conn, bool, error) {
	var buf [h2Sniff]byte
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			n, err := peek(rc, buf[:])
			if err != nil {
				return c, false, err
			}
			if n == 0 {
				return c, false, io.EOF
			}
			if h2, decided := isH2(buf[:n]); decided {
				return c, h2, nil
			}
		}
	}
	// Not a socket, or too few bytes to decide: read what decides and
	// replay it.
	n := 0
	for n < h2Sniff {
		m, err := c.Read(buf[n:])
		n += m
		if _, decided := isH2(buf[:n]); decided {
			break
		}
		if err != nil {
			return c, false, err
		}
	}
	h2, _ := isH2(buf[:n])
	return &replayConn{Conn: c, head: append([]byte(nil), buf[:n]...)}, h2, nil
}

// peek reads what has arrived without consuming it, waiting (within the
// conn's deadline) until something has.
func peek(rc syscall.RawConn, buf []byte) (int, error) {
	var n int
	var perr error
	err := rc.Read(func(fd uintptr) bool {
		n, _, perr = syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK)
		if perr == syscall.EAGAIN || perr == syscall.EINTR {
			return false // wait until readable
		}
		return true
	})
	if err != nil {
		return 0, err
	}
	return n, perr
}

// isH2 says whether b, the first bytes of a connection, open the HTTP/2
// preface, and whether they are enough to tell.
func isH2(b []byte) (h2, decided bool) {
	for i := range b {
		if i >= h2Sniff {
			break
		}
		if b[i] != h2Preface[i] {
			return false, true
		}
	}
	if len(b) >= h2Sniff {
		return true, true
	}
	return false, false
}

// replayConn returns head before the rest of the connection.
type replayConn struct {
	net.Conn
	head []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.head) > 0 {
		n := copy(p, c.head)
		c.head = c.head[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// chanListener is a net.Listener fed by dispatch, one per stack.
type chanListener struct {
	conns     chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
	addr      net.Addr
}

func newChanListener() *chanListener {
	return &chanListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

// push hands c to the stack; false once the listener is closed.
func (l *chanListener) push(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

// Accept returns the next connection, or net.ErrClosed (which both
// servers take as a clean stop) once closed.
func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops Accept; connections already accepted are the servers'.
func (l *chanListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return nil
}

// Addr is the real listener's address.
func (l *chanListener) Addr() net.Addr {
	if l.addr == nil {
		return &net.TCPAddr{}
	}
	return l.addr
}
