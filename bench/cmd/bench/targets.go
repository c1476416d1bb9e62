package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Results of a Check.
const (
	checkPass        = "PASS"
	checkFail        = "FAIL"
	checkNotMeasured = "NOT MEASURED"
)

// Targets of issue 15.
const (
	wantPeakOverPeer     = 1.10 // Switchyard's peak req/s ÷ nginx's and HAProxy's, 1 worker
	wantCPUOverNginx     = 0.90 // Switchyard's CPU/request at peak ÷ nginx's, 1 worker
	wantScalePeak        = 0.95 // peak req/s at the largest pool ÷ at 1 backend
	wantScaleCPU         = 1.10 // CPU/request at the largest pool ÷ at 1 backend
	wantProbeCorePercent = 3.0  // % of one core for probing, no client load
	wantDialsPerBackend  = 1.25 // upstream dials ÷ (backends probed + client conns)
	wantIdleRSSMiB       = 120  // MiB for the idle connections
	wantIdleConns        = 10000
	wantBusyConns        = 1000
	wantBusyDialsOverMax = 2.0 // upstream dials ÷ proxy.max_conns_per_backend
)

// Check is one target of issue 15 and what this run measured for it.
type Check struct {
	Target string `json:"target"`
	// Measured is compared with Limit by Op: a ratio (Unit "×"), a share
	// of one core or MiB. Null when the ratio means nothing (see Detail).
	Measured Num     `json:"measured"`
	Op       string  `json:"op"`
	Limit    float64 `json:"limit"`
	Unit     string  `json:"unit"`
	// Result is PASS, FAIL or NOT MEASURED.
	Result string `json:"result"`
	// Detail gives the numbers the ratio is made of.
	Detail string `json:"detail"`
}

// versus checks a op limit×b: the ratio a/b against limit when b is
// positive, and the plain comparison when it is not (an added latency at
// or below zero makes a ratio meaningless, not the check). NaN in a or b
// means not measured.
func versus(target string, a, b float64, op string, limit float64, unit, detail string) Check {
	c := Check{Target: target, Op: op, Limit: limit, Unit: unit, Detail: detail, Measured: ratio(a, b)}
	if math.IsNaN(a) || math.IsNaN(b) {
		c.Result = checkNotMeasured
		return c
	}
	var ok bool
	switch op {
	case "≥":
		ok = a >= limit*b
	case "≤":
		ok = a <= limit*b
	case "<":
		ok = a < limit*b
	}
	c.Result = map[bool]string{true: checkPass, false: checkFail}[ok]
	return c
}

// absolute checks v op limit.
func absolute(target string, v float64, op string, limit float64, unit, detail string) Check {
	return versus(target, v, 1, op, limit, unit, detail)
}

func notMeasured(target, op string, limit float64, unit, why string) Check {
	return Check{Target: target, Measured: Num(math.NaN()), Op: op, Limit: limit, Unit: unit, Result: checkNotMeasured, Detail: why}
}

// checkTargets holds the run's results against the targets of issue 15.
func checkTargets(r *results) []Check {
	var cs []Check
	cs = append(cs, compareChecks(r)...)
	cs = append(cs, scaleChecks(r)...)
	cs = append(cs, probeCheck(r), idleCheck(r), busyCheck(r))
	return cs
}

