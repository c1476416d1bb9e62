package proxy

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Handler is the fasthttp request handler of the traffic listener.
type Handler struct {
	router *Router
	log    *zap.Logger
	access *zap.Logger
	mirror *Mirror
	// client holds the client-facing limits, fixed at start.
	client ClientLimits
	// loopID names this process in the loop header.
	loopID []byte
}

// SetMirror enables shadow traffic through m. Call before serving.
func (h *Handler) SetMirror(m *Mirror) { h.mirror = m }

// NewHandler returns the traffic handler routing by r's snapshots.
// Client-facing limits come from the config it was started with; they
// take a restart to change.
func NewHandler(r *Router, log *zap.Logger) *Handler {
	return &Handler{
		router: r, log: log, access: log.Named("access"),
		client: clientLimits(r.Config()),
		loopID: appendRequestID(nil)[:16],
	}
}

// Canned error bodies: short, JSON, with no addresses a client should not
// see. The gateway log has the details.
var (
	bodyOverloaded  = []byte(`{"error":"overloaded","message":"every backend of the active pool is at max_concurrency and the queue is full; retry later"}`)
	bodyNoBackend   = []byte(`{"error":"no_ready_backend","message":"no backend of the active pool is ready (healthy and warm); see GET /admin/status"}`)
	bodyBadGateway  = []byte(`{"error":"bad_gateway","message":"the model server failed to answer; see the gateway log"}`)
	bodyTimeout     = []byte(`{"error":"upstream_timeout","message":"the model server did not answer in time"}`)
	bodyTooLarge    = []byte(`{"error":"body_too_large","message":"the request body exceeds proxy.max_request_body_bytes"}`)
	bodyBadRequest  = []byte(`{"error":"bad_request","message":"the request could not be parsed as HTTP/1.1"}`)
	bodyRequestTime = []byte(`{"error":"request_timeout","message":"the client did not send the request in time"}`)
)

