package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os/exec"
	"slices"
)

// Round is one target's measurements in one round of the comparison.
type Round struct {
	Round int `json:"round"`
	// Open is the total latency of the open-loop run at Settings.Rate.
	Open       Percentiles `json:"open"`
	OpenErrors int         `json:"open_errors"`
	// OpenCPUMicros is the proxy's CPU per request at the fixed rate.
	OpenCPUMicros float64 `json:"open_cpu_us_per_req"`
	// PeakRPS is what the closed loop completed per second.
	PeakRPS      float64     `json:"peak_rps"`
	Closed       Percentiles `json:"closed"`
	ClosedErrors int64       `json:"closed_errors"`
	// CPUMicros is the proxy's CPU per request in the closed loop.
	CPUMicros float64 `json:"cpu_us_per_req"`
	// UpstreamConns counts connections the upstream accepted during this
	// target's open and closed runs.
	UpstreamConns int64 `json:"upstream_conns"`
	// OtherCores is how many CPUs processes outside the benchmark kept
	// busy, on average, in the noisier of the two windows.
	OtherCores float64 `json:"other_cores"`
	// GenBusy is the share of the generator side's CPUs (upstream and load
	// generators, when pinned) that was busy in the closed loop, softirq
	// included: near 1, the peak is the generator's, not the proxy's.
	GenBusy  float64 `json:"generator_cpus_busy,omitempty"`
	FirstErr string  `json:"first_error,omitempty"`
}

// Ratios compare a target with direct and with the best peer.
type Ratios struct {
	RPS       Num    `json:"peak_rps"`
	P50       Num    `json:"p50"`
	P99       Num    `json:"p99"`
	P999      Num    `json:"p999"`
	CPU       Num    `json:"cpu_per_req"`
	Memory    Num    `json:"memory"`
	OpenCPU   Num    `json:"open_cpu_per_req"`
	Reference string `json:"reference"`
}

// Num is a ratio; NaN (not applicable) is written to JSON as null.
type Num float64

// MarshalJSON writes NaN and infinities as null.
func (n Num) MarshalJSON() ([]byte, error) {
	f := float64(n)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return json.Marshal(f)
}

// Comparison is one table of the comparison: every target with the same
// workers, in interleaved rounds.
type Comparison struct {
	Workers int `json:"workers"`
	// Pinned says whether the proxies ran on ProxyCPUs and the upstream
	// stand-in and the load generators on OtherCPUs (Cpus_allowed_list
	// notation); unpinned, everything shares every CPU.
	Pinned    bool   `json:"pinned"`
	ProxyCPUs string `json:"proxy_cpus,omitempty"`
	OtherCPUs string `json:"other_cpus,omitempty"`
	Rounds    int    `json:"rounds"`
	// Generator made the closed loop: "wrk" or "fasthttp" (in process).
	Generator string         `json:"closed_loop_generator"`
	Targets   []TargetResult `json:"targets"`
	// Headroom is direct's peak req/s over the fastest proxy's: how far
	// the generator and the upstream could go beyond what any proxy did.
	// Near 1, the proxies' peaks are the generator's.
	Headroom Num `json:"direct_over_fastest_proxy"`
	// Background is what unrelated processes used in this table's windows.
	Background *Background `json:"background,omitempty"`
}

