package health

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proxy"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// BenchmarkProbeScale measures what probing a large fleet costs the
// gateway, with the default probe settings (every 2s ± 200ms, 1s
// timeout) and the Checker as the gateway wires it: 2,000 loopback
// backends, i.e. 1,000 backends in each pool, 1,000 probes a second.
//
// The backends are served by a child process (this test binary, running
// TestProbeScaleServer), so the figures are the checker's own: the
// process CPU (user and system, from getrusage) over a window of wall
// time, goroutine wake-ups, syscalls, GC and logging included. The
// server's CPU is reported beside it. On loopback the kernel's work for
// a segment is charged to its sender, so the checker's system time
// includes the server side's receiving of each request (and the server's
// the checker's receiving of each answer). Each backend answers as the
// project's model server does on a GPU of its own (scaleResponse).
//
//	go test -run '^$' -bench ProbeScale -benchtime 1x ./health/
//
// Environment: PROBE_SCALE_BACKENDS (default 2000), PROBE_SCALE_WINDOW
// (default 10s), PROBE_SCALE_INTERVAL (default 2s), PROBE_SCALE_PROFILE
// (a file to write a CPU profile of the measured window to; the window of
// the last sub-benchmark run wins).
//
// Metrics: cpu-µs/probe (sys-µs/probe of it in the kernel), allocs/probe
// and B/probe are the checker process's per probe; server-cpu-µs/probe
// the child's; dials/backend is
// the connections the server accepted since the checker started, per
// backend (1 when every probe connection is kept); window-dials the
// connections accepted during the window.
func BenchmarkProbeScale(b *testing.B) {
	backends := envInt(b, "PROBE_SCALE_BACKENDS", 2000)
	window := envDuration(b, "PROBE_SCALE_WINDOW", 10*time.Second)
	interval := envDuration(b, "PROBE_SCALE_INTERVAL", config.DefaultProbeInterval)
	for _, kind := range []string{config.ProbeHTTP, config.ProbeJSON} {
		b.Run("kind="+kind, func(b *testing.B) {
			srv := startScaleServer(b, backends)
			h := config.Default().Health
			h.Kind, h.Path = kind, config.DefaultProbePath(kind)
			if interval != config.DefaultProbeInterval {
				h.Interval, h.Jitter = config.Duration(interval), config.Duration(interval/10)
				h.Timeout = config.Duration(min(interval, config.DefaultProbeTimeout))
			}
			reg := proxy.NewRegistry(proxy.RegistryOptions{})
			defer reg.CloseIdle()
			targets := make([]Target, 0, len(srv.addrs))
			for i, addr := range srv.addrs {
				color := config.Blue
				if i%2 == 1 {
					color = config.Green
				}
				targets = append(targets, Target{Backend: reg.Get(addr), Color: color, Version: "v1", Health: h})
			}
			// The gateway's logger writes JSON at info level; only
			// transitions may reach it.
			log := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()),
				zapcore.AddSync(io.Discard), zap.InfoLevel))
			c := New(log.Named("health"), nil, func() config.Color { return config.Blue })
			defer c.Close()
			c.Sync(targets)
			require.Eventually(b, func() bool { return allReady(targets) }, 30*time.Second, 10*time.Millisecond,
				"not every backend became ready")
			// Let the first probes' burst pass: one interval more.
			time.Sleep(interval) // a fixed settling time, not waiting for a condition

			measureProbes(b, srv, window)
		})
	}
}

// BenchmarkProbeScaleFloor is BenchmarkProbeScale's floor: no checker,
// only what any probe over a kept connection must do, each backend's
// goroutine sleeping its jittered interval to the next beat (as the
// checker's do), then writing a GET and reading the answer, with no
// parsing and no allocation. What the checker costs beyond it is its
// own.
func BenchmarkProbeScaleFloor(b *testing.B) {
	backends := envInt(b, "PROBE_SCALE_BACKENDS", 2000)
	window := envDuration(b, "PROBE_SCALE_WINDOW", 10*time.Second)
	interval := envDuration(b, "PROBE_SCALE_INTERVAL", config.DefaultProbeInterval)
	srv := startScaleServer(b, backends)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	req := []byte("GET /health HTTP/1.1\r\nHost: x\r\nUser-Agent: switchyard-probe\r\n\r\n")
	for _, addr := range srv.addrs {
		conn, err := net.Dial("tcp", addr)
		require.NoError(b, err)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer conn.Close()
			stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
			defer stop()
			buf := make([]byte, 512)
			t := time.NewTimer(jittered(interval, interval/10))
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				_ = conn.SetDeadline(time.Now().Add(time.Second))
				if _, err := conn.Write(req); err != nil {
					return
				}
				if _, err := conn.Read(buf); err != nil {
					return
				}
				t.Reset(onBeat(time.Now(), jittered(interval, interval/10), interval, interval/10))
			}
		}()
	}
	time.Sleep(interval + interval/10) // a fixed settling time, not waiting for a condition
	measureProbes(b, srv, window)
}

