package warmup

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"go.uber.org/zap"
)

// Retry and connection settings of the Warmer's client. Retries cover only
// blips (a connection reset, a 503 while a worker restarts); the warmup
// loop itself is what waits out a cold server.
const (
	retryMax     = 2
	retryWaitMin = 20 * time.Millisecond
	retryWaitMax = 200 * time.Millisecond
	dialTimeout  = 2 * time.Second
	// idleTimeout stays below gunicorn's 2s keep-alive so that the Warmer,
	// not the backend, closes idle connections (see config.Timeouts.Idle).
	idleTimeout = time.Second
)

// ErrGaveUp is matched (errors.Is) by Warm's error when MaxRequests
// requests did not give Requests consecutive passing answers. The error
// also wraps the last failure, so errors.Is(err, ErrWrongAnswer) tells
// whether the backend answered at all.
var ErrGaveUp = errors.New("warmup: gave up")

type gaveUpError struct {
	addr string
	sent int
	last error
}

func (e *gaveUpError) Error() string {
	return fmt.Sprintf("warmup: %s: gave up after %d requests: last %v", e.addr, e.sent, e.last)
}
func (e *gaveUpError) Unwrap() error        { return e.last }
func (e *gaveUpError) Is(target error) bool { return target == ErrGaveUp }

// Warmer sends warmup requests. It holds one retrying HTTP client with its
// own keep-alive transport, so warmup traffic neither shares connections
// with the proxy nor uses http.DefaultTransport, and one more per backend
// dialed with TLS. One Warmer serves every backend and may be used
// concurrently.
type Warmer struct {
	client    *retryablehttp.Client
	transport *http.Transport
	tls       tlsClients
	grpc      grpcConns
	log       *zap.Logger
}

// Backend is a model server to warm: where it listens and how to dial it.
type Backend struct {
	// Addr is the server's host:port.
	Addr string
	// TLS, when not nil, dials Addr with it: https for an HTTP warmup,
	// gRPC over TLS for kserve-grpc. It is the config the proxy dials the
	// pool's backends with (pools.*.tls, built by proxy.NewUpstreamTLS).
	// The Warmer keeps a backend's connections while calls bring the same
	// config and dials anew when another comes (a reload edited
	// pools.*.tls). nil: cleartext.
	TLS *tls.Config
}

// New returns a Warmer that logs to log (nil discards). Its retry logs go
// to log at debug level, never to stderr. Call Close when done.
func New(log *zap.Logger) *Warmer {
	if log == nil {
		log = zap.NewNop()
	}
	c, tr := newClient(nil, log)
	return &Warmer{client: c, transport: tr, tls: tlsClients{log: log}, log: log}
}

