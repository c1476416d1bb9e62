package health

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/proxy"
	"github.com/switchyard/switchyard/warmup"
	"go.uber.org/zap"
)

// State is one backend's health as shown in GET /admin/status.
type State struct {
	Addr        string    `json:"addr"`
	Color       string    `json:"color"`
	Version     string    `json:"version"`
	Probed      bool      `json:"probed"`
	Healthy     bool      `json:"healthy"`
	Warm        bool      `json:"warm"`
	Warming     bool      `json:"warming"`
	WarmPassed  int       `json:"warm_passed,omitempty"`
	WarmNeeded  int       `json:"warm_needed,omitempty"`
	WarmupError string    `json:"warmup_error,omitempty"`
	LastError   string    `json:"last_error,omitempty"`
	LastProbe   time.Time `json:"last_probe"`
	// Since is when Healthy or Warm last changed.
	Since         time.Time `json:"since"`
	ColdLatency   float64   `json:"cold_latency_seconds,omitempty"`
	WarmLatency   float64   `json:"warm_latency_seconds,omitempty"`
	WarmupSeconds float64   `json:"warmup_seconds,omitempty"`
	Restarts      int       `json:"restarts"`
	Report        Report    `json:"report"`
	SharedGPUWith []string  `json:"gpu_shared_with,omitempty"`

	passes, fails int
	// epoch changes whenever the process behind the backend may have lost
	// its warm state (unhealthy, restarted); a warmup that began in an
	// older epoch does not count.
	epoch        int
	rewarm       bool
	lastKeepWarm time.Time
	warmFailedAt time.Time
}

// monitor watches one backend.
type monitor struct {
	c        *Checker
	addr     string
	b        *proxy.Backend
	settings atomic.Pointer[Target]
	cancel   context.CancelFunc

	// ep is how probes reach the backend; only run's goroutine uses it.
	ep endpoint

	mu sync.Mutex
	st State
	// busy is true while a warmup or keep-warm request runs; one at a time.
	busy bool
}

func (m *monitor) state() State {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.st
	s := m.settings.Load()
	st.Addr, st.Color, st.Version = m.addr, string(s.Color), s.Version
	return st
}

func (m *monitor) gpuUUID() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st.Report.GPUUUID
}

func (m *monitor) setSharedWith(with []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.st.SharedGPUWith = with
}

func (m *monitor) requestRewarm() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.st.rewarm = true
}

func (m *monitor) logger() *zap.Logger {
	s := m.settings.Load()
	return m.c.log.With(zap.String("env", string(s.Color)), zap.String("version", s.Version), zap.String("backend", m.addr))
}

func (m *monitor) run(ctx context.Context) {
	defer m.c.wg.Done()
	m.ep = newEndpoint(ctx, m.addr, nil)
	defer func() { m.ep.close() }()
	// Probe new backends at once, but spread a fleet's first probes.
	first := time.Duration(rand.Int64N(int64(50 * time.Millisecond)))
	timer := time.NewTimer(first)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			m.b.SetReady(false)
			return
		case <-timer.C:
		}
		s := m.settings.Load()
		rep, err := m.probe(ctx, s)
		if ctx.Err() != nil {
			m.b.SetReady(false)
			return
		}
		if m.observe(ctx, s, rep, err) {
			m.c.checkSharing()
		}
		interval, jitter := s.Health.Interval.D(), s.Health.Jitter.D()
		timer.Reset(onBeat(time.Now(), jittered(interval, jitter), interval, jitter))
	}
}

// probe checks the backend once with s's settings, within s's timeout.
// When the pool's TLS config is not the one the endpoint was built with
// (a reload edited pools.*.tls), the endpoint is built anew first and the
// old one's connections closed.
func (m *monitor) probe(ctx context.Context, s *Target) (Report, error) {
	if s.tlsErr != nil {
		return Report{}, fmt.Errorf("pools.%s.tls: %w", s.Color, s.tlsErr)
	}
	if m.ep.tls != s.tls {
		m.ep.close()
		m.ep = newEndpoint(ctx, m.addr, s.tls)
	}
	pctx, release := withProbeDeadline(ctx, time.Now().Add(s.Health.Timeout.D()))
	defer release()
	return m.c.prober.probe(pctx, m.ep, &s.Health)
}

// backend is where warmup for s goes: the backend, dialed as probes dial
// it.
func (m *monitor) backend(s *Target) warmup.Backend {
	return warmup.Backend{Addr: m.addr, TLS: s.tls}
}

