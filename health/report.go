// Package health probes every backend of both pools, understands what
// model servers report (model loaded, CUDA, GPU memory, queue depth; in
// Switchyard's json format and the KServe v2, Triton, TorchServe and vLLM
// conventions), runs warmup before a backend gets traffic, and decides
// when a backend is ready: healthy and warm.
package health

import "github.com/switchyard/switchyard/proxy"

// Report is what one probe learned about a backend. Optional fields are
// nil when the server did not report them.
type Report struct {
	ModelLoaded   *bool    `json:"model_loaded,omitempty"`
	CUDAAvailable *bool    `json:"cuda_available,omitempty"`
	Device        string   `json:"device,omitempty"`
	GPUUUID       string   `json:"gpu_uuid,omitempty"`
	GPUMemUsed    *float64 `json:"gpu_memory_used_bytes,omitempty"`
	GPUMemTotal   *float64 `json:"gpu_memory_total_bytes,omitempty"`
	GPUUtil       *float64 `json:"gpu_utilization,omitempty"`
	QueueDepth    *float64 `json:"queue_depth,omitempty"`
	Running       *float64 `json:"requests_running,omitempty"`
	KVCacheUsage  *float64 `json:"kv_cache_usage,omitempty"`
	QueueLatency  *float64 `json:"queue_latency_seconds,omitempty"`
	BootID        string   `json:"boot_id,omitempty"`
	Version       string   `json:"version,omitempty"`
}

// merge fills r's unset fields from o (e.g. scraped metrics after the
// health body).
func (r *Report) merge(o Report) {
	setF := func(dst **float64, src *float64) {
		if *dst == nil && src != nil {
			*dst = src
		}
	}
	setF(&r.GPUMemUsed, o.GPUMemUsed)
	setF(&r.GPUMemTotal, o.GPUMemTotal)
	setF(&r.GPUUtil, o.GPUUtil)
	setF(&r.QueueDepth, o.QueueDepth)
	setF(&r.Running, o.Running)
	setF(&r.KVCacheUsage, o.KVCacheUsage)
	setF(&r.QueueLatency, o.QueueLatency)
}

// LoadScore turns a report into the gpu policy's score (see
// proxy.LoadScore): the server's queue plus KV-cache or GPU-memory
// pressure.
func (r *Report) LoadScore() int64 {
	var waiting, pressure float64
	if r.QueueDepth != nil {
		waiting = *r.QueueDepth
	}
	if r.KVCacheUsage != nil {
		pressure = *r.KVCacheUsage
	}
	if r.GPUMemUsed != nil && r.GPUMemTotal != nil && *r.GPUMemTotal > 0 {
		pressure = max(pressure, *r.GPUMemUsed / *r.GPUMemTotal)
	}
	return proxy.LoadScore(waiting, pressure)
}

// prefix is the start of a body for error messages.
func prefix(b []byte) string {
	const n = 64
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
