package main

import (
	"bufio"
	"io"
	"math"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const wrkOutput = `Running 5s test @ http://127.0.0.1:35877/predict
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.12ms    2.91ms  28.17ms   87.23%
    Req/Sec    39.34k    13.22k   62.46k    70.00%
  78671 requests in 2.02s, 12.53MB read
Requests/sec:  38924.96
Transfer/sec:      6.20MB
bench-latency-us p50=963 p99=13480 p999=17990 max=28170
`

const wrkOutputErrors = `Running 1s test @ http://127.0.0.1:1/predict
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.99ms    8.19ms  65.90ms   94.50%
    Req/Sec    43.91k     9.96k   55.06k    70.00%
  43681 requests in 1.00m, 6.96MB read
  Socket errors: connect 1, read 2, write 3, timeout 4
  Non-2xx or 3xx responses: 12
Requests/sec:  727.95
Transfer/sec:      6.94MB
`

func TestParseWrk(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		desc    string
		out     string
		want    wrkResult
		wantErr bool
	}{
		{
			desc: "count, rate and the script's latency line",
			out:  wrkOutput,
			want: wrkResult{Requests: 78671, Seconds: 2.02, RPS: 38924.96,
				Lat: Percentiles{N: 78671, P50: 963, P99: 13480, P999: 17990, Max: 28170}},
		},
		{
			desc: "socket errors summed, non-2xx apart, minutes, no latency line",
			out:  wrkOutputErrors,
			want: wrkResult{Requests: 43681, Seconds: 60, RPS: 727.95, Non2xx: 12, SocketErrors: 10},
		},
		{desc: "wrk failed before running", out: "unable to connect to 127.0.0.1:1 Connection refused\n", wantErr: true},
		{desc: "no rate line", out: "  10 requests in 1.00s, 1KB read\n", wantErr: true},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			got, err := parseWrk(test.out)
			if test.wantErr {
				require.ErrorIs(t, err, errWrkOutput)
				return
			}
			require.NoError(t, err)
			assert.InDelta(t, test.want.Seconds, got.Seconds, 1e-9)
			got.Seconds = test.want.Seconds
			assert.Equal(t, test.want, got)
		})
	}
}

func TestWrkResult_ElapsedFromCountAndRate(t *testing.T) {
	t.Parallel()
	r := wrkResult{Requests: 100000, Seconds: 5.01, RPS: 20000}
	assert.InDelta(t, 5.0, r.elapsed().Seconds(), 1e-9)
	assert.InDelta(t, 2.5, wrkResult{Seconds: 2.5}.elapsed().Seconds(), 1e-9)
}

func TestReadResponse(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		desc       string
		in         string
		wantStatus int
		wantErr    error
		// rest is what must be left unread.
		rest string
	}{
		{desc: "200 with a body, next response untouched",
			in:         "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\nX-Upstream-Color: blue\r\n\r\nhelloNEXT",
			wantStatus: 200, rest: "NEXT"},
		{desc: "header name in any case, bare LF", in: "HTTP/1.1 503 Service Unavailable\ncontent-length: 2\n\nno", wantStatus: 503},
		{desc: "empty body", in: "HTTP/1.0 204 No Content\r\nContent-Length: 0\r\n\r\n", wantStatus: 204},
		{desc: "chunked is refused", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", wantErr: errResponse},
		{desc: "no Content-Length", in: "HTTP/1.1 200 OK\r\nServer: x\r\n\r\nhello", wantErr: errResponse},
		{desc: "bad Content-Length", in: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", wantErr: errResponse},
		{desc: "not HTTP", in: "SSH-2.0-OpenSSH\r\n", wantErr: errResponse},
		{desc: "header without colon", in: "HTTP/1.1 200 OK\r\nbroken\r\n\r\n", wantErr: errResponse},
		{desc: "body cut short", in: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", wantErr: io.ErrUnexpectedEOF},
		{desc: "connection closed before an answer", in: "", wantErr: io.EOF},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			br := bufio.NewReader(strings.NewReader(test.in))
			status, err := readResponse(br)
			if test.wantErr != nil {
				require.ErrorIs(t, err, test.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, test.wantStatus, status)
			rest, _ := io.ReadAll(br)
			assert.Equal(t, test.rest, string(rest))
		})
	}
}

func TestIdleRequest_ReadsAsOneRequest(t *testing.T) {
	t.Parallel()
	req := string(idleRequest("127.0.0.1:8080"))
	head, body, ok := strings.Cut(req, "\r\n\r\n")
	require.True(t, ok)
	assert.Equal(t, string(predictBody), body)
	assert.Contains(t, head, "POST /predict HTTP/1.1\r\n")
	assert.True(t, strings.HasSuffix(head, "\r\nContent-Length: 46"), head)
}

func TestCPUList(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		desc string
		cpus []int
		want string
	}{
		{desc: "one", cpus: []int{0}, want: "0"},
		{desc: "a range", cpus: []int{1, 2, 3}, want: "1-3"},
		{desc: "gaps and disorder", cpus: []int{5, 0, 2, 3}, want: "0,2-3,5"},
		{desc: "none", want: ""},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, test.want, cpuList(test.cpus))
		})
	}
}

