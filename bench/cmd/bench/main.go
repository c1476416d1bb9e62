// Command bench measures Switchyard against going direct and against
// nginx, HAProxy and Caddy configured as equivalent keep-alive reverse
// proxies, at one core (pinned) and at more, switches colors under load,
// shows how Switchyard's cost grows with backends and client connections,
// what probing costs and what idle connections hold, and checks the
// targets of issue 15. Results go to bench/results/latest.{md,json} and
// bench/results/switch-latency.png.
//
//	go run ./bench/cmd/bench            # full run, 12 to 15 minutes on 2 cores
//	go run ./bench/cmd/bench -quick     # about 2 minutes smoke run
//
// See bench/README.md for the method.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/switchyard/switchyard/config"
)

// options are the harness's flags after -quick has been applied.
type options struct {
	out        string
	switchyard string
	tmp        string
	keep       bool
	phases     map[string]bool
	targets    []string
	// workers lists the worker counts of the comparison, one table each;
	// the first is the one the targets are checked on.
	workers []int
	// wrk: use wrk for the closed loop when it is installed.
	wrk bool
	// pin pins proxies to their own CPUs, the stand-ins and generators
	// to the rest, whenever there are more CPUs than workers.
	pin bool
	// scaleWorkers is Switchyard's workers in the scaling run.
	scaleWorkers int

	rounds      int
	otherRounds int
	rate        int
	openDur     time.Duration
	closedDur   time.Duration
	warm        time.Duration
	conns       int
	serviceTime time.Duration
	// healthInterval, when set, overrides the gateway's probe interval.
	healthInterval string
	// probeContrast, when set, adds a scaling point at the largest pool
	// with this probe interval.
	probeContrast string

	switchRate  int
	switchEvery time.Duration
	switchDur   time.Duration
	// switchAutoRollback leaves the gateway's automatic rollback on
	// during the switch test.
	switchAutoRollback bool

	scaleBackends []int
	scaleConns    []int
	scaleDur      time.Duration
	scaleRate     int

	// probeBackends is the pool size of the probe-cost point; probeWindow
	// its measured window.
	probeBackends int
	probeWindow   time.Duration
	// idleConns is the client connections of the idle-connections point.
	idleConns int
	// maxConnsPerBackend, when positive, is written to Switchyard's
	// proxy.max_conns_per_backend; 0 leaves the config default.
	maxConnsPerBackend int

	// quietWait and quietBelow gate every measurement on a quiet
	// machine; see waitQuiet.
	quietWait   time.Duration
	quietBelow  float64
	quietBudget time.Duration

	quick   bool
	command string
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "upstream" {
		os.Exit(upstreamMain(os.Args[2:]))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	opts, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	h, err := newHarness(ctx, opts, stdout)
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	err = h.run()
	h.close()
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o := &options{}
	fs.StringVar(&o.out, "out", "bench/results", "directory for latest.md, latest.json and switch-latency.png")
	fs.StringVar(&o.switchyard, "switchyard", "", "switchyard binary to run; empty builds ./cmd/switchyard from this tree")
	fs.StringVar(&o.tmp, "tmp", "", "parent of the run's temp directory (configs, logs); empty is the system default")
	fs.BoolVar(&o.keep, "keep", false, "keep the temp directory (configs and logs of every process)")
	phases := fs.String("phases", "compare,idle,switch,scale,probe", "phases to run: compare, idle, switch, scale, probe")
	targets := fs.String("targets", "direct,switchyard,nginx,haproxy,caddy", "targets of the comparison; missing proxies are skipped and reported")
	workers := fs.String("workers", "1,2", "worker counts of the comparison, one table each (nginx worker_processes, haproxy nbthread, GOMAXPROCS); the first is the table the targets are checked on")
	fs.BoolVar(&o.wrk, "wrk", true, "closed loop by wrk when it is installed; false always uses the in-process fasthttp generator")
	fs.BoolVar(&o.pin, "pin", true, "when a table has fewer workers than there are CPUs, pin every proxy to the first CPUs and the upstream stand-ins and load generators to the others")
	fs.IntVar(&o.scaleWorkers, "scale-workers", 0, "Switchyard's workers in the scaling run, probe-cost and idle points; 0 is the first of -workers")
	fs.IntVar(&o.rounds, "rounds", 5, "interleaved rounds of the first comparison table; the median per target is reported")
	fs.IntVar(&o.otherRounds, "other-rounds", 3, "interleaved rounds of the other comparison tables")
	fs.IntVar(&o.rate, "rate", 2000, "open-loop rate, requests/s")
	fs.DurationVar(&o.openDur, "open", 5*time.Second, "open-loop duration per target and round")
	fs.DurationVar(&o.closedDur, "closed", 5*time.Second, "closed-loop duration per target and round")
	fs.DurationVar(&o.warm, "warm", time.Second, "warm-up before every measurement (not counted)")
	fs.IntVar(&o.conns, "conns", 64, "closed-loop connections of the comparison")
	fs.DurationVar(&o.serviceTime, "service-time", 0, "time the upstream stand-in spends on each request")
	fs.StringVar(&o.healthInterval, "health-interval", "", "Switchyard's health.interval (e.g. 10s); empty keeps the default, 2s")
	fs.StringVar(&o.probeContrast, "probe-contrast", "30s", "add a scaling point at the largest pool with this health.interval, to show the probes' share of the cost; empty skips it")
	fs.IntVar(&o.switchRate, "switch-rate", 1000, "open-loop rate during the switch test, requests/s")
	fs.DurationVar(&o.switchEvery, "switch-every", 100*time.Millisecond, "time between switches")
	fs.DurationVar(&o.switchDur, "switch-for", 30*time.Second, "length of the switch test")
	fs.BoolVar(&o.switchAutoRollback, "switch-auto-rollback", false, "leave Switchyard's automatic rollback (analysis.auto_rollback, on by default) on during the switch test")
	backends := fs.String("scale-backends", "1,10,100,1000", "backends per pool of the scaling run")
	conns := fs.String("scale-conns", "10,100,1000,10000", "client connections of the scaling run")
	fs.DurationVar(&o.scaleDur, "scale-dur", 5*time.Second, "closed- and open-loop duration of each scaling point")
	fs.IntVar(&o.scaleRate, "scale-rate", 2000, "open-loop rate of the scaling run, requests/s")
	fs.IntVar(&o.probeBackends, "probe-backends", 1000, "backends per pool of the probe-cost point (Switchyard probing with no client load)")
	fs.DurationVar(&o.probeWindow, "probe-window", 10*time.Second, "measured window of the probe-cost point")
	fs.IntVar(&o.idleConns, "idle-conns", 10000, "client connections of the idle-connections point")
	fs.IntVar(&o.maxConnsPerBackend, "max-conns-per-backend", 0, "Switchyard's proxy.max_conns_per_backend; 0 leaves the config default (256)")
	fs.DurationVar(&o.quietWait, "quiet-wait", 10*time.Second, "before each measurement, wait up to this long for other processes to go quiet; 0 never waits")
	fs.DurationVar(&o.quietBudget, "quiet-budget", 2*time.Minute, "most time to spend waiting for quiet in the whole run")
	fs.Float64Var(&o.quietBelow, "quiet-below", 0.25, "CPUs other processes may use for the machine to count as quiet")
	fs.BoolVar(&o.quick, "quick", false, "smoke run of about two minutes: 1 round, 2 s measurements, a 5 s switch test, 2 points per scaling axis, 1,000 idle connections")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	for name, v := range map[string]string{"health-interval": o.healthInterval, "probe-contrast": o.probeContrast} {
		if v == "" {
			continue
		}
		if d, err := time.ParseDuration(v); err != nil || d <= 0 {
			return nil, fmt.Errorf("-%s: %q is not a positive duration", name, v)
		}
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags only; see -h)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if o.quick {
		quick := map[string]func(){
			"rounds":         func() { o.rounds = 1 },
			"other-rounds":   func() { o.otherRounds = 1 },
			"probe-window":   func() { o.probeWindow = 4 * time.Second },
			"idle-conns":     func() { o.idleConns = 1000 },
			"open":           func() { o.openDur = 2 * time.Second },
			"closed":         func() { o.closedDur = 2 * time.Second },
			"warm":           func() { o.warm = 300 * time.Millisecond },
			"switch-for":     func() { o.switchDur = 5 * time.Second },
			"scale-backends": func() { *backends = "1,1000" },
			"scale-conns":    func() { *conns = "10,1000" },
			"scale-dur":      func() { o.scaleDur = 2 * time.Second },
			"quiet-wait":     func() { o.quietWait = time.Second },
			"quiet-budget":   func() { o.quietBudget = 10 * time.Second },
		}
		for name, apply := range quick {
			if !set[name] {
				apply()
			}
		}
	}
	var err error
	if o.scaleBackends, err = parseInts(*backends); err != nil {
		return nil, fmt.Errorf("-scale-backends: %w", err)
	}
	if o.scaleConns, err = parseInts(*conns); err != nil {
		return nil, fmt.Errorf("-scale-conns: %w", err)
	}
	if o.workers, err = parseInts(*workers); err != nil {
		return nil, fmt.Errorf("-workers: %w", err)
	}
	if len(o.workers) == 0 {
		return nil, errors.New("-workers: at least one worker count")
	}
	if o.scaleWorkers == 0 {
		o.scaleWorkers = o.workers[0]
	}
	o.phases = map[string]bool{}
	for _, p := range strings.Split(*phases, ",") {
		switch p = strings.TrimSpace(p); p {
		case "compare", "idle", "switch", "scale", "probe":
			o.phases[p] = true
		case "":
		default:
			return nil, fmt.Errorf("-phases: unknown phase %q (want compare, idle, switch, scale, probe)", p)
		}
	}
	for _, t := range strings.Split(*targets, ",") {
		switch t = strings.TrimSpace(t); t {
		case targetDirect, targetSwitchyard, targetNginx, targetHAProxy, targetCaddy:
			o.targets = append(o.targets, t)
		case "":
		default:
			return nil, fmt.Errorf("-targets: unknown target %q (want direct, switchyard, nginx, haproxy, caddy)", t)
		}
	}
	switch {
	case o.rounds < 1, o.otherRounds < 1, o.rate < 1, o.conns < 1, o.scaleWorkers < 1, o.switchRate < 1, o.scaleRate < 1,
		o.probeBackends < 1, o.idleConns < 1:
		return nil, errors.New("-rounds, -other-rounds, -rate, -conns, -scale-workers, -switch-rate, -scale-rate, -probe-backends and -idle-conns must be at least 1")
	case o.maxConnsPerBackend < 0:
		return nil, errors.New("-max-conns-per-backend must be 0 (the config default) or more")
	case o.openDur <= 0, o.closedDur <= 0, o.switchDur <= 0, o.scaleDur <= 0, o.switchEvery <= 0, o.probeWindow <= 0:
		return nil, errors.New("durations must be positive")
	}
	o.command = "go run ./bench/cmd/bench"
	if len(args) > 0 {
		o.command += " " + strings.Join(args, " ")
	}
	return o, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// harness owns everything one run starts: the temp directory, the child
// processes and the results.
type harness struct {
	ctx   context.Context
	opts  *options
	out   io.Writer
	dir   string
	root  string
	sybin string
	procs []*proc
	res   *results
	start time.Time
	// cpus are the CPUs this process could use at start, the set that
	// layouts divide.
	cpus []int
	// wrk and wrkScript are the wrk executable and its Lua script; wrk is
	// empty when it is not installed.
	wrk, wrkScript string
	// quietWaited sums the time spent waiting for a quiet machine.
	quietWaited time.Duration
}

func newHarness(ctx context.Context, opts *options, out io.Writer) (*harness, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(opts.tmp, "switchyard-bench-")
	if err != nil {
		return nil, fmt.Errorf("creating the temp directory: %w", err)
	}
	h := &harness{ctx: ctx, opts: opts, out: out, dir: dir, root: root, start: time.Now()}
	h.res = &results{Command: opts.command, Started: h.start.UTC().Format(time.RFC3339), Quick: opts.quick}
	return h, nil
}

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(h.out, "[%6.1fs] %s\n", time.Since(h.start).Seconds(), fmt.Sprintf(format, args...))
}

func (h *harness) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	h.res.Notes = append(h.res.Notes, msg)
	h.logf("note: %s", msg)
}

