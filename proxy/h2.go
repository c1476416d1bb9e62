package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/switchyard/switchyard/config"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
)

// The HTTP/2 side of the traffic listener. fasthttp has no HTTP/2, so, as
// Traefik does, HTTP/2 connections are served by the standard library and
// forwarded with httputil.ReverseProxy, which already streams both ways,
// flushes each frame, and passes trailers (gRPC's status) through. Every
// call loads the Router's snapshot once and keeps it to the end, as an
// HTTP/1.1 request does: the same canary roll, selection, max_concurrency
// queue, outlier ejection and per-color in-flight count the drain waits
// on. A stream is one HTTP/2 stream on one backend connection, so a
// bidirectional stream started on blue ends on blue whatever switches
// happen meanwhile, and the drain of blue waits for it.

// Causes of a cancelled upstream call, to tell the client which.
var (
	errHeaderTimeout = errors.New("proxy: no response headers within proxy.timeouts.response_header")
	errTotalTimeout  = errors.New("proxy: exchange exceeded proxy.timeouts.total")
	errClientTimeout = errors.New("proxy: the client's grpc-timeout passed")
)

// h2Proxy is the http.Handler of the HTTP/2 server.
type h2Proxy struct {
	h  *Handler
	rp *httputil.ReverseProxy
}

// newH2Server returns the standard library server for the HTTP/2 side:
// HTTP/2 only (HTTP/1.1 never reaches it), cleartext with prior
// knowledge or TLS with ALPN h2. Streams are not bounded by read or write
// timeouts, which would cut long gRPC streams; keep-alive pings find dead
// connections instead.
func newH2Server(h *Handler) *http.Server {
	p := &h2Proxy{h: h}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      h2RoundTripper{p},
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.errorHandler,
		ErrorLog:       stdLog(h.log),
	}
	var protos http.Protocols
	protos.SetHTTP2(true)
	protos.SetUnencryptedHTTP2(true)
	lim := h.client
	return &http.Server{
		Handler:           p,
		Protocols:         &protos,
		ReadHeaderTimeout: lim.HeaderTimeout,
		IdleTimeout:       lim.IdleTimeout,
		MaxHeaderBytes:    lim.MaxHeaderBytes,
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: 30 * time.Second,
			PingTimeout:     15 * time.Second,
		},
		ErrorLog: stdLog(h.log),
	}
}

// stdLog routes net/http's log lines (a client's protocol error, a
// suppressed copy error) to debug level: the access log and the failure
// lines already say what matters.
func stdLog(log *zap.Logger) *stdlog.Logger {
	l, err := zap.NewStdLogAt(log.Named("http2"), zap.DebugLevel)
	if err != nil {
		return zap.NewStdLog(zap.NewNop())
	}
	return l
}

// h2Call is one HTTP/2 request or gRPC call in flight.
type h2Call struct {
	snap    *Snapshot
	pool    *Pool
	backend *Backend
	grpc    bool
	start   time.Time
	cancel  context.CancelCauseFunc
	ctx     context.Context
	// client is the client's own context: done when it went away.
	client context.Context
	// headerTimer cancels the call when no response headers came within
	// response_header.
	headerTimer *time.Timer
	res         *http.Response
	body        *h2Body
	// tee copies a gRPC request chosen for shadow traffic.
	tee *grpcTee
	// status is the answer the gateway gave itself, 0 when the backend
	// answered; code is its gRPC status.
	status int
	code   codes.Code
	// upstreamErr is why the backend gave no answer.
	upstreamErr error
	headerAt    time.Duration
}

type h2CallKey struct{}

// routeHTTP is route for an HTTP/2 request: the canary roll, by the
// sticky header's hash when the request has it.
func (s *Snapshot) routeHTTP(r *http.Request) (*Pool, bool) {
	if s.traffic.canary == 0 {
		return s.ActivePool(), false
	}
	var roll uint32
	if v := r.Header.Get(s.traffic.stickyHeader); s.traffic.stickyHeader != "" && v != "" {
		roll = fnv32a([]byte(v)) % basisPoints
	} else {
		roll = randN(basisPoints)
	}
	if roll < s.traffic.canary {
		return s.Pools[colorIndex(s.Active.Other())], true
	}
	return s.ActivePool(), false
}

