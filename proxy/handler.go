package proxy

import (
	"errors"
	"io"
	"math/rand/v2"
	"time"

	"github.com/switchyard/switchyard/config"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// Handler is the fasthttp request handler of the traffic listener.
type Handler struct {
	router *Router
	log    *zap.Logger
	access *zap.Logger
	mirror *Mirror
}

// SetMirror enables shadow traffic through m. Call before serving.
func (h *Handler) SetMirror(m *Mirror) { h.mirror = m }

// NewHandler returns the traffic handler routing by r's snapshots.
func NewHandler(r *Router, log *zap.Logger) *Handler {
	return &Handler{router: r, log: log, access: log.Named("access")}
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
		writeError(ctx, pool, fasthttp.StatusRequestEntityTooLarge, bodyTooLarge)
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
	ex.scratch = prepareRequest(ctx, ex.scratch)
	if pool.balance == config.BalanceGPU {
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
		if attempt == 0 && retryable(err, ctx) {
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
	case ex.mode == bodyNone:
		h.finish(ex, nil)
	case ex.mode == bodyFixed && ex.remaining <= inlineBodyMax && int64(ex.conn.br.Buffered()) >= ex.remaining:
		// The usual small answer came with its headers: copy it out and
		// free the connection now, without a body stream.
		n := int(ex.remaining)
		body, _ := ex.conn.br.Peek(n)
		ctx.Response.SetBody(body)
		_, _ = ex.conn.br.Discard(n)
		ex.remaining, ex.done = 0, true
		h.finish(ex, nil)
	case ex.mode == bodyFixed:
		ctx.Response.SetBodyStream(ex, int(ex.remaining))
	case !ctx.Request.Header.IsHTTP11():
		// An HTTP/1.0 client cannot take chunks, and fasthttp cannot end
		// a body by closing: hand it the whole body with a length. Rare
		// enough that its allocation does not matter.
		body, err := io.ReadAll(io.LimitReader(ex, int64(snap.maxBody)+1<<30))
		ctx.Response.SetBody(body)
		if err != nil {
			ctx.Response.Reset()
			writeError(ctx, pool, fasthttp.StatusBadGateway, bodyBadGateway)
		}
		h.finish(ex, err)
	default:
		// Unknown length: re-chunk to the client and send the headers
		// at once, so a token stream shows its first event immediately.
		ctx.Response.ImmediateHeaderFlush = true
		ctx.Response.SetBodyStream(ex, -1)
	}
}

// finish ends an exchange: the connection goes back to the pool only if
// the body was read to its end; the counters the drain waits on drop.
func (h *Handler) finish(ex *exchange, writeErr error) {
	if ex.conn != nil {
		t := ex.backend.t
		if writeErr == nil && ex.readErr == nil && ex.done && !ex.closeConn {
			t.put(ex.conn, time.Now())
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
	end := time.Now()
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

// logAccess writes one access-log line. Only sampled requests get here,
// so its allocations stay off the common path.
func (h *Handler) logAccess(ex *exchange, status int, took time.Duration, writeErr error) {
	backend := ""
	if ex.backend != nil {
		backend = ex.backend.addr
	}
	fields := []zap.Field{
		zap.ByteString("method", ex.access.method), zap.ByteString("path", ex.access.uri),
		zap.Int("status", status), zap.String("env", string(ex.pool.Color)), zap.String("version", ex.pool.Version),
		zap.String("backend", backend), zap.Duration("duration", took), zap.Duration("upstream_time", ex.headerAt),
		zap.ByteString("request_id", ex.access.rqid),
	}
	if writeErr != nil {
		fields = append(fields, zap.NamedError("client_error", writeErr))
	}
	if ex.readErr != nil {
		fields = append(fields, zap.NamedError("upstream_error", ex.readErr))
	}
	h.access.Info("request", fields...)
}

// inlineBodyMax is the largest answer copied out of the read buffer at
// once rather than streamed.
const inlineBodyMax = connReadBufferSize

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
// always when nothing was sent, otherwise only for idempotent methods, and
// never after a timeout, which would double the load on a slow model.
func retryable(err error, ctx *fasthttp.RequestCtx) bool {
	var de *dialError
	if errors.As(err, &de) {
		return true
	}
	if isTimeout(err) {
		return false
	}
	return isIdempotent(&ctx.Request.Header)
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
// other answer.
func (h *Handler) ErrorHandler(ctx *fasthttp.RequestCtx, err error) {
	setPoolHeaders(ctx, h.router.snap.Load().ActivePool())
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		writeErrorBody(ctx, fasthttp.StatusRequestEntityTooLarge, bodyTooLarge)
	case isTimeout(err):
		writeErrorBody(ctx, fasthttp.StatusRequestTimeout, bodyRequestTime)
	default:
		writeErrorBody(ctx, fasthttp.StatusBadRequest, bodyBadRequest)
	}
}
