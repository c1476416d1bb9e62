package health

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Exposition samples in the shape each server writes them.
const (
	tritonMetrics = `# HELP nv_inference_request_success Number of successful inference requests, all batch sizes
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="resnet50",version="1"} 1042
# HELP nv_inference_pending_request_count Instantaneous number of pending requests awaiting execution per-model.
# TYPE nv_inference_pending_request_count gauge
nv_inference_pending_request_count{model="resnet50",version="1"} 3
nv_inference_pending_request_count{model="bert",version="1"} 2
# HELP nv_gpu_utilization GPU utilization rate [0.0 - 1.0)
# TYPE nv_gpu_utilization gauge
nv_gpu_utilization{gpu_uuid="GPU-aaaa"} 0.5
nv_gpu_utilization{gpu_uuid="GPU-bbbb"} 0.25
# HELP nv_gpu_memory_total_bytes GPU total memory, in bytes
# TYPE nv_gpu_memory_total_bytes gauge
nv_gpu_memory_total_bytes{gpu_uuid="GPU-aaaa"} 8e+09
nv_gpu_memory_total_bytes{gpu_uuid="GPU-bbbb"} 8e+09
# HELP nv_gpu_memory_used_bytes GPU used memory, in bytes
# TYPE nv_gpu_memory_used_bytes gauge
nv_gpu_memory_used_bytes{gpu_uuid="GPU-aaaa"} 6e+09
nv_gpu_memory_used_bytes{gpu_uuid="GPU-bbbb"} 2e+09
`
	vllmMetrics = `# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="meta-llama/Llama-3.1-8B"} 5.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="meta-llama/Llama-3.1-8B"} 7.0
# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="meta-llama/Llama-3.1-8B"} 0.42
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="meta-llama/Llama-3.1-8B"} 123456.0
`
	// vLLM before v0.10 called the KV-cache gauge gpu_cache_usage_perc.
	vllmOldMetrics = `# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{model_name="llama"} 1.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{model_name="llama"} 0.0
# TYPE vllm:gpu_cache_usage_perc gauge
vllm:gpu_cache_usage_perc{model_name="llama"} 0.3
`
	torchServeMetrics = `# HELP ts_inference_requests_total Total number of inference requests.
# TYPE ts_inference_requests_total counter
ts_inference_requests_total{model_name="mnist",model_version="default",hostname="pod-1"} 4.0
# HELP ts_queue_latency_microseconds Cumulative queue duration in microseconds
# TYPE ts_queue_latency_microseconds counter
ts_queue_latency_microseconds{model_name="mnist",model_version="default",hostname="pod-1"} 2000000.0
# HELP GPUUtilization GPU utilization
# TYPE GPUUtilization gauge
GPUUtilization{Level="Host",device_id="0",Hostname="pod-1"} 40.0
# HELP GPUMemoryUsed GPU memory used in MB
# TYPE GPUMemoryUsed gauge
GPUMemoryUsed{Level="Host",device_id="0",Hostname="pod-1"} 1024.0
`
)