// ServeHTTP forwards one HTTP/2 request to the pool its snapshot picks.
func (p *h2Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := p.h
	snap := h.router.snap.Load()
	call := &h2Call{snap: snap, grpc: isGRPC(r), start: time.Now()}
	pool, canary := snap.routeHTTP(r)
	if p.screen(w, r, call, pool) {
		return
	}
	now := call.start.UnixNano()
	b := pool.pick(nil, now)
	if b == nil && canary {
		pool = snap.ActivePool()
		b = pool.pick(nil, now)
	}
	call.pool = pool
	pool.inflight.Add(1)
	pool.metrics.streams.Inc()
	defer p.finish(r, call)
	if b == nil && pool.MaxConcurrency > 0 && pool.ReadyBackends() > 0 {
		if b = pool.wait(call.start); b == nil {
			w.Header().Set("Retry-After", "1")
			p.answer(w, call, codes.ResourceExhausted, http.StatusServiceUnavailable, bodyOverloaded,
				fmt.Sprintf("switchyard: every backend of %s (%s) is at max_concurrency and the queue is full; retry later", pool.Color, pool.Version))
			return
		}
	}
	if b == nil {
		w.Header().Set("Retry-After", "1")
		p.answer(w, call, codes.Unavailable, http.StatusServiceUnavailable, bodyNoBackend,
			fmt.Sprintf("switchyard: no backend of %s (%s) is ready (healthy and warm); see GET /admin/status", pool.Color, pool.Version))
		return
	}
	if pool.upstream.err != nil {
		p.answer(w, call, codes.Unavailable, http.StatusBadGateway, bodyBadGateway,
			fmt.Sprintf("switchyard: pools.%s.tls does not load: %v", pool.Color, pool.upstream.err))
		return
	}
	call.backend = b
	b.inflight.Add(1)
	b.requests.Add(1)

	ctx, cancel := context.WithCancelCause(r.Context())
	call.cancel, call.client = cancel, r.Context()
	if d, ok := parseGRPCTimeout(r.Header.Get(grpcTimeout)); ok && call.grpc {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeoutCause(ctx, d, errClientTimeout)
		defer stop()
	}
	if snap.totalTimeout > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeoutCause(ctx, snap.totalTimeout, errTotalTimeout)
		defer stop()
	}
	if snap.headerTimeout > 0 {
		call.headerTimer = time.AfterFunc(snap.headerTimeout, func() { cancel(errHeaderTimeout) })
	}
	call.ctx = ctx
	if t := &snap.traffic; call.grpc && t.mirror > 0 && h.mirror != nil && !canary && r.Body != nil && randN(basisPoints) < t.mirror {
		call.tee = &grpcTee{ReadCloser: r.Body, max: t.mirrorMax}
		r.Body = call.tee
	}
	hdr := w.Header()
	hdr[HeaderColor] = []string{string(pool.colorValue)}
	hdr[HeaderVersion] = []string{string(pool.versionValue)}
	p.rp.ServeHTTP(w, r.WithContext(context.WithValue(ctx, h2CallKey{}, call)))
}

