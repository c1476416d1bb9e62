package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/switchyard/switchyard/admin"
	"github.com/switchyard/switchyard/analysis"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/health"
	"github.com/switchyard/switchyard/proxy"
)

// maxErrorLen is how much of a backend's last error the table shows.
const maxErrorLen = 60

// renderStatus writes the status as a table for people.
func renderStatus(w io.Writer, st *admin.Status, now time.Time) {
	fmt.Fprintf(w, "active %s (%s), generation %d\n", st.Active, st.ActiveVersion, st.Generation)
	for _, color := range colorOrder(st.Pools) {
		renderPool(w, color, st.Pools[color])
	}
	if trafficShifted(&st.Traffic, st.Active) {
		fmt.Fprintln(w)
		for _, l := range trafficLines(&st.Traffic) {
			fmt.Fprintln(w, l)
		}
	}
	if a := st.Analysis; a != nil && (a.Verdict.Phase != "" && a.Verdict.Phase != "idle" || a.LastAction != "") {
		fmt.Fprintln(w)
		for i, l := range describeVerdict(&a.Verdict) {
			if i == 0 {
				l = "analysis: " + l
			}
			fmt.Fprintln(w, l)
		}
		if a.LastAction != "" {
			fmt.Fprintln(w, "  last action: "+a.LastAction)
		}
	}
	if len(st.Drains) > 0 {
		fmt.Fprintln(w, "\ndrains:")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  COLOR\tVERSION\tSTATE\tIN-FLIGHT\tAT SWAP\tSECONDS")
		for _, d := range st.Drains {
			state := d.State
			if d.State == proxy.DrainTimedOut {
				state += fmt.Sprintf(" (%s)", plural(d.Straggler, "straggler"))
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%d\t%d\t%.1f\n", d.Color, d.Version, state, d.Inflight, d.AtSwap, d.Seconds)
		}
		_ = tw.Flush()
	}
	if n := len(st.Switches); n > 0 {
		s := st.Switches[n-1]
		forced := ""
		if s.Forced {
			forced = ", forced"
		}
		fmt.Fprintf(w, "\nlast switch: %s -> %s (%s) by %s %s, generation %d%s\n", s.From, s.To, s.Version, s.Trigger, ago(now, s.At), s.Generation, forced)
	}
	renderFleet(w, st.Fleet, now)
	if c := st.Config; c != nil {
		sum := c.SHA256
		if len(sum) > 12 {
			sum = sum[:12]
		}
		fmt.Fprintf(w, "\nconfig: %s, generation %d, loaded %s, sha256 %s\n", c.Path, c.Generation, ago(now, c.LoadedAt), sum)
		if c.LastError != "" {
			fmt.Fprintf(w, "  last error (the running config stays in force): %s\n", indent(c.LastError, "    "))
		}
		if c.PendingSwitch != "" {
			fmt.Fprintf(w, "  pending switch %s\n", c.PendingSwitch)
		}
		for _, r := range c.RestartNeeded {
			fmt.Fprintf(w, "  restart needed: %s\n", r)
		}
	}
}

func renderPool(w io.Writer, color string, p admin.PoolStatus) {
	role := "standby"
	if p.Active {
		role = "ACTIVE"
	}
	fmt.Fprintf(w, "\n%s (%s)  %s  in-flight %d  ready %d/%d\n", color, p.Version, role, p.Inflight, p.ReadyBackends, len(p.Backends))
	if len(p.Backends) == 0 {
		fmt.Fprintf(w, "  no backends; add some to pools.%s.backends\n", color)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  BACKEND\tREADY\tHEALTHY\tWARM\tIN-FLIGHT\tREQUESTS\tGPU MEMORY\tLAST ERROR")
	var notes []string
	for _, b := range p.Backends {
		ready := yesNo(b.Ready)
		if b.EjectedUntil != nil {
			ready = "ejected"
		}
		healthy, warm, gpu, lastErr := "?", "?", "-", "-"
		if h := b.Health; h != nil {
			healthy, warm = yesNo(h.Healthy), warmState(h)
			if !h.Probed {
				healthy = "not probed"
			}
			gpu = gpuMemory(h.Report.GPUMemUsed, h.Report.GPUMemTotal)
			if e := firstNonEmpty(h.LastError, h.WarmupError); e != "" {
				lastErr = truncate(e, maxErrorLen)
			}
			if len(h.SharedGPUWith) > 0 {
				notes = append(notes, fmt.Sprintf("%s shares its GPU with %s", b.Addr, strings.Join(h.SharedGPUWith, ", ")))
			}
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", b.Addr, ready, healthy, warm, b.Inflight, b.Requests, gpu, lastErr)
	}
	_ = tw.Flush()
	for _, n := range notes {
		fmt.Fprintln(w, "  note: "+n)
	}
}

// colorOrder returns m's keys in the order people read colors: blue,
// green, then any other by name.
func colorOrder[K ~string, V any](m map[K]V) []K {
	var order []K
	for _, c := range []config.Color{config.Blue, config.Green} {
		if _, ok := m[K(c)]; ok {
			order = append(order, K(c))
		}
	}
	var rest []K
	for k := range m {
		if !config.Color(k).Valid() {
			rest = append(rest, k)
		}
	}
	slices.Sort(rest)
	return append(order, rest...)
}

func warmState(h *health.State) string {
	switch {
	case h.Warm:
		return "yes"
	case h.Warming && h.WarmNeeded > 0:
		return fmt.Sprintf("warming %d/%d", h.WarmPassed, h.WarmNeeded)
	case h.Warming:
		return "warming"
	case h.WarmupError != "":
		return "failed"
	}
	return "no"
}

// gpuMemory renders used/total bytes in one unit, e.g. "3.1/80 GiB".
func gpuMemory(used, total *float64) string {
	switch {
	case used != nil && total != nil:
		unit, div := byteUnit(max(*used, *total))
		return fmt.Sprintf("%s/%s %s", oneDecimal(*used/div), oneDecimal(*total/div), unit)
	case used != nil:
		unit, div := byteUnit(*used)
		return fmt.Sprintf("%s %s used", oneDecimal(*used/div), unit)
	case total != nil:
		unit, div := byteUnit(*total)
		return fmt.Sprintf("?/%s %s", oneDecimal(*total/div), unit)
	}
	return "-"
}

func byteUnit(v float64) (string, float64) {
	for _, u := range []struct {
		name string
		size float64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if v >= u.size {
			return u.name, u.size
		}
	}
	return "B", 1
}

func oneDecimal(v float64) string {
	return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64)
}

// describeSwitch says what a switch did, in one line.
func describeSwitch(verb string, res *proxy.SwitchResult) string {
	if res.NoOp {
		return fmt.Sprintf("%s (%s) is already active; nothing changed", res.To, res.Version)
	}
	from := string(res.From)
	if d := res.Drain; d != nil && d.Color == res.From && d.Version != "" {
		from += " (" + d.Version + ")"
	}
	line := fmt.Sprintf("%s %s -> %s (%s) in %s", verb, from, res.To, res.Version, time.Duration(res.SwapNanos))
	if res.Forced {
		line += ", forced past the readiness gate"
	}
	if d := res.Drain; d != nil {
		if d.Inflight > 0 {
			line += fmt.Sprintf("; draining %s on %s", plural(d.Inflight, "request"), d.Color)
		} else {
			line += fmt.Sprintf("; nothing in flight on %s", d.Color)
		}
	}
	return line + fmt.Sprintf(" (generation %d)", res.Generation)
}

// trafficShifted reports whether anything differs from all traffic to
// the active color: a canary share, a sticky header or a mirror.
func trafficShifted(t *proxy.Traffic, active config.Color) bool {
	for c, w := range t.Weights {
		if c != active && w > 0 {
			return true
		}
	}
	return t.StickyHeader != "" || (t.Mirror != nil && t.Mirror.Percent > 0)
}

// trafficLines renders the split and the mirror.
func trafficLines(t *proxy.Traffic) []string {
	var parts []string
	for _, c := range colorOrder(t.Weights) {
		parts = append(parts, fmt.Sprintf("%s %s%%", c, oneDecimal(t.Weights[c])))
	}
	split := "traffic: " + strings.Join(parts, ", ")
	if len(parts) == 0 {
		split = "traffic: no split"
	}
	if t.StickyHeader != "" {
		split += fmt.Sprintf(" (sticky on header %s)", t.StickyHeader)
	}
	mirror := "mirror: off"
	if m := t.Mirror; m != nil && m.Percent > 0 {
		mirror = fmt.Sprintf("mirror: %s%% of requests copied to %s", oneDecimal(m.Percent), m.To)
	}
	return []string{split, mirror}
}

// describeTraffic renders the answer of PUT /admin/traffic.
func describeTraffic(t *proxy.Traffic) string {
	l := trafficLines(t)
	if t.Generation > 0 {
		l[0] += fmt.Sprintf(" (generation %d)", t.Generation)
	}
	return strings.Join(l, "\n")
}

// describeVerdict renders a verdict: what is compared, the result, each
// side's numbers and every reason.
func describeVerdict(v *analysis.Verdict) []string {
	var head string
	switch v.Phase {
	case "", "idle":
		head = "no canary or shadow traffic to judge"
	case "canary":
		head = fmt.Sprintf("canary of %s against %s", v.Candidate, v.Baseline)
	case "shadow":
		head = fmt.Sprintf("shadow traffic to %s against %s", v.Candidate, v.Baseline)
	case "observe":
		head = fmt.Sprintf("watching %s after the switch, against %s", v.Candidate, v.Baseline)
	default:
		head = fmt.Sprintf("%s of %s against %s", v.Phase, v.Candidate, v.Baseline)
	}
	switch {
	case v.Pass:
		head += ": passing"
	case !v.Enough:
		head += ": not enough requests yet"
	default:
		head += ": failing"
	}
	lines := []string{head}
	for _, side := range []struct {
		color config.Color
		w     proxy.Window
	}{{v.Candidate, v.CandidateStats}, {v.Baseline, v.BaselineStats}} {
		if side.color == "" {
			continue
		}
		w := side.w
		l := fmt.Sprintf("  %s: %s, %s", side.color, plural(int64(w.Requests), "request"), plural(int64(w.Errors), "error"))
		if w.Requests > 0 {
			l += fmt.Sprintf(" (%s%%)", oneDecimal(100*float64(w.Errors)/float64(w.Requests)))
		}
		if w.Differs > 0 {
			l += fmt.Sprintf(", %d answers differ from the active color", w.Differs)
		}
		if w.P99 > 0 {
			l += ", p99 " + w.P99.String()
		}
		lines = append(lines, l)
	}
	for _, r := range v.Reasons {
		lines = append(lines, "  - "+r)
	}
	return lines
}

// describeReload says what a reload loaded.
func describeReload(c *admin.ConfigStatus) string {
	if c == nil {
		return "reloaded"
	}
	sum := c.SHA256
	if len(sum) > 12 {
		sum = sum[:12]
	}
	s := fmt.Sprintf("reloaded %s: config generation %d, sha256 %s", c.Path, c.Generation, sum)
	if c.PendingSwitch != "" {
		s += "\npending switch " + c.PendingSwitch
	}
	for _, r := range c.RestartNeeded {
		s += "\nrestart needed: " + r
	}
	return s
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "at an unknown time"
	}
	d := now.Sub(t)
	if d < time.Second {
		return "just now"
	}
	return d.Round(time.Second).String() + " ago"
}

func plural(n int64, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.FormatInt(n, 10) + " " + what + "s"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// truncate shortens s to n runes on one line.
func truncate(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

func indent(s, prefix string) string {
	return strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n"+prefix)
}
