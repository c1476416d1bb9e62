package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
)

// afterSwitchWindow is how long after a switch returned a request counts
// as "right after a switch" for the latency comparison.
const afterSwitchWindow = 50 * time.Millisecond

// reqRecord is one request of the switch test, times in nanoseconds since
// the test's base instant.
type reqRecord struct {
	start, end int64
	ok         bool
	// color is the upstream that answered (X-Upstream-Color); gwColor what
	// the gateway said (X-Switchyard-Color).
	color, gwColor string
	err            string
}

// switchRecord is one POST /admin/switch.
type switchRecord struct {
	sent, returned int64
	ok             bool
	from, to       string
	generation     uint64
	swapNs         int64
	err            string
}

// SwitchTest is the result of switching colors under load.
type SwitchTest struct {
	// Workers is Switchyard's GOMAXPROCS; Layout says where it ran.
	Workers       int      `json:"workers"`
	Layout        string   `json:"layout"`
	Rate          int      `json:"rate"`
	EveryMillis   float64  `json:"every_ms"`
	Seconds       float64  `json:"seconds"`
	Requests      int      `json:"requests"`
	Failed        int      `json:"failed"`
	FirstFailure  string   `json:"first_failure,omitempty"`
	WrongColor    int      `json:"wrong_color"`
	WrongExamples []string `json:"wrong_color_examples,omitempty"`
	// InFlightSwitch counts requests whose lifetime overlapped the next
	// switch call: either color is correct for them. Split by what
	// answered.
	InFlightSwitch    int `json:"overlapping_switch_call"`
	InFlightSwitchOld int `json:"overlapping_switch_call_old_color"`
	InFlightSwitchNew int `json:"overlapping_switch_call_new_color"`
	// HeaderMismatch counts answers whose X-Switchyard-Color differs from
	// the upstream's own color header.
	HeaderMismatch int `json:"header_mismatch"`
	// Unexplained counts switches whose reply shows the routing state
	// changed since the previous switch by something else than this test
	// (its "from" is not the previous "to", or the generation skipped).
	Unexplained         int      `json:"unexplained_state_changes"`
	UnexplainedExamples []string `json:"unexplained_examples,omitempty"`
	Switches            int      `json:"switches"`
	SwitchFailures      int      `json:"switch_failures"`
	FirstSwitchErr      string   `json:"first_switch_error,omitempty"`
	// AfterSwitch is the latency of requests starting in the 50 ms after
	// a switch returned; Steady of all the others.
	AfterSwitch Percentiles `json:"after_switch"`
	Steady      Percentiles `json:"steady"`
	// Swap is swap_ns from the admin replies; AdminRTT the whole admin
	// call as the client saw it, in µs.
	Swap          nsPercentiles `json:"swap"`
	AdminRTT      Percentiles   `json:"admin_rtt"`
	UpstreamConns int64         `json:"upstream_conns"`
	// Triggers is switchyard_switches_total after the test, by
	// "trigger/result": every switch the gateway made, its own included.
	Triggers map[string]float64 `json:"switches_by_trigger,omitempty"`
	// AutoRollback says whether the gateway's automatic rollback
	// (analysis.auto_rollback) was on during the test.
	AutoRollback bool   `json:"auto_rollback"`
	Plot         string `json:"plot,omitempty"`
}