func TestLayoutFor_PinsOnlyWhenCPUsAreLeftOver(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		desc          string
		cpus          []int
		workers       int
		pin           bool
		proxy, others []int
		text          string
	}{
		{desc: "1 worker on 2 CPUs", cpus: []int{0, 1}, workers: 1, pin: true, proxy: []int{0}, others: []int{1},
			text: "1 worker, pinned to CPU 0; upstream and load generator on CPU 1"},
		{desc: "2 workers on 2 CPUs", cpus: []int{0, 1}, workers: 2, pin: true, text: "2 workers, unpinned"},
		{desc: "2 workers on 4 CPUs", cpus: []int{0, 1, 2, 3}, workers: 2, pin: true, proxy: []int{0, 1}, others: []int{2, 3},
			text: "2 workers, pinned to CPUs 0-1; upstream and load generator on CPUs 2-3"},
		{desc: "-pin=false", cpus: []int{0, 1}, workers: 1, text: "1 worker, unpinned"},
		{desc: "one CPU", cpus: []int{3}, workers: 1, pin: true, text: "1 worker, unpinned"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			h := &harness{opts: &options{pin: test.pin}, cpus: test.cpus}
			l := h.layoutFor(test.workers)
			assert.Equal(t, test.proxy, l.proxy)
			assert.Equal(t, test.others, l.others)
			assert.Equal(t, test.text, l.String())
		})
	}
}

func TestThousands(t *testing.T) {
	t.Parallel()
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 10000: "10,000", 1234567: "1,234,567", -2000: "-2,000"} {
		assert.Equal(t, want, thousands(n))
	}
}

func TestVersus(t *testing.T) {
	t.Parallel()
	nan := math.NaN()
	testCases := []struct {
		desc     string
		a, b     float64
		op       string
		limit    float64
		want     string
		measured float64
	}{
		{desc: "ratio above a floor", a: 22000, b: 20000, op: "≥", limit: 1.10, want: checkPass, measured: 1.1},
		{desc: "ratio under a floor", a: 21000, b: 20000, op: "≥", limit: 1.10, want: checkFail, measured: 1.05},
		{desc: "ratio under a ceiling", a: 18, b: 20, op: "≤", limit: 0.90, want: checkPass, measured: 0.9},
		{desc: "ratio over a ceiling", a: 19, b: 20, op: "≤", limit: 0.90, want: checkFail, measured: 0.95},
		{desc: "strict bound reached", a: 3, b: 1, op: "<", limit: 3, want: checkFail, measured: 3},
		{desc: "peer's added latency below zero: plain comparison, no ratio", a: -5, b: -3, op: "≤", limit: 1, want: checkPass, measured: nan},
		{desc: "peer's added latency zero, ours positive", a: 10, b: 0, op: "≤", limit: 1, want: checkFail, measured: nan},
		{desc: "not measured", a: nan, b: 20, op: "≥", limit: 1, want: checkNotMeasured, measured: nan},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			c := versus("t", test.a, test.b, test.op, test.limit, "×", "")
			assert.Equal(t, test.want, c.Result)
			if math.IsNaN(test.measured) {
				assert.True(t, math.IsNaN(float64(c.Measured)), "measured %v", c.Measured)
			} else {
				assert.InDelta(t, test.measured, float64(c.Measured), 1e-9)
			}
		})
	}
}

