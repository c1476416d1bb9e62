package main

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const ms = int64(time.Millisecond)

func TestAnalyzeSwitch_ClassifiesByStartAndEnd(t *testing.T) {
	t.Parallel()
	// Switch 1 to green: sent at 100 ms, returned at 101 ms. Switch 2 to
	// blue: sent at 200 ms, returned at 201 ms.
	calls := []switchRecord{
		{sent: 100 * ms, returned: 101 * ms, ok: true, from: "blue", to: "green", swapNs: 150, generation: 2},
		{sent: 200 * ms, returned: 201 * ms, ok: true, from: "green", to: "blue", swapNs: 250, generation: 3},
	}
	testCases := []struct {
		desc         string
		req          reqRecord
		wrong        int
		overlap      int
		failed       int
		afterSwitch  int
		headerMisfit int
	}{
		{desc: "before any switch, blue is right", req: rr(10, 11, "blue")},
		{desc: "before any switch, green is wrong", req: rr(10, 11, "green"), wrong: 1},
		{desc: "started during switch 1's call, old color is right", req: rr(100, 102, "blue"), overlap: 1},
		{desc: "started during switch 1's call, new color is right", req: rr(100, 102, "green"), overlap: 1, afterSwitch: 0},
		{desc: "started after switch 1 returned, old color is wrong", req: rr(120, 121, "blue"), wrong: 1, afterSwitch: 1},
		{desc: "started after switch 1 returned, new color is right", req: rr(120, 121, "green"), afterSwitch: 1},
		{desc: "ended after switch 2 was sent, its color is right", req: rr(199, 203, "blue"), overlap: 1},
		{desc: "steady after switch 1", req: rr(170, 171, "green")},
		{desc: "failed requests are counted and not classified", req: reqRecord{start: 120 * ms, end: 121 * ms, err: "boom"}, failed: 1},
		{desc: "gateway header disagreeing with the upstream is counted", req: reqRecord{start: 170 * ms, end: 171 * ms, ok: true, color: "green", gwColor: "blue"}, headerMisfit: 1},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			res := analyzeSwitch([]reqRecord{test.req}, calls, "blue")
			assert.Equal(t, test.wrong, res.WrongColor, "wrong color")
			assert.Equal(t, test.overlap, res.InFlightSwitch, "overlapping a switch call")
			assert.Equal(t, test.failed, res.Failed, "failed")
			assert.Equal(t, test.afterSwitch, res.AfterSwitch.N, "in the window after a switch")
			assert.Equal(t, test.headerMisfit, res.HeaderMismatch, "header mismatch")
			assert.Equal(t, 2, res.Switches)
			assert.InDelta(t, 250, res.Swap.Max, 0)
		})
	}
}

func TestAnalyzeSwitch_FailedSwitchCallChangesNothing(t *testing.T) {
	t.Parallel()
	calls := []switchRecord{{sent: 100 * ms, returned: 101 * ms, err: "409 Conflict"}}
	res := analyzeSwitch([]reqRecord{rr(120, 121, "blue")}, calls, "blue")
	assert.Equal(t, 0, res.WrongColor)
	assert.Equal(t, 1, res.SwitchFailures)
	assert.Equal(t, "409 Conflict", res.FirstSwitchErr)
}

// rr is a successful request from startMs to endMs answered by color.
func rr(startMs, endMs int64, color string) reqRecord {
	return reqRecord{start: startMs * ms, end: endMs * ms, ok: true, color: color, gwColor: color}
}

func TestPercentiles_NearestRank(t *testing.T) {
	t.Parallel()
	var lat []time.Duration
	for i := 1000; i >= 1; i-- {
		lat = append(lat, time.Duration(i)*time.Microsecond)
	}
	p := percentiles(lat)
	assert.Equal(t, 1000, p.N)
	assert.InDelta(t, 500, p.P50, 0)
	assert.InDelta(t, 990, p.P99, 0)
	assert.InDelta(t, 999, p.P999, 0)
	assert.InDelta(t, 1000, p.Max, 0)
	assert.Equal(t, Percentiles{}, percentiles(nil))
}

func TestMedian(t *testing.T) {
	t.Parallel()
	assert.InDelta(t, 2, median([]float64{3, 1, 2}), 0)
	assert.InDelta(t, 2.5, median([]float64{4, 1, 2, 3}), 0)
	assert.InDelta(t, 0, median(nil), 0)
}

