//go:build browser

// The console in a real browser: headless Chromium, driven from Go,
// against a gateway run in process with fake model servers. `make
// test-browser` runs these (go test -tags browser ./console/). Without
// Chromium they skip, and fail under CI=true. Screenshots go to
// $SWITCHYARD_SCREENSHOTS, or to a new temporary directory.
package console_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/gatewaytest"
)

// Generous deadlines: the suite runs with -race on small CI machines.
const (
	waitFor    = 20 * time.Second
	adminToken = "console-test-token"
	// updateBudget is how soon the page must show a change (issue 17).
	updateBudget = time.Second
)

// ---- fake model servers ----

// model is a fake PyTorch model server speaking Switchyard's json health
// format. A held model answers no prediction until release, so a test
// keeps its pool warming for as long as it needs.
type model struct {
	version string
	latency time.Duration
	// failEvery makes every nth prediction after warmup answer 500.
	failEvery int64
	gpu       map[string]any
	srv       *httptest.Server
	gate      chan struct{}
	open      sync.Once
	stop      chan struct{}
	inflight  atomic.Int64
	predicts  atomic.Int64
}

func startModel(t *testing.T, m *model, held bool) *model {
	t.Helper()
	m.gate, m.stop = make(chan struct{}), make(chan struct{})
	if !held {
		m.release()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		body := map[string]any{"status": "ok", "model_loaded": true, "version": m.version, "boot_id": "boot-1",
			"cuda_available": true, "device": "cuda:0", "queue_depth": m.inflight.Load()}
		for k, v := range m.gpu {
			body[k] = v
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(body)
	})
	mux.HandleFunc("POST /predict", func(w http.ResponseWriter, r *http.Request) {
		m.inflight.Add(1)
		defer m.inflight.Add(-1)
		select {
		case <-m.gate:
		case <-m.stop:
			return
		case <-r.Context().Done():
			return
		}
		n := m.predicts.Add(1)
		if m.latency > 0 {
			timer := time.NewTimer(m.latency)
			defer timer.Stop()
			select {
			case <-timer.C:
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		if m.failEvery > 0 && n > 3 && n%m.failEvery == 0 {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = fmt.Fprint(w, `{"error": "CUDA error: an illegal memory access was encountered"}`)
			return
		}
		_, _ = fmt.Fprintf(w, `{"outputs": [[1.5, 2.5]], "model_version": %q}`, m.version)
	})
	m.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		close(m.stop)
		m.srv.Close()
	})
	return m
}

func (m *model) addr() string { return strings.TrimPrefix(m.srv.URL, "http://") }

// release lets held predictions, warmup included, answer.
func (m *model) release() { m.open.Do(func() { close(m.gate) }) }

// kill stops the server: probes and requests get connection refused.
func (m *model) kill() { m.srv.Close() }

func gpu(usedGiB, util, kv float64) map[string]any {
	return map[string]any{"gpu_memory_used_bytes": usedGiB * (1 << 30), "gpu_memory_total_bytes": 24.0 * (1 << 30),
		"gpu_utilization": util, "kv_cache_usage": kv, "gpu_uuid": fmt.Sprintf("GPU-%.0f", usedGiB*1000)}
}

// ---- the gateway ----

// gw is a gateway run in process by gateway.Run, with an admin token.
type gw struct {
	traffic, admin string
	client         *http.Client
}

func startGateway(t *testing.T, blue, green []*model) *gw {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(adminToken+"\n"), 0o600))
	addrs := func(ms []*model) string {
		var out []string
		for _, m := range ms {
			out = append(out, m.addr())
		}
		return strings.Join(out, ", ")
	}
	// gatewaytest binds both listeners to 127.0.0.1:0 whatever the file says.
	yaml := fmt.Sprintf(`
listen: 127.0.0.1:18080
admin: {listen: 127.0.0.1:19901, token_file: %q}
active: blue
log: {format: console, level: warn}
health: {interval: 200ms, timeout: 200ms, healthy_threshold: 1, unhealthy_threshold: 2}
warmup:
  path: /predict
  body: '{"inputs": [[1, 2, 3, 4]]}'
  headers: {Content-Type: application/json}
  requests: 3
outlier: {consecutive_failures: -1}
analysis: {min_requests: 50, observe: 5s}
pools:
  blue:  {version: v2.6, backends: [%s]}
  green: {version: v2.7, backends: [%s]}
switch: {drain_timeout: 10s}
`, tokenFile, addrs(blue), addrs(green))
	run := gatewaytest.Start(t, gatewaytest.Options{Config: yaml})
	g := &gw{traffic: run.Traffic, admin: run.Admin, client: run.Client}
	return g
}