func (h *harness) run() error {
	o := h.opts
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", o.out, err)
	}
	limit := raiseNoFile()
	cpus, err := allowedCPUs()
	if err != nil {
		return fmt.Errorf("reading this process's CPU affinity: %w", err)
	}
	h.cpus = cpus
	if o.wrk {
		if h.wrk, h.wrkScript, err = findWrk(h.dir); err != nil {
			return fmt.Errorf("writing the wrk script: %w", err)
		}
	}
	h.res.Settings = settingsOf(o, limit)
	h.res.Settings.CPUs = cpuList(h.cpus)
	h.res.Settings.Generator = h.generator()
	h.res.LoadAvg = append(h.res.LoadAvg, loadAvg())
	if err := h.buildSwitchyard(); err != nil {
		return err
	}
	h.res.Machine = machineInfo(h.ctx, h.sybin)
	h.logf("machine: %d CPUs (%s), %s, kernel %s, %s; open files limit %d; this process may use CPUs %s",
		h.res.Machine.NumCPU, h.res.Machine.CPUModel, h.res.Machine.Memory, h.res.Machine.Kernel, h.res.Machine.GoVersion, limit, cpuList(h.cpus))
	if h.wrk == "" && o.wrk {
		h.note("wrk is not installed: the closed loop uses the in-process fasthttp generator, which is heavier (make bench-deps installs wrk)")
	}
	if o.pin && len(h.cpus) < 2 {
		h.note("this process may use only CPU %s: nothing is pinned", cpuList(h.cpus))
	}
	if o.phases["compare"] || o.phases["idle"] || o.phases["switch"] {
		blue, green, err := h.startUpstreams(1)
		if err != nil {
			return err
		}
		if o.phases["compare"] {
			for i, w := range o.workers {
				rounds := o.rounds
				if i > 0 {
					rounds = o.otherRounds
				}
				c, err := h.compare(blue, green, h.layoutFor(w), rounds)
				if err != nil {
					return fmt.Errorf("comparison with %d workers: %w", w, err)
				}
				h.res.Comparisons = append(h.res.Comparisons, *c)
			}
			h.res.Compare = h.res.Comparisons[0].Targets
			h.res.Background = h.res.Comparisons[0].Background
		}
		if o.phases["idle"] {
			if err := h.idleConns(blue, green, h.layoutFor(o.scaleWorkers)); err != nil {
				return fmt.Errorf("idle connections: %w", err)
			}
		}
		if o.phases["switch"] {
			if err := h.switchUnderLoad(blue, green, h.layoutFor(o.workers[len(o.workers)-1])); err != nil {
				return fmt.Errorf("switch under load: %w", err)
			}
		}
		h.stopProc(blue.proc)
		h.stopProc(green.proc)
	}
	if o.phases["scale"] || o.phases["probe"] {
		n := 1
		if o.phases["scale"] && len(o.scaleBackends) > 0 {
			n = slices.Max(o.scaleBackends)
		}
		if o.phases["probe"] {
			n = max(n, o.probeBackends)
		}
		blue, green, err := h.startUpstreams(n)
		if err != nil {
			return err
		}
		if o.phases["scale"] {
			if err := h.scale(blue, green, h.layoutFor(o.scaleWorkers)); err != nil {
				return fmt.Errorf("scaling: %w", err)
			}
		}
		if o.phases["probe"] {
			if err := h.probeCost(blue, green, h.layoutFor(o.scaleWorkers), o.probeBackends); err != nil {
				return fmt.Errorf("probe cost: %w", err)
			}
		}
		h.stopProc(blue.proc)
		h.stopProc(green.proc)
	}
	h.res.Targets = checkTargets(h.res)
	h.res.Seconds = time.Since(h.start).Seconds()
	h.res.QuietWaitSeconds = h.quietWaited.Seconds()
	h.res.LoadAvg = append(h.res.LoadAvg, loadAvg())
	if err := h.write(); err != nil {
		return err
	}
	h.logf("done in %.0fs; results in %s", h.res.Seconds, o.out)
	return nil
}