// screen answers what must not be forwarded: a loop, or a request the
// pool's protocol cannot carry. It reports true when it answered.
func (p *h2Proxy) screen(w http.ResponseWriter, r *http.Request, call *h2Call, pool *Pool) bool {
	h := p.h
	call.pool = pool // labels a refusal; the call counts nowhere yet
	if loop := r.Header.Get(HeaderLoop); loop != "" && strings.Contains(loop, string(h.loopID)) {
		h.router.metrics.clientErrors[clientLoop].Inc()
		p.answerClient(w, call, codes.FailedPrecondition, http.StatusLoopDetected, bodyLoop,
			"switchyard: the call came back to the gateway that sent it: a backend address points at a Switchyard listener")
		return true
	}
	switch {
	case call.grpc && pool.protocol == config.ProtocolHTTP1:
		p.answerClient(w, call, codes.Unimplemented, http.StatusBadGateway, nil,
			fmt.Sprintf("switchyard: pools.%s.protocol is http1: its backends take no gRPC; set protocol: grpc (or h2c) for gRPC backends", pool.Color))
		return true
	case !call.grpc && pool.protocol == config.ProtocolGRPC:
		p.answerClient(w, call, codes.OK, http.StatusUnsupportedMediaType, bodyNotGRPC, "")
		return true
	case !call.grpc && call.snap.maxBody > 0 && r.ContentLength > int64(call.snap.maxBody):
		h.router.metrics.clientErrors[clientBodyTooLarge].Inc()
		p.answerClient(w, call, codes.OK, http.StatusRequestEntityTooLarge, bodyTooLarge, "")
		return true
	}
	if !call.grpc && call.snap.maxBody > 0 && r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, int64(call.snap.maxBody))
	}
	return false
}

var bodyNotGRPC = []byte(`{"error":"not_grpc","message":"the pool's protocol is grpc: send gRPC calls (Content-Type: application/grpc), or set protocol: h2c to forward any HTTP/2 request"}`)

// answerClient answers before any pool was counted; the pool only labels
// the answer.
func (p *h2Proxy) answerClient(w http.ResponseWriter, call *h2Call, code codes.Code, status int, body []byte, msg string) {
	hdr := w.Header()
	hdr[HeaderColor] = []string{string(call.pool.colorValue)}
	hdr[HeaderVersion] = []string{string(call.pool.versionValue)}
	if call.grpc {
		writeGRPCError(w, code, msg)
		return
	}
	if body == nil {
		body = bodyBadGateway
	}
	writeJSON(w, status, body)
}