// status reads GET /admin/status with the token.
func (g *gw) status(t *testing.T) statusDoc {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, g.admin+"/admin/status", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := g.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var st statusDoc
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
	return st
}

// call sends an admin request with the token and returns its status code.
func (g *gw) call(t *testing.T, method, path, body string) int {
	t.Helper()
	req, err := http.NewRequest(method, g.admin+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := g.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	return resp.StatusCode
}

// statusDoc is the part of GET /admin/status the tests read.
type statusDoc struct {
	Generation uint64 `json:"generation"`
	Active     string `json:"active"`
	Pools      map[string]struct {
		ReadyBackends int `json:"ready_backends"`
	} `json:"pools"`
	Switches []struct {
		To      string `json:"to"`
		Trigger string `json:"trigger"`
	} `json:"switches"`
}

func (g *gw) waitReady(t *testing.T, color string, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return g.status(t).Pools[color].ReadyBackends == n }, waitFor, 20*time.Millisecond,
		"%s never had %d ready backends", color, n)
}

// predict sends one request through the traffic listener and returns the
// color that answered it.
func (g *gw) predict(t *testing.T) string {
	t.Helper()
	resp, err := g.client.Post(g.traffic+"/predict", "application/json", strings.NewReader(`{"inputs": [[1, 2, 3, 4]]}`))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	return resp.Header.Get("X-Switchyard-Color")
}