// close stops every child still running and removes the temp directory
// unless -keep.
func (h *harness) close() {
	for i := len(h.procs) - 1; i >= 0; i-- {
		_ = h.procs[i].stop(5 * time.Second)
	}
	if h.opts.keep {
		h.logf("kept %s", h.dir)
		return
	}
	_ = os.RemoveAll(h.dir)
}

func (h *harness) stopProc(p *proc) {
	if p == nil {
		return
	}
	_ = p.stop(10 * time.Second)
	for i, q := range h.procs {
		if q == p {
			h.procs = append(h.procs[:i], h.procs[i+1:]...)
			break
		}
	}
}

// buildSwitchyard builds the gateway from this tree, as the brief of the
// benchmark is to measure the code being worked on, unless -switchyard
// names a binary.
func (h *harness) buildSwitchyard() error {
	if h.opts.switchyard != "" {
		abs, err := filepath.Abs(h.opts.switchyard)
		if err != nil {
			return err
		}
		h.sybin = abs
		return nil
	}
	h.sybin = filepath.Join(h.dir, "switchyard")
	h.logf("building %s from %s", h.sybin, h.root)
	ctx, cancel := context.WithTimeout(h.ctx, 5*time.Minute)
	defer cancel()
	out, err := commandOutput(ctx, h.root, "go", "build", "-o", h.sybin, "./cmd/switchyard")
	if err != nil {
		return fmt.Errorf("go build ./cmd/switchyard: %w\n%s", err, out)
	}
	return nil
}