// switchUnderLoad sends a fixed rate through Switchyard (with l's workers
// and pinning) while toggling the active color every switchEvery, and
// checks every answer's color against the switch history.
func (h *harness) switchUnderLoad(blue, green *upstream, l layout) error {
	o := h.opts
	leave, err := h.enter(l, blue, green)
	if err != nil {
		return err
	}
	defer leave()
	extra := ""
	if !o.switchAutoRollback {
		// Switches 100 ms apart are far faster than any analysis window:
		// automatic rollback would judge noise and move traffic behind the
		// test's back.
		extra = "analysis: {auto_rollback: false}\n"
	}
	t, err := h.startSwitchyardWith(l, "switchyard-switch", blue.addrs[:1], green.addrs[:1], h.opts.healthInterval, extra)
	if err != nil {
		return err
	}
	defer h.stopProc(t.proc)
	ol := newOpenLoader()
	defer ol.close()
	h.logf("switch test: %d req/s through Switchyard, toggling every %s for %s", o.switchRate, o.switchEvery, o.switchDur)
	h.waitQuiet()
	ol.attack(h.ctx, t.addr, o.switchRate, o.warm, nil)
	b0, _ := blue.stats()
	g0, _ := green.stats()

	base := time.Now()
	since := func(t time.Time) int64 { return int64(t.Sub(base)) }
	reqs := make([]reqRecord, 0, int(float64(o.switchRate)*o.switchDur.Seconds())+16)
	var switches []switchRecord
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		switches = runSwitcher(t.admin, o.switchEvery, stop, since)
	}()
	ol.attack(h.ctx, t.addr, o.switchRate, o.switchDur, func(r *vegeta.Result) {
		rec := reqRecord{start: since(r.Timestamp), end: since(r.End()), ok: r.Error == "" && r.Code == http.StatusOK, err: r.Error}
		if r.Headers != nil {
			rec.color = r.Headers.Get(HeaderUpstreamColor)
			rec.gwColor = r.Headers.Get("X-Switchyard-Color")
		}
		if !rec.ok && rec.err == "" {
			rec.err = fmt.Sprintf("status %d", r.Code)
		}
		reqs = append(reqs, rec)
	})
	close(stop)
	wg.Wait()
	triggers, terr := switchCounts(t.admin)

	res := analyzeSwitch(reqs, switches, "blue")
	res.Triggers, res.AutoRollback = triggers, o.switchAutoRollback
	if terr != nil {
		h.note("switch test: reading the gateway's switch counters: %v", terr)
	}
	for k, n := range triggers {
		if !strings.HasPrefix(k, "admin/") && n > 0 {
			h.note("switch test: the gateway made %.0f switch(es) of its own (%s); the wrong-color check treats only the test's switches as switches", n, k)
		}
	}
	res.Rate, res.EveryMillis, res.Seconds = o.switchRate, float64(o.switchEvery.Milliseconds()), o.switchDur.Seconds()
	res.Workers, res.Layout = l.workers, l.String()
	b1, _ := blue.stats()
	g1, _ := green.stats()
	res.UpstreamConns = b1.Conns - b0.Conns + g1.Conns - g0.Conns
	png := filepath.Join(o.out, "switch-latency.png")
	if err := plotSwitch(png, reqs, switches, res, o); err != nil {
		h.note("plot not written: %v", err)
	} else {
		res.Plot = "switch-latency.png"
	}
	h.res.Switch = &res
	h.logf("switch test: %d requests, %d failed, %d wrong color, %d switches (%d failed); after-switch P99 %.0fµs vs steady %.0fµs; swap P50 %.0fns max %.0fns",
		res.Requests, res.Failed, res.WrongColor, res.Switches, res.SwitchFailures, res.AfterSwitch.P99, res.Steady.P99, res.Swap.P50, res.Swap.Max)
	if res.Failed > 0 {
		h.note("switch test: %d failed requests (first: %s)", res.Failed, res.FirstFailure)
	}
	if res.WrongColor > 0 {
		h.note("switch test: %d requests started after a switch returned but were answered by the old color", res.WrongColor)
	}
	return nil
}

// runSwitcher toggles the color every period until stop is closed and
// returns every call it made, in order.
func runSwitcher(admin string, every time.Duration, stop <-chan struct{}, since func(time.Time) int64) []switchRecord {
	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	tick := time.NewTicker(every)
	defer tick.Stop()
	var out []switchRecord
	for {
		select {
		case <-stop:
			return out
		case <-tick.C:
		}
		rec := switchRecord{sent: since(time.Now())}
		resp, err := client.Post("http://"+admin+"/admin/switch", "application/json", bytes.NewReader([]byte(`{"to":"toggle"}`)))
		if err != nil {
			rec.returned, rec.err = since(time.Now()), err.Error()
			out = append(out, rec)
			continue
		}
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		rec.returned = since(time.Now())
		var reply struct {
			From       string `json:"from"`
			To         string `json:"to"`
			SwapNs     int64  `json:"swap_ns"`
			Generation uint64 `json:"generation"`
		}
		switch {
		case err != nil:
			rec.err = err.Error()
		case resp.StatusCode != http.StatusOK:
			rec.err = fmt.Sprintf("%s: %s", resp.Status, bytes.TrimSpace(body))
		case json.Unmarshal(body, &reply) != nil || reply.To == "":
			rec.err = fmt.Sprintf("unreadable reply %q", body)
		default:
			rec.ok, rec.from, rec.to, rec.swapNs, rec.generation = true, reply.From, reply.To, reply.SwapNs, reply.Generation
		}
		out = append(out, rec)
	}
}

