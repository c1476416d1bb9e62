// Command grpcbench measures unary gRPC through Switchyard against nginx's
// grpc_pass on the same upstream: calls per second and proxy CPU per call,
// side by side, in interleaved rounds. Results go to
// bench/results/grpc.md and grpc.json.
//
//	go run ./bench/cmd/grpcbench                 # 3 rounds x 10 s per target
//	go run ./bench/cmd/grpcbench -rounds 1 -dur 3s
//
// Every part is its own process on 127.0.0.1: the upstream (this binary
// re-executed as `grpcbench upstream`, a grpc-go KServe v2 server answering
// ModelInfer at once), `switchyard serve` (protocol grpc, kserve-grpc
// probes, no warmup, log level warn) and nginx (`listen ... http2`,
// `grpc_pass` to an upstream block with keepalive), each with the same
// number of workers (-workers: GOMAXPROCS, worker_processes). The load is
// closed-loop: -streams concurrent callers over -conns HTTP/2 connections,
// from this process. CPU per call is the proxy's own user+system time
// (its whole process group, from /proc) divided by the calls it carried.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/switchyard/switchyard/proto/inference"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "upstream" {
		os.Exit(upstreamMain(os.Args[2:]))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	switchyard, nginx, out string
	rounds, workers        int
	streams, conns         int
	dur, warm              time.Duration
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("grpcbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{}
	fs.StringVar(&o.switchyard, "switchyard", "bin/switchyard", "switchyard binary")
	fs.StringVar(&o.nginx, "nginx", "nginx", "nginx binary (Debian's has grpc_pass); missing is an error")
	fs.StringVar(&o.out, "out", "bench/results", "directory for grpc.md and grpc.json")
	fs.IntVar(&o.rounds, "rounds", 3, "interleaved rounds; the median per target is reported")
	fs.IntVar(&o.workers, "workers", 2, "workers per proxy: GOMAXPROCS for switchyard, worker_processes for nginx")
	fs.IntVar(&o.streams, "streams", 32, "concurrent callers")
	fs.IntVar(&o.conns, "conns", 4, "client HTTP/2 connections the callers share")
	fs.DurationVar(&o.dur, "dur", 10*time.Second, "measured duration per target and round")
	fs.DurationVar(&o.warm, "warm", 2*time.Second, "unmeasured load before each measurement")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if err := bench(o, stdout); err != nil {
		fmt.Fprintln(stderr, "grpcbench:", err)
		return 1
	}
	return 0
}

// Result is one target's median over the rounds.
type Result struct {
	Target      string    `json:"target"`
	CallsPerSec float64   `json:"calls_per_sec"`
	CPUPerCall  float64   `json:"cpu_us_per_call"`
	P50Ms       float64   `json:"p50_ms"`
	P99Ms       float64   `json:"p99_ms"`
	Errors      int       `json:"errors"`
	Rounds      []Round   `json:"rounds"`
	At          time.Time `json:"at"`
}

// Round is one measurement of one target.
type Round struct {
	Calls       int     `json:"calls"`
	Errors      int     `json:"errors"`
	CallsPerSec float64 `json:"calls_per_sec"`
	CPUPerCall  float64 `json:"cpu_us_per_call"`
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
}

type target struct {
	name string
	addr string
	pgid int
}

