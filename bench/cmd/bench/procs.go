package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a child process in its own process group, so that nginx's
// workers are measured and stopped together with their master.
type proc struct {
	name string
	cmd  *exec.Cmd
	pgid int
	log  string
	done chan struct{}
	err  error
}

// startProc starts argv in dir with extra environment, logging its
// stdout and stderr to dir/name.log. When stdout is non-nil the child's
// stdout goes there instead.
func startProc(name, dir string, env []string, stdout io.Writer, argv ...string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if stdout != nil {
		cmd.Stdout = stdout
	}
	// Pdeathsig: a harness killed hard takes its children with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, pgid: cmd.Process.Pid, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = logf.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the group, then SIGKILL after timeout.
func (p *proc) stop(timeout time.Duration) error {
	if p.exited() {
		return nil
	}
	_ = syscall.Kill(-p.pgid, syscall.SIGTERM)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
	case <-t.C:
		_ = syscall.Kill(-p.pgid, syscall.SIGKILL)
		<-p.done
	}
	// Workers that outlived their master (nginx on SIGKILL).
	_ = syscall.Kill(-p.pgid, syscall.SIGKILL)
	return nil
}

// tail returns the end of the process log, for error messages.
func (p *proc) tail() string {
	b, err := os.ReadFile(p.log)
	if err != nil {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// usage is a process group's resource use from /proc.
type usage struct {
	// CPUTicks is utime+stime of every process in the group, in clock
	// ticks (USER_HZ, 100 per second on Linux).
	CPUTicks int64
	// HWMKiB sums the peak resident set (VmHWM) of the group's processes.
	HWMKiB int64
	// RSSKiB sums the current resident set.
	RSSKiB int64
	Procs  int
}

// userHZ is the unit of utime and stime in /proc/<pid>/stat. It is 100 on
// every Linux architecture Go supports.
const userHZ = 100

// groupUsage sums usage over every process whose process group is pgid.
func groupUsage(pgid int) (usage, error) {
	var u usage
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return u, err
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		pgrp, ticks, ok := parseStat(st)
		if !ok || pgrp != pgid {
			continue
		}
		u.Procs++
		u.CPUTicks += ticks
		if status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status"); err == nil {
			u.HWMKiB += statusKiB(status, "VmHWM:")
			u.RSSKiB += statusKiB(status, "VmRSS:")
		}
	}
	if u.Procs == 0 {
		return u, fmt.Errorf("no process in group %d", pgid)
	}
	return u, nil
}

// parseStat reads the process group (field 5) and utime+stime (fields 14
// and 15) of /proc/<pid>/stat. The command name (field 2) may hold spaces
// and parentheses, so fields are counted from the last ')'.
func parseStat(b []byte) (pgrp int, ticks int64, ok bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state).
	if len(f) < 13 {
		return 0, 0, false
	}
	pg, err1 := strconv.Atoi(f[2])
	ut, err2 := strconv.ParseInt(f[11], 10, 64)
	st, err3 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return 0, 0, false
	}
	return pg, ut + st, true
}

// statusKiB returns the kB value of a /proc/<pid>/status line.
func statusKiB(status []byte, key string) int64 {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, key); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// cpuWindow samples CPU across a measurement window: of the process groups
// measured, of this process (the load generator), and of the whole
// machine, so that what unrelated processes used meanwhile is known.
type cpuWindow struct {
	groups []int
	start  []int64
	busy0  int64
	self0  int64
	t0     time.Time
}

func openCPU(groups ...int) *cpuWindow {
	w := &cpuWindow{groups: groups, start: make([]int64, len(groups)), t0: time.Now()}
	for i, g := range groups {
		u, _ := groupUsage(g)
		w.start[i] = u.CPUTicks
	}
	w.busy0, w.self0 = machineBusy(), selfTicks()
	return w
}

// close returns the CPU seconds of each group and the average number of
// CPUs that everything else (not the groups, not this process) kept busy.
func (w *cpuWindow) close() (secs []float64, otherCores float64) {
	busy, self := machineBusy(), selfTicks()
	elapsed := time.Since(w.t0).Seconds()
	other := (busy - w.busy0) - (self - w.self0)
	secs = make([]float64, len(w.groups))
	for i, g := range w.groups {
		u, _ := groupUsage(g)
		d := u.CPUTicks - w.start[i]
		secs[i] = float64(d) / userHZ
		other -= d
	}
	return secs, math.Max(0, float64(other)/userHZ/elapsed)
}

