package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/switchyard/switchyard/config"
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
	// streamIdle bounds the wait for each piece of an unbounded stream.
	streamIdle time.Duration
	readErr    error
	status     int
	scratch    []byte
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

// roundTrip sends the request to b and reads the response headers into
// ctx.Response. On success ex owns a connection whose body is unread.
func (ex *exchange) roundTrip(ctx *fasthttp.RequestCtx, b *Backend, s *Snapshot) error {
	for {
		c, err := b.t.get(ex.start, s.idleTimeout, s.connectTimeout)
		if err != nil {
			return err
		}
		err = ex.send(ctx, c, s)
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

func (ex *exchange) send(ctx *fasthttp.RequestCtx, c *upstreamConn, s *Snapshot) error {
	deadline := ex.start.Add(s.headerTimeout)
	if s.totalTimeout > 0 {
		deadline = earlier(deadline, ex.start.Add(s.totalTimeout))
	}
	if err := c.nc.SetDeadline(deadline); err != nil {
		return &sendError{err}
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
	// The connection was checked open before the write, so silence now is
	// a real failure: the backend may have run the request.
	if _, err := c.br.Peek(1); err != nil {
		return &sendError{err}
	}
	resp := &ctx.Response
	for {
		resp.Header.Reset()
		// Send no Content-Type the backend did not send.
		resp.Header.SetNoDefaultContentType(true)
		if err := resp.Header.Read(c.br); err != nil {
			return &sendError{err}
		}
		// Skip interim responses; 101 is refused since Upgrade is stripped.
		if sc := resp.Header.StatusCode(); sc < 100 || sc >= 200 {
			break
		}
	}
	ex.status = resp.Header.StatusCode()
	ex.headerAt = time.Since(ex.start)
	if ex.pool.balance == config.BalanceGPU {
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
	ex.scratch = stripResponseHops(&resp.Header, ex.scratch)

	switch cl := resp.Header.ContentLength(); {
	case ctx.Request.Header.IsHead() || ex.status == fasthttp.StatusNoContent || ex.status == fasthttp.StatusNotModified:
		ex.mode, ex.done = bodyNone, true
	case cl >= 0:
		ex.mode, ex.remaining, ex.done = bodyFixed, int64(cl), cl == 0
	case cl == -1:
		ex.mode = bodyChunked
	default:
		ex.mode, ex.closeConn = bodyToClose, true
	}
	// After the headers only the total budget bounds the body; without
	// one, each read of a stream gets the header timeout as an idle bound
	// so a stalled backend cannot hold the exchange forever.
	if ex.mode == bodyFixed && int64(c.br.Buffered()) >= ex.remaining {
		// The whole body arrived with the headers (the usual small JSON
		// answer): no more reads, no deadline to move.
		return nil
	}
	var bodyDeadline time.Time
	if s.totalTimeout > 0 {
		bodyDeadline = ex.start.Add(s.totalTimeout)
	} else if ex.mode != bodyFixed {
		ex.streamIdle = s.headerTimeout
	} else {
		bodyDeadline = time.Now().Add(s.headerTimeout)
	}
	if err := c.nc.SetDeadline(bodyDeadline); err != nil {
		return &sendError{err}
	}
	return nil
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
	if ex.streamIdle > 0 {
		_ = ex.conn.nc.SetReadDeadline(time.Now().Add(ex.streamIdle))
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

// CloseWithError is called by fasthttp once the body was written to the
// client or writing failed. A connection is reused only after a clean,
// complete body; a cut-off one is closed so no later request reads junk.
func (ex *exchange) CloseWithError(err error) error {
	ex.h.finish(ex, err)
	return nil
}

var errBadChunk = errors.New("proxy: malformed chunked encoding from backend")

func readChunkSize(br *bufio.Reader) (int64, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
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
