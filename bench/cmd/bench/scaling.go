package main

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ScalePoint is Switchyard measured at one pool size or connection count.
type ScalePoint struct {
	Backends int `json:"backends_per_pool"`
	// HealthInterval is health.interval when it is not the default.
	HealthInterval string      `json:"health_interval,omitempty"`
	Conns          int         `json:"client_conns"`
	PeakRPS        float64     `json:"peak_rps"`
	Closed         Percentiles `json:"closed"`
	ClosedErrors   int64       `json:"closed_errors"`
	CPUMicros      float64     `json:"cpu_us_per_req"`
	// Open is the latency at the fixed rate: vegeta over its own pool of
	// connections for the backend sweep, the paced per-connection
	// generator over Conns connections for the connection sweep.
	Open          Percentiles `json:"open"`
	OpenErrors    int64       `json:"open_errors"`
	OpenCPUMicros float64     `json:"open_cpu_us_per_req"`
	// OpenLate counts paced requests sent over 1 ms late (connection busy).
	OpenLate int64 `json:"open_late,omitempty"`
	// PeakFDs is the most file descriptors the gateway held (sampled every
	// 100 ms): client plus upstream connections.
	PeakFDs   int     `json:"peak_fds"`
	MemoryMiB float64 `json:"memory_mib"`
	// UpstreamConns counts connections the upstreams accepted during the
	// point: dials the gateway made.
	UpstreamConns int64   `json:"upstream_conns"`
	ProbesPerSec  float64 `json:"probes_per_s"`
	// OtherCores: CPUs kept busy by unrelated processes in the closed loop.
	OtherCores float64 `json:"other_cores"`
	Skipped    string  `json:"skipped,omitempty"`
	FirstErr   string  `json:"first_error,omitempty"`
}

// Scaling is the cost of Switchyard as pools and client counts grow.
type Scaling struct {
	Workers int  `json:"workers"`
	Pinned  bool `json:"pinned"`
	// ProxyCPUs and OtherCPUs are the CPUs of Switchyard and of the
	// stand-ins and generators when pinned.
	ProxyCPUs string `json:"proxy_cpus,omitempty"`
	OtherCPUs string `json:"other_cpus,omitempty"`
	// Generator made the closed loop of the backend sweep; the
	// connection sweep always uses the in-process fasthttp generator.
	Generator string       `json:"closed_loop_generator"`
	Backends  []ScalePoint `json:"backends"`
	Conns     []ScalePoint `json:"conns"`
}

// scale measures Switchyard with l's workers and pinning over the
// stand-ins blue and green, which have at least max(-scale-backends)
// listeners each.
func (h *harness) scale(blue, green *upstream, l layout) error {
	o := h.opts
	n := 1
	if len(o.scaleBackends) > 0 {
		n = slices.Max(o.scaleBackends)
	}
	leave, err := h.enter(l, blue, green)
	if err != nil {
		return err
	}
	defer leave()
	sc := &Scaling{Workers: l.workers, Pinned: l.pinned(), Generator: h.generator()}
	if l.pinned() {
		sc.ProxyCPUs, sc.OtherCPUs = cpuList(l.proxy), cpuList(l.others)
	}
	h.res.Scaling = sc
	h.logf("scaling: Switchyard with %s", l)
	for _, nb := range o.scaleBackends {
		p, err := h.scalePoint(blue, green, l, nb, o.conns, false, o.healthInterval)
		if err != nil {
			return err
		}
		sc.Backends = append(sc.Backends, p)
	}
	// The largest pool once more with probes 15 times rarer: how much of
	// its cost is the health checker's.
	if o.probeContrast != "" && n > 1 && o.healthInterval == "" {
		p, err := h.scalePoint(blue, green, l, n, o.conns, false, o.probeContrast)
		if err != nil {
			return err
		}
		sc.Backends = append(sc.Backends, p)
	}
	for _, nc := range o.scaleConns {
		if why := connLimit(nc); why != "" {
			sc.Conns = append(sc.Conns, ScalePoint{Backends: 1, Conns: nc, Skipped: why})
			h.note("%d client connections skipped: %s", nc, why)
			continue
		}
		p, err := h.scalePoint(blue, green, l, 1, nc, true, o.healthInterval)
		if err != nil {
			return err
		}
		sc.Conns = append(sc.Conns, p)
	}
	return nil
}

