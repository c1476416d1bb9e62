package proxy

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// second is one request recorded at an offset from t0.
type second struct {
	at     int // seconds after t0
	n      int
	failed int // of the n
	took   time.Duration
}

func recordSeconds(s *Stats, t0 time.Time, secs []second) {
	for _, sec := range secs {
		for i := range sec.n {
			s.Record(t0.Add(time.Duration(sec.at)*time.Second+time.Duration(i)*time.Millisecond), i < sec.failed, false, sec.took)
		}
	}
}

func TestPaired_CountsOnlySecondsBothColorsHadTrafficIn(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	testCases := []struct {
		desc               string
		a, b               []second
		from, to           int
		wantA, wantB       uint64
		wantErrA, wantErrB uint64
		wantP99A, wantP99B time.Duration
	}{
		{
			desc: "both in every second",
			a:    []second{{at: 0, n: 10, failed: 1, took: time.Millisecond}, {at: 1, n: 10, took: time.Millisecond}},
			b:    []second{{at: 0, n: 20, took: time.Millisecond}, {at: 1, n: 20, failed: 2, took: time.Millisecond}},
			from: 0, to: 1,
			wantA: 20, wantB: 40, wantErrA: 1, wantErrB: 2,
			wantP99A: latencyBounds[bucketOf(time.Millisecond)], wantP99B: latencyBounds[bucketOf(time.Millisecond)],
		},
		{
			// b was measured alone while the machine was quiet (second 0),
			// then both under load (second 1): only second 1 compares.
			desc: "a second only one color had traffic in counts for neither",
			a:    []second{{at: 1, n: 100, took: 40 * time.Millisecond}},
			b:    []second{{at: 0, n: 1000, took: time.Millisecond}, {at: 1, n: 100, took: 40 * time.Millisecond}},
			from: 0, to: 1,
			wantA: 100, wantB: 100,
			wantP99A: latencyBounds[bucketOf(40*time.Millisecond)], wantP99B: latencyBounds[bucketOf(40*time.Millisecond)],
		},
		{
			desc: "no second in common",
			a:    []second{{at: 2, n: 100, took: time.Millisecond}},
			b:    []second{{at: 0, n: 100, took: time.Millisecond}, {at: 1, n: 100, took: time.Millisecond}},
			from: 0, to: 2,
		},
		{
			desc: "seconds outside from..to are left out",
			a:    []second{{at: 0, n: 5, took: time.Millisecond}, {at: 1, n: 7, took: time.Millisecond}, {at: 2, n: 9, took: time.Millisecond}},
			b:    []second{{at: 0, n: 5, took: time.Millisecond}, {at: 1, n: 7, took: time.Millisecond}, {at: 2, n: 9, took: time.Millisecond}},
			from: 1, to: 1,
			wantA: 7, wantB: 7,
			wantP99A: latencyBounds[bucketOf(time.Millisecond)], wantP99B: latencyBounds[bucketOf(time.Millisecond)],
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			var a, b Stats
			recordSeconds(&a, t0, test.a)
			recordSeconds(&b, t0, test.b)

			wa, wb := Paired(&a, &b, t0.Add(time.Duration(test.from)*time.Second), t0.Add(time.Duration(test.to)*time.Second))

			assert.Equal(t, test.wantA, wa.Requests)
			assert.Equal(t, test.wantB, wb.Requests)
			assert.Equal(t, test.wantErrA, wa.Errors)
			assert.Equal(t, test.wantErrB, wb.Errors)
			assert.Equal(t, test.wantP99A, wa.P99)
			assert.Equal(t, test.wantP99B, wb.P99)
		})
	}
}

// bucketOf is the latency bucket record puts took in.
func bucketOf(took time.Duration) int {
	i := 0
	for i < len(latencyBounds) && took > latencyBounds[i] {
		i++
	}
	return i
}

func TestPaired_SlotReusedForALaterSecondIsNotPaired(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	var a, b Stats
	a.Record(t0, false, false, time.Millisecond)
	// b's slot for that second holds a second statsSlots later.
	b.Record(t0.Add(statsSlots*time.Second), false, false, time.Millisecond)

	wa, wb := Paired(&a, &b, t0, t0)

	assert.Zero(t, wa.Requests)
	assert.Zero(t, wb.Requests)
}
