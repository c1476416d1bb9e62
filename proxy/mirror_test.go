package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"github.com/valyala/fasthttp"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// mirrorGateway is a running proxy with shadow traffic on.
type mirrorGateway struct {
	URL    string
	Router *Router
	Mirror *Mirror
	prom   *prometheus.Registry
}

// startMirrorGateway runs the proxy for cfg with a Mirror built from
// cfg.Traffic.Mirror until the test ends. Tests that block the shadow
// backend must unblock it in a cleanup registered after this call: Close
// waits for copies in flight.
func startMirrorGateway(t *testing.T, cfg *config.Config) *mirrorGateway {
	t.Helper()
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	prom := prometheus.NewRegistry()
	reg := NewRegistry(RegistryOptions{StartReady: true})
	r := NewRouter(cfg, Options{Registry: reg, Metrics: NewMetrics(prom), Log: log})
	m := NewMirror(r, cfg.Traffic.Mirror, prom, log)
	h := NewHandler(r, log)
	h.SetMirror(m)
	srv := NewServer(h, cfg.Proxy.MaxRequestBodyBytes)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	g := &mirrorGateway{URL: "http://" + ln.Addr().String(), Router: r, Mirror: m, prom: prom}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		// Shutdown does nothing to a server whose Serve has not started
		// yet; closing the listener ends Serve either way.
		_ = srv.Shutdown()
		_ = ln.Close()
		<-done
		m.Close()
		r.Close()
		reg.CloseIdle()
	})
	return g
}

// counter reads one sample of a counter from the gateway's registry; 0
// when the sample does not exist.
func (g *mirrorGateway) counter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	return gatheredCounter(t, g.prom, name, labels)
}

func gatheredCounter(t *testing.T, prom prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := prom.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if matchLabels(m, labels) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func matchLabels(m *dto.Metric, want map[string]string) bool {
	n := 0
	for _, lp := range m.GetLabel() {
		v, ok := want[lp.GetName()]
		if !ok {
			continue
		}
		if v != lp.GetValue() {
			return false
		}
		n++
	}
	return n == len(want)
}

func dropped(t *testing.T, g *mirrorGateway, reason string) float64 {
	t.Helper()
	return g.counter(t, "switchyard_mirror_dropped_total", map[string]string{"reason": reason})
}

// shadowHit is one request as the shadow backend saw it.
type shadowHit struct {
	seq  string // X-Seq header
	body string
	at   time.Time
}

// shadowServer is the standby backend receiving copies. It records every
// request; while blocked it holds each one until unblock.
type shadowServer struct {
	*httptest.Server
	hits   chan shadowHit
	status int
	gate   chan struct{}
	once   sync.Once
}

// newShadowServer answers every request with status after the gate opens;
// blocked servers start with the gate closed.
func newShadowServer(t *testing.T, status int, blocked bool) *shadowServer {
	t.Helper()
	s := &shadowServer{hits: make(chan shadowHit, 1024), status: status, gate: make(chan struct{})}
	if !blocked {
		close(s.gate)
	}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.hits <- shadowHit{seq: r.Header.Get("X-Seq"), body: string(body), at: time.Now()}
		<-s.gate
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(s.status)
		_, _ = fmt.Fprintf(w, `{"backend":"green","status":%d}`, s.status)
	}))
	t.Cleanup(s.Close)
	return s
}

// unblock lets every held and future request complete.
func (s *shadowServer) unblock() { s.once.Do(func() { close(s.gate) }) }

// next returns the next request the shadow backend received.
func (s *shadowServer) next(t *testing.T) shadowHit {
	t.Helper()
	select {
	case h := <-s.hits:
		return h
	case <-time.After(10 * time.Second):
		require.FailNow(t, "no mirrored request reached the shadow backend")
		return shadowHit{}
	}
}

const predictBody = `{"inputs":[[1,2,3,4]]}`

