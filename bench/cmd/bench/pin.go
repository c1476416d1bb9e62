package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unsafe"
)

// layout is where the processes of one measurement run: how many workers
// the proxy gets and, when pinned, which CPUs it may use and which the
// upstream stand-ins and the load generator (this process, and wrk, which
// inherits its affinity) may use.
type layout struct {
	workers int
	// proxy and others are nil when nothing is pinned.
	proxy, others []int
}

func (l layout) pinned() bool { return len(l.proxy) > 0 }

// String describes the layout for the tables, e.g. "1 worker, pinned to
// CPU 0; upstream and load generator on CPU 1".
func (l layout) String() string {
	s := fmt.Sprintf("%d worker", l.workers)
	if l.workers != 1 {
		s += "s"
	}
	if !l.pinned() {
		return s + ", unpinned"
	}
	return fmt.Sprintf("%s, pinned to %s; upstream and load generator on %s", s, cpuWord(l.proxy), cpuWord(l.others))
}

func cpuWord(cpus []int) string {
	if len(cpus) == 1 {
		return "CPU " + cpuList(cpus)
	}
	return "CPUs " + cpuList(cpus)
}

// cpuList writes CPUs as the kernel does in Cpus_allowed_list: "0", "1-3",
// "0,2".
func cpuList(cpus []int) string {
	s := slices.Clone(cpus)
	slices.Sort(s)
	var parts []string
	for i := 0; i < len(s); {
		j := i
		for j+1 < len(s) && s[j+1] == s[j]+1 {
			j++
		}
		if j == i {
			parts = append(parts, strconv.Itoa(s[i]))
		} else {
			parts = append(parts, strconv.Itoa(s[i])+"-"+strconv.Itoa(s[j]))
		}
		i = j + 1
	}
	return strings.Join(parts, ",")
}

// layoutFor is the layout of a measurement with workers workers: the proxy
// pinned to the first workers CPUs this process may use and everything
// else to the rest, when there is a rest and -pin is on; unpinned
// otherwise.
func (h *harness) layoutFor(workers int) layout {
	l := layout{workers: workers}
	if h.opts.pin && workers < len(h.cpus) {
		l.proxy = slices.Clone(h.cpus[:workers])
		l.others = slices.Clone(h.cpus[workers:])
	}
	return l
}

// enter moves this process and the given stand-ins onto l's CPUs for the
// generator side and returns the function that undoes it. Unpinned
// layouts change nothing.
func (h *harness) enter(l layout, ups ...*upstream) (leave func(), err error) {
	if !l.pinned() {
		return func() {}, nil
	}
	procs := runtime.GOMAXPROCS(0)
	undo := func() {
		_ = pinTasks(os.Getpid(), h.cpus)
		for _, u := range ups {
			_ = pinGroup(u.proc.pgid, h.cpus)
		}
		runtime.GOMAXPROCS(procs)
	}
	if err := pinTasks(os.Getpid(), l.others); err != nil {
		undo()
		return nil, fmt.Errorf("pinning the load generator to %s: %w", cpuWord(l.others), err)
	}
	runtime.GOMAXPROCS(len(l.others))
	for _, u := range ups {
		if err := pinGroup(u.proc.pgid, l.others); err != nil {
			undo()
			return nil, fmt.Errorf("pinning upstream %s to %s: %w", u.color, cpuWord(l.others), err)
		}
	}
	return undo, nil
}

// pinProxy pins a proxy's whole process group (nginx's master and
// workers, every thread) to l's proxy CPUs.
func pinProxy(l layout, p *proc) error {
	if !l.pinned() {
		return nil
	}
	if err := pinGroup(p.pgid, l.proxy); err != nil {
		return fmt.Errorf("pinning %s to %s: %w", p.name, cpuWord(l.proxy), err)
	}
	return nil
}

// allowedCPUs returns the CPUs this thread may run on.
func allowedCPUs() ([]int, error) {
	var mask [16]uint64 // 1024 CPUs, the kernel's default cpumask size
	_, _, e := syscall.RawSyscall(syscall.SYS_SCHED_GETAFFINITY, 0, unsafe.Sizeof(mask), uintptr(unsafe.Pointer(&mask)))
	if e != 0 {
		return nil, e
	}
	var cpus []int
	for i, w := range mask {
		for b := range 64 {
			if w&(1<<b) != 0 {
				cpus = append(cpus, i*64+b)
			}
		}
	}
	return cpus, nil
}

// setAffinity is sched_setaffinity(2) on one thread.
func setAffinity(tid int, cpus []int) error {
	var mask [16]uint64
	for _, c := range cpus {
		if c < 0 || c >= len(mask)*64 {
			return fmt.Errorf("CPU %d out of range", c)
		}
		mask[c/64] |= 1 << (c % 64)
	}
	_, _, e := syscall.RawSyscall(syscall.SYS_SCHED_SETAFFINITY, uintptr(tid), unsafe.Sizeof(mask), uintptr(unsafe.Pointer(&mask)))
	if e != 0 {
		return e
	}
	return nil
}

// pinTasks sets the affinity of every thread of pid. Threads created
// later inherit it from their creator; the scan repeats until it finds no
// thread it has not set, for those created while it ran.
func pinTasks(pid int, cpus []int) error {
	return pinPIDs(func() []int { return []int{pid} }, cpus)
}

// pinGroup sets the affinity of every thread of every process in process
// group pgid, the scan repeated like pinTasks's for workers forked
// meanwhile.
func pinGroup(pgid int, cpus []int) error {
	return pinPIDs(func() []int { return groupPIDs(pgid) }, cpus)
}

func pinPIDs(pids func() []int, cpus []int) error {
	done := map[int]bool{}
	for range 20 {
		fresh := 0
		for _, pid := range pids() {
			ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
			if err != nil {
				continue // exited
			}
			for _, e := range ents {
				tid, err := strconv.Atoi(e.Name())
				if err != nil || done[tid] {
					continue
				}
				if err := setAffinity(tid, cpus); err != nil && !errors.Is(err, syscall.ESRCH) {
					return fmt.Errorf("thread %d of %d: %w", tid, pid, err)
				}
				done[tid] = true
				fresh++
			}
		}
		if fresh == 0 {
			if len(done) == 0 {
				return errors.New("no process to pin")
			}
			return nil
		}
	}
	return nil
}

// groupPIDs lists the processes of process group pgid.
func groupPIDs(pgid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		if pg, _, ok := parseStat(st); ok && pg == pgid {
			pids = append(pids, pid)
		}
	}
	return pids
}

// groupCPUs returns the Cpus_allowed_list values found among the threads
// of process group pgid, joined by " | " when they differ: the proof of
// where a target ran, printed in the tables.
func groupCPUs(pgid int) string {
	var seen []string
	for _, pid := range groupPIDs(pgid) {
		ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
		if err != nil {
			continue
		}
		for _, e := range ents {
			b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + e.Name() + "/status")
			if err != nil {
				continue
			}
			if v := statusField(b, "Cpus_allowed_list:"); v != "" && !slices.Contains(seen, v) {
				seen = append(seen, v)
			}
		}
	}
	slices.Sort(seen)
	return strings.Join(seen, " | ")
}

// statusField returns the value of a /proc/<pid>/status line.
func statusField(status []byte, key string) string {
	for line := range strings.SplitSeq(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			return strings.TrimSpace(rest)
		}
	}
	return ""
}