func bench(o *options, stdout io.Writer) error {
	tmp, err := os.MkdirTemp("", "grpcbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			_ = syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
			_ = p.Wait()
		}
	}()
	start := func(name string, env []string, argv ...string) (*exec.Cmd, error) {
		log, err := os.Create(filepath.Join(tmp, name+".log"))
		if err != nil {
			return nil, err
		}
		defer log.Close()
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stdout, cmd.Stderr, cmd.Env = log, log, append(os.Environ(), env...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("starting %s: %w", name, err)
		}
		procs = append(procs, cmd)
		return cmd, nil
	}

	up := freeAddr()
	if _, err := start("upstream", []string{"GOMAXPROCS=" + strconv.Itoa(o.workers)}, self, "upstream", "-addr", up); err != nil {
		return err
	}
	sy, adm, ng := freeAddr(), freeAddr(), freeAddr()
	cfg := fmt.Sprintf("listen: %s\nadmin: {listen: %s}\nlog: {level: warn}\n"+
		"health: {kind: kserve-grpc, interval: 1s, timeout: 500ms}\n"+
		"pools:\n  blue: {version: v1, protocol: grpc, backends: [%s]}\n  green: {version: v2, protocol: grpc, backends: []}\n", sy, adm, up)
	if err := os.WriteFile(filepath.Join(tmp, "switchyard.yaml"), []byte(cfg), 0o644); err != nil {
		return err
	}
	syCmd, err := start("switchyard", []string{"GOMAXPROCS=" + strconv.Itoa(o.workers)}, o.switchyard, "serve", "--config", filepath.Join(tmp, "switchyard.yaml"))
	if err != nil {
		return err
	}
	nginxBin, err := exec.LookPath(o.nginx)
	if err != nil {
		return fmt.Errorf("nginx not found (%w); install it with make bench-deps", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "nginx.conf"), []byte(nginxConf(tmp, ng, up, o.workers)), 0o644); err != nil {
		return err
	}
	ngCmd, err := start("nginx", nil, nginxBin, "-p", tmp, "-c", filepath.Join(tmp, "nginx.conf"), "-e", filepath.Join(tmp, "nginx-error.log"))
	if err != nil {
		return err
	}
	targets := []*target{
		{name: "direct", addr: up},
		{name: "switchyard", addr: sy, pgid: syCmd.Process.Pid},
		{name: "nginx grpc_pass", addr: ng, pgid: ngCmd.Process.Pid},
	}
	clients := map[string]*loadClient{}
	for _, t := range targets {
		c, err := newLoadClient(t.addr, o.conns)
		if err != nil {
			return err
		}
		defer c.close()
		clients[t.name] = c
		if err := c.waitReady(30 * time.Second); err != nil {
			return fmt.Errorf("%s at %s never answered ModelInfer: %w (logs in %s)", t.name, t.addr, err, tmp)
		}
	}
	fmt.Fprintf(stdout, "grpcbench: %d rounds x %s, %d callers over %d connections, %d workers per proxy, GOMAXPROCS of the load: %d\n",
		o.rounds, o.dur, o.streams, o.conns, o.workers, runtime.GOMAXPROCS(0))
	rounds := map[string][]Round{}
	for r := range o.rounds {
		for _, t := range targets {
			c := clients[t.name]
			c.load(o.streams, o.warm)
			cpu0 := groupCPU(t.pgid)
			calls, errs, lat := c.load(o.streams, o.dur)
			cpu := groupCPU(t.pgid) - cpu0
			rd := Round{Calls: calls, Errors: errs, CallsPerSec: float64(calls) / o.dur.Seconds(),
				P50Ms: pct(lat, 50), P99Ms: pct(lat, 99)}
			if t.pgid != 0 && calls > 0 {
				rd.CPUPerCall = cpu.Seconds() * 1e6 / float64(calls)
			}
			rounds[t.name] = append(rounds[t.name], rd)
			fmt.Fprintf(stdout, "round %d %-16s %8.0f calls/s  cpu %6.1f us/call  p50 %.2f ms  p99 %.2f ms  errors %d\n",
				r+1, t.name, rd.CallsPerSec, rd.CPUPerCall, rd.P50Ms, rd.P99Ms, rd.Errors)
		}
	}
	var results []Result
	for _, t := range targets {
		rs := rounds[t.name]
		res := Result{Target: t.name, Rounds: rs, At: time.Now().UTC()}
		res.CallsPerSec = median(rs, func(r Round) float64 { return r.CallsPerSec })
		res.CPUPerCall = median(rs, func(r Round) float64 { return r.CPUPerCall })
		res.P50Ms = median(rs, func(r Round) float64 { return r.P50Ms })
		res.P99Ms = median(rs, func(r Round) float64 { return r.P99Ms })
		for _, r := range rs {
			res.Errors += r.Errors
		}
		results = append(results, res)
	}
	md := markdown(results, o)
	fmt.Fprint(stdout, "\n"+md)
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	js, _ := json.MarshalIndent(map[string]any{"settings": o.settingsJSON(), "results": results}, "", "  ")
	if err := os.WriteFile(filepath.Join(o.out, "grpc.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(o.out, "grpc.md"), []byte(md), 0o644)
}

func (o *options) settingsJSON() map[string]any {
	return map[string]any{"rounds": o.rounds, "duration": o.dur.String(), "streams": o.streams, "conns": o.conns,
		"workers": o.workers, "cpus": runtime.NumCPU()}
}

func markdown(rs []Result, o *options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Unary gRPC: Switchyard vs nginx grpc_pass\n\n")
	fmt.Fprintf(&b, "`go run ./bench/cmd/grpcbench` on %d CPUs: KServe v2 ModelInfer (one FP32 [1,4] tensor) to a grpc-go upstream that answers at once; "+
		"%d callers over %d HTTP/2 connections, closed loop; %d workers per proxy; median of %d rounds of %s.\n\n",
		runtime.NumCPU(), o.streams, o.conns, o.workers, o.rounds, o.dur)
	b.WriteString("| target | calls/s | proxy CPU per call | p50 | p99 | errors |\n|---|---:|---:|---:|---:|---:|\n")
	for _, r := range rs {
		cpu := "-"
		if r.CPUPerCall > 0 {
			cpu = fmt.Sprintf("%.1f µs", r.CPUPerCall)
		}
		fmt.Fprintf(&b, "| %s | %.0f | %s | %.2f ms | %.2f ms | %d |\n", r.Target, r.CallsPerSec, cpu, r.P50Ms, r.P99Ms, r.Errors)
	}
	return b.String()
}

func nginxConf(tmp, listen, upstream string, workers int) string {
	return fmt.Sprintf(`worker_processes %d;
daemon off;
pid %s/nginx.pid;
error_log %s/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %s/body;
  proxy_temp_path %s/proxy;
  fastcgi_temp_path %s/fastcgi;
  uwsgi_temp_path %s/uwsgi;
  scgi_temp_path %s/scgi;
  upstream grpc_upstream {
    server %s;
    keepalive 64;
  }
  server {
    listen %s http2;
    http2_max_concurrent_streams 256;
    keepalive_requests 1000000;
    location / { grpc_pass grpc://grpc_upstream; }
  }
}
`, workers, tmp, tmp, tmp, tmp, tmp, tmp, tmp, upstream, listen)
}

// loadClient calls ModelInfer over a few shared connections.
type loadClient struct {
	conns   []*grpc.ClientConn
	clients []inference.GRPCInferenceServiceClient
}

func newLoadClient(addr string, n int) (*loadClient, error) {
	c := &loadClient{}
	for range max(n, 1) {
		cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			c.close()
			return nil, err
		}
		c.conns = append(c.conns, cc)
		c.clients = append(c.clients, inference.NewGRPCInferenceServiceClient(cc))
	}
	return c, nil
}

