package health

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/modelsim"
	"github.com/switchyard/switchyard/proxy"
	"github.com/switchyard/switchyard/warmup"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// Deadlines for polling a condition. The machine running the tests may
// have two cores and the race detector on, so they are generous: a test
// that passes waits only as long as the condition takes.
const (
	waitFor = 15 * time.Second
	pollIn  = 5 * time.Millisecond
)

// eventually waits until cond holds, failing the test after waitFor with
// msg and what why says then (the state that never became right).
func eventually(t testing.TB, cond func() bool, msg string, why ...func() string) {
	t.Helper()
	if assert.Eventually(t, cond, waitFor, pollIn, msg) {
		return
	}
	for _, w := range why {
		t.Log("at the deadline: " + w())
	}
	t.FailNow()
}

func testLogger(t testing.TB) *zap.Logger {
	t.Helper()
	return zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
}

// newWarmer returns a real Warmer closed when the test ends. Register it
// before the Checker that uses it, so that the Checker closes first.
func newWarmer(t testing.TB) *warmup.Warmer {
	t.Helper()
	w := warmup.New(testLogger(t))
	t.Cleanup(w.Close)
	return w
}

// newChecker returns a Checker closed when the test ends. active nil
// means blue is live.
func newChecker(t testing.TB, w Warmer, active func() config.Color) *Checker {
	t.Helper()
	if active == nil {
		active = func() config.Color { return config.Blue }
	}
	c := New(testLogger(t), w, active)
	t.Cleanup(c.Close)
	return c
}

// newRegistry returns a registry whose backends start not ready, as when a
// health checker runs.
func newRegistry(t testing.TB) *proxy.Registry {
	t.Helper()
	reg := proxy.NewRegistry(proxy.RegistryOptions{})
	t.Cleanup(reg.CloseIdle)
	return reg
}

// testHealth is a fast probe config of kind; edit applies a test's changes.
// Its timeout is longer than the interval, which config validation would
// refuse but the Checker handles (probes of one backend never overlap): a
// loopback probe takes a millisecond, and a longer timeout keeps a busy
// two-core machine from failing probes by accident. Tests about timeouts
// set their own.
func testHealth(kind string, edit func(*config.Health)) config.Health {
	h := config.Health{
		Kind:               kind,
		Path:               config.DefaultProbePath(kind),
		Interval:           config.Duration(30 * time.Millisecond),
		Timeout:            config.Duration(time.Second),
		HealthyThreshold:   1,
		UnhealthyThreshold: 2,
	}
	if edit != nil {
		edit(&h)
	}
	return h
}

// predictBody is what modelsim's /predict accepts.
const predictBody = `{"inputs": [[1, 2, 3]]}`

// testWarmup compiles a warmup of 3 requests to /predict; edit applies a
// test's changes to the config before compiling.
func testWarmup(t testing.TB, edit func(*config.Warmup)) *warmup.Spec {
	t.Helper()
	w := &config.Warmup{
		Path:        "/predict",
		Body:        predictBody,
		Requests:    3,
		MaxRequests: 30,
		Timeout:     config.Duration(5 * time.Second),
	}
	if edit != nil {
		edit(w)
	}
	spec, err := warmup.Compile(w)
	require.NoError(t, err)
	require.NotNil(t, spec)
	return spec
}

