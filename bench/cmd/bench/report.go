package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Settings are the parameters of a run, as measured.
type Settings struct {
	// Workers is the first of WorkerCounts: the comparison table the
	// targets are checked on.
	Workers      int   `json:"workers"`
	WorkerCounts []int `json:"worker_counts"`
	// Pin: proxies pinned apart from the stand-ins and generators when a
	// table has fewer workers than CPUs (the CPUs this process may use).
	Pin  bool   `json:"pin"`
	CPUs string `json:"cpus"`
	// Generator is the closed-loop generator: "wrk" or "fasthttp".
	Generator string `json:"closed_loop_generator"`
	// ScaleWorkers is Switchyard's workers in the scaling run and the
	// probe-cost and idle-connections points.
	ScaleWorkers       int     `json:"scale_workers"`
	ProbeBackends      int     `json:"probe_backends_per_pool"`
	ProbeWindowSeconds float64 `json:"probe_window_s"`
	IdleConns          int     `json:"idle_conns"`
	// MaxConnsPerBackend is Switchyard's proxy.max_conns_per_backend in
	// this run, MaxConnsSource where it came from.
	MaxConnsPerBackend int     `json:"max_conns_per_backend"`
	MaxConnsSource     string  `json:"max_conns_per_backend_source"`
	Rounds             int     `json:"rounds"`
	OtherRounds        int     `json:"other_rounds"`
	Rate               int     `json:"rate"`
	OpenSeconds        float64 `json:"open_s"`
	ClosedSeconds      float64 `json:"closed_s"`
	WarmSeconds        float64 `json:"warm_s"`
	Conns              int     `json:"conns"`
	ServiceTimeMicros  float64 `json:"service_time_us"`
	SwitchRate         int     `json:"switch_rate"`
	SwitchEveryMillis  float64 `json:"switch_every_ms"`
	SwitchSeconds      float64 `json:"switch_s"`
	ScaleBackends      []int   `json:"scale_backends"`
	ScaleConns         []int   `json:"scale_conns"`
	ScaleSeconds       float64 `json:"scale_s"`
	ScaleRate          int     `json:"scale_rate"`
	NoFile             uint64  `json:"rlimit_nofile"`
	GOMAXPROCS         int     `json:"harness_gomaxprocs"`
	HealthInterval     string  `json:"health_interval,omitempty"`
	QuietWaitSeconds   float64 `json:"quiet_wait_s"`
	QuietBelowCores    float64 `json:"quiet_below_cores"`
}

// results is everything latest.json holds.
type results struct {
	Command string  `json:"command"`
	Started string  `json:"started"`
	Seconds float64 `json:"seconds"`
	// QuietWaitSeconds is the time spent waiting for a quiet machine.
	QuietWaitSeconds float64  `json:"quiet_wait_seconds"`
	Quick            bool     `json:"quick"`
	Machine          Machine  `json:"machine"`
	Settings         Settings `json:"settings"`
	// Compare repeats Comparisons[0].Targets, the table the targets are
	// checked on, in the shape earlier runs wrote.
	Compare []TargetResult `json:"compare,omitempty"`
	// Comparisons holds one table per -workers count.
	Comparisons []Comparison `json:"comparisons,omitempty"`
	Idle        *IdleConns   `json:"idle,omitempty"`
	Switch      *SwitchTest  `json:"switch,omitempty"`
	Scaling     *Scaling     `json:"scaling,omitempty"`
	ProbeCost   *ProbeCost   `json:"probe_cost,omitempty"`
	// Targets are the targets of issue 15, checked on this run.
	Targets []Check `json:"targets,omitempty"`
	// Background is what unrelated processes used during the first
	// comparison table.
	Background *Background `json:"background,omitempty"`
	// LoadAvg is /proc/loadavg at the start and at the end of the run.
	LoadAvg []string `json:"loadavg"`
	Notes   []string `json:"notes,omitempty"`
}

// Background is the CPU that processes outside the benchmark used during
// the comparison's measurement windows (machine busy time less the
// proxies', the upstreams' and the load generator's).
type Background struct {
	MedianCores float64 `json:"median_cores"`
	MaxCores    float64 `json:"max_cores"`
}

func (h *harness) write() error {
	if err := os.MkdirAll(h.opts.out, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(h.res, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding results: %w", err)
	}
	if err := os.WriteFile(filepath.Join(h.opts.out, "latest.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(h.opts.out, "latest.md"), []byte(markdown(h.res)), 0o644)
}

// f formats v with prec decimals; "–" when not applicable.
func f(v float64, prec int) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "–"
	}
	return fmt.Sprintf("%.*f", prec, v)
}

// x formats a ratio as "1.23×".
func x(v Num) string {
	if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
		return "–"
	}
	return fmt.Sprintf("%.2f×", float64(v))
}