func TestParseMetrics_ReadsEachServersSignals(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		desc string
		body string
		want Report
	}{
		{
			desc: "Triton sums pending requests and memory, averages utilization",
			body: tritonMetrics,
			want: Report{QueueDepth: ptr(5.0), GPUUtil: ptr(0.375), GPUMemUsed: ptr(8e9), GPUMemTotal: ptr(16e9)},
		},
		{
			desc: "vLLM waiting, running and KV cache",
			body: vllmMetrics,
			want: Report{QueueDepth: ptr(7.0), Running: ptr(5.0), KVCacheUsage: ptr(0.42)},
		},
		{
			desc: "vLLM before v0.10 falls back to gpu_cache_usage_perc",
			body: vllmOldMetrics,
			want: Report{QueueDepth: ptr(0.0), Running: ptr(1.0), KVCacheUsage: ptr(0.3)},
		},
		{
			desc: "vLLM with both KV-cache gauges prefers the new one",
			body: vllmMetrics + "# TYPE vllm:gpu_cache_usage_perc gauge\nvllm:gpu_cache_usage_perc 0.9\n",
			want: Report{QueueDepth: ptr(7.0), Running: ptr(5.0), KVCacheUsage: ptr(0.42)},
		},
		{
			desc: "vLLM data-parallel engines are summed and the KV cache averaged",
			body: "vllm:num_requests_waiting{engine=\"0\"} 2\nvllm:num_requests_waiting{engine=\"1\"} 3\n" +
				"vllm:kv_cache_usage_perc{engine=\"0\"} 0.2\nvllm:kv_cache_usage_perc{engine=\"1\"} 0.6\n",
			want: Report{QueueDepth: ptr(5.0), KVCacheUsage: ptr(0.4)},
		},
		{
			desc: "TorchServe queue latency per request, GPU utilization and memory in MB",
			body: torchServeMetrics,
			want: Report{QueueLatency: ptr(0.5), GPUUtil: ptr(40.0), GPUMemUsed: ptr(1024.0 * (1 << 20))},
		},
		{
			desc: "TorchServe queue latency before any request counter is the total",
			body: "# TYPE ts_queue_latency_microseconds counter\nts_queue_latency_microseconds{model_name=\"m\"} 1500000\n",
			want: Report{QueueLatency: ptr(1.5)},
		},
		{
			desc: "TorchServe queue latency with zero requests is the total",
			body: "ts_queue_latency_microseconds 250000\nts_inference_requests_total 0\n",
			want: Report{QueueLatency: ptr(0.25)},
		},
		{
			desc: "untyped samples count",
			body: "nv_inference_pending_request_count 4\n",
			want: Report{QueueDepth: ptr(4.0)},
		},
		{
			desc: "NaN and Inf samples are skipped",
			body: "vllm:num_requests_waiting{engine=\"0\"} NaN\nvllm:num_requests_waiting{engine=\"1\"} 2\n" +
				"vllm:kv_cache_usage_perc +Inf\nvllm:num_requests_running NaN\n",
			want: Report{QueueDepth: ptr(2.0)},
		},
		{
			desc: "a server with none of the known metrics reports nothing",
			body: "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 12.5\n",
			want: Report{},
		},
		{
			desc: "empty exposition reports nothing",
			body: "",
			want: Report{},
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			r, err := ParseMetrics([]byte(test.body))
			require.NoError(t, err)
			assertReportNear(t, test.want, r)
		})
	}
}

// assertReportNear compares reports, allowing float rounding.
func assertReportNear(t *testing.T, want, got Report) {
	t.Helper()
	fields := []struct {
		name      string
		want, got *float64
	}{
		{"QueueDepth", want.QueueDepth, got.QueueDepth},
		{"Running", want.Running, got.Running},
		{"KVCacheUsage", want.KVCacheUsage, got.KVCacheUsage},
		{"QueueLatency", want.QueueLatency, got.QueueLatency},
		{"GPUUtil", want.GPUUtil, got.GPUUtil},
		{"GPUMemUsed", want.GPUMemUsed, got.GPUMemUsed},
		{"GPUMemTotal", want.GPUMemTotal, got.GPUMemTotal},
	}
	for _, f := range fields {
		if f.want == nil {
			assert.Nil(t, f.got, "%s should be unset", f.name)
			continue
		}
		if assert.NotNil(t, f.got, "%s should be set", f.name) {
			assert.InDelta(t, *f.want, *f.got, 1e-9*max(1, *f.want), f.name)
		}
	}
	want.QueueDepth, want.Running, want.KVCacheUsage, want.QueueLatency = nil, nil, nil, nil
	want.GPUUtil, want.GPUMemUsed, want.GPUMemTotal = nil, nil, nil
	got.QueueDepth, got.Running, got.KVCacheUsage, got.QueueLatency = nil, nil, nil, nil
	got.GPUUtil, got.GPUMemUsed, got.GPUMemTotal = nil, nil, nil
	assert.Equal(t, want, got, "non-numeric fields")
}

func TestParseMetrics_RejectsMalformedText(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		desc string
		body string
	}{
		{desc: "unclosed label set", body: "nv_gpu_utilization{gpu_uuid=\"GPU-1\" 0.5\n"},
		{desc: "value is not a number", body: "vllm:num_requests_waiting seven\n"},
		{desc: "prose", body: "this is not prometheus\n"},
		{desc: "HTML error page", body: "<html><body>500 Internal Server Error</body></html>\n"},
		{desc: "JSON", body: `{"queue_depth": 3}` + "\n"},
		{desc: "conflicting TYPE lines", body: "# TYPE x gauge\n# TYPE x counter\nx 1\n"},
		{desc: "unquoted label value", body: "vllm:num_requests_waiting{engine=0} 1\n"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			_, err := ParseMetrics([]byte(test.body))
			require.Error(t, err)
			assert.Contains(t, err.Error(), "metrics are not Prometheus text")
		})
	}
}
