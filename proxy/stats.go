package proxy

import (
	"sync/atomic"
	"time"
)

// statsSlots is how many seconds of per-color history are kept for
// release analysis: enough for a 10-minute window.
const statsSlots = 600

// latencyBounds are the upper bounds of the latency buckets used to
// estimate P99 without keeping samples; the last bucket is unbounded. They
// grow by a quarter each, from 100µs to about 60s, so that a ratio of two
// P99s is accurate to about 25% and one bucket of noise cannot look like a
// 2.5x regression.
var latencyBounds = func() (b [60]time.Duration) {
	d := 100 * time.Microsecond
	for i := range b {
		b[i] = d
		d += d / 4
	}
	return b
}()

const latencyBuckets = len(latencyBounds) + 1

// Stats is a color's rolling per-second record of requests, errors and
// latency, kept by the gateway itself so that analysis does not depend on
// reading metrics back. Recording is a few atomic adds.
type Stats struct {
	slots [statsSlots]statsSlot
}

type statsSlot struct {
	sec      atomic.Int64
	requests atomic.Uint64
	errors   atomic.Uint64
	// diffs counts shadow answers whose status class differed from the
	// primary's.
	diffs atomic.Uint64
	lat   [latencyBuckets]atomic.Uint64
}

// record adds one request. A slot from an older second is reset by the
// first request of the new one; requests racing that reset may be lost,
// which an estimate over thousands of requests can afford.
func (s *Stats) record(now time.Time, failed, differs bool, took time.Duration) {
	sec := now.Unix()
	sl := &s.slots[sec%statsSlots]
	if old := sl.sec.Load(); old != sec && sl.sec.CompareAndSwap(old, sec) {
		sl.requests.Store(0)
		sl.errors.Store(0)
		sl.diffs.Store(0)
		for i := range sl.lat {
			sl.lat[i].Store(0)
		}
	}
	sl.requests.Add(1)
	if failed {
		sl.errors.Add(1)
	}
	if differs {
		sl.diffs.Add(1)
	}
	i := 0
	for i < len(latencyBounds) && took > latencyBounds[i] {
		i++
	}
	sl.lat[i].Add(1)
}

// Record adds one request that ended at at and took took, as the handler
// and the mirror record theirs: failed is a 5xx or a broken exchange,
// differs a shadow answer whose status class differed from the live one.
// Analysis tests use it to replay traffic on a clock of their own.
func (s *Stats) Record(at time.Time, failed, differs bool, took time.Duration) {
	s.record(at, failed, differs, took)
}

// Window summarizes a span of Stats.
type Window struct {
	Requests uint64 `json:"requests"`
	Errors   uint64 `json:"errors"`
	// Differs counts shadow answers whose status class differed from the
	// active pool's answer to the same request.
	Differs uint64 `json:"status_differs,omitempty"`
	// P99 is the upper bound of the bucket holding the 99th percentile.
	P99 time.Duration `json:"p99_ns"`
	lat [latencyBuckets]uint64
}

// ErrorRatio is Errors/Requests, 0 without requests.
func (w Window) ErrorRatio() float64 {
	if w.Requests == 0 {
		return 0
	}
	return float64(w.Errors) / float64(w.Requests)
}

// DiffRatio is Differs/Requests, 0 without requests.
func (w Window) DiffRatio() float64 {
	if w.Requests == 0 {
		return 0
	}
	return float64(w.Differs) / float64(w.Requests)
}

// Summary returns the requests recorded in whole seconds from..to
// (inclusive), at most the retained history.
func (s *Stats) Summary(from, to time.Time) Window {
	var w Window
	lo, hi := from.Unix(), to.Unix()
	if hi-lo >= statsSlots {
		lo = hi - statsSlots + 1
	}
	for sec := lo; sec <= hi; sec++ {
		sl := &s.slots[sec%statsSlots]
		if sl.sec.Load() != sec {
			continue
		}
		w.add(sl)
	}
	w.P99 = w.quantile(0.99)
	return w
}

// Quantile returns the upper bound of the latency bucket holding quantile
// q (0 to 1) of the window's requests, e.g. 0.5 for the median; 0 without
// requests.
func (w Window) Quantile(q float64) time.Duration { return w.quantile(q) }

// Paired summarizes a and b over the whole seconds from..to (inclusive) in
// which both recorded at least one request, and only those: two colors
// compared this way were measured under the same load on the machine, so
// a difference between them is the colors', not the moment's. A second
// only one of them had traffic in counts for neither.
func Paired(a, b *Stats, from, to time.Time) (Window, Window) {
	var wa, wb Window
	lo, hi := from.Unix(), to.Unix()
	if hi-lo >= statsSlots {
		lo = hi - statsSlots + 1
	}
	for sec := lo; sec <= hi; sec++ {
		sa, sb := &a.slots[sec%statsSlots], &b.slots[sec%statsSlots]
		if sa.sec.Load() != sec || sb.sec.Load() != sec || sa.requests.Load() == 0 || sb.requests.Load() == 0 {
			continue
		}
		wa.add(sa)
		wb.add(sb)
	}
	wa.P99 = wa.quantile(0.99)
	wb.P99 = wb.quantile(0.99)
	return wa, wb
}

// add adds one second's counts to w.
func (w *Window) add(sl *statsSlot) {
	w.Requests += sl.requests.Load()
	w.Errors += sl.errors.Load()
	w.Differs += sl.diffs.Load()
	for i := range sl.lat {
		w.lat[i] += sl.lat[i].Load()
	}
}

func (w *Window) quantile(q float64) time.Duration {
	var total uint64
	for _, n := range w.lat {
		total += n
	}
	if total == 0 {
		return 0
	}
	rank := uint64(q*float64(total) + 0.5)
	var seen uint64
	for i, n := range w.lat {
		seen += n
		if seen >= rank {
			if i < len(latencyBounds) {
				return latencyBounds[i]
			}
			return 2 * latencyBounds[len(latencyBounds)-1]
		}
	}
	return 0
}