func moduleRoot() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := commandOutput(ctx, "", "go", "env", "GOMOD")
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(out)
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run from inside the switchyard module (go run ./bench/cmd/bench)")
	}
	return filepath.Dir(mod), nil
}

// raiseNoFile lifts RLIMIT_NOFILE as far as the kernel allows, for the
// 10,000-connection point: this process holds the client side, the
// gateway (which inherits the limit) both its client and upstream sides.
func raiseNoFile() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	want := uint64(1 << 20)
	if b, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil {
			want = min(want, n)
		}
	}
	// Raising the hard limit needs CAP_SYS_RESOURCE; without it, go as
	// far as the hard limit.
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: want}); err != nil {
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: lim.Max, Max: lim.Max})
	}
	_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	return lim.Cur
}

func settingsOf(o *options, nofile uint64) Settings {
	maxConns, source := o.maxConnsPerBackend, "-max-conns-per-backend"
	if maxConns == 0 {
		// What a gateway built from this tree uses when the file is silent.
		maxConns, source = config.DefaultMaxConns, "config default"
	}
	return Settings{
		Workers: o.workers[0], WorkerCounts: o.workers, Pin: o.pin, ScaleWorkers: o.scaleWorkers, OtherRounds: o.otherRounds,
		ProbeBackends: o.probeBackends, ProbeWindowSeconds: o.probeWindow.Seconds(), IdleConns: o.idleConns,
		MaxConnsPerBackend: maxConns, MaxConnsSource: source,
		Rounds: o.rounds, Rate: o.rate, OpenSeconds: o.openDur.Seconds(),
		ClosedSeconds: o.closedDur.Seconds(), WarmSeconds: o.warm.Seconds(), Conns: o.conns,
		ServiceTimeMicros: float64(o.serviceTime.Microseconds()), SwitchRate: o.switchRate,
		SwitchEveryMillis: float64(o.switchEvery.Milliseconds()), SwitchSeconds: o.switchDur.Seconds(),
		ScaleBackends: o.scaleBackends, ScaleConns: o.scaleConns, ScaleSeconds: o.scaleDur.Seconds(),
		ScaleRate: o.scaleRate, NoFile: nofile, GOMAXPROCS: runtime.GOMAXPROCS(0), HealthInterval: o.healthInterval,
		QuietWaitSeconds: o.quietWait.Seconds(), QuietBelowCores: o.quietBelow,
	}
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}
