// Command perfsplit reads `perf script` output of the gateway (recorded
// with call graphs, e.g. `perf record -g -p PID`) on standard input and
// prints where its CPU time goes, by the step of a proxied request each
// sample belongs to: the table of docs/benchmarks.md.
//
//	perf record -F 4000 -g -p "$(pgrep -f 'switchyard serve')" -o perf.data -- sleep 6
//	perf script -i perf.data | go run ./bench/cmd/perfsplit
//
// A sample goes to the first bucket whose rule matches a frame of its
// stack, in the order of buckets, so that a write system call made while
// sending the request upstream counts as "write to upstream", not as the
// handler's.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
)

// bucket is one step of a request: a sample whose stack has a frame
// containing all of any one of its patterns' parts belongs to it.
type bucket struct {
	name string
	// any lists alternatives; each alternative's parts must all appear
	// in the stack (in any frames).
	any [][]string
}

var buckets = []bucket{
	{"write: request to the backend (syscall, TCP, wake-up)", [][]string{{"syscall.write", "exchange).send"}}},
	{"write: answer to the client (syscall, TCP, wake-up)", [][]string{{"syscall.write"}}},
	{"read: answer from the backend", [][]string{{"syscall.read", "exchange)"}}},
	{"read: request from the client", [][]string{{"syscall.read"}}},
	{"idle upstream connection check (recvfrom MSG_PEEK)", [][]string{{"idleAlive"}}},
	{"deadlines (SetDeadline and timers)", [][]string{{"setDeadlineImpl"}, {"pollSetDeadline"}}},
	{"parse the client's request", [][]string{{"RequestHeader).Read"}, {"RequestHeader).readLoop"}, {"Request).readLimitBody"}, {"Request).ContinueReadBody"}}},
	{"parse the backend's answer head", [][]string{{"ResponseHeader).Read"}}},
	{"serialize the request upstream", [][]string{{"Request).Write"}}},
	{"serialize the answer to the client", [][]string{{"writeResponse"}}},
	{"gateway header rewriting (forwarded, request id, hops, colors)", [][]string{{"prepareRequest"}, {"stripResponseHops"}, {"markLoop"}, {"setPoolHeaders"}, {"proxy.(*Handler).screen"}, {"responseHeadLines"}}},
	{"gateway bookkeeping (pick, pool, metrics, finish)", [][]string{{"proxy.(*Handler).finish"}, {"proxy.(*Pool)"}, {"transport).get"}, {"transport).put"}, {"proxy.(*Handler).ServeHTTP"}}},
	{"Go scheduler and netpoller", [][]string{{"runtime.schedule"}, {"runtime.findRunnable"}, {"runtime.netpoll"}, {"runtime.park_m"}, {"runtime.mcall"}}},
	{"Go runtime background (sysmon, GC)", [][]string{{"runtime.sysmon"}, {"runtime.gcBgMarkWorker"}, {"runtime.bgsweep"}, {"runtime.bgscavenge"}}},
	{"clock reads", [][]string{{"time.Now"}, {"runtime.nanotime"}}},
	{"fasthttp server loop, the rest", [][]string{{"fasthttp.(*Server).serveConn"}}},
}

func main() {
	counts, total, err := split(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "perfsplit:", err)
		os.Exit(1)
	}
	if total == 0 {
		fmt.Fprintln(os.Stderr, "perfsplit: no samples on standard input (want `perf script` output)")
		os.Exit(1)
	}
	fmt.Printf("| step | share of the gateway's CPU |\n|---|---:|\n")
	names := make([]string, 0, len(buckets)+1)
	for _, b := range buckets {
		names = append(names, b.name)
	}
	names = append(names, "other")
	for _, n := range names {
		fmt.Printf("| %s | %.1f %% |\n", n, 100*float64(counts[n])/float64(total))
	}
	fmt.Printf("\n%d samples.\n", total)
}

// split reads perf script output: samples separated by blank lines, a
// header line then one frame per line.
func split(r io.Reader) (map[string]int, int, error) {
	counts := map[string]int{}
	total := 0
	var frames []string
	flush := func() {
		if len(frames) == 0 {
			return
		}
		total++
		counts[classify(frames)]++
		frames = frames[:0]
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	inSample := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			flush()
			inSample = false
		case !inSample:
			inSample = true // the sample's header line
		default:
			frames = append(frames, line)
		}
	}
	flush()
	return counts, total, sc.Err()
}

func classify(frames []string) string {
	stack := strings.Join(frames, "\n")
	for _, b := range buckets {
		for _, alt := range b.any {
			if containsAll(stack, alt) {
				return b.name
			}
		}
	}
	return "other"
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