func markdown(r *results) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	s := r.Settings
	p("# Switchyard benchmark results\n\n")
	p("Made by `%s` on %s in %.0f s", r.Command, r.Started, r.Seconds)
	if r.Quick {
		p(" (**-quick smoke run**: too short for conclusions)")
	}
	p(".\n\n")
	m := r.Machine
	p("Machine: %d CPUs (%s), %s memory, Linux %s, %s. Gateway built from %s.\n\n", m.NumCPU, m.CPUModel, m.Memory, m.Kernel, m.GoVersion, m.Tree)
	var vs []string
	for _, k := range []string{targetSwitchyard, targetNginx, targetHAProxy, targetCaddy, "github.com/tsenart/vegeta/v12", "github.com/valyala/fasthttp"} {
		if v := m.Versions[k]; v != "" {
			vs = append(vs, fmt.Sprintf("%s: `%s`", k, v))
		}
	}
	p("Versions: %s.\n\n", strings.Join(vs, "; "))
	if len(r.LoadAvg) > 0 {
		p("Load average (/proc/loadavg) at start and end: %s.", strings.Join(r.LoadAvg, " → "))
	}
	if bg := r.Background; bg != nil {
		p(" Processes outside the benchmark kept %.2f CPUs busy in the median measurement window of the comparison (max %.2f).", bg.MedianCores, bg.MaxCores)
	}
	if s.QuietWaitSeconds > 0 {
		p(" Each measurement waited up to %.0f s for them to use under %.2f CPUs (%.0f s of waiting in all).", s.QuietWaitSeconds, s.QuietBelowCores, r.QuietWaitSeconds)
	}
	p("\n\n")

	tables := r.Comparisons
	if len(tables) == 0 && len(r.Compare) > 0 {
		tables = []Comparison{{Workers: s.Workers, Rounds: s.Rounds, Targets: r.Compare, Headroom: Num(math.NaN())}}
	}
	for i, c := range tables {
		compareMarkdown(&b, c, i == 0 && len(tables) > 1, s, m)
	}
	if id := r.Idle; id != nil {
		idleMarkdown(&b, id)
	}

	if sw := r.Switch; sw != nil {
		p("## Switch under load\n\n")
		p("Open loop at %d req/s through Switchyard for %.0f s while `POST /admin/switch {\"to\":\"toggle\"}` runs every %.0f ms.\n\n", sw.Rate, sw.Seconds, sw.EveryMillis)
		p("| check | result |\n|---|---:|\n")
		p("| requests | %d |\n", sw.Requests)
		p("| **failed requests** (must be 0) | **%d** |\n", sw.Failed)
		p("| **started after a switch returned, answered by the old color** (must be 0) | **%d** |\n", sw.WrongColor)
		p("| still running when the next switch was asked for (either color correct): answered by old / new color | %d: %d / %d |\n", sw.InFlightSwitch, sw.InFlightSwitchOld, sw.InFlightSwitchNew)
		p("| `X-Switchyard-Color` differs from the upstream's own color | %d |\n", sw.HeaderMismatch)
		p("| routing state changed between two of the test's switches by something else | %d |\n", sw.Unexplained)
		var trig []string
		for k, n := range sw.Triggers {
			trig = append(trig, fmt.Sprintf("%s %.0f", k, n))
		}
		slices.Sort(trig)
		p("| `switchyard_switches_total` after the test (trigger/result) | %s |\n", strings.Join(trig, ", "))
		p("| automatic rollback (`analysis.auto_rollback`) during the test | %s |\n", map[bool]string{true: "on (default)", false: "off (`-switch-auto-rollback` turns it on)"}[sw.AutoRollback])
		p("| switches (failed calls) | %d (%d) |\n", sw.Switches, sw.SwitchFailures)
		p("| swap_ns from the admin replies: P50 / P99 / max | %s / %s / %s ns |\n", f(sw.Swap.P50, 0), f(sw.Swap.P99, 0), f(sw.Swap.Max, 0))
		p("| admin call round trip: P50 / P99 / max | %s / %s / %s µs |\n", f(sw.AdminRTT.P50, 0), f(sw.AdminRTT.P99, 0), f(sw.AdminRTT.Max, 0))
		p("| upstream connections opened during the test | %d |\n\n", sw.UpstreamConns)
		p("| requests starting | n | P50 µs | P99 µs | P99.9 µs | max µs |\n|---|---:|---:|---:|---:|---:|\n")
		p("| in the %d ms after a switch returned | %d | %s | %s | %s | %s |\n", afterSwitchWindow.Milliseconds(), sw.AfterSwitch.N,
			f(sw.AfterSwitch.P50, 0), f(sw.AfterSwitch.P99, 0), f(sw.AfterSwitch.P999, 0), f(sw.AfterSwitch.Max, 0))
		p("| at other times (steady state) | %d | %s | %s | %s | %s |\n\n", sw.Steady.N,
			f(sw.Steady.P50, 0), f(sw.Steady.P99, 0), f(sw.Steady.P999, 0), f(sw.Steady.Max, 0))
		for _, e := range sw.WrongExamples {
			p("- wrong color: %s\n", e)
		}
		for _, e := range sw.UnexplainedExamples {
			p("- state changed outside the test: %s\n", e)
		}
		if len(sw.WrongExamples)+len(sw.UnexplainedExamples) > 0 {
			p("\n")
		}
		if sw.Plot != "" {
			p("![latency around switches](%s)\n\n", sw.Plot)
		}
	}

	if sc := r.Scaling; sc != nil {
		p("## Scaling\n\n")
		if sc.Workers > 0 {
			p("A fresh Switchyard per point with `GOMAXPROCS=%d`", sc.Workers)
			if sc.Pinned {
				p(", pinned to CPU %s; the stand-ins and the load generators on CPU %s", sc.ProxyCPUs, sc.OtherCPUs)
			} else {
				p(", unpinned")
			}
			p(".\n\n")
		}
		if len(sc.Backends) > 0 {
			interval := "2 s (the default)"
			if s.HealthInterval != "" {
				interval = s.HealthInterval
			}
			gen := "the in-process fasthttp generator"
			if sc.Generator == genWrk {
				gen = "wrk"
			}
			p("Backends per pool (both pools that size, every backend probed every %s, kind http): closed loop by %s with %d connections for peak req/s; vegeta at %d req/s for latency.\n\n", interval, gen, s.Conns, s.ScaleRate)
			p("| backends/pool | peak req/s | CPU µs/req (peak) | P50 µs | P99 µs | P99.9 µs | CPU µs/req (at %d/s) | peak RSS MiB | peak fds | upstream dials | probes/s | errors |\n", s.ScaleRate)
			p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
			for _, pt := range sc.Backends {
				label := fmt.Sprint(pt.Backends)
				if pt.HealthInterval != "" {
					label += " (probes every " + pt.HealthInterval + ")"
				}
				p("| %s | %s | %s | %s | %s | %s | %s | %s | %d | %d | %s | %d |\n", label, f(pt.PeakRPS, 0), f(pt.CPUMicros, 1),
					f(pt.Open.P50, 0), f(pt.Open.P99, 0), f(pt.Open.P999, 0), f(pt.OpenCPUMicros, 1), f(pt.MemoryMiB, 1),
					pt.PeakFDs, pt.UpstreamConns, f(pt.ProbesPerSec, 0), pt.ClosedErrors+pt.OpenErrors)
			}
			p("\n")
		}
		if len(sc.Conns) > 0 {
			p("Client connections (1 backend per pool, `proxy.max_conns_per_backend` %d, %s): closed loop over that many connections by the in-process fasthttp generator (it opens them 256 at a time before the window); then the same connections share %d req/s, each on its own schedule (latency from when each request was sent).\n\n", s.MaxConnsPerBackend, s.MaxConnsSource, s.ScaleRate)
			p("| client conns | peak req/s | closed P50 µs | closed P99 µs | CPU µs/req (peak) | P50 µs at %d/s | P99 µs | P99.9 µs | CPU µs/req (at %d/s) | peak RSS MiB | peak fds | upstream dials | errors |\n", s.ScaleRate, s.ScaleRate)
			p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
			for _, pt := range sc.Conns {
				if pt.Skipped != "" {
					p("| %d | skipped: %s ||||||||||||\n", pt.Conns, pt.Skipped)
					continue
				}
				p("| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d | %d | %d |\n", pt.Conns, f(pt.PeakRPS, 0),
					f(pt.Closed.P50, 0), f(pt.Closed.P99, 0), f(pt.CPUMicros, 1),
					f(pt.Open.P50, 0), f(pt.Open.P99, 0), f(pt.Open.P999, 0), f(pt.OpenCPUMicros, 1), f(pt.MemoryMiB, 1),
					pt.PeakFDs, pt.UpstreamConns, pt.ClosedErrors+pt.OpenErrors)
			}
			p("\n")
		}
	}
	if pc := r.ProbeCost; pc != nil {
		probeMarkdown(&b, pc)
	}
	if len(r.Targets) > 0 {
		p("## Targets (issue 15)\n\n")
		p("Checked on this run: ratios of numbers measured side by side in it. The 1-worker rows use the first comparison table above; the scaling rows the tables of the scaling section; \"added\" latency is over direct in the same round.\n\n")
		b.WriteString(targetsMarkdown(r.Targets))
		p("\n")
	}
	if len(r.Notes) > 0 {
		p("## Notes\n\n")
		for _, n := range r.Notes {
			p("- %s\n", n)
		}
		p("\n")
	}
	return b.String()
}

