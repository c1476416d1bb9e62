package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// bodyMode is how an upstream response body is framed.
type bodyMode uint8

const (
	bodyNone    bodyMode = iota // HEAD, 1xx, 204, 304
	bodyFixed                   // Content-Length
	bodyChunked                 // Transfer-Encoding: chunked
	bodyToClose                 // neither: the body ends when the connection does
)

// exchange is one proxied request from backend selection to the last body
// byte. It is pooled, and it is the body stream handed to fasthttp, so a
// streamed reply costs no allocation and the in-flight count ends only
// when the client has the whole body.
type exchange struct {
	h       *Handler
	pool    *Pool
	backend *Backend
	conn    *upstreamConn
	start   time.Time

	mode      bodyMode
	remaining int64 // bytes left in the body (fixed) or chunk (chunked)
	done      bool  // the body was read to its end
	closeConn bool  // the connection cannot be reused after this exchange
	// buffered is set when the whole body is already in ctx.Response: a
	// small answer is read completely before the client sees a byte, so a
	// backend dying mid-answer can still be retried or answered with 502.
	buffered bool
	// bodyIdle bounds the wait for each read of a streamed body; deadline,
	// when set, is the total budget's end.
	bodyIdle time.Duration
	deadline time.Time
	// client is the client's connection, whose write deadline moves with
	// every piece of a streamed answer: a client that stops reading loses
	// its slot after the client write timeout.
	client      net.Conn
	clientWrite time.Duration
	readErr     error
	status      int
	scratch     []byte
	// headerAt is when the response headers arrived: the upstream time.
	headerAt time.Duration
	// mirror is this request's shadow copy, sent once it completed.
	mirror *mirrorJob
	// access holds what the access log needs once the handler returned;
	// filled only for sampled requests.
	access struct {
		on                bool
		method, uri, rqid []byte
	}
}

var http11 = []byte("HTTP/1.1")

var exchangePool = sync.Pool{New: func() any { return &exchange{scratch: make([]byte, 0, 128)} }}

func acquireExchange() *exchange { return exchangePool.Get().(*exchange) }

func releaseExchange(ex *exchange) {
	scratch, a := ex.scratch[:0], ex.access
	*ex = exchange{scratch: scratch}
	// Keep the access-log buffers' capacity for the next request.
	ex.access.method, ex.access.uri, ex.access.rqid = a.method[:0], a.uri[:0], a.rqid[:0]
	exchangePool.Put(ex)
}

// errStale marks a reused connection whose write failed: the backend
// closed it between our liveness check and the write, and cannot have
// read the request.
var errStale = errors.New("proxy: keep-alive connection closed by the backend")

// sendError is a failure after the request was (maybe partly) written.
type sendError struct{ err error }

func (e *sendError) Error() string { return "exchange: " + e.err.Error() }
func (e *sendError) Unwrap() error { return e.err }

// silentError is a connection that ended without one byte of an answer
// after the request went out. Either the backend closed it just as the
// request arrived (it never read it), or it died while running the
// request: the handler tells them apart by whether the backend is still
// there.
type silentError struct{ err error }

func (e *silentError) Error() string {
	return "exchange: connection ended before any answer: " + e.err.Error()
}
func (e *silentError) Unwrap() error { return e.err }

// bufferBodyMax is the largest fixed-length answer read whole before the
// client gets its headers. Below it a backend that dies mid-body costs the
// client nothing it could see: the exchange fails before a byte is sent
// and is retried or answered with a clean 502. Above it the answer is
// streamed, and a cut body is cut for the client too.
const bufferBodyMax = 64 << 10

// roundTrip sends the request to b and reads the response headers into
// ctx.Response. On success ex owns a connection whose body is unread.
func (ex *exchange) roundTrip(ctx *fasthttp.RequestCtx, b *Backend, s *Snapshot) error {
	deadline := ex.start.Add(s.headerTimeout)
	if s.totalTimeout > 0 {
		deadline = earlier(deadline, ex.start.Add(s.totalTimeout))
	}
	for {
		c, err := b.t.get(ex.start, s.idleTimeout, s.connectTimeout, deadline)
		if err != nil {
			return err
		}
		err = ex.send(ctx, c, s, deadline)
		if err == nil {
			ex.conn = c
			return nil
		}
		b.t.close(c)
		if !errors.Is(err, errStale) {
			return err
		}
		// Try the next idle connection, or a fresh one: the request was
		// never processed, so this is not a replay.
	}
}