// ServeHTTP proxies one request to the active pool of the snapshot current
// when it starts.
func (h *Handler) ServeHTTP(ctx *fasthttp.RequestCtx) {
	snap := h.router.snap.Load()
	pool, canary := snap.route(ctx)

	if snap.maxBody > 0 && len(ctx.Request.Body()) > snap.maxBody {
		h.refuse(ctx, pool, clientBodyTooLarge, fasthttp.StatusRequestEntityTooLarge, bodyTooLarge)
		return
	}
	seen, ok := h.screen(ctx, pool)
	if !ok {
		return
	}
	if pool.h2only {
		h.refuseHTTP1(ctx, pool)
		return
	}
	clientClose := ctx.Request.Header.ConnectionClose()

	ex := acquireExchange()
	ex.h, ex.start = h, time.Now()
	now := ex.start.UnixNano()
	b := pool.pick(nil, now)
	if b == nil && canary {
		// A canary never costs a request: without a ready standby backend
		// the request stays on the active pool.
		pool = snap.ActivePool()
		b = pool.pick(nil, now)
	}
	ex.pool = pool
	pool.inflight.Add(1)
	if b == nil && pool.MaxConcurrency > 0 && pool.ReadyBackends() > 0 {
		// Every ready backend is at max_concurrency: wait for a slot.
		if b = pool.wait(ex.start); b == nil {
			writeError(ctx, pool, fasthttp.StatusServiceUnavailable, bodyOverloaded)
			ctx.Response.Header.Set("Retry-After", "1")
			h.finish(ex, nil)
			return
		}
	}
	if b == nil {
		writeError(ctx, pool, fasthttp.StatusServiceUnavailable, bodyNoBackend)
		ctx.Response.Header.Set("Retry-After", "1")
		h.finish(ex, nil)
		return
	}
	ex.scratch = prepareRequest(ctx, ex.scratch, seen)
	ex.scratch = h.markLoop(&ctx.Request.Header, ex.scratch, seen)
	if pool.loadReports {
		// Ask vLLM and Triton for an in-band load report (ORCA).
		ctx.Request.Header.Set(orcaRequestHeader, "text")
	}
	if t := &snap.traffic; t.mirror > 0 && h.mirror != nil && !canary &&
		len(ctx.Request.Body()) <= t.mirrorMax && randN(basisPoints) < t.mirror {
		ex.mirror = h.mirror.copyOf(ctx, t.mirrorTo)
	}
	if a := snap.accessSample; a > 0 && (a >= 1 || rand.Float64() < a) {
		ex.access.on = true
		ex.access.method = append(ex.access.method, ctx.Method()...)
		ex.access.uri = append(ex.access.uri, ctx.Request.Header.RequestURI()...)
		ex.access.rqid = append(ex.access.rqid, ctx.Request.Header.Peek(HeaderRequestID)...)
	}

	for attempt := 0; ; attempt++ {
		ex.backend = b
		b.inflight.Add(1)
		b.requests.Add(1)
		err := ex.roundTrip(ctx, b, snap)
		if err == nil {
			break
		}
		b.inflight.Add(-1)
		kind := errKind(err)
		pool.metrics.errors[kind].Inc()
		pool.recordFailure(b, time.Now(), h.log)
		if attempt == 0 && retryable(err, ctx, pool, b, snap) {
			next := pool.pick(b, now)
			if next == nil {
				next = b
			}
			h.logRetry(pool, b, next, err)
			ctx.Response.Reset()
			b = next
			continue
		}
		h.logFailure(pool, b, err)
		ctx.Response.Reset()
		if kind == errTimeout {
			writeError(ctx, pool, fasthttp.StatusGatewayTimeout, bodyTimeout)
		} else {
			writeError(ctx, pool, fasthttp.StatusBadGateway, bodyBadGateway)
		}
		ex.backend = nil
		h.finish(ex, nil)
		return
	}

	setPoolHeaders(ctx, pool)
	if ex.status >= 500 {
		pool.metrics.errors[err5xx].Inc()
		pool.recordFailure(b, ex.start, h.log)
	} else {
		pool.recordSuccess(b)
	}
	if clientClose {
		ctx.Response.SetConnectionClose()
	}
	switch {
	case ex.mode == bodyNone || ex.buffered:
		// The whole answer is in ctx.Response: the connection is free.
		h.finish(ex, nil)
	case ex.mode == bodyFixed:
		ex.client, ex.clientWrite = ctx.Conn(), h.client.WriteTimeout
		ctx.Response.SetBodyStream(ex, int(ex.remaining))
	case !ctx.Request.Header.IsHTTP11():
		// An HTTP/1.0 client cannot take chunks: stream the body as it
		// comes and end it by closing the connection.
		h.streamToClose(ctx, ex)
	default:
		// Unknown length: re-chunk to the client and send the headers
		// at once, so a token stream shows its first event immediately.
		ex.client, ex.clientWrite = ctx.Conn(), h.client.WriteTimeout
		ctx.Response.ImmediateHeaderFlush = true
		ctx.Response.SetBodyStream(ex, -1)
	}
}

// streamToClose answers an HTTP/1.0 client with a body of unknown length
// the way HTTP/1.0 allows: no length, and the end of the body is the end
// of the connection. fasthttp always frames a stream, so the handler takes
// the connection over once it returns. Rare enough that its allocations do
// not matter; its memory is one copy buffer, whatever the body's size.
func (h *Handler) streamToClose(ctx *fasthttp.RequestCtx, ex *exchange) {
	hdr := &ctx.Response.Header
	hdr.Del("Transfer-Encoding")
	hdr.SetContentLength(-2)
	hdr.SetConnectionClose()
	head := hdr.AppendBytes(nil)
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) {
		ex.client, ex.clientWrite = c, h.client.WriteTimeout
		if ex.clientWrite > 0 {
			_ = c.SetWriteDeadline(time.Now().Add(ex.clientWrite))
		}
		_, err := c.Write(head)
		if err == nil {
			buf := make([]byte, 32<<10)
			// A Reader alone, or io.CopyBuffer would skip buf for the
			// exchange's WriteTo.
			_, err = io.CopyBuffer(writerOnly{c}, struct{ io.Reader }{ex}, buf)
		}
		if ex.readErr != nil && errors.Is(err, ex.readErr) {
			err = nil // the backend's fault, counted in finish
		}
		h.finish(ex, err)
	})
}

// writerOnly hides a connection's ReadFrom so that io.CopyBuffer goes
// through the exchange's Read, which moves the deadlines.
type writerOnly struct{ io.Writer }