// compareMarkdown writes one comparison table and its ratios.
func compareMarkdown(b *strings.Builder, c Comparison, checked bool, s Settings, m Machine) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	w := c.Workers
	plural := "s"
	if w == 1 {
		plural = ""
	}
	p("## Switchyard, nginx, HAProxy and Caddy in front of the same upstream: %d worker%s\n\n", w, plural)
	p("Every proxy has %d worker%s (nginx `worker_processes %d`, HAProxy `nbthread %d`, `GOMAXPROCS=%d` for Switchyard and Caddy). ", w, plural, w, w, w)
	if c.Pinned {
		p("Each proxy's whole process group is pinned to CPU %s; the upstream stand-in and the load generators (this harness, wrk) to CPU %s, so the proxy has its core to itself and the generator never takes from it. ", c.ProxyCPUs, c.OtherCPUs)
	} else {
		p("Nothing is pinned: the proxies share the machine's %d CPUs with the load generators and the upstream stand-in. ", m.NumCPU)
	}
	if checked {
		p("This is the table the targets below are checked on. ")
	}
	gen := "the in-process fasthttp generator (wrk is not installed)"
	if c.Generator == genWrk {
		gen = "wrk, one thread"
	}
	rounds := c.Rounds
	if rounds == 0 {
		rounds = s.Rounds
	}
	roundWord := "interleaved rounds; each cell is the median over rounds"
	if rounds == 1 {
		roundWord = "round"
	}
	p("%d %s. Latency: open loop (vegeta) at %d req/s for %.0f s. "+
		"Peak: closed loop by %s, %d connections sending back to back for %.0f s. "+
		"Added latency is the target's percentile minus direct's in the same round.\n\n",
		rounds, roundWord, s.Rate, s.OpenSeconds, gen, s.Conns, s.ClosedSeconds)
	genCol, genSep := "", ""
	if c.Pinned {
		genCol, genSep = fmt.Sprintf(" CPU %s busy (peak) |", c.OtherCPUs), "---:|"
	}
	p("| target | peak req/s | P50 µs | P99 µs | P99.9 µs | added P50 µs | added P99 µs | added P99.9 µs | CPU µs/req (peak) | CPU µs/req (at %d/s) | peak RSS MiB | upstream dials/round | errors | CPUs |%s\n", s.Rate, genCol)
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|%s\n", genSep)
	for _, t := range c.Targets {
		added := func(v float64) string {
			if t.Name == targetDirect {
				return "0"
			}
			return f(v, 0)
		}
		cpus := t.CPUs
		if cpus == "" {
			cpus = "–"
		}
		gen := ""
		if c.Pinned {
			gen = fmt.Sprintf(" %s %% |", f(100*t.GenBusy, 0))
		}
		p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d | %s |%s\n", t.Name, f(t.PeakRPS, 0),
			f(t.Latency.P50, 0), f(t.Latency.P99, 0), f(t.Latency.P999, 0),
			added(t.Added.P50), added(t.Added.P99), added(t.Added.P999),
			f(t.CPUMicros, 1), f(t.OpenCPUMicros, 1), f(t.MemoryMiB, 1), f(t.UpstreamConns, 0), t.Errors, cpus, gen)
	}
	p("\nFor direct, CPU and memory are the upstream stand-in's own (a minimal fasthttp server), the yardstick for the ×direct ratios below. " +
		"CPUs is the `Cpus_allowed_list` of the target's threads at the end.")
	if h := float64(c.Headroom); !math.IsNaN(h) {
		p(" Direct's peak is %.2f× the fastest proxy's: ", h)
		if h >= 1.5 {
			p("the generator and the upstream had room beyond every proxy.")
		} else {
			p("**under 1.5×**: the fastest proxies may be held back by the generator and the upstream, not by their own CPU.")
		}
	}
	if c.Pinned {
		p(" The last column is how busy CPU %s (the upstream stand-in and wrk, softirq included, other tenants too) was in the closed loop: near 100 %%, that row's peak is the generator side's.", c.OtherCPUs)
	}
	p("\n\n")
	p("| target | req/s ×direct | req/s ×best peer | P50 ×direct | P99 ×direct | P99.9 ×direct | added P50 ×best peer | added P99 ×best peer | added P99.9 ×best peer | CPU/req ×direct | CPU/req ×best peer | RSS ×direct | RSS ×best peer |\n")
	p("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, t := range c.Targets {
		if t.VsBestPeer.Reference == "" {
			nan := Num(math.NaN())
			t.VsBestPeer = Ratios{RPS: nan, P50: nan, P99: nan, P999: nan, CPU: nan, Memory: nan, OpenCPU: nan}
		}
		p("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", t.Name,
			x(t.VsDirect.RPS), x(t.VsBestPeer.RPS), x(t.VsDirect.P50), x(t.VsDirect.P99), x(t.VsDirect.P999),
			x(t.VsBestPeer.P50), x(t.VsBestPeer.P99), x(t.VsBestPeer.P999),
			x(t.VsDirect.CPU), x(t.VsBestPeer.CPU), x(t.VsDirect.Memory), x(t.VsBestPeer.Memory))
	}
	for _, t := range c.Targets {
		if t.VsBestPeer.Reference != "" {
			p("\n\"Best peer\" is, per column, the best of %s in this run: highest req/s, lowest added latency, CPU and memory. Below 1× is better than the best peer, except for req/s.\n", strings.TrimPrefix(t.VsBestPeer.Reference, "best of "))
			break
		}
	}
	if bg := c.Background; bg != nil {
		p("\nProcesses outside the benchmark kept %.2f CPUs busy in this table's median measurement window (max %.2f).\n", bg.MedianCores, bg.MaxCores)
	}
	p("\n")
}