// send writes the request on c and reads the response head, both by
// deadline.
func (ex *exchange) send(ctx *fasthttp.RequestCtx, c *upstreamConn, s *Snapshot, deadline time.Time) error {
	if err := c.nc.SetDeadline(deadline); err != nil {
		return &sendError{err}
	}
	if len(ctx.Request.Header.Host()) == 0 {
		// HTTP/1.0 allows a request without Host; HTTP/1.1 backends need
		// one. Name the backend, as nginx does by default.
		ctx.Request.Header.SetHost(ex.backend.addr)
		ctx.Request.UseHostHeader = true
	}
	err := ctx.Request.Write(c.bw)
	if err == nil {
		err = c.bw.Flush()
	}
	if err != nil {
		if c.reused && !isTimeout(err) {
			return errStale
		}
		return &sendError{err}
	}
	// The connection was checked open before the write. An end without
	// one byte of answer may be a close that crossed our request, or a
	// backend that died running it; the handler decides whether that
	// request can have run.
	if _, err := c.br.Peek(1); err != nil {
		if !isTimeout(err) {
			return &silentError{err}
		}
		return &sendError{err}
	}
	resp := &ctx.Response
	var head []byte
	for {
		resp.Header.Reset()
		// Send no Content-Type the backend did not send.
		resp.Header.SetNoDefaultContentType(true)
		// What is buffered now stays valid through Read when it holds the
		// whole head, which then parses without refilling the buffer.
		head, _ = c.br.Peek(c.br.Buffered())
		if err := resp.Header.Read(c.br); err != nil {
			return &sendError{err}
		}
		sc := resp.Header.StatusCode()
		if sc == fasthttp.StatusSwitchingProtocols {
			// We never forward Upgrade, so no backend may switch.
			return &sendError{errUnaskedUpgrade}
		}
		// Skip other interim responses (100, 103).
		if sc < 100 || sc >= 200 {
			break
		}
	}
	ex.status = resp.Header.StatusCode()
	if ex.access.on {
		ex.headerAt = time.Since(ex.start) // read by the access log alone
	}
	if ex.pool.loadReports {
		if v := resp.Header.Peek(orcaResponseHeader); len(v) > 0 {
			if waiting, pressure, ok := parseORCA(v); ok {
				ex.backend.score.Store(LoadScore(waiting, pressure))
			}
			resp.Header.Del(orcaResponseHeader)
		}
	}
	ex.closeConn = resp.Header.ConnectionClose()
	// We speak HTTP/1.1 to the client whatever the backend spoke.
	resp.Header.SetProtocol(http11)
	lines, whole := responseHeadLines(head)
	if !whole || lines&headHop != 0 {
		ex.scratch = stripResponseHops(&resp.Header, ex.scratch)
	} else {
		// The upstream's wish to close its connection is not the
		// client's; there is nothing else to strip.
		resp.Header.ResetConnectionClose()
	}

	switch cl := resp.Header.ContentLength(); {
	case ctx.Request.Header.IsHead() || ex.status == fasthttp.StatusNoContent || ex.status == fasthttp.StatusNotModified:
		ex.mode, ex.done = bodyNone, true
	case cl >= 0:
		ex.mode, ex.remaining, ex.done = bodyFixed, int64(cl), cl == 0
	case cl == -1:
		ex.mode = bodyChunked
		// RFC 9112 section 6.3: chunked wins over a Content-Length sent
		// beside it, and the connection must not be reused after such a
		// message. fasthttp drops the Content-Length, so look for it in
		// the head as it came.
		ex.closeConn = ex.closeConn || !whole || lines&headContentLength != 0
		if err := checkFirstChunk(c.br); err != nil {
			return &sendError{err}
		}
	default:
		ex.mode, ex.closeConn = bodyToClose, true
	}
	// After the headers, the body is bounded by the total budget when
	// there is one, and by an idle bound between reads: a backend that
	// keeps sending is never cut for being slow, a stalled one is.
	ex.bodyIdle = s.bodyIdle
	if s.totalTimeout > 0 {
		ex.deadline = ex.start.Add(s.totalTimeout)
	}
	if ex.done {
		return nil
	}
	// The usual small JSON answer came whole with its headers: copy it
	// out with no deadline to move and no syscall.
	if ex.mode != bodyFixed || int64(c.br.Buffered()) < ex.remaining {
		if err := c.nc.SetReadDeadline(ex.readDeadline()); err != nil {
			return &sendError{err}
		}
	}
	if ex.mode == bodyFixed && ex.remaining <= bufferBodyMax {
		if err := ex.readWhole(resp, c); err != nil {
			return &sendError{err}
		}
	}
	return nil
}