// waitTraffic waits until the gateway has recorded requests in n seconds
// of the last two minutes.
func (g *gw) waitTraffic(t *testing.T, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		req, err := http.NewRequest(http.MethodGet, g.admin+"/admin/console?window=120&step=1", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := g.client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var d struct {
			Series struct {
				Colors map[string]struct {
					Requests []uint64 `json:"requests"`
				} `json:"colors"`
			} `json:"series"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&d))
		seconds := 0
		for i := range d.Series.Colors["blue"].Requests {
			if d.Series.Colors["blue"].Requests[i]+d.Series.Colors["green"].Requests[i] > 0 {
				seconds++
			}
		}
		return seconds >= n
	}, 2*time.Minute, 200*time.Millisecond, "fewer than %d seconds of traffic", n)
}

// load sends about rps requests per second through the traffic listener
// until the test ends.
func (g *gw) load(t *testing.T, rps int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second / time.Duration(rps))
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, g.traffic+"/predict", strings.NewReader(`{"inputs": [[1, 2, 3, 4]]}`))
				req.Header.Set("Content-Type", "application/json")
				if resp, err := g.client.Do(req); err == nil {
					resp.Body.Close()
				}
			}()
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

// ---- the browser ----

// chromium finds the browser; without one the tests skip, or fail under
// CI=true, where a missing browser is a broken build.
func chromium(t *testing.T) string {
	t.Helper()
	names := []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"}
	if p := os.Getenv("SWITCHYARD_CHROMIUM"); p != "" {
		names = []string{p}
	}
	for _, name := range names {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	msg := fmt.Sprintf("no browser found (looked for %s); `make deps` installs Debian's chromium (as root), or set SWITCHYARD_CHROMIUM", strings.Join(names, ", "))
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// startBrowser starts headless Chromium with a fresh profile that talks to
// loopback only, until the test ends.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	path := chromium(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-proxy-server", true),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.WindowSize(1440, 1000),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	start := time.Now()
	require.NoError(t, chromedp.Do(ctx), "starting %s", path)
	t.Logf("chromium started in %s", time.Since(start).Round(time.Millisecond))
	return ctx
}

// consoleLog collects what a tab writes to its console: console API
// calls, uncaught exceptions and browser log entries such as failed
// requests.
type consoleLog struct {
	mu   sync.Mutex
	msgs []chromedp.ConsoleMessage
	done chan struct{}
}

func watchConsole(ctx context.Context) *consoleLog {
	l := &consoleLog{done: make(chan struct{})}
	msgs := chromedp.Console(ctx)
	go func() {
		defer close(l.done)
		for m, err := range msgs {
			if err != nil {
				return
			}
			l.mu.Lock()
			l.msgs = append(l.msgs, m)
			l.mu.Unlock()
		}
	}()
	return l
}

// mark returns a position for problems.
func (l *consoleLog) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.msgs)
}

// problems lists the errors, warnings and exceptions since mark, except
// the failed requests whose status the test expects (a refused switch is
// a 409, a refused token a 401).
func (l *consoleLog) problems(mark int, expected ...int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
next:
	for _, m := range l.msgs[mark:] {
		switch m.Type {
		case chromedp.ConsoleError, chromedp.ConsoleWarning, chromedp.ConsoleException:
		default:
			continue
		}
		for _, code := range expected {
			if m.Source == "network" && strings.Contains(m.Text, fmt.Sprintf("status of %d", code)) {
				continue next
			}
		}
		out = append(out, fmt.Sprintf("%s %s: %s (%s:%d)", m.Type, m.Source, m.Text, m.URL, m.Line+1))
	}
	return out
}

// page is one browser tab on the console.
type page struct {
	t   *testing.T
	ctx context.Context
	log *consoleLog
}

// openPage opens a new tab on the gateway's admin root, which redirects to
// the console; the tab closes when the test ends.
func openPage(t *testing.T, browser context.Context, g *gw) *page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(browser)
	require.NoError(t, chromedp.Do(ctx))
	p := &page{t: t, ctx: ctx, log: watchConsole(ctx)}
	t.Cleanup(func() {
		cancel()
		<-p.log.done
	})
	p.do(chromedp.Navigate(g.admin + "/"))
	return p
}

func (p *page) do(steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitFor)
	defer cancel()
	require.NoError(p.t, chromedp.Do(ctx, steps...))
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](p *page, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, waitFor)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	require.NoError(p.t, err, "evaluating %s", expr)
	return v
}

// waitUntil polls a JavaScript condition in the page and returns how long
// it took to hold.
func (p *page) waitUntil(cond string) time.Duration {
	p.t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(p.ctx, waitFor)
	defer cancel()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](cond, chromedp.WithPollingInterval(10*time.Millisecond),
		chromedp.WithPollingTimeout(waitFor)))
	require.NoError(p.t, err, "waiting for %s; the page shows:\n%s", cond, p.text())
	return time.Since(start)
}

// text is the page's visible text, for failure messages.
func (p *page) text() string {
	ctx, cancel := context.WithTimeout(p.ctx, 5*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	return s
}

// textOf is the text of the element with id.
func (p *page) textOf(id string) string {
	p.t.Helper()
	return eval[string](p, fmt.Sprintf(`document.getElementById(%q).textContent`, id))
}

// login enters the token in the page's token dialog and waits until the
// page shows the gateway's state.
func (p *page) login(token string) {
	p.t.Helper()
	p.waitUntil(`document.getElementById('login').open`)
	p.do(chromedp.SendKeys(chromedp.CSS("#login-token"), token), chromedp.Click(chromedp.CSS("#login-ok")))
	p.waitUntil(`!document.getElementById('login').open && document.getElementById('live-color').textContent !== '—'`)
}

// backendState is the state label of the backend at addr.
func backendState(addr string) string {
	return fmt.Sprintf(`(document.querySelector('li.backend[data-addr=%q]') || {dataset: {}}).dataset.state`, addr)
}

// ---- the tests ----

func TestConsole_InBrowser(t *testing.T) {
	browser := startBrowser(t)

	t.Run("page loads without console errors and shows both pools", func(t *testing.T) {
		blue := []*model{startModel(t, &model{version: "v2.6", gpu: gpu(14.2, 0.41, 0.33)}, false),
			startModel(t, &model{version: "v2.6", gpu: gpu(13.8, 0.38, 0.29)}, false)}
		green := []*model{startModel(t, &model{version: "v2.7", gpu: gpu(15.1, 0.05, 0.02)}, false),
			startModel(t, &model{version: "v2.7", gpu: gpu(15.0, 0.04, 0.02)}, false)}
		g := startGateway(t, blue, green)
		g.waitReady(t, "green", 2)

		p := openPage(t, browser, g)
		p.login(adminToken)
		assert.Empty(t, p.log.problems(0, http.StatusUnauthorized), "the first load asks for the token: only its 401 may show")

		// The tab keeps the token: a reload asks nothing and logs nothing.
		mark := p.log.mark()
		start := time.Now()
		p.do(chromedp.Reload())
		p.waitUntil(`document.querySelectorAll('#pool-blue-backends li.backend').length === 2 &&
			document.querySelectorAll('#pool-green-backends li.backend[data-state=ready]').length === 2 &&
			document.querySelector('#chart-rps path, #chart-rps text.empty') !== null`)
		t.Logf("load with the token in the tab: page, status, series and first render in %s (navigation to DOMContentLoaded %.0f ms)",
			time.Since(start).Round(time.Millisecond), eval[float64](p, `performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd`))
		assert.False(t, eval[bool](p, `document.getElementById('login').open`), "no token dialog on a reload")

		assert.Equal(t, "blue", p.textOf("live-color"))
		assert.Equal(t, "v2.6", p.textOf("live-version"))
		assert.Equal(t, "v2.7", p.textOf("pool-green-version"))
		assert.Equal(t, "Live", p.textOf("pool-blue-badge"))
		assert.Equal(t, "Standby", p.textOf("pool-green-badge"))
		card := p.textOf("pool-blue-backends")
		for _, want := range []string{blue[0].addr(), blue[1].addr(), "GPU memory", "14.2 / 24.0 GiB", "GPU util", "41%", "KV cache", "33%", "cuda:0"} {
			assert.Contains(t, card, want)
		}
		assert.Contains(t, p.textOf("thresholds"), "Min requests50")
		assert.Equal(t, "Switch to green", p.textOf("switch-btn"))
		assert.True(t, eval[bool](p, `document.getElementById('fleet').hidden`), "no fleet section without fleet mode")

		// Hand-made interactions still log nothing.
		p.do(chromedp.Click(chromedp.CSS("#switch-btn")))
		p.waitUntil(`document.getElementById('confirm').open`)
		p.do(chromedp.KeyEvent("\x1b")) // Escape closes the dialog: nothing happens.
		p.waitUntil(`!document.getElementById('confirm').open`)
		assert.Empty(t, p.log.problems(mark), "console errors, warnings or exceptions")
		assert.Equal(t, "blue", g.status(t).Active)
	})

	t.Run("green warming shows in the page and a switch is refused with the reason per backend", func(t *testing.T) {
		blue := []*model{startModel(t, &model{version: "v2.6"}, false)}
		green := []*model{startModel(t, &model{version: "v2.7"}, true), startModel(t, &model{version: "v2.7"}, true)}
		g := startGateway(t, blue, green)

		p := openPage(t, browser, g)
		p.login(adminToken)
		mark := p.log.mark()
		for _, m := range green {
			p.waitUntil(backendState(m.addr()) + ` === 'warming'`)
		}
		assert.Contains(t, p.textOf("pool-green-backends"), "warming 0/3")
		assert.Contains(t, p.textOf("switch-hint"), "green has 0 of 2 backends ready")

		p.do(chromedp.Click(chromedp.CSS("#switch-btn")))
		p.waitUntil(`document.getElementById('confirm').open`)
		assert.Contains(t, p.textOf("confirm-title"), "Switch live traffic to green")
		p.do(chromedp.Click(chromedp.CSS("#confirm-ok")))
		p.waitUntil(`!document.getElementById('confirm-error').hidden`)

		assert.Contains(t, p.textOf("confirm-error-msg"), "switch to green refused: 0 of 2 backends ready")
		for _, m := range green {
			reason := eval[string](p, fmt.Sprintf(`document.querySelector('#confirm-reasons li[data-addr=%q]').textContent`, m.addr()))
			assert.Equal(t, m.addr()+": not warm (warming, 0 of 3 done)", reason)
		}
		assert.True(t, eval[bool](p, `document.getElementById('confirm').open`), "the dialog stays open with the reasons")
		assert.Equal(t, "Try again", p.textOf("confirm-ok"))
		assert.Equal(t, "blue", g.predict(t), "traffic did not move")
		assert.Equal(t, "blue", p.textOf("live-color"))
		p.do(chromedp.Click(chromedp.CSS("#confirm-cancel")))
		p.waitUntil(`!document.getElementById('confirm').open`)
		assert.Empty(t, p.log.problems(mark, http.StatusConflict))
	})

	t.Run("switch after confirm moves traffic and the page shows green live within a second", func(t *testing.T) {
		blue := []*model{startModel(t, &model{version: "v2.6"}, false)}
		green := []*model{startModel(t, &model{version: "v2.7"}, false), startModel(t, &model{version: "v2.7"}, false)}
		g := startGateway(t, blue, green)
		g.waitReady(t, "green", 2)

		p := openPage(t, browser, g)
		p.login(adminToken)
		mark := p.log.mark()
		p.waitUntil(`document.querySelectorAll('#pool-green-backends li.backend[data-state=ready]').length === 2`)

		// By keyboard alone: Enter on the button opens the dialog with the
		// focus on Cancel; Tab moves to Switch; Enter confirms.
		p.do(chromedp.Focus(chromedp.CSS("#switch-btn")), chromedp.KeyEvent("\r"))
		p.waitUntil(`document.getElementById('confirm').open && document.activeElement.id === 'confirm-cancel'`)
		p.do(chromedp.KeyEvent("\t"))
		require.Equal(t, "confirm-ok", eval[string](p, `document.activeElement.id`))
		start := time.Now()
		p.do(chromedp.KeyEvent("\r"))
		p.waitUntil(`document.getElementById('live-color').textContent === 'green' &&
			document.getElementById('pool-green-badge').textContent === 'Live'`)
		elapsed := time.Since(start)
		t.Logf("Enter on confirm to green shown live: %s", elapsed.Round(time.Millisecond))
		assert.Less(t, elapsed, updateBudget, "the page must show the switch within a second")
		assert.Equal(t, "green", g.predict(t), "a real request goes to green")
		p.waitUntil(`!document.getElementById('confirm').open`)
		assert.Contains(t, p.textOf("toast"), "Switched to green (v2.7)")
		p.waitUntil(`document.getElementById('history-rows').textContent.includes('admin')`)
		assert.Contains(t, p.textOf("history-rows"), "blue → green v2.7")

		// A double click on confirm submits once: the button is disabled
		// before the request leaves.
		p.do(chromedp.Click(chromedp.CSS("#rollback-btn")))
		p.waitUntil(`document.getElementById('confirm').open`)
		p.do(chromedp.Evaluate[chromedp.Void](`(() => { const b = document.getElementById('confirm-ok'); b.click(); b.click(); b.click(); })()`))
		p.waitUntil(`document.getElementById('live-color').textContent === 'blue' && !document.getElementById('confirm').open`)
		p.waitUntil(`document.getElementById('history-rows').children.length === 2`)
		st := g.status(t)
		assert.Equal(t, "blue", st.Active)
		require.Len(t, st.Switches, 2, "one switch and one rollback, not three")
		assert.Equal(t, "rollback", st.Switches[1].Trigger)
		assert.Equal(t, "blue", g.predict(t))
		assert.Empty(t, p.log.problems(mark))
	})

	t.Run("a switch confirmed after the state moved is refused and the retry goes through", func(t *testing.T) {
		blue := []*model{startModel(t, &model{version: "v2.6"}, false)}
		green := []*model{startModel(t, &model{version: "v2.7"}, false)}
		g := startGateway(t, blue, green)
		g.waitReady(t, "green", 1)

		p := openPage(t, browser, g)
		p.login(adminToken)
		mark := p.log.mark()
		p.do(chromedp.Click(chromedp.CSS("#switch-btn")))
		p.waitUntil(`document.getElementById('confirm').open`)
		// Someone else changes the routing state while the dialog is open.
		require.Equal(t, http.StatusOK, g.call(t, http.MethodPut, "/admin/traffic", `{"green": 10}`))
		p.do(chromedp.Click(chromedp.CSS("#confirm-ok")))
		p.waitUntil(`!document.getElementById('confirm-error').hidden`)
		assert.Contains(t, p.textOf("confirm-error-msg"), "changed while this dialog was open")
		assert.Equal(t, "blue", g.status(t).Active, "nothing moved on a stale confirmation")
		p.waitUntil(`document.getElementById('pool-green-badge').textContent === 'Canary 10%'`)

		p.do(chromedp.Click(chromedp.CSS("#confirm-ok")))
		p.waitUntil(`document.getElementById('live-color').textContent === 'green'`)
		assert.Equal(t, "green", g.predict(t))
		assert.Empty(t, p.log.problems(mark, http.StatusPreconditionFailed))
	})

	t.Run("a killed backend shows as down with its error", func(t *testing.T) {
		blue := []*model{startModel(t, &model{version: "v2.6"}, false)}
		green := []*model{startModel(t, &model{version: "v2.7"}, false), startModel(t, &model{version: "v2.7"}, false)}
		g := startGateway(t, blue, green)
		g.waitReady(t, "green", 2)

		p := openPage(t, browser, g)
		p.login(adminToken)
		mark := p.log.mark()
		victim := green[1]
		p.waitUntil(backendState(victim.addr()) + ` === 'ready'`)
		killed := time.Now()
		victim.kill()
		p.waitUntil(backendState(victim.addr()) + ` === 'down'`)
		t.Logf("killed backend shown down after %s (2 failed probes 200ms apart, then the next status read)", time.Since(killed).Round(time.Millisecond))
		card := eval[string](p, fmt.Sprintf(`document.querySelector('li.backend[data-addr=%q]').textContent`, victim.addr()))
		assert.Contains(t, card, "connection refused")
		assert.Contains(t, p.textOf("pool-green-facts"), "Ready 1 of 2")
		assert.Contains(t, p.textOf("switch-hint"), "green has 1 of 2 backends ready")
		assert.Equal(t, "ready", eval[string](p, backendState(green[0].addr())))
		assert.Empty(t, p.log.problems(mark))
	})

	t.Run("a wrong token shows an error and changes nothing", func(t *testing.T) {
		blue := []*model{startModel(t, &model{version: "v2.6"}, false)}
		green := []*model{startModel(t, &model{version: "v2.7"}, false)}
		g := startGateway(t, blue, green)
		g.waitReady(t, "green", 1)
		before := g.status(t)

		p := openPage(t, browser, g)
		p.waitUntil(`document.getElementById('login').open`)
		p.do(chromedp.SendKeys(chromedp.CSS("#login-token"), "not-the-token"), chromedp.Click(chromedp.CSS("#login-ok")))
		p.waitUntil(`!document.getElementById('login-error').hidden`)
		assert.Contains(t, p.textOf("login-error"), "The gateway refused this token")
		assert.True(t, eval[bool](p, `document.getElementById('login').open`), "still asking")
		assert.True(t, eval[bool](p, `sessionStorage.getItem('switchyard.token') === null`), "a refused token is not kept")
		assert.Equal(t, "—", p.textOf("live-color"), "nothing is shown without the token")
		assert.True(t, eval[bool](p, `document.getElementById('switch-btn').disabled`), "no action without the token")
		assert.NotContains(t, eval[string](p, `location.href`), "not-the-token", "the token never goes into a URL")

		// A tab holding a token that stopped working (rotated) asks again
		// and shows why; nothing is sent that could change anything.
		p.do(chromedp.Evaluate[chromedp.Void](`sessionStorage.setItem('switchyard.token', 'rotated-away')`), chromedp.Reload())
		p.waitUntil(`document.getElementById('login').open && !document.getElementById('login-error').hidden`)
		assert.Contains(t, p.textOf("login-error"), "refused the token this tab had")

		after := g.status(t)
		assert.Equal(t, before.Generation, after.Generation, "the routing state did not move")
		assert.Equal(t, "blue", after.Active)
		assert.Empty(t, after.Switches)
		assert.Equal(t, "blue", g.predict(t))
		assert.Empty(t, p.log.problems(0, http.StatusUnauthorized))
	})

	t.Run("screenshots of a canary in light and dark on a laptop and a phone", func(t *testing.T) {
		blue := []*model{startModel(t, &model{version: "v2.6", latency: 4 * time.Millisecond, gpu: gpu(14.2, 0.62, 0.41)}, false),
			startModel(t, &model{version: "v2.6", latency: 5 * time.Millisecond, gpu: gpu(13.9, 0.58, 0.37)}, false)}
		green := []*model{startModel(t, &model{version: "v2.7", latency: 11 * time.Millisecond, failEvery: 12, gpu: gpu(19.6, 0.31, 0.22)}, false),
			startModel(t, &model{version: "v2.7", latency: 12 * time.Millisecond, failEvery: 12, gpu: gpu(21.7, 0.35, 0.81)}, false)}
		g := startGateway(t, blue, green)
		g.waitReady(t, "green", 2)
		g.load(t, 40)

		p := openPage(t, browser, g)
		p.login(adminToken)
		mark := p.log.mark()
		// Blue alone for a while, then the canary through the page's own
		// form, and enough of it for the charts and a verdict.
		g.waitTraffic(t, 15)
		p.do(chromedp.SetValue(chromedp.CSS("#canary-input"), "25"), chromedp.Click(chromedp.CSS("#canary-btn")))
		p.waitUntil(`document.getElementById('confirm').open`)
		assert.Contains(t, p.textOf("confirm-title"), "Send 25% of traffic to green")
		p.do(chromedp.Click(chromedp.CSS("#confirm-ok")))
		p.waitUntil(`document.getElementById('pool-green-badge').textContent === 'Canary 25%'`)

		p.waitUntil(`document.getElementById('verdict-badge').textContent === 'fail'`)
		g.waitTraffic(t, 45)
		assert.Contains(t, p.textOf("verdict-reasons"), "error ratio")

		dir := os.Getenv("SWITCHYARD_SCREENSHOTS")
		if dir == "" {
			var err error
			dir, err = os.MkdirTemp("", "switchyard-console-")
			require.NoError(t, err)
		}
		require.NoError(t, os.MkdirAll(dir, 0o755))
		for _, shot := range []struct {
			name          string
			width, height int64
			mobile        bool
		}{
			{name: "laptop", width: 1440, height: 1000},
			{name: "phone", width: 390, height: 844, mobile: true},
		} {
			for _, scheme := range []string{"light", "dark"} {
				var emulate chromedp.Action[chromedp.Void]
				if shot.mobile {
					emulate = chromedp.EmulateViewport(shot.width, shot.height, chromedp.EmulateMobile, chromedp.EmulateScale(2))
				} else {
					emulate = chromedp.EmulateViewport(shot.width, shot.height)
				}
				p.do(emulate, chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
					_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
						Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}})
					return err
				}))
				// Two renders after the resize, so the charts fit the new width.
				p.waitUntil(fmt.Sprintf(`matchMedia('(prefers-color-scheme: %s)').matches && Math.abs(document.getElementById('chart-rps').viewBox.baseVal.width - document.getElementById('chart-rps').clientWidth) < 2`, scheme))
				ctx, cancel := context.WithTimeout(p.ctx, waitFor)
				png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
				cancel()
				require.NoError(t, err)
				require.True(t, bytes.HasPrefix(png, []byte("\x89PNG")))
				name := filepath.Join(dir, fmt.Sprintf("console-%s-%s.png", shot.name, scheme))
				require.NoError(t, os.WriteFile(name, png, 0o644))
				t.Logf("screenshot %s", name)
			}
		}
		assert.Empty(t, p.log.problems(mark))
	})
}