// answer is the gateway's own answer to a counted call: a gRPC status
// for gRPC, the JSON error of the HTTP/1.1 path otherwise.
func (p *h2Proxy) answer(w http.ResponseWriter, call *h2Call, code codes.Code, status int, body []byte, msg string) {
	call.status, call.code = status, code
	if call.grpc {
		call.status = grpcHTTPStatus[code]
	}
	hdr := w.Header()
	hdr[HeaderColor] = []string{string(call.pool.colorValue)}
	hdr[HeaderVersion] = []string{string(call.pool.versionValue)}
	if call.grpc {
		writeGRPCError(w, code, msg)
		return
	}
	writeJSON(w, status, body)
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// rewrite aims the outgoing request at the call's backend. Host (the
// :authority) stays the client's, as on the HTTP/1.1 path.
func (p *h2Proxy) rewrite(pr *httputil.ProxyRequest) {
	call := pr.In.Context().Value(h2CallKey{}).(*h2Call)
	pr.Out.URL.Scheme = "http"
	if call.pool.upstream.tls != nil {
		pr.Out.URL.Scheme = "https"
	}
	pr.Out.URL.Host = call.backend.addr
	pr.Out.Host = pr.In.Host
	pr.SetXForwarded()
	if pr.Out.Header.Get(HeaderRequestID) == "" {
		pr.Out.Header.Set(HeaderRequestID, string(appendRequestID(nil)))
	}
	loop := string(p.h.loopID)
	if prior := pr.In.Header.Get(HeaderLoop); prior != "" {
		loop = prior + ", " + loop
	}
	pr.Out.Header.Set(HeaderLoop, loop)
	if call.pool.loadReports {
		pr.Out.Header.Set(orcaRequestHeader, "text")
	}
	if pr.Out.Body != nil {
		// The transport closes the body of a failed attempt; a retry on
		// another backend needs it open. ReverseProxy closes the real one.
		pr.Out.Body = noCloseBody{pr.Out.Body}
	}
}

type noCloseBody struct{ io.ReadCloser }

func (noCloseBody) Close() error { return nil }

// modifyResponse runs once the backend's headers arrived.
func (p *h2Proxy) modifyResponse(res *http.Response) error {
	call := res.Request.Context().Value(h2CallKey{}).(*h2Call)
	if call.headerTimer != nil {
		call.headerTimer.Stop()
	}
	call.headerAt = time.Since(call.start)
	call.res = res
	call.body = &h2Body{ReadCloser: res.Body, grpc: call.grpc}
	res.Body = call.body
	return nil
}

// h2Body remembers how the response body ended: a backend that breaks
// off mid-stream failed, whatever its status said.
type h2Body struct {
	io.ReadCloser
	err atomic.Pointer[error]
	// msgs counts a gRPC answer's messages, to tell unary calls for
	// shadow traffic. Read and the count happen on the handler's
	// goroutine, which reads them after the copy ended.
	grpc bool
	msgs grpcMessages
}

func (b *h2Body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if b.grpc {
		b.msgs.feed(p[:n])
	}
	if err != nil && err != io.EOF {
		b.err.CompareAndSwap(nil, &err)
	}
	return n, err
}

// errorHandler answers a call the backend gave no answer to, in the
// client's language: a gRPC status for gRPC (DEADLINE_EXCEEDED for a
// timeout, UNAVAILABLE otherwise), the HTTP/1.1 path's JSON otherwise.
func (p *h2Proxy) errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	call := r.Context().Value(h2CallKey{}).(*h2Call)
	call.upstreamErr = err
	cause := context.Cause(call.ctx)
	pool, b := call.pool, call.backend
	var de *dialError
	switch {
	case errors.Is(cause, errClientTimeout):
		p.answer(w, call, codes.DeadlineExceeded, http.StatusGatewayTimeout, bodyTimeout, "switchyard: the call's grpc-timeout passed before the model server answered")
	case errors.Is(cause, errHeaderTimeout) || errors.Is(cause, errTotalTimeout) || isTimeout(err) && !errors.As(err, &de) && call.client.Err() == nil:
		pool.metrics.errors[errTimeout].Inc()
		pool.recordFailure(b, time.Now(), p.h.log)
		p.h.logFailure(pool, b, err)
		why := cause
		if why == nil {
			why = err
		}
		p.answer(w, call, codes.DeadlineExceeded, http.StatusGatewayTimeout, bodyTimeout,
			fmt.Sprintf("switchyard: the model server of %s (%s) did not answer within proxy.timeouts: %v", pool.Color, pool.Version, why))
	case call.client.Err() != nil:
		// The client went away (cancelled the call): nobody reads this.
		call.status, call.code = 499, codes.Canceled
	default:
		kind := errReset
		if errors.As(err, &de) {
			kind = errConnect
		}
		pool.metrics.errors[kind].Inc()
		pool.recordFailure(b, time.Now(), p.h.log)
		p.h.logFailure(pool, b, err)
		p.answer(w, call, codes.Unavailable, http.StatusBadGateway, bodyBadGateway,
			fmt.Sprintf("switchyard: the model server of %s (%s) failed to answer: %s", pool.Color, pool.Version, upstreamReason(err)))
	}
}

// upstreamReason words an upstream error for a client without naming
// addresses.
func upstreamReason(err error) string {
	var de *dialError
	switch {
	case errors.As(err, &de) && errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.As(err, &de):
		return "could not connect"
	default:
		return "connection broken"
	}
}

// finish ends a call: counters the drain and the queue wait on drop, the
// backend's passive health learns the outcome, metrics and the access log
// get one entry.
func (p *h2Proxy) finish(r *http.Request, call *h2Call) {
	if call.headerTimer != nil {
		call.headerTimer.Stop()
	}
	if call.cancel != nil {
		call.cancel(nil)
	}
	status, code, broken := call.outcome(r)
	pool, b := call.pool, call.backend
	end := time.Now()
	if b != nil {
		b.inflight.Add(-1)
		pool.release()
		if call.res != nil {
			switch {
			case broken:
				pool.metrics.errors[errReset].Inc()
				pool.recordFailure(b, end, p.h.log)
			case call.grpc && grpcBackendFailure(code), !call.grpc && status >= 500:
				pool.metrics.errors[err5xx].Inc()
				pool.recordFailure(b, end, p.h.log)
			default:
				pool.recordSuccess(b)
			}
		}
	}
	pool.inflight.Add(-1)
	pool.metrics.streams.Dec()
	took := end.Sub(call.start)
	pool.metrics.observe(status, took.Seconds())
	if call.grpc {
		pool.metrics.grpcCodes[code].Inc()
	}
	pool.stats.record(end, status >= 500 || broken, false, took)
	if a := call.snap.accessSample; a > 0 && (a >= 1 || rand.Float64() < a) {
		p.logAccess(r, call, status, code, took, broken)
	}
	if call.tee != nil && call.res != nil && !broken {
		p.mirrorGRPC(r, call, code)
	}
}