// readWhole appends the rest of a small fixed-length body to resp, so the
// client gets all of it or, if the backend fails first, none of it.
func (ex *exchange) readWhole(resp *fasthttp.Response, c *upstreamConn) error {
	for ex.remaining > 0 {
		if c.br.Buffered() == 0 {
			if ex.bodyIdle > 0 {
				if err := c.nc.SetReadDeadline(ex.readDeadline()); err != nil {
					return err
				}
			}
			if _, err := c.br.Peek(1); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
		}
		n := int(min(int64(c.br.Buffered()), ex.remaining))
		b, _ := c.br.Peek(n)
		resp.AppendBody(b)
		_, _ = c.br.Discard(n)
		ex.remaining -= int64(n)
	}
	ex.done, ex.buffered = true, true
	return nil
}

// readDeadline is when the next body read gives up: the idle bound from
// now, or the end of the total budget if that comes first.
func (ex *exchange) readDeadline() time.Time {
	if ex.bodyIdle <= 0 {
		return ex.deadline // zero when there is no total budget either
	}
	d := time.Now().Add(ex.bodyIdle)
	if !ex.deadline.IsZero() {
		d = earlier(d, ex.deadline)
	}
	return d
}

// Read implements io.Reader over the upstream body, removing chunk framing
// so that fasthttp re-frames it for the client. Each call returns what has
// arrived, so a token stream reaches the client as the backend writes it.
func (ex *exchange) Read(p []byte) (int, error) {
	if ex.done {
		return 0, io.EOF
	}
	if ex.readErr != nil {
		return 0, ex.readErr
	}
	if ex.bodyIdle > 0 && ex.conn.br.Buffered() == 0 {
		_ = ex.conn.nc.SetReadDeadline(ex.readDeadline())
	}
	if ex.client != nil && ex.clientWrite > 0 {
		// fasthttp asks for more only once it wrote the last piece.
		_ = ex.client.SetWriteDeadline(time.Now().Add(ex.clientWrite))
	}
	n, err := ex.read(p)
	if err != nil && err != io.EOF {
		ex.readErr = err
	}
	return n, err
}