// analyzeSwitch checks every request against the switch history. A
// request that started after switch k returned, and ended before switch
// k+1 was sent, must be answered by switch k's color; one whose lifetime
// overlaps the next switch call may be answered by either, since the
// gateway reads the request some time after the client starts it.
func analyzeSwitch(reqs []reqRecord, calls []switchRecord, initial string) SwitchTest {
	var res SwitchTest
	var sw []switchRecord
	var rtt []time.Duration
	var swap []int64
	for _, c := range calls {
		if !c.ok {
			res.SwitchFailures++
			if res.FirstSwitchErr == "" {
				res.FirstSwitchErr = c.err
			}
			continue
		}
		sw = append(sw, c)
		rtt = append(rtt, time.Duration(c.returned-c.sent))
		swap = append(swap, c.swapNs)
	}
	res.Switches = len(sw)
	for i := 1; i < len(sw); i++ {
		prev, cur := sw[i-1], sw[i]
		if cur.from != prev.to || (cur.generation != 0 && cur.generation != prev.generation+1) {
			res.Unexplained++
			if len(res.UnexplainedExamples) < 5 {
				res.UnexplainedExamples = append(res.UnexplainedExamples, fmt.Sprintf(
					"switch %d (sent %.3fs into the test) went from %s at generation %d, but switch %d had left %s at generation %d",
					i+1, float64(cur.sent)/1e9, cur.from, cur.generation-1, i, prev.to, prev.generation))
			}
		}
	}
	res.Swap = nsSummary(swap)
	res.AdminRTT = percentiles(rtt)
	var after, steady []time.Duration
	for _, r := range reqs {
		res.Requests++
		if !r.ok {
			res.Failed++
			if res.FirstFailure == "" {
				res.FirstFailure = r.err
			}
			continue
		}
		if r.gwColor != r.color {
			res.HeaderMismatch++
		}
		// k switches had returned when the request started.
		k := sort.Search(len(sw), func(i int) bool { return sw[i].returned > r.start })
		want := initial
		if k > 0 {
			want = sw[k-1].to
		}
		lat := time.Duration(r.end - r.start)
		if k > 0 && r.start-sw[k-1].returned < int64(afterSwitchWindow) {
			after = append(after, lat)
		} else {
			steady = append(steady, lat)
		}
		// The next switch was asked for before this request ended: the
		// gateway may have read the request after that swap, so either
		// color is right.
		if k < len(sw) && sw[k].sent <= r.end {
			res.InFlightSwitch++
			if r.color == want {
				res.InFlightSwitchOld++
			} else {
				res.InFlightSwitchNew++
			}
			continue
		}
		if r.color != want {
			res.WrongColor++
			if len(res.WrongExamples) < 5 {
				ret := int64(0)
				if k > 0 {
					ret = sw[k-1].returned
				}
				res.WrongExamples = append(res.WrongExamples, fmt.Sprintf("request started %.3fms after switch %d (to %s) returned, answered by %q",
					float64(r.start-ret)/1e6, k, want, r.color))
			}
		}
	}
	res.AfterSwitch = percentiles(after)
	res.Steady = percentiles(steady)
	return res
}

// switchCounts reads switchyard_switches_total from the gateway's metrics,
// keyed "trigger/result".
func switchCounts(admin string) (map[string]float64, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		rest, ok := strings.CutPrefix(line, "switchyard_switches_total{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			continue
		}
		var trigger, result string
		for _, kv := range strings.Split(labels, ",") {
			k, v, _ := strings.Cut(kv, "=")
			v = strings.Trim(v, `"`)
			switch k {
			case "trigger":
				trigger = v
			case "result":
				result = v
			}
		}
		n, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			continue
		}
		out[trigger+"/"+result] += n
	}
	return out, nil
}