func (c *loadClient) close() {
	for _, cc := range c.conns {
		_ = cc.Close()
	}
}

var request = &inference.ModelInferRequest{ModelName: "mlp", Inputs: []*inference.ModelInferRequest_InferInputTensor{{
	Name: "input", Datatype: "FP32", Shape: []int64{1, 4}, Contents: &inference.InferTensorContents{Fp32Contents: []float32{1, 2, 3, 4}}}}}

func (c *loadClient) waitReady(within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := c.clients[0].ModelInfer(ctx, request)
		cancel()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// load runs streams callers for d and returns the calls, errors and
// latencies.
func (c *loadClient) load(streams int, d time.Duration) (int, int, []time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var mu sync.Mutex
	var all []time.Duration
	errs := 0
	var wg sync.WaitGroup
	for i := range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := c.clients[i%len(c.clients)]
			lat := make([]time.Duration, 0, 1<<14)
			e := 0
			for ctx.Err() == nil {
				t0 := time.Now()
				_, err := cl.ModelInfer(context.Background(), request)
				if err != nil {
					e++
					continue
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			all = append(all, lat...)
			errs += e
			mu.Unlock()
		}()
	}
	wg.Wait()
	return len(all), errs, all
}

func pct(lat []time.Duration, p int) float64 {
	if len(lat) == 0 {
		return 0
	}
	slices.Sort(lat)
	i := (len(lat)*p + 99) / 100
	return float64(lat[max(i-1, 0)].Microseconds()) / 1000
}

func median(rs []Round, f func(Round) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	if len(v) == 0 {
		return 0
	}
	return v[len(v)/2]
}

// groupCPU sums user and system time of every process in group pgid.
func groupCPU(pgid int) time.Duration {
	if pgid == 0 {
		return 0
	}
	ents, _ := os.ReadDir("/proc")
	var ticks int64
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// Fields after the command (which may hold spaces) start after ')'.
		s := string(data)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
		if len(f) < 13 || f[2] != strconv.Itoa(pgid) {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + st
	}
	return time.Duration(ticks) * time.Second / 100 // USER_HZ
}

func freeAddr() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
