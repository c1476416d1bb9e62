package health

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func ptr[T any](v T) *T { return &v }

func TestParseJSONHealth_OKBodyReportsEveryField(t *testing.T) {
	t.Parallel()
	body := `{
		"status": "ok", "model_loaded": true, "cuda_available": true, "device": "cuda:0",
		"gpu_uuid": "GPU-5f6e0c1a", "gpu_memory_used_bytes": 6442450944, "gpu_memory_total_bytes": 25769803776,
		"gpu_utilization": 0.83, "queue_depth": 4, "boot_id": "b00t", "version": "v2.7",
		"color": "green", "workers": 2
	}`

	r, err := ParseJSONHealth([]byte(body))

	require.NoError(t, err)
	assert.Equal(t, Report{
		ModelLoaded:   ptr(true),
		CUDAAvailable: ptr(true),
		Device:        "cuda:0",
		GPUUUID:       "GPU-5f6e0c1a",
		GPUMemUsed:    ptr(6442450944.0),
		GPUMemTotal:   ptr(25769803776.0),
		GPUUtil:       ptr(0.83),
		QueueDepth:    ptr(4.0),
		BootID:        "b00t",
		Version:       "v2.7",
	}, r)
}

func TestParseJSONHealth_AcceptsStatusSpellingsOfServers(t *testing.T) {
	t.Parallel()
	for _, status := range []string{"ok", "OK", "healthy", "Healthy", "ready", "up", "UP", "serving", "SERVING"} {
		t.Run(status, func(t *testing.T) {
			t.Parallel()
			r, err := ParseJSONHealth([]byte(`{"status": "` + status + `"}`))
			require.NoError(t, err)
			assert.Nil(t, r.ModelLoaded, "an absent model_loaded stays unknown")
		})
	}
}

func TestParseJSONHealth_RejectsWhatIsNotHealthy(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		desc    string
		body    string
		wantErr string
		// want is the part of the report still parsed, for logs and status.
		want Report
	}{
		{
			desc:    "status not ok",
			body:    `{"status": "loading", "model_loaded": false, "boot_id": "b1"}`,
			wantErr: `status is "loading", not ok`,
			want:    Report{ModelLoaded: ptr(false), BootID: "b1"},
		},
		{
			desc:    "status degraded",
			body:    `{"status": "degraded"}`,
			wantErr: `status is "degraded", not ok`,
		},
		{
			desc:    "model not loaded although status is ok",
			body:    `{"status": "ok", "model_loaded": false, "gpu_uuid": "GPU-1"}`,
			wantErr: "model not loaded",
			want:    Report{ModelLoaded: ptr(false), GPUUUID: "GPU-1"},
		},
		{
			desc:    "missing status",
			body:    `{"model_loaded": true, "version": "v1"}`,
			wantErr: `no "status" field`,
			want:    Report{ModelLoaded: ptr(true), Version: "v1"},
		},
		{
			desc:    "null status",
			body:    `{"status": null}`,
			wantErr: `no "status" field`,
		},
		{
			desc:    "JSON null",
			body:    `null`,
			wantErr: `no "status" field`,
		},
		{
			desc:    "HTML error page",
			body:    `<html><body>502 Bad Gateway</body></html>`,
			wantErr: `health body is not JSON`,
		},
		{
			desc:    "plain text OK",
			body:    `OK`,
			wantErr: `health body is not JSON`,
		},
		{
			desc:    "truncated JSON",
			body:    `{"status": "ok", "model_loa`,
			wantErr: `health body is not JSON`,
		},
		{
			desc:    "empty body",
			body:    ``,
			wantErr: `health body is not JSON`,
		},
		{
			desc:    "array",
			body:    `["ok"]`,
			wantErr: `health body is not JSON`,
		},
		{
			desc:    "status of the wrong type",
			body:    `{"status": 200}`,
			wantErr: `health body is not JSON`,
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			r, err := ParseJSONHealth([]byte(test.body))
			require.Error(t, err)
			assert.Contains(t, err.Error(), test.wantErr)
			assert.Equal(t, test.want, r)
		})
	}
}

