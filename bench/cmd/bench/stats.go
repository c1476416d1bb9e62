package main

import (
	"math"
	"slices"
	"time"
)

// Percentiles summarizes a latency sample, in microseconds.
type Percentiles struct {
	N    int     `json:"n"`
	P50  float64 `json:"p50_us"`
	P99  float64 `json:"p99_us"`
	P999 float64 `json:"p999_us"`
	Max  float64 `json:"max_us"`
}

// percentiles sorts lat in place and returns its nearest-rank percentiles.
func percentiles(lat []time.Duration) Percentiles {
	if len(lat) == 0 {
		return Percentiles{}
	}
	slices.Sort(lat)
	return Percentiles{N: len(lat), P50: us(rank(lat, 0.50)), P99: us(rank(lat, 0.99)),
		P999: us(rank(lat, 0.999)), Max: us(lat[len(lat)-1])}
}

// rank is the nearest-rank percentile q of sorted.
func rank(sorted []time.Duration, q float64) time.Duration {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// median of xs; 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// nsPercentiles summarizes nanosecond samples (swap times).
type nsPercentiles struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50_ns"`
	P99 float64 `json:"p99_ns"`
	Max float64 `json:"max_ns"`
}

func nsSummary(xs []int64) nsPercentiles {
	if len(xs) == 0 {
		return nsPercentiles{}
	}
	d := make([]time.Duration, len(xs))
	for i, x := range xs {
		d[i] = time.Duration(x)
	}
	slices.Sort(d)
	return nsPercentiles{N: len(d), P50: float64(rank(d, 0.5)), P99: float64(rank(d, 0.99)), Max: float64(d[len(d)-1])}
}
