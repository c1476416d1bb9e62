package main

import (
	"fmt"
	"time"
)

// probeSettle is how long the probe-cost point waits after every backend
// is ready before it measures: two rounds of the default interval.
const probeSettle = 4 * time.Second

// ProbeCost is what the health checker costs Switchyard with no client
// load at all.
type ProbeCost struct {
	BackendsPerPool int `json:"backends_per_pool"`
	// Interval is health.interval; empty is the default, 2s.
	Interval string  `json:"health_interval,omitempty"`
	Workers  int     `json:"workers"`
	CPUs     string  `json:"cpus,omitempty"`
	Seconds  float64 `json:"window_s"`
	// CPUSeconds is the process group's utime+stime over the window;
	// CorePercent the same as a share of one CPU.
	CPUSeconds  float64 `json:"cpu_s"`
	CorePercent float64 `json:"core_percent"`
	// Probes is what the stand-ins counted on /health in the window.
	Probes            int64   `json:"probes"`
	ProbesPerSec      float64 `json:"probes_per_s"`
	CPUMicrosPerProbe float64 `json:"cpu_us_per_probe"`
	// UpstreamConns counts connections the stand-ins accepted in the
	// window; UpstreamConnsTotal from before the gateway started to the
	// end of the window (the first probe of each backend included).
	UpstreamConns      int64   `json:"upstream_conns"`
	UpstreamConnsTotal int64   `json:"upstream_conns_total"`
	RSSMiB             float64 `json:"rss_mib"`
	OtherCores         float64 `json:"other_cores"`
}

// probeCost starts a fresh Switchyard with l's workers and pinning over
// nb backends per pool, sends it nothing, and measures its CPU over
// -probe-window once every backend is ready and probeSettle has passed:
// the health checker's cost alone.
func (h *harness) probeCost(blue, green *upstream, l layout, nb int) error {
	o := h.opts
	leave, err := h.enter(l, blue, green)
	if err != nil {
		return err
	}
	defer leave()
	b0, _ := blue.stats()
	g0, _ := green.stats()
	t, err := h.startSwitchyard(l, fmt.Sprintf("switchyard-probes-b%d", nb), blue.addrs[:nb], green.addrs[:nb], o.healthInterval)
	if err != nil {
		return err
	}
	defer h.stopProc(t.proc)
	pgid := t.proc.pgid
	sleep(h.ctx, probeSettle)
	h.waitQuiet()
	b1, _ := blue.stats()
	g1, _ := green.stats()
	w := openCPU(pgid)
	began := time.Now()
	sleep(h.ctx, o.probeWindow)
	secs, other := w.close()
	elapsed := time.Since(began).Seconds()
	b2, _ := blue.stats()
	g2, _ := green.stats()
	pc := &ProbeCost{BackendsPerPool: nb, Interval: o.healthInterval, Workers: l.workers, CPUs: groupCPUs(pgid),
		Seconds: elapsed, CPUSeconds: secs[0], CorePercent: 100 * secs[0] / elapsed, OtherCores: other,
		Probes:             b2.Probes - b1.Probes + g2.Probes - g1.Probes,
		UpstreamConns:      b2.Conns - b1.Conns + g2.Conns - g1.Conns,
		UpstreamConnsTotal: b2.Conns - b0.Conns + g2.Conns - g0.Conns}
	pc.ProbesPerSec = float64(pc.Probes) / elapsed
	if pc.Probes > 0 {
		pc.CPUMicrosPerProbe = secs[0] * 1e6 / float64(pc.Probes)
	}
	if u, err := groupUsage(pgid); err == nil {
		pc.RSSMiB = float64(u.RSSKiB) / 1024
	}
	h.res.ProbeCost = pc
	h.logf("probe cost, %d backends in all, no client load: %.2f%% of one core (%.2f s CPU in %.1f s), %d probes (%.0f/s), %.1f µs CPU per probe, upstream dials %d in the window, %d since start",
		2*nb, pc.CorePercent, pc.CPUSeconds, elapsed, pc.Probes, pc.ProbesPerSec, pc.CPUMicrosPerProbe, pc.UpstreamConns, pc.UpstreamConnsTotal)
	return nil
}