// idleMarkdown writes the idle-connections table.
func idleMarkdown(b *strings.Builder, id *IdleConns) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	p("## %s idle keep-alive client connections\n\n", thousands(id.Conns))
	if id.Skipped != "" {
		p("Skipped: %s.\n\n", id.Skipped)
		return
	}
	p("A fresh proxy (1 backend per pool; its workers and CPUs below) gets %s client connections, opened 256 at a time; "+
		"each sends one `POST /predict` and reads the answer, then all stay open and idle for %.0f s before the process group's resident set "+
		"(`VmRSS` summed over its processes, not the peak) is read.\n\n", thousands(id.Conns), id.IdleSeconds)
	p("| proxy | workers | CPUs | connections held | failed | RSS before MiB | RSS with the connections MiB | KiB per connection |\n")
	p("|---|---:|---|---:|---:|---:|---:|---:|\n")
	for _, pt := range id.Points {
		per := math.NaN()
		if pt.Opened > 0 {
			per = (pt.RSSMiB - pt.BaseRSSMiB) * 1024 / float64(pt.Opened)
		}
		p("| %s | %d | %s | %d | %d | %s | %s | %s |\n", pt.Name, pt.Workers, pt.CPUs, pt.Opened, pt.Failed,
			f(pt.BaseRSSMiB, 1), f(pt.RSSMiB, 1), f(per, 1))
	}
	p("\n")
}