// measureProbes runs b's loop, each iteration a window of wall time, and
// reports what the process spent on the probes the server answered.
func measureProbes(b *testing.B, srv *scaleServer, window time.Duration) {
	b.Helper()
	var cpu, sys, serverCPU time.Duration
	var probes, windowDials, mallocs, bytes uint64
	for b.Loop() {
		var before, after runtime.MemStats
		s0 := srv.stats(b)
		runtime.ReadMemStats(&before)
		stop := profileWindow(b)
		user0, sys0 := processTimes()
		time.Sleep(window) // measuring over a fixed wall time
		user1, sys1 := processTimes()
		cpu += user1 - user0 + sys1 - sys0
		sys += sys1 - sys0
		stop()
		runtime.ReadMemStats(&after)
		s1 := srv.stats(b)
		probes += s1.requests - s0.requests
		windowDials += s1.accepts - s0.accepts
		serverCPU += s1.cpu - s0.cpu
		mallocs += after.Mallocs - before.Mallocs
		bytes += after.TotalAlloc - before.TotalAlloc
	}
	total := srv.stats(b)
	n := float64(max(probes, 1))
	b.ReportMetric(float64(cpu.Nanoseconds())/1e3/n, "cpu-µs/probe")
	b.ReportMetric(float64(sys.Nanoseconds())/1e3/n, "sys-µs/probe")
	b.ReportMetric(float64(mallocs)/n, "allocs/probe")
	b.ReportMetric(float64(bytes)/n, "B/probe")
	b.ReportMetric(float64(serverCPU.Nanoseconds())/1e3/n, "server-cpu-µs/probe")
	b.ReportMetric(n/(window.Seconds()*float64(b.N)), "probes/s")
	b.ReportMetric(100*cpu.Seconds()/(window.Seconds()*float64(b.N)), "cpu-%-of-core")
	b.ReportMetric(float64(total.accepts)/float64(len(srv.addrs)), "dials/backend")
	b.ReportMetric(float64(windowDials), "window-dials")
	b.ReportMetric(float64(runtime.NumGoroutine()), "goroutines")
}

// processTimes returns the user and system CPU time the process used.
func processTimes() (user, sys time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

// profileWindow starts a CPU profile into PROBE_SCALE_PROFILE, if set,
// and returns what stops it.
func profileWindow(b *testing.B) func() {
	b.Helper()
	path := os.Getenv("PROBE_SCALE_PROFILE")
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	require.NoError(b, err)
	require.NoError(b, pprof.StartCPUProfile(f))
	return func() {
		pprof.StopCPUProfile()
		require.NoError(b, f.Close())
	}
}

func envInt(b *testing.B, name string, def int) int {
	b.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := strconv.Atoi(s)
	require.NoError(b, err, name)
	return v
}

func envDuration(b *testing.B, name string, def time.Duration) time.Duration {
	b.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	v, err := time.ParseDuration(s)
	require.NoError(b, err, name)
	return v
}

// scaleServer is the child process serving the benchmark's backends.
type scaleServer struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	out   *bufio.Reader
	addrs []string
}

// serverStats is what the child counted since it started.
type serverStats struct {
	accepts, requests uint64
	cpu               time.Duration
}