func mirrorConfig(t *testing.T, blue, green string, mirror string) *config.Config {
	t.Helper()
	return testConfig(t, []string{blue}, []string{green}, "traffic:\n  mirror: "+mirror+"\n")
}

// answer is a response as the client got it.
type answer struct {
	status int
	color  string
	body   string
}

func postSeq(t *testing.T, client *http.Client, url string, seq int, body string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/predict", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("X-Seq", strconv.Itoa(seq))
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return answer{status: resp.StatusCode, color: resp.Header.Get(HeaderColor), body: string(data)}
}

func TestMirror_ClientAnswersAreUnchangedWhileTheShadowPoolIsStuck(t *testing.T) {
	blue := colorServer(t, "blue")
	green := newShadowServer(t, http.StatusInternalServerError, true)
	cfg := mirrorConfig(t, hostPort(blue), hostPort(green.Server), "{to: green, percent: 100, concurrency: 2, queue: 4, timeout: 30s}")
	g := startMirrorGateway(t, cfg)
	t.Cleanup(green.unblock)
	client := newClient(t)
	// What blue answers with no gateway in between, and what the gateway
	// answers without a mirror, is what the client must get with one.
	direct := postSeq(t, client, blue.URL, 0, predictBody)
	require.Equal(t, http.StatusOK, direct.status)
	_, err := g.Router.SetTraffic(TrafficRequest{SetMirror: true})
	require.NoError(t, err)
	unmirrored := postSeq(t, client, g.URL, 0, predictBody)
	require.Equal(t, answer{status: http.StatusOK, color: "blue", body: direct.body}, unmirrored)
	_, err = g.Router.SetTraffic(TrafficRequest{SetMirror: true, Mirror: &MirrorSetting{To: config.Green, Percent: 100}})
	require.NoError(t, err)
	const n = 21

	for i := 1; i <= n; i++ {
		got := postSeq(t, client, g.URL, i, predictBody)

		require.Equal(t, unmirrored, got, "request %d", i)
		if i <= 2 {
			// Each of the two workers now holds a copy the shadow
			// backend does not answer.
			assert.Equal(t, strconv.Itoa(i), green.next(t).seq)
		}
		require.LessOrEqual(t, len(g.Mirror.jobs), cap(g.Mirror.jobs))
	}

	// Every answer above came while the shadow backend held its requests.
	assert.Equal(t, 4, cap(g.Mirror.jobs))
	assert.Equal(t, 4, len(g.Mirror.jobs), "the queue is not full")
	assert.Equal(t, float64(n-2-4), dropped(t, g, dropQueueFull))
	assert.Empty(t, green.hits, "more copies reached the shadow backend than workers")

	green.unblock()
	for range 4 {
		green.next(t)
	}
	require.Eventually(t, func() bool {
		return g.counter(t, "switchyard_mirror_requests_total", map[string]string{"color": "green", "version": "v2", "code": "5xx"}) == 6
	}, 10*time.Second, 10*time.Millisecond)
	shadow := g.Router.ShadowStats(config.Green).Summary(time.Now().Add(-time.Minute), time.Now())
	assert.EqualValues(t, 6, shadow.Requests)
	assert.EqualValues(t, 6, shadow.Errors)
	assert.EqualValues(t, 6, shadow.Differs)
	assert.Zero(t, g.Router.Stats(config.Green).Summary(time.Now().Add(-time.Minute), time.Now()).Requests,
		"copies counted as live green traffic")
	assert.Empty(t, green.hits, "a dropped copy was sent")
}

// streamServer answers with a body in two chunks and waits on its gate in
// between; it records when each answer was complete.
type streamServer struct {
	*httptest.Server
	gate     chan struct{}
	mu       sync.Mutex
	answered map[string]time.Time
}

