package health

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
)

func ptr[T any](v T) *T { return &v }

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