// finish ends an exchange: the connection goes back to the pool only if
// the body was read to its end; the counters the drain waits on drop.
func (h *Handler) finish(ex *exchange, writeErr error) {
	end := time.Now()
	if ex.conn != nil {
		t := ex.backend.t
		if writeErr == nil && ex.readErr == nil && ex.done && !ex.closeConn {
			t.put(ex.conn, end)
		} else {
			// The client went away or the backend broke off: close, so
			// the GPU stops working for nobody and no junk is reused.
			t.close(ex.conn)
		}
	}
	if ex.readErr != nil {
		ex.pool.metrics.errors[errReset].Inc()
	}
	if ex.backend != nil {
		ex.backend.inflight.Add(-1)
		ex.pool.release()
	}
	ex.pool.inflight.Add(-1)
	status := ex.status
	if status == 0 {
		status = fasthttp.StatusBadGateway
	}
	took := end.Sub(ex.start)
	ex.pool.metrics.observe(status, took.Seconds())
	// A backend that broke off mid-body failed, whatever its status said.
	ex.pool.stats.record(end, status >= 500 || ex.readErr != nil, false, took)
	if ex.access.on {
		h.logAccess(ex, status, took, writeErr)
	}
	if ex.mirror != nil {
		// Sent only now, after the client has its answer, and compared
		// with it.
		h.mirror.enqueue(ex.mirror, status)
	}
	releaseExchange(ex)
}

// logAccess writes one access-log line. Only sampled requests get here.
func (h *Handler) logAccess(ex *exchange, status int, took time.Duration, writeErr error) {
	ce := h.access.Check(zap.InfoLevel, "request")
	if ce == nil {
		return
	}
	l := accessLines.Get().(*accessLine)
	*l = accessLine{
		method: ex.access.method, path: ex.access.uri, requestID: ex.access.rqid,
		status: status, env: string(ex.pool.Color), version: ex.pool.Version,
		duration: took, upstream: ex.headerAt,
	}
	if ex.backend != nil {
		l.backend = ex.backend.addr
	}
	fields := append(l.fields[:0], zap.Inline(l))
	if writeErr != nil {
		fields = append(fields, zap.NamedError("client_error", writeErr))
	}
	if ex.readErr != nil {
		fields = append(fields, zap.NamedError("upstream_error", ex.readErr))
	}
	ce.Write(fields...)
	accessLines.Put(l)
}

// accessLine is one access-log line's fields. Lines are pooled and
// encoded straight from the struct (zap.Inline of a pointer boxes
// nothing), so that logging a request allocates nothing. Like the
// exchange's buffers it points into, a line is reused once written: a
// core that keeps fields past Write (zaptest/observer) may see a later
// request's values.
type accessLine struct {
	method, path, requestID []byte
	status                  int
	env, version, backend   string
	duration, upstream      time.Duration
	fields                  [3]zap.Field
}

var accessLines = sync.Pool{New: func() any { return new(accessLine) }}

// MarshalLogObject implements zapcore.ObjectMarshaler.
func (l *accessLine) MarshalLogObject(enc zapcore.ObjectEncoder) error {
	enc.AddByteString("method", l.method)
	enc.AddByteString("path", l.path)
	enc.AddInt("status", l.status)
	enc.AddString("env", l.env)
	enc.AddString("version", l.version)
	enc.AddString("backend", l.backend)
	enc.AddDuration("duration", l.duration)
	enc.AddDuration("upstream_time", l.upstream)
	enc.AddByteString("request_id", l.requestID)
	return nil
}

var (
	headerColorKey   = []byte(HeaderColor)
	headerVersionKey = []byte(HeaderVersion)
)

// setPoolHeaders labels the answer with the pool that gave it, from
// bytes prepared with the snapshot.
func setPoolHeaders(ctx *fasthttp.RequestCtx, p *Pool) {
	ctx.Response.Header.SetCanonical(headerColorKey, p.colorValue)
	ctx.Response.Header.SetCanonical(headerVersionKey, p.versionValue)
}

// writeError answers with one of the canned JSON errors, labelled with
// the pool it concerns.
func writeError(ctx *fasthttp.RequestCtx, p *Pool, status int, body []byte) {
	setPoolHeaders(ctx, p)
	writeErrorBody(ctx, status, body)
}

func writeErrorBody(ctx *fasthttp.RequestCtx, status int, body []byte) {
	ctx.Response.SetStatusCode(status)
	ctx.Response.Header.SetContentType("application/json")
	ctx.Response.SetBodyRaw(body)
}