// TargetResult is one target of the comparison: per-round numbers and
// their medians.
type TargetResult struct {
	Name    string  `json:"name"`
	Version string  `json:"version,omitempty"`
	Rounds  []Round `json:"rounds"`
	// CPUs is the Cpus_allowed_list of the target's threads after the
	// comparison ("0" when pinned to CPU 0); for direct, the upstream's.
	CPUs string `json:"cpus,omitempty"`

	PeakRPS float64 `json:"peak_rps"`
	// Latency is the median over rounds of each percentile.
	Latency Percentiles `json:"latency"`
	// Added is the median over rounds of (this target − direct in the
	// same round), per percentile: the latency the proxy adds.
	Added         Percentiles `json:"added"`
	CPUMicros     float64     `json:"cpu_us_per_req"`
	OpenCPUMicros float64     `json:"open_cpu_us_per_req"`
	// GenBusy is the median of the rounds' GenBusy.
	GenBusy float64 `json:"generator_cpus_busy,omitempty"`
	// MemoryMiB is the peak resident set (VmHWM) of the process group at
	// the end of the comparison; for direct, the upstream stand-in's.
	MemoryMiB     float64 `json:"memory_mib"`
	UpstreamConns float64 `json:"upstream_conns_per_round"`
	Errors        int64   `json:"errors"`

	// VsDirect: peak req/s, total latency, CPU and memory divided by
	// direct's (CPU and memory of direct are the upstream stand-in's).
	VsDirect Ratios `json:"vs_direct"`
	// VsBestPeer: divided by the best of nginx, HAProxy and Caddy in this
	// run (highest req/s; lowest added latency, CPU, memory).
	VsBestPeer Ratios `json:"vs_best_peer"`
}

// compare measures every target with l's workers and pinning in
// interleaved rounds.
func (h *harness) compare(blue, green *upstream, l layout, rounds int) (*Comparison, error) {
	o := h.opts
	leave, err := h.enter(l, blue, green)
	if err != nil {
		return nil, err
	}
	defer leave()
	h.logf("comparison: %s; closed loop by %s", l, h.generator())
	var targets []*target
	for _, name := range o.targets {
		var t *target
		var err error
		switch name {
		case targetDirect:
			t = &target{name: targetDirect, addr: blue.addrs[0]}
		case targetSwitchyard:
			t, err = h.startSwitchyard(l, fmt.Sprintf("switchyard-w%d", l.workers), blue.addrs[:1], green.addrs[:1], h.opts.healthInterval)
		default:
			if _, lerr := exec.LookPath(peerBinary[name]); lerr != nil {
				if l.workers == o.workers[0] {
					h.note("%s is not installed: skipped (make bench-deps installs nginx, haproxy, caddy and wrk)", name)
				}
				continue
			}
			t, err = h.startPeer(l, name, blue.addrs[0])
		}
		if err != nil {
			return nil, fmt.Errorf("starting %s: %w", name, err)
		}
		targets = append(targets, t)
		h.logf("%s listening on %s", name, t.addr)
	}
	defer func() {
		for _, t := range targets {
			h.stopProc(t.proc)
		}
	}()
	loaders := make([]*openLoader, len(targets))
	for i := range loaders {
		loaders[i] = newOpenLoader()
		defer loaders[i].close()
	}
	res := make([]*TargetResult, len(targets))
	for i, t := range targets {
		res[i] = &TargetResult{Name: t.name, Version: h.res.Machine.Versions[t.name]}
	}
	for round := 1; round <= rounds; round++ {
		for i, t := range targets {
			if err := h.ctx.Err(); err != nil {
				return nil, err
			}
			pgid := blue.proc.pgid
			if t.proc != nil {
				pgid = t.proc.pgid
			}
			r := h.measure(t, loaders[i], pgid, blue, l.others)
			r.Round = round
			res[i].Rounds = append(res[i].Rounds, r)
			h.logf("%dw round %d/%d %-10s open P50 %6.0fµs P99 %6.0fµs P99.9 %6.0fµs | closed %7.0f req/s, CPU %5.1fµs/req | errors %d/%d, upstream dials %d, other load %.2f CPUs",
				l.workers, round, rounds, t.name, r.Open.P50, r.Open.P99, r.Open.P999, r.PeakRPS, r.CPUMicros,
				r.OpenErrors, r.ClosedErrors, r.UpstreamConns, r.OtherCores)
			if l.pinned() {
				h.logf("%dw round %d/%d %-10s generator side (CPU %s) %.0f%% busy in the closed loop", l.workers, round, rounds, t.name, cpuList(l.others), 100*r.GenBusy)
			}
		}
	}
	for i, t := range targets {
		pgid := blue.proc.pgid
		if t.proc != nil {
			pgid = t.proc.pgid
		}
		if u, err := groupUsage(pgid); err == nil {
			res[i].MemoryMiB = float64(u.HWMKiB) / 1024
		}
		res[i].CPUs = groupCPUs(pgid)
	}
	summarize(res)
	c := &Comparison{Workers: l.workers, Pinned: l.pinned(), Rounds: rounds, Generator: h.generator()}
	if l.pinned() {
		c.ProxyCPUs, c.OtherCPUs = cpuList(l.proxy), cpuList(l.others)
	}
	c.Background = background(res)
	c.Headroom = headroom(res)
	for _, r := range res {
		c.Targets = append(c.Targets, *r)
		if r.Errors > 0 {
			h.note("%d workers: %s: %d failed requests in the comparison (first: %s)", l.workers, r.Name, r.Errors, firstErr(r.Rounds))
		}
	}
	return c, nil
}