func (ex *exchange) read(p []byte) (int, error) {
	br := ex.conn.br
	switch ex.mode {
	case bodyFixed:
		if int64(len(p)) > ex.remaining {
			p = p[:ex.remaining]
		}
		n, err := br.Read(p)
		ex.remaining -= int64(n)
		if ex.remaining == 0 {
			ex.done = true
			return n, nil
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return n, err
	case bodyChunked:
		if ex.remaining == 0 {
			size, err := readChunkSize(br)
			if err != nil {
				return 0, err
			}
			if size == 0 {
				if err := skipTrailers(br); err != nil {
					return 0, err
				}
				ex.done = true
				return 0, io.EOF
			}
			ex.remaining = size
		}
		if int64(len(p)) > ex.remaining {
			p = p[:ex.remaining]
		}
		n, err := br.Read(p)
		ex.remaining -= int64(n)
		if ex.remaining == 0 && err == nil {
			err = expectCRLF(br)
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return n, err
	case bodyToClose:
		n, err := br.Read(p)
		if err == io.EOF {
			ex.done = true
		}
		return n, err
	}
	return 0, io.EOF
}

// SupportsBodyWriteTo tells fasthttp to copy a streamed answer through
// Read and its pooled buffer. Otherwise a client on a TCP socket gets the
// body through net.TCPConn.ReadFrom, which allocates a 32 KiB buffer and
// more for every streamed answer.
func (ex *exchange) SupportsBodyWriteTo() bool { return false }

// WriteTo is never called by fasthttp (see SupportsBodyWriteTo); it copies
// the body through Read, so that no caller can skip the deadlines Read
// moves.
func (ex *exchange) WriteTo(w io.Writer) (int64, error) {
	return io.Copy(w, struct{ io.Reader }{ex})
}

var _ fasthttp.BodyWriterTo = (*exchange)(nil)

// CloseWithError is called by fasthttp once the body was written to the
// client or writing failed. A connection is reused only after a clean,
// complete body; a cut-off one is closed so no later request reads junk.
func (ex *exchange) CloseWithError(err error) error {
	ex.h.finish(ex, err)
	return nil
}

var (
	errBadChunk       = errors.New("proxy: malformed chunked encoding from backend")
	errUnaskedUpgrade = errors.New("proxy: backend answered 101 Switching Protocols to a request without Upgrade")
)

// Lines responseHeadLines looks for.
const (
	headContentLength = 1 << iota
	// headHop: a hop-by-hop header stripResponseHops must remove
	// (Transfer-Encoding aside, which fasthttp reframes).
	headHop
)

// responseHeadLines says which of the lines the gateway acts on a response
// head holds, from buf, the bytes buffered before the head was read; ok
// is false unless buf holds the whole head, since a head that came in
// pieces is not known.
func responseHeadLines(buf []byte) (lines int, ok bool) {
	end := bytes.Index(buf, []byte("\r\n\r\n"))
	if end < 0 {
		return 0, false
	}
	for line := buf[:end]; len(line) > 0; {
		i := bytes.IndexByte(line, '\n')
		if i < 0 {
			break
		}
		line = line[i+1:]
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			continue
		}
		name := bytes.TrimRight(line[:colon], " \t")
		switch {
		case equalFoldASCII(name, "content-length"):
			lines |= headContentLength
		case equalFoldASCII(name, "transfer-encoding"):
		case classifyHeader(name) == seenHop:
			lines |= headHop
		}
	}
	return lines, true
}

// checkFirstChunk validates the first chunk-size line when it came with
// the headers, so that a malformed body is a failed exchange (retried or
// a clean 502) rather than a 200 that breaks off.
func checkFirstChunk(br *bufio.Reader) error {
	buf, _ := br.Peek(br.Buffered())
	i := bytes.IndexByte(buf, '\n')
	if i < 0 {
		return nil // not here yet: Read checks it when it comes
	}
	_, err := parseChunkSize(buf[:i+1])
	return err
}

func readChunkSize(br *bufio.Reader) (int64, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
	return parseChunkSize(line)
}

// parseChunkSize parses one chunk-size line, extensions ignored.
func parseChunkSize(line []byte) (int64, error) {
	line = trimCRLF(line)
	// Chunk extensions (";name=value") carry nothing we forward.
	for i, c := range line {
		if c == ';' || c == ' ' || c == '\t' {
			line = line[:i]
			break
		}
	}
	if len(line) == 0 || len(line) > 15 {
		return 0, errBadChunk
	}
	var size int64
	for _, c := range line {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		case c >= 'A' && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, errBadChunk
		}
		size = size<<4 | int64(c)
	}
	return size, nil
}

func skipTrailers(br *bufio.Reader) error {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(trimCRLF(line)) == 0 {
			return nil
		}
	}
}

func expectCRLF(br *bufio.Reader) error {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if len(trimCRLF(line)) != 0 {
		return fmt.Errorf("%w: chunk longer than its size", errBadChunk)
	}
	return nil
}

func trimCRLF(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