// compareChecks are the targets of the 1-worker comparison.
func compareChecks(r *results) []Check {
	var c *Comparison
	for i := range r.Comparisons {
		if r.Comparisons[i].Workers == 1 {
			c = &r.Comparisons[i]
			break
		}
	}
	names := []string{
		"1 worker: Switchyard peak req/s ÷ nginx's",
		"1 worker: Switchyard peak req/s ÷ HAProxy's",
		"1 worker: Switchyard CPU µs/request at peak ÷ nginx's",
		fmt.Sprintf("1 worker: Switchyard added P50 at %d req/s ÷ nginx's", r.Settings.Rate),
		fmt.Sprintf("1 worker: Switchyard added P99 at %d req/s ÷ nginx's", r.Settings.Rate),
	}
	ops := []string{"≥", "≥", "≤", "≤", "≤"}
	limits := []float64{wantPeakOverPeer, wantPeakOverPeer, wantCPUOverNginx, 1, 1}
	find := func(name string) *TargetResult {
		if c == nil {
			return nil
		}
		for i := range c.Targets {
			if c.Targets[i].Name == name {
				return &c.Targets[i]
			}
		}
		return nil
	}
	sy, ng, hp := find(targetSwitchyard), find(targetNginx), find(targetHAProxy)
	peers := []*TargetResult{ng, hp, ng, ng, ng}
	peerName := []string{targetNginx, targetHAProxy, targetNginx, targetNginx, targetNginx}
	var out []Check
	for i, name := range names {
		var why string
		switch {
		case c == nil:
			why = "no 1-worker comparison in this run (-workers, -phases)"
		case sy == nil:
			why = "Switchyard not in the comparison (-targets)"
		case peers[i] == nil:
			why = peerName[i] + " not in the comparison (not installed, or -targets)"
		}
		if why != "" {
			out = append(out, notMeasured(name, ops[i], limits[i], "×", why))
			continue
		}
		p := peers[i]
		switch i {
		case 0, 1:
			out = append(out, versus(name, sy.PeakRPS, p.PeakRPS, ops[i], limits[i], "×",
				fmt.Sprintf("%.0f vs %.0f req/s", sy.PeakRPS, p.PeakRPS)))
		case 2:
			out = append(out, versus(name, sy.CPUMicros, p.CPUMicros, ops[i], limits[i], "×",
				fmt.Sprintf("%.1f vs %.1f µs", sy.CPUMicros, p.CPUMicros)))
		case 3:
			out = append(out, versus(name, sy.Added.P50, p.Added.P50, ops[i], limits[i], "×",
				fmt.Sprintf("%+.0f vs %+.0f µs over direct", sy.Added.P50, p.Added.P50)))
		case 4:
			out = append(out, versus(name, sy.Added.P99, p.Added.P99, ops[i], limits[i], "×",
				fmt.Sprintf("%+.0f vs %+.0f µs over direct", sy.Added.P99, p.Added.P99)))
		}
	}
	return out
}

// scaleChecks compare the largest pool of the backend sweep (default
// probe interval) with the 1-backend point.
func scaleChecks(r *results) []Check {
	var base, big *ScalePoint
	if sc := r.Scaling; sc != nil {
		for i := range sc.Backends {
			p := &sc.Backends[i]
			if p.HealthInterval != "" && p.HealthInterval != r.Settings.HealthInterval {
				continue // the probe-contrast point
			}
			if p.Backends == 1 {
				base = p
			}
			if p.Backends > 1 && (big == nil || p.Backends > big.Backends) {
				big = p
			}
		}
	}
	nb := 1000
	if big != nil {
		nb = big.Backends
	}
	peak := fmt.Sprintf("%s backends per pool: peak req/s ÷ the 1-backend point's", thousands(nb))
	cpu := fmt.Sprintf("%s backends per pool: CPU µs/request at peak ÷ the 1-backend point's", thousands(nb))
	dials := fmt.Sprintf("%s backends per pool: upstream dials ÷ (backends probed + client conns)", thousands(nb))
	if base == nil || big == nil {
		why := "the backend sweep needs a 1-backend point and a larger one (-scale-backends, -phases)"
		return []Check{notMeasured(peak, "≥", wantScalePeak, "×", why), notMeasured(cpu, "≤", wantScaleCPU, "×", why),
			notMeasured(dials, "≤", wantDialsPerBackend, "×", why)}
	}
	probed := 2 * big.Backends
	return []Check{
		versus(peak, big.PeakRPS, base.PeakRPS, "≥", wantScalePeak, "×", fmt.Sprintf("%.0f vs %.0f req/s", big.PeakRPS, base.PeakRPS)),
		versus(cpu, big.CPUMicros, base.CPUMicros, "≤", wantScaleCPU, "×", fmt.Sprintf("%.1f vs %.1f µs", big.CPUMicros, base.CPUMicros)),
		versus(dials, float64(big.UpstreamConns), float64(probed+big.Conns), "≤", wantDialsPerBackend, "×",
			fmt.Sprintf("%d dials; %d backends probed + %d client conns", big.UpstreamConns, probed, big.Conns)),
	}
}