// headroom is direct's peak req/s divided by the fastest proxy's.
func headroom(res []*TargetResult) Num {
	var direct, fastest float64
	for _, r := range res {
		if r.Name == targetDirect {
			direct = r.PeakRPS
		} else {
			fastest = max(fastest, r.PeakRPS)
		}
	}
	if direct == 0 {
		return Num(math.NaN())
	}
	return ratio(direct, fastest)
}

// background summarizes the other_cores of every round of every target.
func background(res []*TargetResult) *Background {
	var other []float64
	for _, r := range res {
		for _, rd := range r.Rounds {
			other = append(other, rd.OtherCores)
		}
	}
	return &Background{MedianCores: median(other), MaxCores: slices.Max(append(other, 0))}
}

func firstErr(rs []Round) string {
	for _, r := range rs {
		if r.FirstErr != "" {
			return r.FirstErr
		}
	}
	return ""
}

// measure runs the open loop, then the closed loop, against one target.
// pgid is the proxy's process group; for direct, the upstream's. gen are
// the generator side's CPUs when pinned, whose busy share in the closed
// loop is recorded.
func (h *harness) measure(t *target, ol *openLoader, pgid int, up *upstream, gen []int) Round {
	o := h.opts
	var r Round
	groups := []int{pgid}
	if pgid != up.proc.pgid {
		groups = append(groups, up.proc.pgid)
	}
	h.waitQuiet()
	before, _ := up.stats()
	ol.attack(h.ctx, t.addr, o.rate, o.warm, nil)
	w := openCPU(groups...)
	or := ol.attack(h.ctx, t.addr, o.rate, o.openDur, nil)
	secs, other := w.close()
	if or.OK > 0 {
		r.OpenCPUMicros = secs[0] * 1e6 / float64(or.OK)
	}
	r.OtherCores = other
	r.Open = percentiles(or.Lat)
	r.OpenErrors = or.Errors
	r.FirstErr = or.FirstErr

	h.waitQuiet()
	var cw *cpuWindow
	var cpu float64
	var busy0, total0 int64
	cr := h.closedLoop(t.addr, o.conns, o.closedDur, func(open bool) {
		if open {
			cw = openCPU(groups...)
			busy0, total0 = cpuTimes(gen)
			return
		}
		secs, other := cw.close()
		cpu = secs[0]
		r.OtherCores = max(r.OtherCores, other)
		if busy, total := cpuTimes(gen); total > total0 {
			r.GenBusy = float64(busy-busy0) / float64(total-total0)
		}
	})
	if cr.Elapsed > 0 {
		r.PeakRPS = float64(cr.Requests) / cr.Elapsed.Seconds()
	}
	r.Closed = cr.Lat
	r.ClosedErrors = cr.Errors
	if cr.Requests > 0 {
		r.CPUMicros = cpu * 1e6 / float64(cr.Requests)
	}
	if r.FirstErr == "" {
		r.FirstErr = cr.FirstErr
	}
	if after, err := up.stats(); err == nil {
		r.UpstreamConns = after.Conns - before.Conns
	}
	return r
}

