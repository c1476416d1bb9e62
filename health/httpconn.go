package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"time"
)

// maxProbeHead bounds the status line and headers of a probe's answer.
const maxProbeHead = 64 << 10

// Buffer sizes: what a connection's buffers start at, and past which
// they are let go after an answer, so that one large answer does not pin
// its memory for as long as the backend is watched.
const (
	probeBufSize  = 4 << 10
	probeKeepSize = 64 << 10
)

// errNoAnswer is a connection closed before any byte of an answer.
var errNoAnswer = errors.New("connection closed before an answer")

// aLongTimeAgo is a deadline that has passed: setting it interrupts a
// read or write in progress.
var aLongTimeAgo = time.Unix(1, 0)

// probeConn sends the GETs of one backend's cleartext HTTP probes over
// one kept HTTP/1.1 connection, on the probing goroutine itself. It is
// what makes a probe cheap: net/http's client runs two goroutines per
// connection, hands each request between three, and allocates several KiB
// and about 60 objects per request, which at a thousand probes a second
// was most of what probing cost. Here a probe is a write and a read on a
// connection dialed once, with no allocation.
//
// The connection is dialed on first use and again after the server
// closed it, a probe timed out, or an answer was not read to its end. A
// GET that meets a kept connection the server closed in between (no byte
// of answer came back) is sent once more on a new one, as net/http does.
//
// A probeConn belongs to one goroutine. Only the cancellation of life,
// the context of that goroutine, reaches it from another: it interrupts
// the request in flight. Each request's context must be life or end with
// it (life with a timeout, as a probe's is): past a dial, only its
// deadline is read, which becomes the connection's.
type probeConn struct {
	life context.Context
	addr string

	conn net.Conn
	// unwatch ends the watch of life on conn.
	unwatch func() bool
	resp    respReader
	// reqs are the request bytes of each path probed, built once.
	reqs []probeRequest
}

// probeRequest is a GET of path, ready to write.
type probeRequest struct {
	path string
	b    []byte
}

func newProbeConn(life context.Context, addr string) *probeConn {
	return &probeConn{life: life, addr: addr}
}

// get GETs path and returns the status and at most maxProbeBody of the
// body, whatever the status. body is valid until the next get.
func (pc *probeConn) get(ctx context.Context, path string) (status int, body []byte, err error) {
	req, err := pc.request(path)
	if err != nil {
		return 0, nil, err
	}
	deadline, _ := ctx.Deadline()
	for {
		reused := pc.conn != nil
		if !reused {
			if err := pc.dial(ctx); err != nil {
				return 0, nil, timedOut(ctx, err)
			}
		}
		status, body, err = pc.roundTrip(req, deadline)
		if err == nil {
			return status, body, nil
		}
		pc.drop()
		if reused && pc.resp.got == 0 && !errors.Is(err, os.ErrDeadlineExceeded) && pc.life.Err() == nil {
			continue // the server closed the kept connection in between: once more on a new one
		}
		if err := timedOut(ctx, err); err == errTimedOut {
			return 0, nil, err
		}
		return 0, nil, fmt.Errorf("GET %s: %w", path, err)
	}
}

// errTimedOut is a probe that did not end within its timeout.
var errTimedOut = errors.New("probe timed out")

// timedOut returns errTimedOut for an error due to ctx's deadline, and
// other errors as they are.
func timedOut(ctx context.Context, err error) error {
	if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return errTimedOut
	}
	return err
}

// request returns the bytes of a GET of path, building them on first use:
// the request target as net/http would write it, the Host header and the
// probes' User-Agent.
func (pc *probeConn) request(path string) ([]byte, error) {
	for _, r := range pc.reqs {
		if r.path == path {
			return r.b, nil
		}
	}
	u, err := url.Parse("http://" + pc.addr + path)
	if err != nil {
		return nil, fmt.Errorf("probe request for %s%s: %w", pc.addr, path, err)
	}
	b := []byte("GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUser-Agent: switchyard-probe\r\n\r\n")
	if len(pc.reqs) >= 8 { // paths come from config; more than a few means they change
		pc.reqs = pc.reqs[:0]
	}
	pc.reqs = append(pc.reqs, probeRequest{path: path, b: b})
	return b, nil
}

// dial connects to the backend and watches life, whose end interrupts
// whatever the connection is doing.
func (pc *probeConn) dial(ctx context.Context) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", pc.addr)
	if err != nil {
		return err
	}
	pc.conn = conn
	pc.unwatch = context.AfterFunc(pc.life, func() { _ = conn.SetDeadline(aLongTimeAgo) })
	if pc.resp.buf == nil {
		pc.resp.buf = make([]byte, probeBufSize)
	}
	pc.resp.src, pc.resp.r, pc.resp.w = conn, 0, 0
	return nil
}

