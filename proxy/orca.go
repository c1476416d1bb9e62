package proxy

import (
	"bytes"
	"strconv"
	"unsafe"
)

// ORCA in-band load reports: asked for with the request header below,
// vLLM and Triton answer with an endpoint-load-metrics header that carries
// the backend's load with no scrape lag, e.g.
//
//	endpoint-load-metrics: TEXT cpu_utilization=0.3, mem_utilization=0.8, named_metrics.kv_cache_usage_perc=0.42, named_metrics.num_requests_waiting=3
const (
	orcaRequestHeader  = "Endpoint-Load-Metrics-Format"
	orcaResponseHeader = "Endpoint-Load-Metrics"
)

// LoadScore is the gpu policy's score of a backend, in units of one
// in-flight request: requests waiting in the server's own queue, plus a
// penalty that grows as KV cache or GPU memory fills (a full cache means
// preemption, a full GPU out-of-memory errors). Absurd inputs are clamped
// so that no report can attract all traffic.
func LoadScore(waiting, pressure float64) int64 {
	score := 0.0
	if waiting > 0 {
		score = waiting
	}
	switch {
	case pressure >= 0.95:
		score += 16
	case pressure > 0:
		score += pressure * 4
	}
	const maxScore = 1 << 40
	if !(score < maxScore) {
		return maxScore
	}
	return int64(score + 0.5)
}

// parseORCA reads an ORCA text report. ok is false when it holds nothing
// we use. It does not allocate.
func parseORCA(v []byte) (waiting, pressure float64, ok bool) {
	v = bytes.TrimSpace(v)
	if len(v) >= 5 && bytes.EqualFold(v[:5], []byte("TEXT ")) {
		v = v[5:]
	}
	for len(v) > 0 {
		var kv []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			kv, v = v[:i], v[i+1:]
		} else {
			kv, v = v, nil
		}
		eq := bytes.IndexByte(kv, '=')
		if eq < 0 {
			continue
		}
		key := bytes.TrimSpace(kv[:eq])
		val := bytes.TrimSpace(kv[eq+1:])
		if len(val) == 0 || len(val) > 32 {
			continue
		}
		f, err := strconv.ParseFloat(unsafe.String(&val[0], len(val)), 64)
		if err != nil || f != f || f < 0 {
			continue
		}
		key = bytes.TrimPrefix(key, []byte("named_metrics."))
		switch string(key) {
		case "num_requests_waiting", "queue_depth", "pending_requests":
			waiting, ok = f, true
		case "kv_cache_usage_perc", "kv_cache_utilization", "kv_cache_usage", "gpu_cache_usage_perc", "mem_utilization":
			if f > 1 && f <= 100 {
				f /= 100 // reported in percent
			}
			pressure, ok = max(pressure, f), true
		}
	}
	return waiting, pressure, ok
}