// outcome is the call's status (for gRPC, the HTTP status its code maps
// to), its gRPC code, and whether the backend broke off mid-answer.
func (c *h2Call) outcome(r *http.Request) (status int, code codes.Code, broken bool) {
	if c.res == nil {
		switch {
		case c.status != 0:
			return c.status, c.code, false
		case r.Context().Err() != nil:
			return 499, codes.Canceled, false
		default:
			return http.StatusBadGateway, codes.Unavailable, false
		}
	}
	if c.body != nil {
		if errp := c.body.err.Load(); errp != nil {
			broken = r.Context().Err() == nil // a client that left is not the backend's fault
		}
	}
	status = c.res.StatusCode
	if !c.grpc {
		return status, codes.OK, broken
	}
	v := c.res.Trailer.Get(grpcStatus)
	if v == "" {
		v = c.res.Header.Get(grpcStatus)
	}
	switch {
	case v != "":
		code = parseGRPCStatus(v)
	case r.Context().Err() != nil:
		code = codes.Canceled
	case broken:
		code = codes.Unavailable
	default:
		code = codes.Unknown
	}
	return grpcHTTPStatus[code], code, broken
}

func (p *h2Proxy) logAccess(r *http.Request, call *h2Call, status int, code codes.Code, took time.Duration, broken bool) {
	backend := ""
	if call.backend != nil {
		backend = call.backend.addr
	}
	fields := []zap.Field{
		zap.String("method", r.Method), zap.String("path", r.URL.RequestURI()), zap.String("proto", r.Proto),
		zap.Int("status", status), zap.String("env", string(call.pool.Color)), zap.String("version", call.pool.Version),
		zap.String("backend", backend), zap.Duration("duration", took), zap.Duration("upstream_time", call.headerAt),
		zap.String("request_id", r.Header.Get(HeaderRequestID)),
	}
	if call.grpc {
		fields = append(fields, zap.String("grpc_method", r.URL.Path), zap.String("grpc_code", code.String()))
		if call.res != nil {
			if msg := call.res.Trailer.Get(grpcMessage); msg != "" {
				fields = append(fields, zap.String("grpc_message", decodeGRPCMessage(msg)))
			}
		}
	}
	if call.upstreamErr != nil {
		fields = append(fields, zap.NamedError("upstream_error", call.upstreamErr))
	}
	if broken {
		fields = append(fields, zap.Bool("upstream_broke_off", true))
	}
	p.h.access.Info("request", fields...)
}

// h2RoundTripper sends the call to its backend, and once more to another
// backend of the same pool when the first could not be connected to:
// nothing was sent, so any call may go elsewhere.
type h2RoundTripper struct{ p *h2Proxy }

func (rt h2RoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	call := req.Context().Value(h2CallKey{}).(*h2Call)
	pool := call.pool
	for attempt := 0; ; attempt++ {
		b := call.backend
		res, err := b.h2Transport(pool.upstream).RoundTrip(req)
		var de *dialError
		if err == nil || attempt > 0 || !errors.As(err, &de) || req.Context().Err() != nil {
			return res, err
		}
		pool.metrics.errors[errConnect].Inc()
		pool.recordFailure(b, time.Now(), rt.p.h.log)
		next := pool.pick(b, time.Now().UnixNano())
		if next == nil {
			next = b
		}
		rt.p.h.logRetry(pool, b, next, err)
		b.inflight.Add(-1)
		next.inflight.Add(1)
		next.requests.Add(1)
		call.backend = next
		req = req.Clone(req.Context())
		req.URL.Host = next.addr
	}
}

