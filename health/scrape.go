package health

import (
	"bytes"
	"fmt"
	"math"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// ParseMetrics reads a model server's Prometheus text exposition and
// pulls out the queue and GPU signals of Triton, vLLM and TorchServe.
// Series of one family are summed (Triton reports one per model or GPU);
// ratios are averaged.
func ParseMetrics(body []byte) (Report, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return Report{}, fmt.Errorf("metrics are not Prometheus text: %w", err)
	}
	var r Report
	// Triton.
	r.QueueDepth = sum(fams, "nv_inference_pending_request_count")
	r.GPUUtil = avg(fams, "nv_gpu_utilization")
	r.GPUMemUsed = sum(fams, "nv_gpu_memory_used_bytes")
	r.GPUMemTotal = sum(fams, "nv_gpu_memory_total_bytes")
	// vLLM; the KV-cache gauge was renamed in v0.10.
	if v := sum(fams, "vllm:num_requests_waiting"); v != nil {
		r.QueueDepth = v
	}
	r.Running = sum(fams, "vllm:num_requests_running")
	r.KVCacheUsage = avg(fams, "vllm:kv_cache_usage_perc")
	if r.KVCacheUsage == nil {
		r.KVCacheUsage = avg(fams, "vllm:gpu_cache_usage_perc")
	}
	// TorchServe: queue latency is a counter of microseconds; the ratio to
	// requests is what we can report without keeping history.
	if us, n := sum(fams, "ts_queue_latency_microseconds"), sum(fams, "ts_inference_requests_total"); us != nil {
		v := *us / 1e6
		if n != nil && *n > 0 {
			v /= *n
		}
		r.QueueLatency = &v
	}
	if v := avg(fams, "GPUUtilization"); v != nil && r.GPUUtil == nil {
		r.GPUUtil = v
	}
	if v := sum(fams, "GPUMemoryUsed"); v != nil && r.GPUMemUsed == nil {
		// TorchServe reports megabytes.
		b := *v * (1 << 20)
		r.GPUMemUsed = &b
	}
	return r, nil
}

func values(fams map[string]*dto.MetricFamily, name string) []float64 {
	f, ok := fams[name]
	if !ok {
		return nil
	}
	var out []float64
	for _, m := range f.GetMetric() {
		var v float64
		switch {
		case m.Gauge != nil:
			v = m.Gauge.GetValue()
		case m.Counter != nil:
			v = m.Counter.GetValue()
		case m.Untyped != nil:
			v = m.Untyped.GetValue()
		case m.Summary != nil:
			v = m.Summary.GetSampleSum()
		default:
			continue
		}
		if !math.IsNaN(v) && !math.IsInf(v, 0) {
			out = append(out, v)
		}
	}
	return out
}

func sum(fams map[string]*dto.MetricFamily, name string) *float64 {
	vs := values(fams, name)
	if len(vs) == 0 {
		return nil
	}
	var s float64
	for _, v := range vs {
		s += v
	}
	return &s
}

func avg(fams map[string]*dto.MetricFamily, name string) *float64 {
	vs := values(fams, name)
	if len(vs) == 0 {
		return nil
	}
	s := *sum(fams, name) / float64(len(vs))
	return &s
}