// newClient returns a retrying HTTP client on a transport of its own: in
// cleartext HTTP/1.1, or with conf HTTP/2 or HTTP/1.1 as the server
// chooses by ALPN.
func newClient(conf *tls.Config, log *zap.Logger) (*retryablehttp.Client, *http.Transport) {
	tr := &http.Transport{
		Proxy:                 nil, // warmup goes straight to the backend
		DialContext:           (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          64,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       idleTimeout,
		ExpectContinueTimeout: time.Second,
	}
	if conf != nil {
		// The proxy's config offers only h2, which its TLS transports
		// speak; a model server's REST port may speak HTTP/1.1 only.
		tr.TLSClientConfig = conf.Clone()
		tr.TLSClientConfig.NextProtos = []string{"h2", "http/1.1"}
		var protos http.Protocols
		protos.SetHTTP1(true)
		protos.SetHTTP2(true)
		tr.Protocols = &protos
	}
	c := retryablehttp.NewClient()
	c.HTTPClient = &http.Client{
		Transport: tr,
		// A redirect is an answer to check, not a place to go.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	c.Logger = retryLogger{log}
	c.RetryMax = retryMax
	c.RetryWaitMin = retryWaitMin
	c.RetryWaitMax = retryWaitMax
	c.CheckRetry = retryTransient
	c.Backoff = backoff
	c.ErrorHandler = afterRetries
	c.RequestLogHook = startAttemptClock
	return c, tr
}

// Close closes the Warmer's idle connections. Call it when the Warmer is no
// longer needed, so that no connection goroutines outlive it.
func (w *Warmer) Close() {
	w.transport.CloseIdleConnections()
	w.tls.close()
	w.grpc.close()
}

// tlsClients keeps an HTTP client per backend dialed with TLS, for the
// config it was built with; a call with another config replaces it and
// closes the old one's idle connections.
type tlsClients struct {
	log     *zap.Logger
	mu      sync.Mutex
	clients map[string]tlsClient
}

type tlsClient struct {
	tls       *tls.Config
	client    *retryablehttp.Client
	transport *http.Transport
}

func (t *tlsClients) get(b Backend) *retryablehttp.Client {
	t.mu.Lock()
	defer t.mu.Unlock()
	old, ok := t.clients[b.Addr]
	if ok && old.tls == b.TLS {
		return old.client
	}
	if ok {
		old.transport.CloseIdleConnections()
	}
	c, tr := newClient(b.TLS, t.log)
	if t.clients == nil {
		t.clients = map[string]tlsClient{}
	}
	t.clients[b.Addr] = tlsClient{tls: b.TLS, client: c, transport: tr}
	return c
}

func (t *tlsClients) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for addr, c := range t.clients {
		c.transport.CloseIdleConnections()
		delete(t.clients, addr)
	}
}

// Result describes a warmup run, for logs and metrics.
type Result struct {
	// Requests is how many warmup requests were sent; transient retries
	// inside one request do not count.
	Requests int
	// Cold is the latency of the first answer.
	Cold time.Duration
	// Warm is the latency of the last answer.
	Warm time.Duration
	// Latencies is every answer's latency, in order. A request that got
	// no answer (connection refused, timeout) has none.
	Latencies []time.Duration
}

// Progress is called after each passing answer with how many consecutive
// passes there are and how many are needed, so callers can report warmup
// progress. It runs on Warm's goroutine and should return quickly.
type Progress func(passed, needed int)

// Warm sends spec's request directly to b (http, or https with b.TLS) until
// Requests consecutive answers pass the checks (status == ExpectStatus,
// JSON field/value, body regexp) and, with a LatencyTarget, the last
// Requests answers each took less than it. A failing answer, or a request
// that gets none within Timeout, resets the consecutive count.
//
// It gives up after MaxRequests requests with an error that matches
// ErrGaveUp and says what the last failure was, e.g.
//
//	warmup: 127.0.0.1:5002: gave up after 50 requests: last answer 200 but field "model_version" is "v2.6", want "v2.7"
//
// and stops promptly when ctx is cancelled, returning an error that wraps
// ctx.Err(). The Result is filled in either way. Requests are sent back to
// back: call Warm once the backend's health check passes, not while it is
// still starting.
func (w *Warmer) Warm(ctx context.Context, b Backend, spec *Spec, progress Progress) (Result, error) {
	addr := b.Addr
	var res Result
	if err := spec.check(); err != nil {
		return res, fmt.Errorf("%w (warming %s)", err, addr)
	}
	passed := 0
	var last error
	for res.Requests < spec.MaxRequests {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("warmup: %s: stopped after %d requests: %w", addr, res.Requests, err)
		}
		lat, answered, err := w.exchange(ctx, b, spec)
		if ctxErr := ctx.Err(); ctxErr != nil {
			return res, fmt.Errorf("warmup: %s: stopped after %d requests: %w", addr, res.Requests, ctxErr)
		}
		res.Requests++
		if answered {
			if len(res.Latencies) == 0 {
				res.Cold = lat
			}
			res.Warm = lat
			res.Latencies = append(res.Latencies, lat)
		}
		if err != nil {
			passed, last = 0, err
			if ce := w.log.Check(zap.DebugLevel, "warmup request failed"); ce != nil {
				ce.Write(zap.String("addr", addr), zap.Int("request", res.Requests), zap.Error(err))
			}
			continue
		}
		passed++
		if progress != nil {
			progress(passed, spec.Requests)
		}
		if passed >= spec.Requests {
			return res, nil
		}
	}
	return res, &gaveUpError{addr: addr, sent: res.Requests, last: last}
}

// Ping sends one warmup request to b and checks it the same way as
// Warm, latency target included, to keep a standby backend warm and to
// notice when it went cold or wrong. It returns the answer's latency, also
// alongside a failed check; 0 when no answer came.
func (w *Warmer) Ping(ctx context.Context, b Backend, spec *Spec) (time.Duration, error) {
	addr := b.Addr
	if err := spec.check(); err != nil {
		return 0, fmt.Errorf("%w (pinging %s)", err, addr)
	}
	lat, _, err := w.exchange(ctx, b, spec)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return lat, fmt.Errorf("warmup: ping %s: %w", addr, ctxErr)
		}
		return lat, fmt.Errorf("warmup: ping %s: %w", addr, err)
	}
	return lat, nil
}