func probeCheck(r *results) Check {
	name := "Probing with no client load: share of one core"
	pc := r.ProbeCost
	if pc == nil {
		return notMeasured(name, "<", wantProbeCorePercent, "%", "probe-cost point not run (-phases, -probe-backends)")
	}
	interval := pc.Interval
	if interval == "" {
		interval = "2s"
	}
	name = fmt.Sprintf("Probing %s backends every %s, no client load: share of one core", thousands(2*pc.BackendsPerPool), interval)
	return absolute(name, pc.CorePercent, "<", wantProbeCorePercent, "%",
		fmt.Sprintf("%.2f s CPU in %.0f s; %d probes, %.1f µs each", pc.CPUSeconds, pc.Seconds, pc.Probes, pc.CPUMicrosPerProbe))
}

func idleCheck(r *results) Check {
	name := fmt.Sprintf("%s idle keep-alive client connections: Switchyard RSS", thousands(wantIdleConns))
	id := r.Idle
	if id == nil {
		return notMeasured(name, "≤", wantIdleRSSMiB, "MiB", "idle-connections point not run (-phases)")
	}
	name = fmt.Sprintf("%s idle keep-alive client connections: Switchyard RSS", thousands(id.Conns))
	if id.Skipped != "" {
		return notMeasured(name, "≤", wantIdleRSSMiB, "MiB", id.Skipped)
	}
	var sy, ng *IdlePoint
	for i := range id.Points {
		switch id.Points[i].Name {
		case targetSwitchyard:
			sy = &id.Points[i]
		case targetNginx:
			ng = &id.Points[i]
		}
	}
	if sy == nil {
		return notMeasured(name, "≤", wantIdleRSSMiB, "MiB", "Switchyard was not measured")
	}
	detail := "nginx not measured"
	if ng != nil {
		detail = fmt.Sprintf("nginx %.1f MiB", ng.RSSMiB)
	}
	if id.Conns != wantIdleConns {
		detail += fmt.Sprintf("; the target is set for %s connections", thousands(wantIdleConns))
	}
	if sy.Opened < id.Conns {
		return notMeasured(name, "≤", wantIdleRSSMiB, "MiB",
			fmt.Sprintf("only %d of %d connections were held (first error: %s); %s", sy.Opened, id.Conns, sy.FirstErr, detail))
	}
	return absolute(name, sy.RSSMiB, "≤", wantIdleRSSMiB, "MiB", detail)
}

func busyCheck(r *results) Check {
	s := r.Settings
	name := fmt.Sprintf("%s busy client connections: upstream dials ÷ proxy.max_conns_per_backend (%d, %s)",
		thousands(wantBusyConns), s.MaxConnsPerBackend, s.MaxConnsSource)
	var pt *ScalePoint
	if r.Scaling != nil {
		for i := range r.Scaling.Conns {
			if r.Scaling.Conns[i].Conns == wantBusyConns {
				pt = &r.Scaling.Conns[i]
			}
		}
	}
	switch {
	case pt == nil:
		return notMeasured(name, "≤", wantBusyDialsOverMax, "×", "no 1,000-connection point in the connection sweep (-scale-conns, -phases)")
	case pt.Skipped != "":
		return notMeasured(name, "≤", wantBusyDialsOverMax, "×", pt.Skipped)
	}
	return versus(name, float64(pt.UpstreamConns), float64(s.MaxConnsPerBackend), "≤", wantBusyDialsOverMax, "×",
		fmt.Sprintf("%d dials over the point (closed loop and fixed rate), 1 backend per pool", pt.UpstreamConns))
}

// thousands writes n with comma separators: 10,000.
func thousands(n int) string {
	if n < 0 {
		return "-" + thousands(-n)
	}
	s := strconv.Itoa(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// targetsMarkdown writes the targets table.
func targetsMarkdown(cs []Check) string {
	var b strings.Builder
	b.WriteString("| target | measured | limit | result | numbers |\n|---|---:|---:|---|---|\n")
	for _, c := range cs {
		unit := c.Unit
		prec := 2
		switch unit {
		case "%":
			unit = " %"
		case "MiB":
			unit, prec = " MiB", 1
		}
		measured := "–"
		if v := float64(c.Measured); !math.IsNaN(v) && !math.IsInf(v, 0) {
			measured = fmt.Sprintf("%.*f%s", prec, v, unit)
		}
		res := c.Result
		if res == checkPass || res == checkFail {
			res = "**" + res + "**"
		}
		fmt.Fprintf(&b, "| %s | %s | %s %s%s | %s | %s |\n", c.Target, measured, c.Op, strconv.FormatFloat(c.Limit, 'f', -1, 64), unit, res, c.Detail)
	}
	return b.String()
}