// upstream is how the HTTP/2 stack reaches a pool's backends: protocol
// and TLS, built with each snapshot. key names the settings a transport
// was built for, so a backend keeps its connections across snapshots
// until the settings change.
type upstream struct {
	protocol string
	tls      *tls.Config
	// err is a TLS file that did not load at build (config validation
	// loaded it moments before): calls fail with it, loudly.
	err      error
	key      string
	connect  time.Duration
	maxIdle  int
	maxConns int
}

// newUpstream compiles a pool's upstream settings.
func newUpstream(pc *config.Pool, cfg *config.Config, log *zap.Logger) *upstream {
	u := &upstream{protocol: pc.Protocol, connect: cfg.Proxy.Timeouts.Connect.D(), maxIdle: cfg.Proxy.MaxIdleConnsPerBackend,
		maxConns: cfg.Proxy.MaxConnsPerBackend}
	if u.protocol == "" {
		u.protocol = config.ProtocolHTTP1
	}
	u.tls, u.err = NewUpstreamTLS(pc.TLS, log)
	if u.err != nil {
		log.Error("backend TLS settings do not load; calls to the pool fail until they do", zap.Error(u.err))
	}
	u.key = fmt.Sprintf("%s|%+v|%s|%d|%d", u.protocol, pc.TLS, u.connect, u.maxIdle, u.maxConns)
	return u
}

// h2Transport is a backend's net/http transport for one upstream setting.
type h2Transport struct {
	key string
	rt  *http.Transport
}

// h2Transport returns b's transport for u's settings, replacing (and
// closing the idle connections of) one built for other settings. Streams
// on the old transport run to their end.
func (b *Backend) h2Transport(u *upstream) *http.Transport {
	if t := b.h2.Load(); t != nil && t.key == u.key {
		return t.rt
	}
	nt := &h2Transport{key: u.key, rt: u.newTransport(b.t.dial)}
	for {
		old := b.h2.Load()
		if old != nil && old.key == u.key {
			return old.rt
		}
		if b.h2.CompareAndSwap(old, nt) {
			if old != nil {
				old.rt.CloseIdleConnections()
			}
			return nt.rt
		}
	}
}

// closeH2Idle closes the idle HTTP/2 (and HTTP/1.1-for-HTTP/2-clients)
// connections of b.
func (b *Backend) closeH2Idle() {
	if t := b.h2.Load(); t != nil {
		t.rt.CloseIdleConnections()
	}
}

func (u *upstream) newTransport(dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Transport {
	connect := u.connect
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if connect > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, connect)
				defer cancel()
			}
			c, err := dial(ctx, network, addr)
			if err != nil {
				return nil, &dialError{err}
			}
			return c, nil
		},
		MaxIdleConnsPerHost: u.maxIdle,
		MaxConnsPerHost:     u.maxConns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		TLSClientConfig:     u.tls,
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: 30 * time.Second,
			PingTimeout:     15 * time.Second,
		},
	}
	var protos http.Protocols
	switch {
	case u.protocol == config.ProtocolHTTP1:
		protos.SetHTTP1(true)
	case u.tls != nil:
		protos.SetHTTP2(true)
	default:
		protos.SetUnencryptedHTTP2(true)
	}
	tr.Protocols = &protos
	return tr
}

var bodyNeedsHTTP2 = []byte(`{"error":"protocol_mismatch","message":"the pool's backends take HTTP/2 only (protocol h2c or grpc); send HTTP/2: prior knowledge in cleartext (curl --http2-prior-knowledge) or ALPN h2 over TLS"}`)

// refuseHTTP1 answers an HTTP/1.1 request for a pool whose backends take
// HTTP/2 only: the fasthttp path speaks HTTP/1.1 to backends, and gRPC
// needs HTTP/2 end to end anyway.
func (h *Handler) refuseHTTP1(ctx *fasthttp.RequestCtx, p *Pool) {
	h.router.metrics.clientErrors[clientBadRequest].Inc()
	writeError(ctx, p, fasthttp.StatusBadGateway, bodyNeedsHTTP2)
}