// observe applies one probe result: counts passes and failures, changes
// state on thresholds, and starts warmup or keep-warm when due. It
// reports whether the GPU the backend reports changed, which calls for
// checkSharing. Nothing shared with other backends or the proxy's request
// path is written unless it changes, save the load score (the proxy's
// ORCA reports write it too).
func (m *monitor) observe(ctx context.Context, s *Target, rep Report, err error) (gpuChanged bool) {
	now := m.c.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	st := &m.st
	wasHealthy, wasWarm := st.Healthy, st.Warm
	firstProbe := !st.Probed
	st.Probed, st.LastProbe = true, now
	if err != nil {
		st.fails++
		st.passes = 0
		st.LastError = err.Error()
	} else {
		st.passes++
		st.fails = 0
		st.LastError = ""
		if st.Report.BootID != "" && rep.BootID != "" && rep.BootID != st.Report.BootID {
			st.Restarts++
			st.Warm = false
			st.epoch++
			m.logger().Info("backend restarted (boot_id changed); warming again",
				zap.String("old_boot_id", st.Report.BootID), zap.String("boot_id", rep.BootID))
		}
		gpuChanged = rep.GPUUUID != st.Report.GPUUUID
		st.Report = rep
		m.b.SetLoadScore(rep.LoadScore())
	}

	switch {
	case st.Healthy && st.fails >= s.Health.UnhealthyThreshold:
		st.Healthy = false
		// A backend that was down may have lost its GPU state.
		st.Warm = false
		st.epoch++
	case !st.Healthy && err == nil && (firstProbe || st.passes >= s.Health.HealthyThreshold):
		// Like Envoy, the first probe of a new backend ignores the
		// threshold, so a fleet comes up in one interval.
		st.Healthy = true
	}
	if s.Warmup == nil {
		st.Warm = st.Healthy
	}
	if st.Healthy && err == nil {
		if until := m.b.EjectedUntil(); !until.IsZero() && !now.Before(until) {
			m.b.Uneject()
			m.logger().Info("passive-health ejection ended: active probe passes")
		}
	}
	ready := st.Healthy && st.Warm
	if m.b.Ready() != ready {
		m.b.SetReady(ready)
	}
	if st.Healthy != wasHealthy || st.Warm != wasWarm {
		st.Since = now
		l := m.logger()
		switch {
		case st.Healthy != wasHealthy && st.Healthy:
			l.Info("backend healthy", zap.Bool("ready", ready))
		case st.Healthy != wasHealthy:
			l.Warn("backend unhealthy", zap.String("reason", st.LastError), zap.Int("failures", st.fails))
		case !st.Warm:
			l.Info("backend no longer warm", zap.Bool("ready", ready))
		}
	}

	if !st.Healthy || s.Warmup == nil || m.busy {
		return gpuChanged
	}
	switch {
	case !st.Warm || st.rewarm:
		// After a failed warmup, wait a few intervals before trying again,
		// so a broken model does not get hammered.
		if !st.rewarm && !st.warmFailedAt.IsZero() && now.Sub(st.warmFailedAt) < 3*s.Health.Interval.D() {
			return gpuChanged
		}
		st.rewarm = false
		m.busy, st.Warming, st.WarmPassed, st.WarmNeeded = true, true, 0, s.Warmup.Requests
		m.c.wg.Add(1)
		go m.warm(ctx, s, st.epoch)
	case s.KeepWarm > 0 && m.c.active() != s.Color && now.Sub(st.lastKeepWarm) >= s.KeepWarm:
		st.lastKeepWarm = now
		m.busy = true
		m.c.wg.Add(1)
		go m.keepWarm(ctx, s)
	}
	return gpuChanged
}

func (m *monitor) warm(ctx context.Context, s *Target, epoch int) {
	defer m.c.wg.Done()
	start := time.Now()
	l := m.logger()
	l.Info("warmup started", zap.Int("requests", s.Warmup.Requests), zap.String("path", s.Warmup.Path))
	res, err := m.c.warmer.Warm(ctx, m.backend(s), s.Warmup, func(passed, needed int) {
		m.mu.Lock()
		m.st.WarmPassed, m.st.WarmNeeded = passed, needed
		m.mu.Unlock()
	})
	m.mu.Lock()
	defer m.mu.Unlock()
	m.busy, m.st.Warming = false, false
	if ctx.Err() != nil {
		return
	}
	if epoch != m.st.epoch {
		// The backend went down or restarted while we warmed it: this
		// result is about a process that is gone. The next probe warms
		// the new one.
		l.Info("warmup result discarded: the backend went down or restarted meanwhile")
		return
	}
	if err != nil {
		m.st.WarmupError = err.Error()
		m.st.warmFailedAt = m.c.now()
		if m.st.Warm && m.c.active() != s.Color {
			m.st.Warm = false
		}
		l.Warn("warmup failed", zap.Error(err), zap.Int("requests", res.Requests))
		m.b.SetReady(m.st.Healthy && m.st.Warm)
		return
	}
	m.st.WarmupError = ""
	m.st.ColdLatency, m.st.WarmLatency = res.Cold.Seconds(), res.Warm.Seconds()
	m.st.WarmupSeconds = time.Since(start).Seconds()
	m.st.lastKeepWarm = m.c.now()
	if !m.st.Warm {
		m.st.Warm = true
		m.st.Since = m.c.now()
	}
	ready := m.st.Healthy && m.st.Warm
	m.b.SetReady(ready)
	l.Info("backend warm", zap.Bool("ready", ready), zap.Int("requests", res.Requests),
		zap.Duration("cold", res.Cold), zap.Duration("warm", res.Warm), zap.Duration("took", time.Since(start)))
}

func (m *monitor) keepWarm(ctx context.Context, s *Target) {
	defer m.c.wg.Done()
	pctx, cancel := ctx, context.CancelFunc(func() {})
	if s.Warmup.Timeout > 0 {
		pctx, cancel = context.WithTimeout(ctx, s.Warmup.Timeout)
	}
	lat, err := m.c.warmer.Ping(pctx, m.backend(s), s.Warmup)
	cancel()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.busy = false
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		// A standby that fails its dummy inference is not ready to take
		// traffic: warm it again before any switch.
		m.st.Warm, m.st.WarmupError, m.st.Since = false, "keep-warm: "+err.Error(), m.c.now()
		m.b.SetReady(false)
		m.logger().Warn("keep-warm inference failed; warming again", zap.Error(err))
		return
	}
	m.st.WarmLatency = lat.Seconds()
}