// roundTrip writes req and reads its answer before deadline (none when
// zero). It closes nothing: on an error the caller drops the connection.
func (pc *probeConn) roundTrip(req []byte, deadline time.Time) (int, []byte, error) {
	pc.resp.got = 0
	if err := pc.conn.SetDeadline(deadline); err != nil {
		return 0, nil, err
	}
	// life may have ended before the deadline was set, which would have
	// undone its interruption.
	if err := pc.life.Err(); err != nil {
		return 0, nil, err
	}
	if _, err := pc.conn.Write(req); err != nil {
		return 0, nil, err
	}
	status, body, keep, err := pc.resp.readResponse()
	if err != nil {
		return 0, nil, err
	}
	if !keep {
		pc.drop()
	}
	return status, body, nil
}

// drop closes the connection; the next request dials a new one.
func (pc *probeConn) drop() {
	if pc.conn == nil {
		return
	}
	pc.unwatch()
	_ = pc.conn.Close()
	pc.conn, pc.unwatch, pc.resp.src = nil, nil, nil
}

// close closes the connection and lets its buffers go.
func (pc *probeConn) close() {
	pc.drop()
	pc.resp = respReader{}
}

// respReader reads HTTP/1.x answers to GETs from src, through a buffer
// kept from one answer to the next.
type respReader struct {
	src io.Reader
	// buf[r:w] is read from src and not yet parsed.
	buf  []byte
	r, w int
	// body is the last answer's body.
	body []byte
	// got counts the bytes read from src since it was last zeroed: a GET
	// whose connection closed with none may be sent again.
	got int
}

// respHead is what an answer's status line and headers say about it.
type respHead struct {
	status int
	// length is the Content-Length; -1 when there is none.
	length  int64
	chunked bool
	// keep is whether the connection may carry another request.
	keep bool
}

// readResponse reads one answer to a GET: its status and at most
// maxProbeBody of its body, valid until the next call, skipping the
// informational (1xx) answers before it. keep is false when the
// connection cannot carry another request: the server said close, or the
// body was cut at the limit or ends with the connection.
func (rr *respReader) readResponse() (status int, body []byte, keep bool, err error) {
	if cap(rr.body) > probeKeepSize {
		rr.body = nil
	}
	rr.body, rr.got = rr.body[:0], 0
	budget := maxProbeHead
	for {
		h, err := rr.readHead(&budget)
		if err != nil {
			return 0, nil, false, err
		}
		switch {
		case h.status == 101:
			return 0, nil, false, errors.New("answered 101 Switching Protocols to a GET that asked for no switch")
		case h.status >= 100 && h.status < 200:
			continue // informational; the answer follows
		}
		keep, err := rr.readBody(h)
		if err != nil {
			return 0, nil, false, fmt.Errorf("reading body: %w", err)
		}
		if rr.r != rr.w {
			// More than one answer to one request (as far as read): the
			// connection is out of step.
			keep = false
		}
		if cap(rr.buf) > probeKeepSize {
			rr.buf, rr.r, rr.w = nil, 0, 0
		}
		return h.status, rr.body, keep, nil
	}
}

// readHead reads a status line and headers, within budget bytes.
func (rr *respReader) readHead(budget *int) (respHead, error) {
	line, err := rr.line(budget)
	if err != nil {
		return respHead{}, err
	}
	// HTTP/1.x SP 3DIGIT [SP reason]
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || (line[7] != '0' && line[7] != '1') ||
		line[8] != ' ' || !isDigit(line[9]) || !isDigit(line[10]) || !isDigit(line[11]) ||
		(len(line) > 12 && line[12] != ' ') {
		return respHead{}, fmt.Errorf("malformed HTTP status line %q", prefix(line))
	}
	h := respHead{status: int(line[9]-'0')*100 + int(line[10]-'0')*10 + int(line[11]-'0'), length: -1}
	http11 := line[7] == '1'
	var closes, keepAlive bool
	for {
		line, err := rr.line(budget)
		if err != nil {
			return respHead{}, err
		}
		if len(line) == 0 {
			break
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue // an obsolete folded line, of no header read here
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return respHead{}, fmt.Errorf("malformed HTTP header line %q", prefix(line))
		}
		name, value := line[:colon], bytes.Trim(line[colon+1:], " \t")
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			n, ok := parseLength(value)
			if !ok {
				return respHead{}, fmt.Errorf("bad Content-Length %q", prefix(value))
			}
			if h.length >= 0 && n != h.length {
				return respHead{}, errors.New("conflicting Content-Length headers")
			}
			h.length = n
		case http11 && bytes.EqualFold(name, []byte("Transfer-Encoding")):
			// (HTTP/1.0 has no transfer codings; net/http ignores them
			// there too.)
			if h.chunked || !bytes.EqualFold(value, []byte("chunked")) {
				return respHead{}, fmt.Errorf("unsupported Transfer-Encoding %q", prefix(value))
			}
			h.chunked = true
		case bytes.EqualFold(name, []byte("Connection")):
			for tok := range bytes.SplitSeq(value, []byte(",")) {
				tok = bytes.Trim(tok, " \t")
				closes = closes || bytes.EqualFold(tok, []byte("close"))
				keepAlive = keepAlive || bytes.EqualFold(tok, []byte("keep-alive"))
			}
		}
	}
	h.keep = !closes && (http11 || keepAlive)
	if h.chunked && h.length >= 0 {
		// Both framings: the chunks win, and the connection is not to be
		// trusted after (RFC 9112, section 6.3).
		h.length, h.keep = -1, false
	}
	return h, nil
}