func TestParseStat_CommandWithSpacesAndParens(t *testing.T) {
	t.Parallel()
	line := []byte("4242 (nginx: worker (x) y) S 4200 4200 4200 0 -1 4194624 100 0 0 0 17 5 0 0 20 0 1 0 123 456 789")
	pgrp, ticks, ok := parseStat(line)
	require.True(t, ok)
	assert.Equal(t, 4200, pgrp)
	assert.Equal(t, int64(22), ticks)
	_, _, ok = parseStat([]byte("garbage"))
	assert.False(t, ok)
}

func TestSummarize_RatiosToDirectAndBestPeer(t *testing.T) {
	t.Parallel()
	round := func(rps, p50, p99, cpu float64) []Round {
		return []Round{{PeakRPS: rps, Open: Percentiles{P50: p50, P99: p99, P999: p99}, CPUMicros: cpu}}
	}
	res := []*TargetResult{
		{Name: targetDirect, Rounds: round(1000, 100, 200, 5), MemoryMiB: 10},
		{Name: targetSwitchyard, Rounds: round(500, 150, 300, 20), MemoryMiB: 20},
		{Name: targetNginx, Rounds: round(400, 200, 250, 10), MemoryMiB: 5},
		{Name: targetCaddy, Rounds: round(250, 300, 900, 40), MemoryMiB: 40},
	}
	summarize(res)
	sy := res[1]
	assert.InDelta(t, 0.5, float64(sy.VsDirect.RPS), 1e-9)
	assert.InDelta(t, 1.5, float64(sy.VsDirect.P50), 1e-9)
	assert.InDelta(t, 50, sy.Added.P50, 1e-9)
	// Best peer: nginx on every metric; its added P50 is 100, P99 50.
	assert.InDelta(t, 500.0/400, float64(sy.VsBestPeer.RPS), 1e-9)
	assert.InDelta(t, 0.5, float64(sy.VsBestPeer.P50), 1e-9)
	assert.InDelta(t, 2, float64(sy.VsBestPeer.P99), 1e-9)
	assert.InDelta(t, 2, float64(sy.VsBestPeer.CPU), 1e-9)
	assert.InDelta(t, 4, float64(sy.VsBestPeer.Memory), 1e-9)
	assert.True(t, math.IsNaN(float64(res[0].VsBestPeer.RPS)) || res[0].VsBestPeer.Reference == "")

	b, err := Num(math.NaN()).MarshalJSON()
	require.NoError(t, err)
	assert.Equal(t, "null", string(b))
}

func TestMarkdownAndPlot_Render(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	calls := []switchRecord{
		{sent: 100 * ms, returned: 101 * ms, ok: true, from: "blue", to: "green", swapNs: 150, generation: 2},
		{sent: 200 * ms, returned: 201 * ms, ok: true, from: "green", to: "blue", swapNs: 250, generation: 3},
	}
	var reqs []reqRecord
	color := func(start int64) string {
		switch {
		case start < 101*ms, start >= 201*ms:
			return "blue"
		}
		return "green"
	}
	for i := int64(0); i < 300; i++ {
		s := i * ms
		reqs = append(reqs, reqRecord{start: s, end: s + 200*int64(time.Microsecond) + i%7*int64(time.Microsecond), ok: true, color: color(s), gwColor: color(s)})
	}
	res := analyzeSwitch(reqs, calls, "blue")
	require.Equal(t, 0, res.WrongColor)
	opts := &options{switchEvery: 100 * time.Millisecond, switchRate: 1000}
	path := filepath.Join(dir, "switch.png")
	require.NoError(t, plotSwitch(path, reqs, calls, res, opts))
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Greater(t, fi.Size(), int64(1000))

	md := markdown(&results{Command: "go run ./bench/cmd/bench -quick", Switch: &res,
		Compare: []TargetResult{{Name: targetDirect}, {Name: targetSwitchyard, VsDirect: Ratios{RPS: Num(math.NaN())}}}})
	assert.Contains(t, md, "| **failed requests** (must be 0) | **0** |")
	assert.True(t, strings.Contains(md, "| switchyard |"))
}