// waitQuiet waits until processes outside the benchmark keep fewer than
// -quiet-below CPUs busy over a half-second sample, or until -quiet-wait
// has passed (and never beyond -quiet-budget in all), and returns how
// long it waited. A shared machine has bursts (someone's
// build); starting a measurement between them keeps it out of most.
func (h *harness) waitQuiet() time.Duration {
	o := h.opts
	if o.quietWait <= 0 {
		return 0
	}
	start := time.Now()
	// Our own children are not "other": an idle gateway still probes.
	var ours []int
	for _, p := range h.procs {
		ours = append(ours, p.pgid)
	}
	limit := min(o.quietWait, o.quietBudget-h.quietWaited)
	for time.Since(start) < limit && h.ctx.Err() == nil {
		w := openCPU(ours...)
		sleep(h.ctx, 500*time.Millisecond)
		if _, other := w.close(); other < o.quietBelow {
			break
		}
	}
	waited := time.Since(start)
	h.quietWaited += waited
	return waited
}

// machineBusy returns the time all CPUs spent running processes, in
// ticks: user, nice and system of the "cpu" line of /proc/stat.
func machineBusy() int64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	var busy int64
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		// user nice system idle iowait irq softirq steal (guest time is
		// already counted in user). Only user, nice and system: interrupt
		// time (loopback TCP runs largely in softirq) belongs to no
		// process, so it would be counted as someone else's.
		if i > 2 {
			break
		}
		busy += n
	}
	return busy
}

// cpuTimes returns the busy and total time of the given CPUs from
// /proc/stat, in ticks; 0, 0 for none.
func cpuTimes(cpus []int) (busy, total int64) {
	if len(cpus) == 0 {
		return 0, 0
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	return parseCPUTimes(b, cpus)
}

// parseCPUTimes sums the "cpuN" lines of /proc/stat for the given CPUs:
// busy is everything but idle and iowait (user, nice, system, irq,
// softirq, steal: loopback TCP runs largely in softirq, which is work the
// CPU could not give to the generator); total includes idle and iowait.
// Guest time is already in user.
func parseCPUTimes(stat []byte, cpus []int) (busy, total int64) {
	want := map[string]bool{}
	for _, c := range cpus {
		want["cpu"+strconv.Itoa(c)] = true
	}
	for line := range strings.SplitSeq(string(stat), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 || !want[f[0]] {
			continue
		}
		for i, v := range f[1:min(len(f), 9)] {
			n, _ := strconv.ParseInt(v, 10, 64)
			total += n
			if i != 3 && i != 4 { // idle, iowait
				busy += n
			}
		}
	}
	return busy, total
}

// selfTicks returns this process's utime+stime plus that of its waited-for
// children (cutime+cstime): a wrk run is load generation too, and it has
// been waited for by the time a window closes.
func selfTicks() int64 {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	_, t, _ := parseStat(b)
	return t + childTicks(b)
}

// childTicks reads cutime+cstime (fields 16 and 17) of /proc/<pid>/stat.
func childTicks(b []byte) int64 {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return 0
	}
	cu, _ := strconv.ParseInt(f[13], 10, 64)
	cs, _ := strconv.ParseInt(f[14], 10, 64)
	return cu + cs
}

// freePort returns a loopback port nobody listens on now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitFor polls check every 20 ms until it passes, p exits, or timeout.
func waitFor(ctx context.Context, p *proc, timeout time.Duration, what string, check func() error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if last = check(); last == nil {
			return nil
		}
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited while waiting for %s: %v\n%s", p.name, what, p.err, p.tail())
		}
		if time.Now().After(deadline) {
			msg := ""
			if p != nil {
				msg = "\n" + p.tail()
			}
			return fmt.Errorf("%s not ready after %s: %w%s", what, timeout, last, msg)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// commandOutput runs a short command and returns its combined output.
func commandOutput(ctx context.Context, dir, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		err = fmt.Errorf("%w (timed out)", err)
	}
	return string(out), err
}