// readBody reads h's body into rr.body, at most maxProbeBody of it, and
// returns whether the connection may carry another request.
func (rr *respReader) readBody(h respHead) (bool, error) {
	switch {
	case h.status == 204 || h.status == 304:
		return h.keep, nil
	case h.chunked:
		return rr.readChunked(h.keep)
	case h.length >= 0:
		if err := rr.readN(int(min(h.length, maxProbeBody))); err != nil {
			return false, err
		}
		return h.keep && h.length <= maxProbeBody, nil
	}
	// No length: the body ends with the connection.
	for len(rr.body) < maxProbeBody {
		if rr.r == rr.w {
			if err := rr.fill(); err == io.EOF {
				break
			} else if err != nil {
				return false, err
			}
		}
		n := min(rr.w-rr.r, maxProbeBody-len(rr.body))
		rr.body = append(rr.body, rr.buf[rr.r:rr.r+n]...)
		rr.r += n
	}
	return false, nil
}

// readChunked reads a chunked body, the part of it within maxProbeBody,
// and its trailers.
func (rr *respReader) readChunked(keep bool) (bool, error) {
	for {
		budget := probeBufSize
		line, err := rr.line(&budget)
		if err != nil {
			return false, err
		}
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i] // chunk extensions, unused
		}
		size, ok := parseHex(bytes.Trim(line, " \t"))
		if !ok {
			return false, fmt.Errorf("malformed chunk size %q", prefix(line))
		}
		if size == 0 {
			budget := maxProbeHead
			for {
				line, err := rr.line(&budget)
				if err != nil {
					return false, err
				}
				if len(line) == 0 {
					return keep, nil
				}
			}
		}
		take := min(size, int64(maxProbeBody-len(rr.body)))
		if err := rr.readN(int(take)); err != nil {
			return false, err
		}
		if take < size {
			return false, nil // cut at the limit; the rest stays unread
		}
		budget = 2
		if line, err = rr.line(&budget); err != nil || len(line) != 0 {
			return false, errors.New("malformed chunked encoding: no line end after a chunk")
		}
	}
}

// readN appends the next n bytes to rr.body.
func (rr *respReader) readN(n int) error {
	start := len(rr.body)
	rr.body = append(rr.body, make([]byte, n)...)[:start+n] // no allocation when it fits
	k := copy(rr.body[start:], rr.buf[rr.r:rr.w])
	rr.r += k
	if k == n {
		return nil
	}
	m, err := io.ReadFull(rr.src, rr.body[start+k:])
	rr.got += m
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// line returns the next line without its line end (CRLF or LF), valid
// until the next read, taking its length and end from budget.
func (rr *respReader) line(budget *int) ([]byte, error) {
	scanned := 0
	for {
		if i := bytes.IndexByte(rr.buf[rr.r+scanned:rr.w], '\n'); i >= 0 {
			end := rr.r + scanned + i
			if *budget -= end + 1 - rr.r; *budget < 0 {
				return nil, errors.New("response head too large")
			}
			line := rr.buf[rr.r:end]
			rr.r = end + 1
			return bytes.TrimSuffix(line, []byte("\r")), nil
		}
		scanned = rr.w - rr.r
		if scanned >= *budget {
			return nil, errors.New("response head too large")
		}
		if err := rr.fill(); err != nil {
			if err == io.EOF {
				if rr.got == 0 {
					return nil, errNoAnswer
				}
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

// fill reads more from src into buf, moving or growing it first if it
// has no room; io.EOF when src has ended.
func (rr *respReader) fill() error {
	if rr.r > 0 {
		rr.w = copy(rr.buf, rr.buf[rr.r:rr.w])
		rr.r = 0
	}
	if rr.w == len(rr.buf) {
		rr.buf = append(rr.buf, make([]byte, max(len(rr.buf), probeBufSize))...)
	}
	for {
		n, err := rr.src.Read(rr.buf[rr.w:])
		rr.w += n
		rr.got += n
		if n > 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// parseLength reads a Content-Length: decimal digits only.
func parseLength(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// parseHex reads a chunk size.
func parseHex(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 15 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		var d byte
		switch {
		case isDigit(c):
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		n = n<<4 | int64(d)
	}
	return n, true
}