// startSim runs a simulated model server until the test ends.
func startSim(t testing.TB, opts modelsim.Options) *modelsim.Server {
	t.Helper()
	s, err := modelsim.Start("127.0.0.1:0", opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// stateOf returns what the checker knows about addr. It reports a
// missing backend with assert, not require, because polled conditions run
// on a goroutine of their own, where FailNow must not be called.
func stateOf(t testing.TB, c *Checker, addr string) State {
	t.Helper()
	st := c.Inspect(addr)
	if !assert.NotNil(t, st, "%s is not watched", addr) {
		return State{}
	}
	return *st
}

// fake is an in-process model server with a handler per test and a count
// of requests per path.
type fake struct {
	*httptest.Server
	mu   sync.Mutex
	hits map[string]int
}

// startFake serves h on a loopback port until the test ends.
func startFake(t testing.TB, h http.HandlerFunc) *fake {
	t.Helper()
	f := &fake{hits: map[string]int{}}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.hits[r.URL.Path]++
		f.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

// addr is the fake's host:port, as backends are addressed.
func (f *fake) addr() string { return strings.TrimPrefix(f.URL, "http://") }

// count returns how many requests reached path.
func (f *fake) count(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits[path]
}

// reply writes status and body, as JSON when body looks like JSON.
func reply(w http.ResponseWriter, status int, body string) {
	if strings.HasPrefix(body, "{") {
		w.Header().Set("Content-Type", "application/json")
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// countingWarmer wraps a Warmer and counts Warm and Ping calls per
// address, and the Ping calls that failed.
type countingWarmer struct {
	Warmer
	mu                 sync.Mutex
	warms, pings, errs map[string]int
}

func newCountingWarmer(w Warmer) *countingWarmer {
	return &countingWarmer{Warmer: w, warms: map[string]int{}, pings: map[string]int{}, errs: map[string]int{}}
}

func (w *countingWarmer) Warm(ctx context.Context, b warmup.Backend, spec *warmup.Spec, p warmup.Progress) (warmup.Result, error) {
	w.mu.Lock()
	w.warms[b.Addr]++
	w.mu.Unlock()
	return w.Warmer.Warm(ctx, b, spec, p)
}

func (w *countingWarmer) Ping(ctx context.Context, b warmup.Backend, spec *warmup.Spec) (time.Duration, error) {
	lat, err := w.Warmer.Ping(ctx, b, spec)
	w.mu.Lock()
	w.pings[b.Addr]++
	if err != nil {
		w.errs[b.Addr]++
	}
	w.mu.Unlock()
	return lat, err
}

// counts returns the Warm calls, Ping calls and failed Ping calls for addr.
func (w *countingWarmer) counts(addr string) (warms, pings, pingErrs int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.warms[addr], w.pings[addr], w.errs[addr]
}

// gateWarmer is a Warmer whose every Warm call reports one passing answer,
// announces itself on started, then blocks until the test sends the
// outcome on release (or the Checker stops).
type gateWarmer struct {
	calls   atomic.Int32
	started chan struct{}
	release chan error
}

func newGateWarmer() *gateWarmer {
	return &gateWarmer{started: make(chan struct{}, 16), release: make(chan error)}
}

func (w *gateWarmer) Warm(ctx context.Context, _ warmup.Backend, spec *warmup.Spec, progress warmup.Progress) (warmup.Result, error) {
	w.calls.Add(1)
	progress(1, spec.Requests)
	w.started <- struct{}{}
	select {
	case err := <-w.release:
		return warmup.Result{Requests: spec.Requests, Cold: time.Millisecond, Warm: time.Millisecond}, err
	case <-ctx.Done():
		return warmup.Result{}, ctx.Err()
	}
}

func (w *gateWarmer) Ping(context.Context, warmup.Backend, *warmup.Spec) (time.Duration, error) {
	return time.Millisecond, nil
}

// waitStarted waits for the next Warm call.
func (w *gateWarmer) waitStarted(t testing.TB) {
	t.Helper()
	select {
	case <-w.started:
	case <-time.After(waitFor):
		require.FailNow(t, "warmup never started")
	}
}

// finish lets the running Warm call return err.
func (w *gateWarmer) finish(t testing.TB, err error) {
	t.Helper()
	select {
	case w.release <- err:
	case <-time.After(waitFor):
		require.FailNow(t, "no warmup was running to finish")
	}
}

// addMonitor registers a monitor for tgt on c without starting its probe
// loop, so a test can feed it probe results through observe, one at a
// time and in order.
func addMonitor(c *Checker, tgt Target) *monitor {
	m := &monitor{c: c, addr: tgt.Backend.Addr(), b: tgt.Backend, cancel: func() {}}
	m.settings.Store(&tgt)
	m.st.Since = c.now()
	c.mu.Lock()
	c.monitors[m.addr] = m
	c.mu.Unlock()
	return m
}

// probePassed and probeFailed feed m one probe result, as its loop would.
func probePassed(m *monitor, rep Report) { m.observe(m.c.ctx, m.settings.Load(), rep, nil) }
func probeFailed(m *monitor, err error)  { m.observe(m.c.ctx, m.settings.Load(), Report{}, err) }

// fakeClock is a Checker clock that moves only when the test says.
type fakeClock struct{ t atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.t.Store(time.Now().UnixNano())
	return c
}

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.t.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.t.Add(int64(d)) }