// exchange sends one warmup request (with transient retries) and checks
// the answer. answered says whether an answer came back, in which case lat
// is its latency: from sending the attempt that got it to reading its body.
func (w *Warmer) exchange(ctx context.Context, b Backend, spec *Spec) (lat time.Duration, answered bool, err error) {
	if spec.GRPCModel != "" {
		return w.exchangeGRPC(ctx, b, spec)
	}
	client, scheme := w.client, "http://"
	if b.TLS != nil {
		client, scheme = w.tls.get(b), "https://"
	}
	rctx := ctx
	if spec.Timeout > 0 {
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(ctx, spec.Timeout)
		defer cancel()
	}
	clock := &attemptClock{start: time.Now()}
	rctx = context.WithValue(rctx, attemptClockKey{}, clock)

	var body any // an empty []byte would be sent chunked; nil sends no body
	if len(spec.Body) > 0 {
		body = spec.Body
	}
	req, err := retryablehttp.NewRequestWithContext(rctx, spec.Method, scheme+b.Addr+spec.Path, body)
	if err != nil {
		return 0, false, fmt.Errorf("request not sent: %w; check the backend address and warmup.path", err)
	}
	for k, v := range spec.Headers {
		if strings.EqualFold(k, "Host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	if req.Header.Get("User-Agent") == "" {
		req.Header.Set("User-Agent", "switchyard-warmup")
	}

	resp, err := client.Do(req)
	if err != nil {
		return 0, false, noAnswer(ctx, rctx, spec, "request", err)
	}
	defer resp.Body.Close()
	needBody := spec.ExpectJSONField != "" || spec.ExpectBody != nil
	answer, truncated, err := readAnswer(resp.Body, needBody)
	lat = time.Since(clock.start)
	if err != nil {
		return 0, false, noAnswer(ctx, rctx, spec, fmt.Sprintf("answer %d body", resp.StatusCode), fmt.Errorf("cut short: %w", err))
	}
	if err := checkAnswer(spec, resp.StatusCode, answer, truncated); err != nil {
		return lat, true, err
	}
	if spec.LatencyTarget > 0 && lat >= spec.LatencyTarget {
		return lat, true, wrong("answer %d took %s, want under latency_target %s", resp.StatusCode, lat.Round(time.Microsecond), spec.LatencyTarget)
	}
	return lat, true, nil
}

// noAnswer describes a request that got no complete answer; what names the
// part that is missing. It reads after "last " in Warm's give-up message.
func noAnswer(ctx, rctx context.Context, spec *Spec, what string, err error) error {
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(rctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("%s timed out after %s (raise warmup.timeout if the model is this slow): %w", what, spec.Timeout, err)
	default:
		return fmt.Errorf("%s %w", what, err)
	}
}

// readAnswer reads up to maxBody bytes of an answer body. Beyond that it
// discards the rest when the body is not checked, so the latency covers
// the whole answer, and stops reading when it is (the check fails anyway).
func readAnswer(r io.Reader, needBody bool) (body []byte, truncated bool, err error) {
	body, err = io.ReadAll(io.LimitReader(r, maxBody+1))
	if err != nil || len(body) <= maxBody {
		return body, false, err
	}
	if !needBody {
		_, err = io.Copy(io.Discard, r)
	}
	return body[:maxBody], true, err
}

// attemptClock records when the last attempt of a request started, so a
// retried request's latency excludes the failed attempts and the backoff.
type attemptClock struct{ start time.Time }

type attemptClockKey struct{}

// startAttemptClock is the client's RequestLogHook, called before every
// attempt on the goroutine that calls Do.
func startAttemptClock(_ retryablehttp.Logger, req *http.Request, _ int) {
	if c, ok := req.Context().Value(attemptClockKey{}).(*attemptClock); ok {
		c.start = time.Now()
	}
}

// retryTransient retries connection errors and 502/503/504 (a proxy or
// server in front of the model restarting) and nothing else: any other
// answer is for the checks to judge.
func retryTransient(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		// retryablehttp's policy skips errors that cannot heal (bad
		// scheme, bad header, too many redirects).
		return retryablehttp.DefaultRetryPolicy(ctx, resp, err)
	}
	switch resp.StatusCode {
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true, nil
	}
	return false, nil
}

// backoff is exponential between the client's bounds and ignores
// Retry-After, so a loading server's "Retry-After: 120" cannot stall a
// warmup request past its own timeout.
func backoff(minWait, maxWait time.Duration, attempt int, _ *http.Response) time.Duration {
	return retryablehttp.DefaultBackoff(minWait, maxWait, attempt, nil)
}

// afterRetries hands a still-transient status back to be checked (so the
// error reads "answer 503, want status 200") and words a connection
// failure with its attempt count.
func afterRetries(resp *http.Response, err error, attempts int) (*http.Response, error) {
	if err == nil && resp != nil {
		return resp, nil
	}
	if resp != nil {
		resp.Body.Close()
	}
	if err == nil {
		err = errors.New("no answer")
	}
	return nil, fmt.Errorf("failed after %d attempt(s): %w", attempts, err)
}

// retryLogger routes retryablehttp's logs into zap at debug level: the
// Warmer reports failures itself, so a retry is detail, not news.
type retryLogger struct{ log *zap.Logger }

var _ retryablehttp.LeveledLogger = retryLogger{}

func (l retryLogger) Error(msg string, kv ...any) { l.debug(msg, kv) }
func (l retryLogger) Info(msg string, kv ...any)  { l.debug(msg, kv) }
func (l retryLogger) Debug(msg string, kv ...any) { l.debug(msg, kv) }
func (l retryLogger) Warn(msg string, kv ...any)  { l.debug(msg, kv) }

func (l retryLogger) debug(msg string, kv []any) {
	ce := l.log.Check(zap.DebugLevel, msg)
	if ce == nil {
		return
	}
	fields := make([]zap.Field, 0, len(kv)/2+1)
	fields = append(fields, zap.String("client", "retryablehttp"))
	for i := 0; i+1 < len(kv); i += 2 {
		key, ok := kv[i].(string)
		if !ok {
			key = fmt.Sprint(kv[i])
		}
		fields = append(fields, zap.Any(key, kv[i+1]))
	}
	ce.Write(fields...)
}