// summarize fills in medians and ratios.
func summarize(res []*TargetResult) {
	var direct *TargetResult
	for _, r := range res {
		if r.Name == targetDirect {
			direct = r
		}
	}
	for _, r := range res {
		var rps, p50, p99, p999, cpu, ocpu, conns, gen, a50, a99, a999 []float64
		for i, rd := range r.Rounds {
			rps = append(rps, rd.PeakRPS)
			gen = append(gen, rd.GenBusy)
			p50 = append(p50, rd.Open.P50)
			p99 = append(p99, rd.Open.P99)
			p999 = append(p999, rd.Open.P999)
			cpu = append(cpu, rd.CPUMicros)
			ocpu = append(ocpu, rd.OpenCPUMicros)
			conns = append(conns, float64(rd.UpstreamConns))
			r.Errors += int64(rd.OpenErrors) + rd.ClosedErrors
			if direct != nil && i < len(direct.Rounds) {
				d := direct.Rounds[i].Open
				a50 = append(a50, rd.Open.P50-d.P50)
				a99 = append(a99, rd.Open.P99-d.P99)
				a999 = append(a999, rd.Open.P999-d.P999)
			}
		}
		r.PeakRPS = median(rps)
		r.Latency = Percentiles{N: len(r.Rounds), P50: median(p50), P99: median(p99), P999: median(p999)}
		if len(a50) > 0 {
			r.Added = Percentiles{N: len(a50), P50: median(a50), P99: median(a99), P999: median(a999)}
		}
		r.CPUMicros = median(cpu)
		r.OpenCPUMicros = median(ocpu)
		r.GenBusy = median(gen)
		r.UpstreamConns = median(conns)
	}
	best := bestPeer(res)
	for _, r := range res {
		if direct != nil {
			r.VsDirect = Ratios{Reference: targetDirect, RPS: ratio(r.PeakRPS, direct.PeakRPS),
				P50: ratio(r.Latency.P50, direct.Latency.P50), P99: ratio(r.Latency.P99, direct.Latency.P99),
				P999: ratio(r.Latency.P999, direct.Latency.P999), CPU: ratio(r.CPUMicros, direct.CPUMicros),
				OpenCPU: ratio(r.OpenCPUMicros, direct.OpenCPUMicros), Memory: ratio(r.MemoryMiB, direct.MemoryMiB)}
		}
		if best.names != "" && r.Name != targetDirect {
			r.VsBestPeer = Ratios{Reference: "best of " + best.names, RPS: ratio(r.PeakRPS, best.RPS),
				P50: ratio(r.Added.P50, best.P50), P99: ratio(r.Added.P99, best.P99), P999: ratio(r.Added.P999, best.P999),
				CPU: ratio(r.CPUMicros, best.CPU), OpenCPU: ratio(r.OpenCPUMicros, best.OpenCPU), Memory: ratio(r.MemoryMiB, best.Memory)}
		}
	}
}

// peerBest holds, per metric, the best value among the peers measured.
type peerBest struct {
	names                                     string
	RPS, P50, P99, P999, CPU, OpenCPU, Memory float64
}

// bestPeer returns the best peer value of each metric: the highest
// req/s, the lowest added latency, CPU and memory.
func bestPeer(res []*TargetResult) peerBest {
	b := peerBest{P50: math.Inf(1), P99: math.Inf(1), P999: math.Inf(1), CPU: math.Inf(1), OpenCPU: math.Inf(1), Memory: math.Inf(1)}
	for _, r := range res {
		if !isPeer(r.Name) {
			continue
		}
		if b.names != "" {
			b.names += ", "
		}
		b.names += r.Name
		b.RPS = math.Max(b.RPS, r.PeakRPS)
		b.P50 = math.Min(b.P50, r.Added.P50)
		b.P99 = math.Min(b.P99, r.Added.P99)
		b.P999 = math.Min(b.P999, r.Added.P999)
		b.CPU = math.Min(b.CPU, r.CPUMicros)
		b.OpenCPU = math.Min(b.OpenCPU, r.OpenCPUMicros)
		b.Memory = math.Min(b.Memory, r.MemoryMiB)
	}
	return b
}

// ratio is a/b, or NaN when b is not a positive number (a ratio to an
// added latency at or below zero means nothing).
func ratio(a, b float64) Num {
	if !(b > 0) || math.IsInf(b, 0) || math.IsNaN(a) {
		return Num(math.NaN())
	}
	return Num(a / b)
}
