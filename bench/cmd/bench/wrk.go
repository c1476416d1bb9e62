package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"time"
)

// closedResult is one closed-loop run, whichever generator made it.
type closedResult struct {
	// Requests counts successes completed in the measured window.
	Requests int64
	Errors   int64
	Elapsed  time.Duration
	Lat      Percentiles
	FirstErr string
}

// Generators of the closed loop.
const (
	genWrk      = "wrk"
	genFasthttp = "fasthttp"
)

// closedLoop runs the closed loop of the comparison and of the backend
// sweep: conns connections back to back against addr for dur after a
// warm-up, with window called around the measured part. It uses wrk when
// it is installed (one thread: far lighter than the Go generator, which
// matters when the generator has one CPU), the in-process fasthttp
// generator otherwise.
func (h *harness) closedLoop(addr string, conns int, dur time.Duration, window func(open bool)) closedResult {
	if h.wrk == "" {
		cr := connLoad{addr: addr, conns: conns, warm: h.opts.warm, dur: dur, window: window}.run(h.ctx)
		return closedResult{Requests: cr.Requests, Errors: cr.Errors + cr.RampErrors, Elapsed: cr.Elapsed,
			Lat: percentiles(cr.Lat), FirstErr: cr.FirstErr}
	}
	// A separate warm-up run: wrk has none of its own. Its connections
	// close when it exits; the proxy's upstream connections stay warm.
	_, _ = h.runWrk(addr, conns, h.opts.warm)
	window(true)
	res, err := h.runWrk(addr, conns, dur)
	window(false)
	if err != nil {
		return closedResult{Errors: 1, FirstErr: err.Error()}
	}
	cr := closedResult{Requests: res.Requests - res.Non2xx, Errors: res.Non2xx + res.SocketErrors,
		Elapsed: res.elapsed(), Lat: res.Lat}
	if cr.Errors > 0 {
		cr.FirstErr = fmt.Sprintf("wrk: %d non-2xx answers, %d socket errors", res.Non2xx, res.SocketErrors)
	}
	return cr
}

// wrkScript makes wrk send the benchmark's request and print its latency
// percentiles (µs) in a line parseWrk reads.
const wrkScript = `wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
done = function(summary, latency, requests)
  io.write(string.format("bench-latency-us p50=%%d p99=%%d p999=%%d max=%%d\n",
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
`

// findWrk returns the wrk executable, or "" when it is not installed, and
// writes its script into dir.
func findWrk(dir string) (bin, script string, err error) {
	bin, lerr := exec.LookPath("wrk")
	if lerr != nil {
		return "", "", nil
	}
	script = filepath.Join(dir, "predict.lua")
	if err := os.WriteFile(script, fmt.Appendf(nil, wrkScript, predictBody), 0o644); err != nil {
		return "", "", err
	}
	return bin, script, nil
}

// runWrk runs wrk with one thread and conns connections for dur (whole
// seconds, at least 1: wrk takes no fractions).
func (h *harness) runWrk(addr string, conns int, dur time.Duration) (wrkResult, error) {
	secs := max(1, int(math.Ceil(dur.Seconds())))
	ctx, cancel := context.WithTimeout(h.ctx, time.Duration(secs)*time.Second+time.Minute)
	defer cancel()
	out, err := commandOutput(ctx, h.dir, h.wrk, "-t1", "-c"+strconv.Itoa(conns), "-d"+strconv.Itoa(secs)+"s",
		"--timeout", "10s", "-s", h.wrkScript, "http://"+addr+predictPath)
	if err != nil {
		return wrkResult{}, fmt.Errorf("wrk: %w\n%s", err, out)
	}
	return parseWrk(out)
}

// elapsed is the run's length to the microsecond, from the request count
// and the rate wrk computed over its own clock, rather than the rounded
// "in 5.00s".
func (r wrkResult) elapsed() time.Duration {
	if r.RPS > 0 && r.Requests > 0 {
		return time.Duration(float64(r.Requests) / r.RPS * float64(time.Second))
	}
	return time.Duration(r.Seconds * float64(time.Second))
}

// wrkResult is what parseWrk reads from wrk's output.
type wrkResult struct {
	Requests int64
	// Seconds is the run's length as wrk printed it ("in 5.00s").
	Seconds      float64
	RPS          float64
	Non2xx       int64
	SocketErrors int64
	Lat          Percentiles
}

var (
	wrkCountRe  = regexp.MustCompile(`(?m)^\s*(\d+) requests in ([0-9.]+)(us|ms|s|m|h)\b`)
	wrkRPSRe    = regexp.MustCompile(`(?m)^Requests/sec:\s*([0-9.]+)`)
	wrkNon2xxRe = regexp.MustCompile(`(?m)^\s*Non-2xx or 3xx responses:\s*(\d+)`)
	wrkSockRe   = regexp.MustCompile(`(?m)^\s*Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkLatRe    = regexp.MustCompile(`(?m)^bench-latency-us p50=(\d+) p99=(\d+) p999=(\d+) max=(\d+)`)
)

// errWrkOutput is returned for output without the request count or rate.
var errWrkOutput = errors.New("bench: unexpected wrk output")

// parseWrk reads the request count, duration, rate and errors of wrk 4's
// standard output and the latency line of wrkScript.
func parseWrk(out string) (wrkResult, error) {
	var r wrkResult
	m := wrkCountRe.FindStringSubmatch(out)
	rps := wrkRPSRe.FindStringSubmatch(out)
	if m == nil || rps == nil {
		return r, fmt.Errorf("%w: no \"N requests in T\" or \"Requests/sec\" line in %q", errWrkOutput, out)
	}
	r.Requests, _ = strconv.ParseInt(m[1], 10, 64)
	v, _ := strconv.ParseFloat(m[2], 64)
	r.Seconds = v * map[string]float64{"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}[m[3]]
	r.RPS, _ = strconv.ParseFloat(rps[1], 64)
	if m := wrkNon2xxRe.FindStringSubmatch(out); m != nil {
		r.Non2xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := wrkSockRe.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.SocketErrors += n
		}
	}
	if m := wrkLatRe.FindStringSubmatch(out); m != nil {
		var v [4]float64
		for i, s := range m[1:] {
			v[i], _ = strconv.ParseFloat(s, 64)
		}
		r.Lat = Percentiles{N: int(r.Requests), P50: v[0], P99: v[1], P999: v[2], Max: v[3]}
	}
	return r, nil
}

// generator names the closed-loop generator in use.
func (h *harness) generator() string {
	if h.wrk != "" {
		return genWrk
	}
	return genFasthttp
}