// startScaleServer runs n backends in a child process until the
// benchmark ends.
func startScaleServer(b *testing.B, n int) *scaleServer {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestProbeScaleServer$", "-test.count=1")
	cmd.Env = append(os.Environ(), "PROBE_SCALE_SERVER="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	require.NoError(b, err)
	out, err := cmd.StdoutPipe()
	require.NoError(b, err)
	require.NoError(b, cmd.Start())
	s := &scaleServer{cmd: cmd, in: in, out: bufio.NewReader(out)}
	b.Cleanup(func() {
		_ = s.in.Close() // the child exits when its stdin closes
		_ = s.cmd.Wait()
	})
	for len(s.addrs) < n {
		line, err := s.out.ReadString('\n')
		require.NoError(b, err, "the backend server did not start")
		s.addrs = append(s.addrs, strings.TrimSpace(line))
	}
	return s
}

// stats asks the child for its counts.
func (s *scaleServer) stats(b *testing.B) serverStats {
	b.Helper()
	_, err := io.WriteString(s.in, "stats\n")
	require.NoError(b, err)
	line, err := s.out.ReadString('\n')
	require.NoError(b, err)
	var st serverStats
	var cpu int64
	_, err = fmt.Sscan(line, &st.accepts, &st.requests, &cpu)
	require.NoError(b, err, line)
	st.cpu = time.Duration(cpu)
	return st
}

// scaleResponse is backend i's answer to every request: the json-kind
// health body of the project's model server (deploy/model-server) on a
// GPU of its own, with the headers it sends. Its queue depth, the byte at
// the returned offset, changes from one answer to the next.
func scaleResponse(i int) ([]byte, int) {
	body := `{"status": "ok", "model_loaded": true, "cuda_available": true, "device": "cuda:0", ` +
		`"gpu_uuid": "GPU-` + fmt.Sprintf("%08d", i) + `-8f1b-4c7e-9a6d-0b1c2d3e4f50", ` +
		`"gpu_memory_used_bytes": 17179869184, "gpu_memory_total_bytes": 85899345920, "gpu_utilization": 0.37, ` +
		`"queue_depth": 0, "boot_id": "3f9c1e0a-7b2d-4e8f-a1c3-5d6e7f809a1b", "version": "v1", "color": "blue"}`
	head := "HTTP/1.1 200 OK\r\ndate: Mon, 01 Jan 2024 00:00:00 GMT\r\nserver: uvicorn\r\n" +
		"content-length: " + strconv.Itoa(len(body)) + "\r\ncontent-type: application/json\r\n\r\n"
	return []byte(head + body), len(head) + strings.Index(body, `"queue_depth": `) + len(`"queue_depth": `)
}

// TestProbeScaleServer is not a test: it is BenchmarkProbeScale's backend
// server, run in a child process. It listens on PROBE_SCALE_SERVER
// loopback ports, prints their addresses, answers every GET with
// scaleResponse on kept connections (with no idle timeout), and on each "stats" line read from
// stdin prints the connections accepted, requests answered and its CPU
// time in nanoseconds. It exits when stdin closes.
func TestProbeScaleServer(t *testing.T) {
	n, err := strconv.Atoi(os.Getenv("PROBE_SCALE_SERVER"))
	if err != nil {
		t.Skip("run by BenchmarkProbeScale")
	}
	var accepts, requests atomic.Uint64
	out := bufio.NewWriter(os.Stdout)
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		_, _ = fmt.Fprintln(out, ln.Addr().String())
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				accepts.Add(1)
				go serveScaleConn(conn, i, &requests)
			}
		}()
	}
	require.NoError(t, out.Flush())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		_, _ = fmt.Fprintln(out, accepts.Load(), requests.Load(), int64(processCPU()))
		_ = out.Flush()
	}
	// The listeners and connections end with the process; skip the leak
	// check of TestMain, which would wait for them.
	os.Exit(0)
}

// serveScaleConn answers each request head read from conn, backend i's
// connection, however the reads split them.
func serveScaleConn(conn net.Conn, i int, requests *atomic.Uint64) {
	defer conn.Close()
	resp, queue := scaleResponse(i)
	buf := make([]byte, 4096)
	var pending []byte
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return
		}
		pending = append(pending, buf[:n]...)
		for {
			i := bytes.Index(pending, []byte("\r\n\r\n"))
			if i < 0 {
				break
			}
			pending = pending[i+4:]
			resp[queue] = '0' + byte(requests.Add(1)%10)
			if _, err := conn.Write(resp); err != nil {
				return
			}
		}
		pending = append(pending[:0], pending...)
	}
}