// scalePoint starts a fresh gateway over nb backends per pool, so its peak
// memory belongs to this point alone, and measures it with conns closed-loop
// connections, then at the fixed rate.
func (h *harness) scalePoint(blue, green *upstream, l layout, nb, conns int, paced bool, interval string) (ScalePoint, error) {
	o := h.opts
	p := ScalePoint{Backends: nb, Conns: conns, HealthInterval: interval}
	name := fmt.Sprintf("switchyard-b%d-c%d", nb, conns)
	if interval != "" {
		name += "-probe" + interval
	}
	t, err := h.startSwitchyard(l, name, blue.addrs[:nb], green.addrs[:nb], interval)
	if err != nil {
		return p, err
	}
	defer h.stopProc(t.proc)
	pgid := t.proc.pgid
	h.waitQuiet()
	fds := watchFDs(pgid)
	b0, _ := blue.stats()
	g0, _ := green.stats()
	began := time.Now()
	var cw *cpuWindow
	var cpu float64
	window := func(open bool) {
		if open {
			cw = openCPU(pgid, blue.proc.pgid, green.proc.pgid)
			return
		}
		secs, other := cw.close()
		cpu, p.OtherCores = secs[0], other
	}
	// The connection sweep keeps the in-process generator: it opens its
	// connections in batches before the window (wrk opens all of them at
	// once, inside it) and holds exactly that many.
	var cr closedResult
	if paced {
		r := connLoad{addr: t.addr, conns: conns, warm: o.warm, dur: o.scaleDur, window: window}.run(h.ctx)
		cr = closedResult{Requests: r.Requests, Errors: r.Errors + r.RampErrors, Elapsed: r.Elapsed, Lat: percentiles(r.Lat), FirstErr: r.FirstErr}
	} else {
		cr = h.closedLoop(t.addr, conns, o.scaleDur, window)
	}
	if cr.Elapsed > 0 {
		p.PeakRPS = float64(cr.Requests) / cr.Elapsed.Seconds()
	}
	p.Closed = cr.Lat
	p.ClosedErrors = cr.Errors
	p.FirstErr = cr.FirstErr
	if cr.Requests > 0 {
		p.CPUMicros = cpu * 1e6 / float64(cr.Requests)
	}
	if paced {
		var ow *cpuWindow
		var ocpu float64
		pr := connLoad{addr: t.addr, conns: conns, rate: float64(o.scaleRate), warm: o.warm, dur: o.scaleDur, window: func(open bool) {
			if open {
				ow = openCPU(pgid)
				return
			}
			secs, _ := ow.close()
			ocpu = secs[0]
		}}.run(h.ctx)
		p.Open = percentiles(pr.Lat)
		p.OpenErrors = pr.Errors + pr.RampErrors
		p.OpenLate = pr.Late
		if pr.Requests > 0 {
			p.OpenCPUMicros = ocpu * 1e6 / float64(pr.Requests)
		}
		if p.FirstErr == "" {
			p.FirstErr = pr.FirstErr
		}
	} else {
		ol := newOpenLoader()
		ol.attack(h.ctx, t.addr, o.scaleRate, o.warm, nil)
		w := openCPU(pgid)
		or := ol.attack(h.ctx, t.addr, o.scaleRate, o.scaleDur, nil)
		secs, _ := w.close()
		ocpu := secs[0]
		ol.close()
		p.Open = percentiles(or.Lat)
		p.OpenErrors = int64(or.Errors)
		if or.OK > 0 {
			p.OpenCPUMicros = ocpu * 1e6 / float64(or.OK)
		}
		if p.FirstErr == "" {
			p.FirstErr = or.FirstErr
		}
	}
	b1, _ := blue.stats()
	g1, _ := green.stats()
	span := time.Since(began).Seconds()
	p.PeakFDs = fds()
	p.UpstreamConns = b1.Conns - b0.Conns + g1.Conns - g0.Conns
	if u, err := groupUsage(pgid); err == nil {
		p.MemoryMiB = float64(u.HWMKiB) / 1024
	}
	// Probe rate over the whole point, from the stand-ins' counters.
	p.ProbesPerSec = float64(b1.Probes-b0.Probes+g1.Probes-g0.Probes) / span
	h.logf("scale %4d backends/pool %5d conns: %7.0f req/s, CPU %5.1fµs/req, open P50 %6.0fµs P99 %6.0fµs, RSS %5.1f MiB, peak fds %d, upstream dials %d, errors %d/%d, other load %.2f CPUs",
		nb, conns, p.PeakRPS, p.CPUMicros, p.Open.P50, p.Open.P99, p.MemoryMiB, p.PeakFDs, p.UpstreamConns, p.ClosedErrors, p.OpenErrors, p.OtherCores)
	return p, nil
}

// connLimit says why conns client connections cannot be run here, or "".
// This process and the gateway each hold one descriptor per client
// connection; the gateway's upstream connections (one per request in
// flight to the backend, far fewer than clients unless the backend is
// slow) share what is left, which PeakFDs shows.
func connLimit(conns int) string {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
		if need := uint64(conns + 1024); lim.Cur < need {
			return fmt.Sprintf("RLIMIT_NOFILE is %d (hard limit; raising it needs CAP_SYS_RESOURCE) and %d client connections need at least %d", lim.Cur, conns, need)
		}
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		f := strings.Fields(string(b))
		if len(f) == 2 {
			lo, _ := strconv.Atoi(f[0])
			hi, _ := strconv.Atoi(f[1])
			if hi-lo+1 < conns {
				return fmt.Sprintf("only %d ephemeral ports (net.ipv4.ip_local_port_range %d-%d) toward one address", hi-lo+1, lo, hi)
			}
		}
	}
	return ""
}

// watchFDs samples the open descriptors of the group leader every 100 ms
// until the returned function is called, which returns the peak.
func watchFDs(pid int) func() int {
	stop := make(chan struct{})
	peak := make(chan int)
	go func() {
		best := 0
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			if ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd"); err == nil {
				best = max(best, len(ents))
			}
			select {
			case <-stop:
				peak <- best
				return
			case <-t.C:
			}
		}
	}()
	return func() int {
		close(stop)
		return <-peak
	}
}