// probeMarkdown writes the probe-cost point.
func probeMarkdown(b *strings.Builder, pc *ProbeCost) {
	p := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	interval := pc.Interval
	if interval == "" {
		interval = "2s (the default)"
	}
	p("## Probing cost, no client load\n\n")
	p("A fresh Switchyard (`GOMAXPROCS=%d`, CPUs %s) over %s backends per pool (%s in all), probed every %s with kind http, and no client at all. "+
		"Once every backend is ready and %.0f s have passed, its process group's CPU is read over %.0f s; the stand-ins count the probes and the connections they accept.\n\n",
		pc.Workers, pc.CPUs, thousands(pc.BackendsPerPool), thousands(2*pc.BackendsPerPool), interval, probeSettle.Seconds(), pc.Seconds)
	p("| backends probed | CPU s | %% of one core | probes | probes/s | CPU µs/probe | upstream dials in the window | since start | RSS MiB | other load CPUs |\n")
	p("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	p("| %s | %s | %s | %d | %s | %s | %d | %d | %s | %s |\n\n", thousands(2*pc.BackendsPerPool), f(pc.CPUSeconds, 2), f(pc.CorePercent, 2),
		pc.Probes, f(pc.ProbesPerSec, 0), f(pc.CPUMicrosPerProbe, 1), pc.UpstreamConns, pc.UpstreamConnsTotal, f(pc.RSSMiB, 1), f(pc.OtherCores, 2))
}
