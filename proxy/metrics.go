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
}

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
	reg.MustRegister(m.requests, m.duration, m.errors)
	return m
}

// poolMetrics are one pool's children, looked up once per snapshot.
type poolMetrics struct {
	// byClass is indexed by status/100; index 0 holds anything odd.
	byClass  [6]prometheus.Counter
	duration prometheus.Observer
	errors   [errKinds]prometheus.Counter
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
