package proxy

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Upstream error kinds, the values of the kind label.
const (
	errConnect = iota
	errTimeout
	err5xx
	errReset
	errKinds
)

var errKindNames = [errKinds]string{"connect", "timeout", "5xx", "reset"}

// Metrics holds the request-path collectors. Children for each pool are
// resolved once when a snapshot is built, never per request.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	errors   *prometheus.CounterVec
	// grpc counts gRPC calls by status code; streams gauges HTTP/2
	// requests (gRPC streams included) in flight.
	grpc    *prometheus.CounterVec
	streams *prometheus.GaugeVec

	// clientErrors counts requests the gateway answered itself because
	// the client got something wrong; they never count against a backend.
	clientErrors [clientErrKinds]prometheus.Counter

	switches   *prometheus.CounterVec
	swap       prometheus.Histogram
	drain      *prometheus.HistogramVec
	stragglers *prometheus.CounterVec
}

// Switch results, the values of switchyard_switches_total's result label.
const (
	ResultOK         = "ok"
	ResultRefused    = "refused"
	ResultForced     = "forced"
	ResultRolledBack = "rolled_back"
)

// DurationBuckets suit inference: from a 1 ms cache hit to a 30 s cold
// generation.
var DurationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

// NewMetrics registers the request-path metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_requests_total",
			Help: "Requests proxied, by pool color, model version and status class (2xx, 4xx, 5xx).",
		}, []string{"color", "version", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "switchyard_request_duration_seconds",
			Help:    "Time from receiving a request to the end of its response body, by pool color and model version.",
			Buckets: DurationBuckets,
		}, []string{"color", "version"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_upstream_errors_total",
			Help: "Failed exchanges with backends, by pool color, model version and kind (connect, timeout, 5xx, reset).",
		}, []string{"color", "version", "kind"}),
	}
	m.grpc = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchyard_grpc_requests_total",
		Help: "gRPC calls proxied, by pool color, model version and gRPC status code (OK, UNAVAILABLE, DEADLINE_EXCEEDED, ...).",
	}, []string{"color", "version", "grpc_code"})
	m.streams = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "switchyard_http2_streams_inflight",
		Help: "HTTP/2 requests in flight per pool color, gRPC streams included; also counted in switchyard_inflight_requests.",
	}, []string{"color"})
	m.switches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchyard_switches_total",
		Help: "Color switches asked for, by trigger (admin, rollback, file, auto-rollback, ...) and result (ok, refused, forced, rolled_back).",
	}, []string{"trigger", "result"})
	m.swap = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "switchyard_switch_swap_duration_seconds",
		Help:    "Time to publish the new routing snapshot: the moment traffic moves.",
		Buckets: prometheus.ExponentialBuckets(1e-7, 4, 10),
	})
	m.drain = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "switchyard_drain_duration_seconds",
		Help:    "Time for the pool that lost traffic to finish its in-flight requests, by color and outcome (drained, timed_out).",
		Buckets: []float64{.01, .05, .1, .5, 1, 5, 10, 30, 60, 120, 300},
	}, []string{"color", "outcome"})
	m.stragglers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchyard_drain_stragglers_total",
		Help: "Requests still in flight when a drain timed out, by color; they were left running, not cut.",
	}, []string{"color"})
	clientErrors := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchyard_client_errors_total",
		Help: "Requests the gateway refused itself, by reason (bad_request, body_too_large, header_too_large, timeout, method, loop); no backend saw them.",
	}, []string{"reason"})
	for i, name := range clientErrNames {
		m.clientErrors[i] = clientErrors.WithLabelValues(name)
	}
	reg.MustRegister(m.requests, m.duration, m.errors, m.grpc, m.streams, clientErrors, m.switches, m.swap, m.drain, m.stragglers)
	return m
}

// poolMetrics are one pool's children, looked up once per snapshot.
type poolMetrics struct {
	// byClass is indexed by status/100; index 0 holds anything odd.
	byClass  [6]prometheus.Counter
	duration prometheus.Observer
	errors   [errKinds]prometheus.Counter
	// grpcCodes is indexed by gRPC code.
	grpcCodes [grpcCodes]prometheus.Counter
	streams   prometheus.Gauge
}

func (m *Metrics) forPool(color, version string) *poolMetrics {
	pm := &poolMetrics{duration: m.duration.WithLabelValues(color, version)}
	classes := [6]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}
	for i, c := range classes {
		pm.byClass[i] = m.requests.WithLabelValues(color, version, c)
	}
	for i, k := range errKindNames {
		pm.errors[i] = m.errors.WithLabelValues(color, version, k)
	}
	for i := range pm.grpcCodes {
		pm.grpcCodes[i] = m.grpc.WithLabelValues(color, version, grpcCodeName(i))
	}
	pm.streams = m.streams.WithLabelValues(color)
	return pm
}

func (pm *poolMetrics) observe(status int, seconds float64) {
	class := status / 100
	if class < 1 || class > 5 {
		class = 0
	}
	pm.byClass[class].Inc()
	pm.duration.Observe(seconds)
}