// sampleResults is a run that meets every target but the busy-connection
// one.
func sampleResults() *results {
	tr := func(name string, rps, cpu, a50, a99 float64) TargetResult {
		return TargetResult{Name: name, PeakRPS: rps, CPUMicros: cpu, Added: Percentiles{P50: a50, P99: a99}}
	}
	return &results{
		Settings: Settings{Rate: 2000, Conns: 64, MaxConnsPerBackend: 256, MaxConnsSource: "config default"},
		Comparisons: []Comparison{
			{Workers: 1, Pinned: true, Targets: []TargetResult{tr(targetDirect, 60000, 10, 0, 0),
				tr(targetSwitchyard, 30000, 30, 50, 200), tr(targetNginx, 25000, 36, 60, 250), tr(targetHAProxy, 26000, 35, 55, 240)}},
			{Workers: 2, Targets: []TargetResult{tr(targetSwitchyard, 1, 1000, 1e6, 1e6), tr(targetNginx, 1e6, 1, 0, 0)}},
		},
		Scaling: &Scaling{
			Backends: []ScalePoint{
				{Backends: 1, Conns: 64, PeakRPS: 30000, CPUMicros: 30, UpstreamConns: 66},
				{Backends: 1000, Conns: 64, PeakRPS: 29000, CPUMicros: 32, UpstreamConns: 2100},
				{Backends: 1000, Conns: 64, HealthInterval: "30s", PeakRPS: 1, CPUMicros: 1000, UpstreamConns: 1e6},
			},
			Conns: []ScalePoint{{Backends: 1, Conns: 10, UpstreamConns: 10}, {Backends: 1, Conns: 1000, UpstreamConns: 600}},
		},
		ProbeCost: &ProbeCost{BackendsPerPool: 1000, Seconds: 10, CPUSeconds: 0.2, CorePercent: 2, Probes: 10000, CPUMicrosPerProbe: 20},
		Idle: &IdleConns{Conns: 10000, Points: []IdlePoint{{Name: targetSwitchyard, Opened: 10000, RSSMiB: 100},
			{Name: targetNginx, Opened: 10000, RSSMiB: 40}}},
	}
}

func TestCheckTargets(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		desc   string
		modify func(r *results)
		want   []string
	}{
		{desc: "every target met but the busy connections' dials", modify: func(*results) {},
			want: []string{checkPass, checkPass, checkPass, checkPass, checkPass, checkPass, checkPass, checkPass, checkPass, checkPass, checkFail}},
		{desc: "Switchyard slower than HAProxy and costlier than nginx", modify: func(r *results) {
			sy := &r.Comparisons[0].Targets[1]
			sy.PeakRPS, sy.CPUMicros = 27000, 34
		}, want: []string{checkFail, checkFail, checkFail, checkPass, checkPass, checkPass, checkPass, checkPass, checkPass, checkPass, checkFail}},
		{desc: "nginx not installed, no scaling or probes run", modify: func(r *results) {
			r.Comparisons[0].Targets = r.Comparisons[0].Targets[:2]
			r.Scaling, r.ProbeCost = nil, nil
		}, want: []string{checkNotMeasured, checkNotMeasured, checkNotMeasured, checkNotMeasured, checkNotMeasured,
			checkNotMeasured, checkNotMeasured, checkNotMeasured, checkNotMeasured, checkPass, checkNotMeasured}},
		{desc: "no 1-worker table", modify: func(r *results) { r.Comparisons = r.Comparisons[1:] },
			want: []string{checkNotMeasured, checkNotMeasured, checkNotMeasured, checkNotMeasured, checkNotMeasured,
				checkPass, checkPass, checkPass, checkPass, checkPass, checkFail}},
		{desc: "probes too dear, pool too slow, too many dials, idle too big, busy dials within the limit", modify: func(r *results) {
			r.ProbeCost.CorePercent = 3
			big := &r.Scaling.Backends[1]
			big.PeakRPS, big.CPUMicros, big.UpstreamConns = 28000, 34, 2581
			r.Idle.Points[0].RSSMiB = 121
			r.Scaling.Conns[1].UpstreamConns = 512
		}, want: []string{checkPass, checkPass, checkPass, checkPass, checkPass, checkFail, checkFail, checkFail, checkFail, checkFail, checkPass}},
		{desc: "idle connections not all held", modify: func(r *results) { r.Idle.Points[0].Opened = 9000 },
			want: []string{checkPass, checkPass, checkPass, checkPass, checkPass, checkPass, checkPass, checkPass, checkPass, checkNotMeasured, checkFail}},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			r := sampleResults()
			test.modify(r)
			cs := checkTargets(r)
			var got []string
			for _, c := range cs {
				got = append(got, c.Result)
			}
			assert.Equal(t, test.want, got)
			md := targetsMarkdown(cs)
			assert.Equal(t, len(cs)+2, strings.Count(md, "\n"))
		})
	}
}