// retryable reports whether a failed exchange may go to another backend:
// always when nothing was sent; never after a timeout, which would double
// the load on a slow model; for idempotent methods, or any method where the
// pool allows it (retry_non_idempotent); and when a connection ended
// without a byte of answer from a backend that is gone: a stopped or
// killed server closed it under the request, and no process is left to
// have finished it.
func retryable(err error, ctx *fasthttp.RequestCtx, p *Pool, b *Backend, s *Snapshot) bool {
	var de *dialError
	if errors.As(err, &de) {
		return true
	}
	if isTimeout(err) {
		return false
	}
	if isIdempotent(&ctx.Request.Header) || p.retryNonIdempotent {
		return true
	}
	var se *silentError
	return errors.As(err, &se) && backendGone(b.t, s.connectTimeout)
}

// goneCheck bounds how long backendGone watches a new connection: a
// server that is exiting resets the connections left in its listen queue
// within milliseconds, a live one keeps them open and quiet.
const goneCheck = 100 * time.Millisecond

// backendGone reports whether no server is left at addr: it refuses a
// connection, or accepts one (the kernel's listen queue outlives a killed
// process by a few milliseconds) and resets or closes it at once. Any
// other outcome proves nothing, and the answer is false.
func backendGone(t *transport, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), min(timeout, 250*time.Millisecond))
	defer cancel()
	c, err := t.dial(ctx, "tcp", t.addr)
	if err != nil {
		return errors.Is(err, syscall.ECONNREFUSED)
	}
	defer c.Close()
	if err := c.SetReadDeadline(time.Now().Add(goneCheck)); err != nil {
		return false
	}
	var b [1]byte
	_, err = c.Read(b[:])
	return err != nil && !isTimeout(err)
}

func isIdempotent(h *fasthttp.RequestHeader) bool {
	return h.IsGet() || h.IsHead() || h.IsOptions() || h.IsPut() || h.IsDelete() || h.IsTrace()
}

func errKind(err error) int {
	var de *dialError
	switch {
	case isTimeout(err):
		return errTimeout
	case errors.As(err, &de):
		return errConnect
	default:
		return errReset
	}
}

func (h *Handler) logRetry(p *Pool, from, to *Backend, err error) {
	msg := "retrying on another backend"
	if from == to {
		msg = "retrying on the same backend: the pool has no other"
	}
	if ce := h.log.Check(zap.InfoLevel, msg); ce != nil {
		ce.Write(zap.String("env", string(p.Color)), zap.String("version", p.Version),
			zap.String("backend", from.addr), zap.String("retry_backend", to.addr), zap.Error(err))
	}
}

func (h *Handler) logFailure(p *Pool, b *Backend, err error) {
	if ce := h.log.Check(zap.WarnLevel, "upstream request failed"); ce != nil {
		ce.Write(zap.String("env", string(p.Color)), zap.String("version", p.Version),
			zap.String("backend", b.addr), zap.Error(err))
	}
}

// ErrorHandler answers requests fasthttp could not parse, in the same JSON
// shape as proxy errors and labelled with the active pool like every
// other answer. These are the client's errors: no backend was involved.
func (h *Handler) ErrorHandler(ctx *fasthttp.RequestCtx, err error) {
	setPoolHeaders(ctx, h.router.snap.Load().ActivePool())
	kind := clientBadRequest
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		kind = clientBodyTooLarge
		writeErrorBody(ctx, fasthttp.StatusRequestEntityTooLarge, bodyTooLarge)
	case errors.As(err, &small):
		kind = clientHeadTooLarge
		if requestLineTooLong(err) {
			writeErrorBody(ctx, fasthttp.StatusRequestURITooLong, bodyURITooLong)
		} else {
			writeErrorBody(ctx, fasthttp.StatusRequestHeaderFieldsTooLarge, bodyHeadTooLarge)
		}
	case isTimeout(err):
		kind = clientTimeout
		writeErrorBody(ctx, fasthttp.StatusRequestTimeout, bodyRequestTime)
	default:
		writeErrorBody(ctx, fasthttp.StatusBadRequest, bodyBadRequest)
	}
	h.router.metrics.clientErrors[kind].Inc()
}

// requestLineTooLong tells a request line that overflowed the head buffer
// (414) from headers that did (431). fasthttp reports only an error whose
// text quotes the first 200 bytes of what it read; no line break among
// them means the request line alone is longer than that.
func requestLineTooLong(err error) bool {
	msg := err.Error()
	i := strings.Index(msg, "contents: ")
	if i < 0 {
		return false
	}
	head := msg[i:]
	if j := strings.Index(head, "..."); j >= 0 {
		head = head[:j]
	}
	return !strings.Contains(head, `\n`)
}
