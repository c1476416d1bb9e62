package health

import (
	"net"
	"net/http"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proxy"
	"go.uber.org/zap"
)

// BenchmarkProbe200Backends measures what probing costs the gateway: 200
// backends, each probed once a second as in production, for probeWindow
// of wall time. It reports the share of one core the process used beyond
// a baseline measured the same way with no checker running.
//
// The 200 fake backends are tiny net/http servers in this process, so
// their CPU is in the figure too: cpu-%-of-core is an upper bound on the
// checker's own cost, and us-cpu/probe the cost of one whole probe,
// both ends of the connection together.
func BenchmarkProbe200Backends(b *testing.B) {
	const (
		backends    = 200
		interval    = time.Second
		probeWindow = 3 * time.Second
	)
	var probes, conns atomic.Int64
	body := []byte(`{"status":"ok","model_loaded":true,"queue_depth":0}`)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		probes.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	})
	reg := proxy.NewRegistry(proxy.RegistryOptions{})
	defer reg.CloseIdle()
	h := config.Health{Kind: config.ProbeJSON, Path: "/health", Interval: config.Duration(interval),
		Timeout: config.Duration(interval), Jitter: config.Duration(interval / 10), HealthyThreshold: 2, UnhealthyThreshold: 3}
	targets := make([]Target, 0, backends)
	for range backends {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(b, err)
		srv := &http.Server{Handler: handler, IdleTimeout: 2 * time.Second, ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		}}
		go func() { _ = srv.Serve(ln) }()
		defer srv.Close()
		targets = append(targets, Target{Backend: reg.Get(ln.Addr().String()), Color: config.Blue, Version: "v1", Health: h})
	}

	for b.Loop() {
		baseline := cpuOver(probeWindow)

		c := New(zap.NewNop(), nil, func() config.Color { return config.Blue })
		c.Sync(targets)
		// Let every backend get its first probe (spread over 50ms) and
		// settle into its interval before measuring.
		require.Eventually(b, func() bool { return allReady(targets) }, 10*time.Second, 10*time.Millisecond,
			"not every backend became ready")
		probesBefore, connsBefore := probes.Load(), conns.Load()
		probing := cpuOver(probeWindow)
		n, dials := probes.Load()-probesBefore, conns.Load()-connsBefore
		c.Close()

		extra := probing - baseline
		b.ReportMetric(100*extra.Seconds()/probeWindow.Seconds(), "cpu-%-of-core")
		b.ReportMetric(float64(extra.Microseconds())/float64(max(n, 1)), "us-cpu/probe")
		b.ReportMetric(float64(n)/probeWindow.Seconds(), "probes/s")
		// New connections per probe: 1 means keep-alive never helped.
		b.ReportMetric(float64(dials)/float64(max(n, 1)), "conns/probe")
	}
}

// cpuOver returns the CPU time (user and system) the whole process used
// during d of wall time.
func cpuOver(d time.Duration) time.Duration {
	start := processCPU()
	time.Sleep(d) // measuring over a fixed wall time, not waiting for a condition
	return processCPU() - start
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func allReady(targets []Target) bool {
	for _, t := range targets {
		if !t.Backend.Ready() {
			return false
		}
	}
	return true
}