func TestCheckTargets_Wording(t *testing.T) {
	t.Parallel()
	cs := checkTargets(sampleResults())
	require.Len(t, cs, 11)
	assert.Equal(t, "1 worker: Switchyard peak req/s ÷ nginx's", cs[0].Target)
	assert.InDelta(t, 1.2, float64(cs[0].Measured), 1e-9)
	assert.Equal(t, "30000 vs 25000 req/s", cs[0].Detail)
	assert.InDelta(t, 2100.0/2064, float64(cs[7].Measured), 1e-9)
	assert.Equal(t, "Probing 2,000 backends every 2s, no client load: share of one core", cs[8].Target)
	assert.Equal(t, "10,000 idle keep-alive client connections: Switchyard RSS", cs[9].Target)
	assert.Equal(t, "nginx 40.0 MiB", cs[9].Detail)
	assert.Contains(t, cs[10].Target, "(256, config default)")
	md := targetsMarkdown(cs)
	assert.Contains(t, md, "| 1 worker: Switchyard peak req/s ÷ nginx's | 1.20× | ≥ 1.1× | **PASS** | 30000 vs 25000 req/s |")
	assert.Contains(t, md, "| 2.00 % | < 3 % | **PASS** |")
	assert.Contains(t, md, "| 100.0 MiB | ≤ 120 MiB | **PASS** | nginx 40.0 MiB |")
}

func TestParseFlags_WorkersAndQuick(t *testing.T) {
	t.Parallel()
	o, err := parseFlags(nil, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, []int{1, 2}, o.workers)
	assert.Equal(t, 1, o.scaleWorkers)
	assert.Equal(t, 10000, o.idleConns)
	assert.True(t, o.pin)
	for _, p := range []string{"compare", "idle", "switch", "scale", "probe"} {
		assert.True(t, o.phases[p], p)
	}

	o, err = parseFlags([]string{"-quick", "-workers", "2", "-idle-conns", "500"}, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, []int{2}, o.workers)
	assert.Equal(t, 2, o.scaleWorkers)
	assert.Equal(t, 500, o.idleConns, "an explicit flag wins over -quick")
	assert.Equal(t, 1, o.otherRounds)

	_, err = parseFlags([]string{"-workers", "0"}, io.Discard)
	require.Error(t, err)
	_, err = parseFlags([]string{"-phases", "compare,nope"}, io.Discard)
	require.Error(t, err)
}

func TestParseCPUTimes(t *testing.T) {
	t.Parallel()
	stat := []byte(`cpu  300 0 100 1000 10 0 50 0 0 0
cpu0 100 0 50 600 5 0 20 0 0 0
cpu1 200 0 50 400 5 0 30 7 0 0
intr 12345
`)
	testCases := []struct {
		desc        string
		cpus        []int
		busy, total int64
	}{
		{desc: "one CPU: user, system, softirq and steal are busy; idle and iowait are not", cpus: []int{1}, busy: 287, total: 692},
		{desc: "two CPUs sum", cpus: []int{0, 1}, busy: 457, total: 1467},
		{desc: "the all-CPU line is not a CPU", cpus: nil},
		{desc: "a CPU not listed", cpus: []int{7}},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			busy, total := parseCPUTimes(stat, test.cpus)
			assert.Equal(t, test.busy, busy)
			assert.Equal(t, test.total, total)
		})
	}
}
