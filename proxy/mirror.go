package proxy

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchyard/switchyard/config"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// Mirror sends copies of live requests to the standby pool (shadow
// traffic), after the client already has its answer. Copies wait in a
// bounded queue for one of a fixed number of workers; when the queue is
// full they are dropped and counted, never queued without bound, so a slow
// shadow pool cannot hold memory or touch live latency.
type Mirror struct {
	router  *Router
	log     *zap.Logger
	jobs    chan *mirrorJob
	client  *fasthttp.Client
	timeout time.Duration

	sent    *prometheus.CounterVec
	dropped *prometheus.CounterVec

	// conns tracks the client's connections so that Close can cut copies
	// stuck in a hung shadow pool: fasthttp's DoTimeout takes no context.
	connsMu sync.Mutex
	conns   map[net.Conn]struct{}

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// trackedConn forgets itself when closed.
type trackedConn struct {
	net.Conn
	m *Mirror
}

func (c *trackedConn) Close() error {
	c.m.connsMu.Lock()
	delete(c.m.conns, c.Conn)
	c.m.connsMu.Unlock()
	return c.Conn.Close()
}

func (m *Mirror) dial(addr string) (net.Conn, error) {
	// net's dialer, not fasthttp's: that one starts a process-wide DNS
	// cache goroutine nothing can stop.
	c, err := net.DialTimeout("tcp", addr, m.timeout)
	if err != nil {
		return nil, err
	}
	m.connsMu.Lock()
	defer m.connsMu.Unlock()
	if m.conns == nil {
		_ = c.Close()
		return nil, errMirrorClosed
	}
	m.conns[c] = struct{}{}
	return &trackedConn{Conn: c, m: m}, nil
}

var errMirrorClosed = errors.New("proxy: mirror closed")

type mirrorJob struct {
	req           fasthttp.Request
	to            config.Color
	primaryStatus int
	// grpc, when set, is a unary gRPC call to copy instead of req
	// (mirror_grpc.go).
	grpc *grpcCopy
}

var mirrorJobs = sync.Pool{New: func() any { return new(mirrorJob) }}

// Reasons a copy is not sent, the values of the reason label.
const (
	dropQueueFull = "queue_full"
	dropNotReady  = "not_ready"
	dropSwitched  = "switched"
)

// NewMirror starts cfg.Concurrency workers. Changing concurrency or the
// queue needs a restart; the share and target apply at once.
func NewMirror(r *Router, cfg config.Mirror, reg prometheus.Registerer, log *zap.Logger) *Mirror {
	ctx, cancel := context.WithCancel(context.Background())
	m := &Mirror{
		router:  r,
		log:     log,
		jobs:    make(chan *mirrorJob, cfg.Queue),
		timeout: cfg.Timeout.D(),
		client: &fasthttp.Client{
			Name:                     "switchyard-mirror",
			NoDefaultUserAgentHeader: true,
			MaxConnsPerHost:          cfg.Concurrency,
			MaxIdleConnDuration:      time.Second,
			MaxResponseBodySize:      4 << 20,
			DisablePathNormalizing:   true,
		},
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_mirror_requests_total",
			Help: "Mirrored (shadow) requests answered by the standby pool, by color, version and status class; the answers are discarded.",
		}, []string{"color", "version", "code"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_mirror_dropped_total",
			Help: "Copies not mirrored, by reason: queue_full (the shadow pool is slower than the share sent), not_ready, switched.",
		}, []string{"reason"}),
		cancel: cancel,
		conns:  map[net.Conn]struct{}{},
	}
	m.client.Dial = m.dial
	for _, r := range []string{dropQueueFull, dropNotReady, dropSwitched} {
		m.dropped.WithLabelValues(r)
	}
	reg.MustRegister(m.sent, m.dropped)
	for range max(cfg.Concurrency, 1) {
		m.wg.Add(1)
		go m.work(ctx)
	}
	return m
}

// Close stops the workers; queued copies are dropped and copies in
// flight are cut, so a hung shadow pool never delays shutdown.
func (m *Mirror) Close() {
	m.cancel()
	m.connsMu.Lock()
	for c := range m.conns {
		_ = c.Close()
	}
	m.conns = nil
	m.connsMu.Unlock()
	m.wg.Wait()
	m.client.CloseIdleConnections()
}

// copyOf takes a copy of the request now, while the handler still owns it.
func (m *Mirror) copyOf(ctx *fasthttp.RequestCtx, to config.Color) *mirrorJob {
	job := mirrorJobs.Get().(*mirrorJob)
	ctx.Request.CopyTo(&job.req)
	job.to = to
	return job
}

// enqueue hands a copy to the workers, or drops it when they are behind.
func (m *Mirror) enqueue(job *mirrorJob, primaryStatus int) {
	job.primaryStatus = primaryStatus
	select {
	case m.jobs <- job:
	default:
		m.dropped.WithLabelValues(dropQueueFull).Inc()
		releaseMirrorJob(job)
	}
}

func releaseMirrorJob(job *mirrorJob) {
	job.req.Reset()
	job.grpc = nil
	mirrorJobs.Put(job)
}

func (m *Mirror) work(ctx context.Context) {
	defer m.wg.Done()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	for {
		select {
		case <-ctx.Done():
			return
		case job := <-m.jobs:
			if job.grpc != nil {
				m.sendGRPC(ctx, job)
			} else {
				m.send(job, resp)
			}
			releaseMirrorJob(job)
		}
	}
}

func (m *Mirror) send(job *mirrorJob, resp *fasthttp.Response) {
	snap := m.router.Snapshot()
	if snap.Active == job.to {
		m.dropped.WithLabelValues(dropSwitched).Inc()
		return
	}
	pool := snap.Pool(job.to)
	start := time.Now()
	b := pool.pick(nil, start.UnixNano())
	if b == nil {
		m.dropped.WithLabelValues(dropNotReady).Inc()
		return
	}
	// The copy keeps the client's Host header; the URI names the backend.
	job.req.UseHostHeader = true
	job.req.URI().SetHost(b.addr)
	job.req.URI().SetScheme("http")
	b.inflight.Add(1)
	err := m.client.DoTimeout(&job.req, resp, m.timeout)
	b.inflight.Add(-1)
	took := time.Since(start)
	status := resp.StatusCode()
	if err != nil {
		status = fasthttp.StatusBadGateway
		if isTimeout(err) {
			status = fasthttp.StatusGatewayTimeout
		}
	}
	differs := status/100 != job.primaryStatus/100
	m.router.shadow[colorIndex(job.to)].record(time.Now(), status >= 500, differs, took)
	m.sent.WithLabelValues(string(job.to), pool.Version, statusClass(status)).Inc()
	if err != nil {
		if ce := m.log.Check(zap.DebugLevel, "mirrored request failed"); ce != nil {
			ce.Write(zap.String("env", string(job.to)), zap.String("version", pool.Version), zap.String("backend", b.addr), zap.Error(err))
		}
	}
}

func statusClass(status int) string {
	switch status / 100 {
	case 1:
		return "1xx"
	case 2:
		return "2xx"
	case 3:
		return "3xx"
	case 4:
		return "4xx"
	case 5:
		return "5xx"
	}
	return "other"
}