func newStreamServer(t *testing.T) *streamServer {
	t.Helper()
	s := &streamServer{gate: make(chan struct{}), answered: map[string]time.Time{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seq := r.Header.Get("X-Seq")
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"part":1}`)
		w.(http.Flusher).Flush()
		if seq == "held" {
			<-s.gate
		}
		_, _ = io.WriteString(w, `{"part":2}`)
		w.(http.Flusher).Flush()
		s.mu.Lock()
		s.answered[seq] = time.Now()
		s.mu.Unlock()
	}))
	t.Cleanup(s.Close)
	return s
}

func TestMirror_CopyIsSentOnlyAfterThePrimaryAnswered(t *testing.T) {
	blue := newStreamServer(t)
	green := newShadowServer(t, http.StatusOK, false)
	cfg := mirrorConfig(t, hostPort(blue.Server), hostPort(green.Server), "{to: green, percent: 100, concurrency: 4}")
	g := startMirrorGateway(t, cfg)
	client := newClient(t)

	t.Run("not while the answer streams", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodPost, g.URL+"/predict", strings.NewReader(predictBody))
		require.NoError(t, err)
		req.Header.Set("X-Seq", "held")
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		first := make([]byte, len(`{"part":1}`))
		_, err = io.ReadFull(resp.Body, first)
		require.NoError(t, err)
		// The client has half its answer and the request is in flight:
		// no copy may have gone yet. Give a wrongly early copy time to
		// show up.
		select {
		case h := <-green.hits:
			require.FailNow(t, "the copy reached the shadow backend before the client had its answer", "%+v", h)
		case <-time.After(300 * time.Millisecond):
		}

		close(blue.gate)
		rest, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		assert.Equal(t, `{"part":2}`, string(rest))
		assert.Equal(t, "held", green.next(t).seq)
	})

	t.Run("each copy after its answer", func(t *testing.T) {
		const n = 50
		for i := range n {
			got := postSeq(t, client, g.URL, i, predictBody)
			require.Equal(t, http.StatusOK, got.status)
			require.Equal(t, `{"part":1}{"part":2}`, got.body)
		}
		arrived := map[string]time.Time{}
		for range n {
			h := green.next(t)
			arrived[h.seq] = h.at
		}
		blue.mu.Lock()
		defer blue.mu.Unlock()
		for i := range n {
			seq := strconv.Itoa(i)
			require.Contains(t, arrived, seq)
			assert.True(t, arrived[seq].After(blue.answered[seq]),
				"copy %s reached green at %s, before blue finished its answer at %s", seq, arrived[seq], blue.answered[seq])
		}
	})
}

func TestMirror_BodiesOverMaxBodyBytesAreNotMirrored(t *testing.T) {
	blue := colorServer(t, "blue")
	green := newShadowServer(t, http.StatusOK, false)
	// One worker: copies reach the shadow backend in request order.
	cfg := mirrorConfig(t, hostPort(blue), hostPort(green.Server), "{to: green, percent: 100, concurrency: 1, max_body_bytes: 100}")
	g := startMirrorGateway(t, cfg)
	client := newClient(t)
	testCases := []struct {
		desc     string
		size     int
		mirrored bool
	}{
		{desc: "no body", size: 0, mirrored: true},
		{desc: "small", size: 50, mirrored: true},
		{desc: "at the limit", size: 100, mirrored: true},
		{desc: "one byte over", size: 101, mirrored: false},
		{desc: "large", size: 64 << 10, mirrored: false},
	}
	var want []string
	for i, test := range testCases {
		got := postSeq(t, client, g.URL, i, strings.Repeat("x", test.size))
		require.Equal(t, http.StatusOK, got.status, test.desc)
		require.Equal(t, "blue", got.color, test.desc)
		if test.mirrored {
			want = append(want, strconv.Itoa(i))
		}
	}
	// A last small request marks the end: every copy made before it has
	// arrived when it does.
	postSeq(t, client, g.URL, 99, "end")
	var got []string
	for {
		h := green.next(t)
		if h.seq == "99" {
			break
		}
		got = append(got, h.seq)
		assert.LessOrEqual(t, len(h.body), 100)
	}
	assert.Equal(t, want, got)
	assert.Zero(t, dropped(t, g, dropQueueFull)+dropped(t, g, dropNotReady)+dropped(t, g, dropSwitched),
		"a body too large to mirror is not a drop")
}

func TestMirror_ToAPoolThatIsNotReadyDropsAsNotReady(t *testing.T) {
	blue := colorServer(t, "blue")
	green := newShadowServer(t, http.StatusOK, false)
	cfg := mirrorConfig(t, hostPort(blue), hostPort(green.Server), "{to: green, percent: 100}")
	g := startMirrorGateway(t, cfg)
	b, ok := g.Router.Registry().Lookup(hostPort(green.Server))
	require.True(t, ok)
	b.SetReady(false)
	client := newClient(t)

	for i := range 5 {
		got := postSeq(t, client, g.URL, i, predictBody)
		require.Equal(t, http.StatusOK, got.status)
		require.Equal(t, "blue", got.color)
	}

	require.Eventually(t, func() bool { return dropped(t, g, dropNotReady) == 5 }, 10*time.Second, 10*time.Millisecond)
	assert.Empty(t, green.hits)
	assert.Zero(t, g.Router.ShadowStats(config.Green).Summary(time.Now().Add(-time.Minute), time.Now()).Requests)
}

func TestMirror_CopiesQueuedBeforeASwitchAreDroppedAsSwitched(t *testing.T) {
	blue := colorServer(t, "blue")
	green := newShadowServer(t, http.StatusOK, true)
	cfg := mirrorConfig(t, hostPort(blue), hostPort(green.Server), "{to: green, percent: 100, concurrency: 1, queue: 8, timeout: 30s}")
	g := startMirrorGateway(t, cfg)
	t.Cleanup(green.unblock)
	client := newClient(t)
	postSeq(t, client, g.URL, 0, predictBody)
	green.next(t) // the worker holds copy 0
	for i := 1; i <= 3; i++ {
		postSeq(t, client, g.URL, i, predictBody)
	}
	require.Len(t, g.Mirror.jobs, 3)

	_, err := g.Router.Switch(SwitchRequest{To: config.Green, Trigger: TriggerAdmin})
	require.NoError(t, err)
	green.unblock()

	require.Eventually(t, func() bool { return dropped(t, g, dropSwitched) == 3 }, 10*time.Second, 10*time.Millisecond)
	// The live request is the only one green gets now.
	got := postSeq(t, client, g.URL, 4, predictBody)
	assert.Equal(t, "green", got.color)
	assert.Equal(t, "4", green.next(t).seq)
	assert.Empty(t, green.hits)
}

func TestMirror_ShadowStatsRecordRequestsAndStatusDifferences(t *testing.T) {
	testCases := []struct {
		desc        string
		greenStatus int
		wantErrors  uint64
		wantDiffers uint64
	}{
		{desc: "same answers", greenStatus: http.StatusOK, wantErrors: 0, wantDiffers: 0},
		{desc: "same class", greenStatus: http.StatusCreated, wantErrors: 0, wantDiffers: 0},
		{desc: "shadow fails", greenStatus: http.StatusInternalServerError, wantErrors: 10, wantDiffers: 10},
		{desc: "shadow refuses", greenStatus: http.StatusNotFound, wantErrors: 0, wantDiffers: 10},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			blue := colorServer(t, "blue")
			green := newShadowServer(t, test.greenStatus, false)
			cfg := mirrorConfig(t, hostPort(blue), hostPort(green.Server), "{to: green, percent: 100}")
			g := startMirrorGateway(t, cfg)
			client := newClient(t)
			from := time.Now()

			for i := range 10 {
				got := postSeq(t, client, g.URL, i, predictBody)
				require.Equal(t, http.StatusOK, got.status)
			}

			var w Window
			require.Eventually(t, func() bool {
				w = g.Router.ShadowStats(config.Green).Summary(from, time.Now())
				return w.Requests == 10
			}, 10*time.Second, 10*time.Millisecond, "shadow stats: %+v", w)
			assert.Equal(t, test.wantErrors, w.Errors)
			assert.Equal(t, test.wantDiffers, w.Differs)
			assert.Positive(t, w.P99)
			assert.EqualValues(t, 10, g.Router.Stats(config.Blue).Summary(from, time.Now()).Requests)
			assert.Zero(t, g.Router.ShadowStats(config.Blue).Summary(from, time.Now()).Requests)
		})
	}
}

func TestMirror_SendsItsShare(t *testing.T) {
	blue := colorServer(t, "blue")
	green := newShadowServer(t, http.StatusOK, false)
	// One worker and a deep queue: copies arrive in order, none dropped.
	cfg := mirrorConfig(t, hostPort(blue), hostPort(green.Server), "{to: green, percent: 20, concurrency: 1, queue: 1000}")
	g := startMirrorGateway(t, cfg)
	client := newClient(t)
	const n = 1000

	for i := range n {
		got := postSeq(t, client, g.URL, i, predictBody)
		require.Equal(t, "blue", got.color)
	}

	// A last request copied for sure marks the end.
	_, err := g.Router.SetTraffic(TrafficRequest{SetMirror: true, Mirror: &MirrorSetting{To: config.Green, Percent: 100}})
	require.NoError(t, err)
	postSeq(t, client, g.URL, -1, predictBody)
	copies := 0
	for green.next(t).seq != "-1" {
		copies++
	}
	assert.InDelta(t, 200, copies, 60, "copies of %d requests", n)
	assert.Zero(t, dropped(t, g, dropQueueFull))
}

func TestMirror_CloseStopsTheWorkers(t *testing.T) {
	green := newShadowServer(t, http.StatusOK, false)
	cfg := mirrorConfig(t, "10.0.0.1:5000", hostPort(green.Server), "{to: green, percent: 100, concurrency: 4}")
	r := newTestRouter(t, cfg, nil)
	ignore := goleak.IgnoreCurrent()
	m := NewMirror(r, cfg.Traffic.Mirror, prometheus.NewRegistry(), zap.NewNop())
	for i := range 8 {
		job := mirrorJobs.Get().(*mirrorJob)
		job.req.SetRequestURI("/predict")
		job.req.Header.SetMethod(fasthttp.MethodPost)
		job.req.Header.Set("X-Seq", strconv.Itoa(i))
		job.to = config.Green
		m.enqueue(job, fasthttp.StatusOK)
	}
	for range 8 {
		green.next(t)
	}

	m.Close()

	goleak.VerifyNone(t, ignore,
		// The mirror client's idle-connection sweepers sleep between
		// sweeps and exit on the first one that finds none, up to a
		// second after Close.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*HostClient).connsCleaner"),
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*Client).mCleaner"))
}

// Close must not wait for a copy stuck in a hung shadow pool until
// traffic.mirror.timeout: gateway.Run defers it, and shutdown would take
// that much longer.
func TestMirror_CloseDoesNotWaitForAStuckShadowPool(t *testing.T) {
	green := newShadowServer(t, http.StatusOK, true)
	t.Cleanup(green.unblock)
	cfg := mirrorConfig(t, "10.0.0.1:5000", hostPort(green.Server), "{to: green, percent: 100, concurrency: 1, timeout: 3s}")
	r := newTestRouter(t, cfg, nil)
	m := NewMirror(r, cfg.Traffic.Mirror, prometheus.NewRegistry(), zap.NewNop())
	job := mirrorJobs.Get().(*mirrorJob)
	job.req.SetRequestURI("/predict")
	job.to = config.Green
	m.enqueue(job, fasthttp.StatusOK)
	green.next(t) // the worker is stuck in the shadow backend

	closed := make(chan struct{})
	go func() {
		defer close(closed)
		m.Close()
	}()

	select {
	case <-closed:
	case <-time.After(time.Second):
		assert.Fail(t, "Close is still waiting for the stuck copy")
		<-closed
	}
}
