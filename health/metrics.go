package health

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Collector exports every watched backend's health, warmth and the GPU
// signals its server reported, read at scrape time so that probes cost no
// metric updates and removed backends leave no stale series.
type Collector struct {
	c *Checker

	healthy, ready, warm, ejections       *prometheus.Desc
	gpuUsed, gpuTotal, gpuUtil, queue, kv *prometheus.Desc
	latency, warmupSeconds, restarts      *prometheus.Desc
}

// NewCollector returns the collector for c; register it once.
func NewCollector(c *Checker) *Collector {
	labels := []string{"color", "version", "backend"}
	d := func(name, help string, extra ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, append(append([]string(nil), labels...), extra...), nil)
	}
	return &Collector{
		c:             c,
		healthy:       d("switchyard_backend_healthy", "1 when the backend passes its active health probe."),
		ready:         d("switchyard_backend_ready", "1 when the backend may get traffic: healthy and warm."),
		warm:          d("switchyard_backend_warm", "1 when the backend passed warmup."),
		ejections:     d("switchyard_backend_ejections_total", "Passive-health ejections of the backend."),
		gpuUsed:       d("switchyard_backend_gpu_memory_used_bytes", "GPU memory in use, as the model server reports it."),
		gpuTotal:      d("switchyard_backend_gpu_memory_total_bytes", "GPU memory in all, as the model server reports it."),
		gpuUtil:       d("switchyard_backend_gpu_utilization_ratio", "GPU utilization 0-1, as the model server reports it."),
		queue:         d("switchyard_backend_queue_depth", "Requests waiting in the model server's own queue."),
		kv:            d("switchyard_backend_kv_cache_usage_ratio", "KV-cache use 0-1 (vLLM)."),
		latency:       d("switchyard_backend_warmup_latency_seconds", "Latency of the first (cold) and last (warm) warmup inference.", "phase"),
		warmupSeconds: d("switchyard_backend_warmup_duration_seconds", "How long the last warmup took."),
		restarts:      d("switchyard_backend_restarts_total", "Model server restarts seen through a changed boot_id."),
	}
}

// Describe implements prometheus.Collector.
func (col *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{col.healthy, col.ready, col.warm, col.ejections, col.gpuUsed, col.gpuTotal,
		col.gpuUtil, col.queue, col.kv, col.latency, col.warmupSeconds, col.restarts} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (col *Collector) Collect(ch chan<- prometheus.Metric) {
	col.c.mu.Lock()
	ms := make([]*monitor, 0, len(col.c.monitors))
	for _, m := range col.c.monitors {
		ms = append(ms, m)
	}
	col.c.mu.Unlock()
	for _, m := range ms {
		st := m.state()
		lv := []string{st.Color, st.Version, st.Addr}
		gauge := func(d *prometheus.Desc, v float64, extra ...string) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, append(lv, extra...)...)
		}
		opt := func(d *prometheus.Desc, v *float64) {
			if v != nil {
				gauge(d, *v)
			}
		}
		gauge(col.healthy, b2f(st.Healthy))
		gauge(col.ready, b2f(m.b.Ready()))
		gauge(col.warm, b2f(st.Warm))
		ch <- prometheus.MustNewConstMetric(col.ejections, prometheus.CounterValue, float64(m.b.Ejections()), lv...)
		ch <- prometheus.MustNewConstMetric(col.restarts, prometheus.CounterValue, float64(st.Restarts), lv...)
		r := st.Report
		opt(col.gpuUsed, r.GPUMemUsed)
		opt(col.gpuTotal, r.GPUMemTotal)
		if r.GPUUtil != nil {
			u := *r.GPUUtil
			if u > 1 { // servers report percent or ratio
				u /= 100
			}
			gauge(col.gpuUtil, u)
		}
		opt(col.queue, r.QueueDepth)
		opt(col.kv, r.KVCacheUsage)
		if st.ColdLatency > 0 {
			gauge(col.latency, st.ColdLatency, "cold")
			gauge(col.latency, st.WarmLatency, "warm")
			gauge(col.warmupSeconds, st.WarmupSeconds)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