func TestParseJSONHealth_ErrorQuotesOnlyTheStartOfALongBody(t *testing.T) {
	t.Parallel()
	body := "<html>" + string(make([]byte, 4096)) + "</html>"

	_, err := ParseJSONHealth([]byte(body))

	require.Error(t, err)
	assert.Less(t, len(err.Error()), 600, "the error message quotes the whole body")
	assert.Contains(t, err.Error(), "<html>")
}

func TestLoadScore_CountsQueueAndMemoryPressure(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		desc string
		r    Report
		want int64
	}{
		{desc: "nothing reported", r: Report{}, want: 0},
		{desc: "queue only", r: Report{QueueDepth: ptr(3.0)}, want: 3},
		{desc: "queue rounds down below half", r: Report{QueueDepth: ptr(2.4)}, want: 2},
		{desc: "queue rounds up from half", r: Report{QueueDepth: ptr(2.5)}, want: 3},
		{desc: "half-full KV cache adds two", r: Report{KVCacheUsage: ptr(0.5)}, want: 2},
		{desc: "half-full GPU memory adds two", r: Report{GPUMemUsed: ptr(4e9), GPUMemTotal: ptr(8e9)}, want: 2},
		{desc: "the higher of KV cache and memory counts", r: Report{KVCacheUsage: ptr(0.25), GPUMemUsed: ptr(6e9), GPUMemTotal: ptr(8e9)}, want: 3},
		{desc: "KV cache higher than memory", r: Report{KVCacheUsage: ptr(0.75), GPUMemUsed: ptr(1e9), GPUMemTotal: ptr(8e9)}, want: 3},
		{desc: "nearly full KV cache is a heavy penalty", r: Report{KVCacheUsage: ptr(0.95)}, want: 16},
		{desc: "nearly full GPU plus queue", r: Report{QueueDepth: ptr(2.0), GPUMemUsed: ptr(7.9e9), GPUMemTotal: ptr(8e9)}, want: 18},
		{desc: "just under the heavy penalty", r: Report{KVCacheUsage: ptr(0.94)}, want: 4},
		{desc: "memory used without total is ignored", r: Report{QueueDepth: ptr(1.0), GPUMemUsed: ptr(7.9e9)}, want: 1},
		{desc: "zero total memory is ignored", r: Report{QueueDepth: ptr(1.0), GPUMemUsed: ptr(7.9e9), GPUMemTotal: ptr(0.0)}, want: 1},
		{desc: "empty KV cache adds nothing", r: Report{QueueDepth: ptr(5.0), KVCacheUsage: ptr(0.0)}, want: 5},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, test.want, test.r.LoadScore())
		})
	}
}

// A model server's health body is outside input. A queue depth too large
// for int64 (a buggy exporter, or +Inf from summing huge series) must not
// turn into the most negative score, which the gpu policy would read as
// the least loaded backend of all.
func TestLoadScore_HugeQueueDepthDoesNotWrapNegative(t *testing.T) {
	t.Parallel()
	for _, q := range []float64{1e19, 1e30, math.MaxFloat64, math.Inf(1)} {
		r := Report{QueueDepth: ptr(q)}
		assert.Positive(t, r.LoadScore(), "queue depth %g", q)
	}
}

func TestReportMerge_FillsOnlyWhatTheHealthBodyLacks(t *testing.T) {
	t.Parallel()
	r := Report{QueueDepth: ptr(2.0), GPUUUID: "GPU-1"}
	r.merge(Report{
		QueueDepth: ptr(9.0), Running: ptr(3.0), KVCacheUsage: ptr(0.4), QueueLatency: ptr(0.01),
		GPUMemUsed: ptr(1.0), GPUMemTotal: ptr(2.0), GPUUtil: ptr(0.5), GPUUUID: "GPU-other",
	})
	assert.Equal(t, Report{
		QueueDepth: ptr(2.0), Running: ptr(3.0), KVCacheUsage: ptr(0.4), QueueLatency: ptr(0.01),
		GPUMemUsed: ptr(1.0), GPUMemTotal: ptr(2.0), GPUUtil: ptr(0.5), GPUUUID: "GPU-1",
	}, r)
}
