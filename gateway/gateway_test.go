package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/admin"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/modelsim"
	"github.com/switchyard/switchyard/proxy"
	"github.com/switchyard/switchyard/state"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// Generous deadlines: the suite runs with -race on small CI machines.
const (
	waitFor = 15 * time.Second
	tick    = 20 * time.Millisecond
)

const predictBody = `{"inputs": [[1,2,3,4]]}`

// backends are one simulated model server per color: blue serves v1,
// green v2.
type backends struct {
	blue, green *modelsim.Server
}

// startBackends starts the model servers until the test ends. greenLoad is
// how long green's model takes to load.
func startBackends(t *testing.T, greenLoad time.Duration) *backends {
	t.Helper()
	blue, err := modelsim.Start("127.0.0.1:0", modelsim.Options{Color: "blue", Version: "v1"})
	require.NoError(t, err)
	t.Cleanup(func() { _ = blue.Close() })
	green, err := modelsim.Start("127.0.0.1:0", modelsim.Options{Color: "green", Version: "v2", LoadTime: greenLoad})
	require.NoError(t, err)
	t.Cleanup(func() { _ = green.Close() })
	return &backends{blue: blue, green: green}
}

// fileConfig is what the tests vary in the config file; zero fields get
// the defaults of config.
type fileConfig struct {
	Active         string // default blue
	Listen         string // default 127.0.0.1:18080
	GreenVersion   string // default v2
	ResponseHeader string // default 60s; changing it is a harmless edit
	StateDir       string // default "": no persistence
	GreenBackend   string // default green's address
}

// config renders the config file. The listeners in the file are never
// bound: startGateway overrides both with 127.0.0.1:0.
func (b *backends) config(fc fileConfig) string {
	def := func(v, d string) string {
		if v == "" {
			return d
		}
		return v
	}
	return fmt.Sprintf(`listen: %s
admin:
  listen: 127.0.0.1:19901
active: %s
state_dir: %q
log: {format: console, level: info}
proxy:
  timeouts: {response_header: %s}
health:
  interval: 50ms
  timeout: 50ms
  healthy_threshold: 1
  unhealthy_threshold: 3
warmup:
  path: /predict
  body: '%s'
  headers: {Content-Type: application/json}
  requests: 1
pools:
  blue:
    version: v1
    backends: [%s]
  green:
    version: %s
    backends: [%s]
`, def(fc.Listen, "127.0.0.1:18080"), def(fc.Active, "blue"), fc.StateDir, def(fc.ResponseHeader, "60s"),
		predictBody, b.blue.Addr(), def(fc.GreenVersion, "v2"), def(fc.GreenBackend, b.green.Addr()))
}

// writeConfig replaces the file at path as an editor does: a temp file in
// the same directory renamed over it.
func writeConfig(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".switchyard.yaml.tmp")
	require.NoError(t, os.WriteFile(tmp, []byte(content), 0o644))
	require.NoError(t, os.Rename(tmp, path))
}

// newConfigFile writes content to a new config file and returns its path.
func newConfigFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "switchyard.yaml")
	writeConfig(t, path, content)
	return path
}

// gw is a gateway run in process by Run.
type gw struct {
	traffic string // base URL of the traffic listener
	admin   string // base URL of the admin listener
	client  *http.Client
	tr      *http.Transport
	stop    func()
}

// startGateway loads the config file at path and runs the gateway on
// loopback ports until stop is called or the test ends.
func startGateway(t *testing.T, path string) *gw {
	t.Helper()
	cfg, data, err := config.Load(path)
	require.NoError(t, err)
	cfg.Listen, cfg.Admin.Listen = "127.0.0.1:0", "127.0.0.1:0"

	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan [2]string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Options{
			Config: cfg, ConfigPath: path, ConfigData: data, Version: "test",
			Log:             zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)),
			ShutdownTimeout: 5 * time.Second,
			Started:         func(traffic, admin string) { started <- [2]string{traffic, admin} },
		})
	}()
	var addrs [2]string
	select {
	case addrs = <-started:
	case err := <-done:
		cancel()
		require.FailNow(t, "Run returned before it started", "%v", err)
	case <-time.After(waitFor):
		cancel()
		require.FailNow(t, "Run did not start")
	}

	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	g := &gw{traffic: "http://" + addrs[0], admin: "http://" + addrs[1],
		client: &http.Client{Transport: tr, Timeout: 10 * time.Second}, tr: tr}
	var once sync.Once
	g.stop = func() {
		once.Do(func() {
			tr.CloseIdleConnections()
			cancel()
			select {
			case err := <-done:
				assert.NoError(t, err, "Run")
			case <-time.After(waitFor):
				assert.Fail(t, "Run did not return after cancel")
			}
		})
	}
	t.Cleanup(g.stop)
	return g
}

// statusDoc is GET /admin/status with the config object typed.
type statusDoc struct {
	admin.Status
	Config ConfigStatus `json:"config"`
	ETag   string       `json:"-"`
}

// getStatus reads GET /admin/status; it does not fail the test, so it can
// run inside require.Eventually.
func (g *gw) getStatus() (statusDoc, error) {
	resp, err := g.client.Get(g.admin + "/admin/status")
	if err != nil {
		return statusDoc{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return statusDoc{}, fmt.Errorf("GET /admin/status: %s", resp.Status)
	}
	var st statusDoc
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return statusDoc{}, err
	}
	st.ETag = resp.Header.Get("ETag")
	return st, nil
}

func (g *gw) status(t *testing.T) statusDoc {
	t.Helper()
	st, err := g.getStatus()
	require.NoError(t, err)
	return st
}

// waitStatus waits until GET /admin/status satisfies cond, then returns
// the status read once more. One status answer reads the routing state
// before the config object, so the answer that first shows a new config
// generation may still show the routing state from before that config was
// applied; the next answer shows both.
func (g *gw) waitStatus(t *testing.T, what string, cond func(statusDoc) bool) statusDoc {
	t.Helper()
	var last statusDoc
	var lastErr error
	ok := assert.Eventually(t, func() bool {
		last, lastErr = g.getStatus()
		return lastErr == nil && cond(last)
	}, waitFor, tick, what)
	if !ok {
		require.FailNow(t, "gave up waiting", "%s; last status error %v, config %+v, active %s", what, lastErr, last.Config, last.Active)
	}
	return g.status(t)
}

// waitReady waits until every backend of the given colors is ready.
func (g *gw) waitReady(t *testing.T, colors ...config.Color) {
	t.Helper()
	g.waitStatus(t, fmt.Sprintf("%v ready", colors), func(st statusDoc) bool {
		for _, c := range colors {
			if st.Pools[string(c)].ReadyBackends != 1 {
				return false
			}
		}
		return true
	})
}

// predict sends one inference through the gateway and returns the color
// that answered, per header, after checking the body agrees.
func (g *gw) predict() (string, error) {
	resp, err := g.client.Post(g.traffic+"/predict", "application/json", strings.NewReader(predictBody))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	color := resp.Header.Get(proxy.HeaderColor)
	if resp.StatusCode != http.StatusOK {
		return color, fmt.Errorf("status %d from %s: %s", resp.StatusCode, color, body)
	}
	var out struct {
		Color string `json:"color"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return color, fmt.Errorf("decoding %q: %w", body, err)
	}
	if out.Color != color {
		return color, fmt.Errorf("header says %s but %s answered", color, out.Color)
	}
	return color, nil
}

// requireTraffic checks that a request through the gateway lands on want.
func (g *gw) requireTraffic(t *testing.T, want config.Color) {
	t.Helper()
	got, err := g.predict()
	require.NoError(t, err)
	require.Equal(t, string(want), got, "traffic went to the wrong color")
}

// post sends a POST to the admin API.
func (g *gw) post(t *testing.T, path, body string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, g.admin+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := g.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, data
}

// adminSwitch switches through POST /admin/switch and requires success.
func (g *gw) adminSwitch(t *testing.T, to config.Color) {
	t.Helper()
	resp, body := g.post(t, "/admin/switch", `{"to": "`+string(to)+`"}`, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
}

// metric returns the value of one sample of GET /metrics, e.g.
// `switchyard_config_reloads_total{result="ok"}`.
func (g *gw) metric(sample string) (float64, error) {
	resp, err := g.client.Get(g.admin + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("no sample %s", sample)
}

// load is continuous inference traffic through the gateway.
type load struct {
	stop chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex
	byColor  map[string]int
	failures []string
	// flaps are requests answered by blue after the same client already
	// got an answer from green.
	flaps int
}

// startLoad runs n clients that send requests back to back until stopped.
func (g *gw) startLoad(t *testing.T, n int) *load {
	l := &load{stop: make(chan struct{}), byColor: map[string]int{}}
	for range n {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			sawGreen := false
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				color, err := g.predict()
				l.mu.Lock()
				switch {
				case err != nil:
					l.failures = append(l.failures, err.Error())
				case color == string(config.Green):
					sawGreen = true
					l.byColor[color]++
				default:
					if sawGreen {
						l.flaps++
					}
					l.byColor[color]++
				}
				l.mu.Unlock()
			}
		}()
	}
	t.Cleanup(l.Stop)
	return l
}

func (l *load) count(color config.Color) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.byColor[string(color)]
}

// Stop stops the clients and waits for them; it may be called again.
func (l *load) Stop() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

func lastSwitch(t *testing.T, st statusDoc) proxy.SwitchRecord {
	t.Helper()
	require.NotEmpty(t, st.Switches, "no switch recorded")
	return st.Switches[len(st.Switches)-1]
}

func TestFileEdit_ActiveSwitchesUnderLoadWithoutAFailedRequest(t *testing.T) {
	b := startBackends(t, 0)
	path := newConfigFile(t, b.config(fileConfig{Active: "blue"}))
	g := startGateway(t, path)
	g.waitReady(t, config.Blue, config.Green)

	l := g.startLoad(t, 8)
	require.Eventually(t, func() bool { return l.count(config.Blue) >= 100 }, waitFor, tick, "load never reached blue")

	writeConfig(t, path, b.config(fileConfig{Active: "green"}))

	require.Eventually(t, func() bool { return l.count(config.Green) >= 200 }, waitFor, tick, "traffic never moved to green")
	l.Stop()
	assert.Empty(t, l.failures, "requests failed during the switch")
	assert.Zero(t, l.flaps, "clients were sent back to blue after green answered")
	st := g.status(t)
	assert.Equal(t, config.Green, st.Active)
	assert.Equal(t, proxy.TriggerFile, lastSwitch(t, st).Trigger)
	assert.Equal(t, 2, st.Config.Generation)
	assert.Empty(t, st.Config.LastError)
	assert.Positive(t, b.green.Predictions())
}

func TestFileEdit_BrokenConfigChangesNothingAndAGoodEditClearsTheError(t *testing.T) {
	b := startBackends(t, 0)
	good := b.config(fileConfig{Active: "blue"})
	path := newConfigFile(t, good)
	g := startGateway(t, path)
	// Green is ready, so a broken file that were applied even in part
	// would move traffic.
	g.waitReady(t, config.Blue, config.Green)
	toGreen := strings.Replace(good, "active: blue\n", "active: green\n", 1)

	testCases := []struct {
		desc    string
		content string
		// wantErr are fragments config.last_error must contain.
		wantErr []string
	}{
		{
			desc:    "bad YAML",
			content: toGreen + "switch: {min_ready: \"100%\"\n",
			wantErr: []string{"config: line "},
		},
		{
			desc:    "unknown key",
			content: toGreen + "swtich:\n  drain_timeout: 1s\n",
			wantErr: []string{fmt.Sprintf("line %d", strings.Count(toGreen, "\n")+1), "swtich", `did you mean "switch"?`},
		},
		{
			desc:    "backend without a port",
			content: b.config(fileConfig{Active: "green", GreenBackend: "127.0.0.1"}),
			wantErr: []string{`pools.green.backends[0]: "127.0.0.1" has no port (want host:port)`, "line "},
		},
		{
			desc:    "unknown active color",
			content: strings.Replace(good, "active: blue\n", "active: purple\n", 1),
			wantErr: []string{`line 4: active: "purple" is not a color`},
		},
	}
	for i, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			before := g.status(t)

			writeConfig(t, path, test.content)

			st := g.waitStatus(t, "last_error names the problem", func(st statusDoc) bool {
				return strings.Contains(st.Config.LastError, test.wantErr[0])
			})
			for _, w := range test.wantErr {
				assert.Contains(t, st.Config.LastError, w)
			}
			assert.NotNil(t, st.Config.LastErrorAt)
			assert.Equal(t, before.Config.Generation, st.Config.Generation, "config generation moved")
			assert.Equal(t, before.Config.SHA256, st.Config.SHA256)
			assert.Equal(t, before.Generation, st.Generation, "routing state was rebuilt")
			assert.Equal(t, config.Blue, st.Active)
			g.requireTraffic(t, config.Blue)
			ok, err := g.metric(`switchyard_config_last_reload_successful`)
			require.NoError(t, err)
			assert.Zero(t, ok)

			// A good edit clears the error and is applied.
			writeConfig(t, path, b.config(fileConfig{Active: "blue", ResponseHeader: fmt.Sprintf("%ds", 61+i)}))

			st = g.waitStatus(t, "a good edit is applied", func(st statusDoc) bool {
				return st.Config.Generation == before.Config.Generation+1
			})
			assert.Empty(t, st.Config.LastError)
			assert.Nil(t, st.Config.LastErrorAt)
			assert.Equal(t, config.Blue, st.Active)
			ok, err = g.metric(`switchyard_config_last_reload_successful`)
			require.NoError(t, err)
			assert.Equal(t, 1.0, ok)
		})
	}
}

// Regression test (fixed): after a broken edit, putting back the content that is in force (an
// editor's undo, a ConfigMap rollback) is "unchanged" and leaves
// config.last_error set, though the file on disk is now the good one.
func TestFileEdit_RevertingABrokenEditClearsTheError(t *testing.T) {
	b := startBackends(t, 0)
	good := b.config(fileConfig{Active: "blue"})
	path := newConfigFile(t, good)
	g := startGateway(t, path)
	g.waitReady(t, config.Blue)

	writeConfig(t, path, good+"swtich: {}\n")
	g.waitStatus(t, "the broken edit is reported", func(st statusDoc) bool { return st.Config.LastError != "" })
	writeConfig(t, path, good)
	g.waitStatus(t, "the revert is read", func(statusDoc) bool {
		n, err := g.metric(`switchyard_config_reloads_total{result="unchanged"}`)
		return err == nil && n >= 1
	})

	st := g.status(t)
	assert.Empty(t, st.Config.LastError, "the good file is back, yet the error stays")
	ok, err := g.metric(`switchyard_config_last_reload_successful`)
	require.NoError(t, err)
	assert.Equal(t, 1.0, ok)
}

func TestAdminReload_AppliesAnEditOnceEvenWhenTheWatcherAlsoSeesIt(t *testing.T) {
	b := startBackends(t, 0)
	path := newConfigFile(t, b.config(fileConfig{Active: "blue"}))
	g := startGateway(t, path)
	g.waitReady(t, config.Blue, config.Green)

	writeConfig(t, path, b.config(fileConfig{Active: "green", GreenVersion: "v2.1"}))
	resp, body := g.post(t, "/admin/reload", "", nil)

	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var out struct {
		Status string       `json:"status"`
		Config ConfigStatus `json:"config"`
	}
	require.NoError(t, json.Unmarshal(body, &out))
	assert.Equal(t, "reloaded", out.Status)
	assert.Equal(t, 2, out.Config.Generation)
	assert.Empty(t, out.Config.LastError)
	// Applied by the time the call returns.
	st := g.status(t)
	assert.Equal(t, config.Green, st.Active)
	assert.Equal(t, "v2.1", st.Pools["green"].Version)
	assert.Equal(t, resp.Header.Get("ETag"), st.ETag)
	g.requireTraffic(t, config.Green)

	// The watcher reads the same edit and finds nothing new to apply.
	g.waitStatus(t, "the watcher read the edit", func(statusDoc) bool {
		n, err := g.metric(`switchyard_config_reloads_total{result="unchanged"}`)
		return err == nil && n == 1
	})
	applied, err := g.metric(`switchyard_config_reloads_total{result="ok"}`)
	require.NoError(t, err)
	assert.Equal(t, 1.0, applied)
	st = g.status(t)
	assert.Equal(t, 2, st.Config.Generation)
	assert.Equal(t, config.Green, st.Active)
	fileSwitches := 0
	for _, s := range st.Switches {
		if s.Trigger == proxy.TriggerFile {
			fileSwitches++
		}
	}
	assert.Equal(t, 1, fileSwitches)
}

func TestAdminReload_BrokenFileIs422AndKeepsTheRunningConfig(t *testing.T) {
	b := startBackends(t, 0)
	good := b.config(fileConfig{Active: "blue"})
	path := newConfigFile(t, good)
	g := startGateway(t, path)
	g.waitReady(t, config.Blue, config.Green)

	writeConfig(t, path, strings.Replace(good, "active: blue\n", "active: teal\n", 1))
	resp, body := g.post(t, "/admin/reload", "", nil)

	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, "%s", body)
	assert.Contains(t, string(body), `active: \"teal\" is not a color`)
	st := g.status(t)
	assert.Equal(t, 1, st.Config.Generation)
	assert.Contains(t, st.Config.LastError, `line 4: active: "teal" is not a color`)
	assert.Equal(t, config.Blue, st.Active)
	g.requireTraffic(t, config.Blue)
}

func TestFileEdit_UnchangedActiveDoesNotUndoAnAdminSwitch(t *testing.T) {
	b := startBackends(t, 0)
	path := newConfigFile(t, b.config(fileConfig{Active: "blue"}))
	g := startGateway(t, path)
	g.waitReady(t, config.Blue, config.Green)
	g.adminSwitch(t, config.Green)

	// The file still says blue; only a timeout changes.
	writeConfig(t, path, b.config(fileConfig{Active: "blue", ResponseHeader: "30s"}))

	st := g.waitStatus(t, "the edit is applied", func(st statusDoc) bool { return st.Config.Generation == 2 })
	assert.Empty(t, st.Config.LastError)
	assert.Equal(t, config.Green, st.Active, "the file event undid the admin switch")
	assert.Equal(t, proxy.TriggerAdmin, lastSwitch(t, st).Trigger)
	g.requireTraffic(t, config.Green)
}

func TestFileEdit_ListenChangeIsReportedAndTheRestApplies(t *testing.T) {
	b := startBackends(t, 0)
	path := newConfigFile(t, b.config(fileConfig{Active: "blue"}))
	g := startGateway(t, path)
	g.waitReady(t, config.Blue)

	writeConfig(t, path, b.config(fileConfig{Active: "blue", Listen: "127.0.0.1:18181", GreenVersion: "v2-rc2"}))

	st := g.waitStatus(t, "the edit is applied", func(st statusDoc) bool { return st.Config.Generation == 2 })
	assert.Empty(t, st.Config.LastError)
	assert.Equal(t, "v2-rc2", st.Pools["green"].Version, "the rest of the edit was not applied")
	var listen []string
	for _, m := range st.Config.RestartNeeded {
		if strings.HasPrefix(m, "listen:") {
			listen = append(listen, m)
		}
	}
	require.Len(t, listen, 1, "restart_needed: %q", st.Config.RestartNeeded)
	assert.Contains(t, listen[0], `"127.0.0.1:18181" needs a restart`)
	// Still serving where it started.
	g.requireTraffic(t, config.Blue)
}

func TestAdminSwitch_IfMatchRefusesAStaleGeneration(t *testing.T) {
	b := startBackends(t, 0)
	path := newConfigFile(t, b.config(fileConfig{Active: "blue"}))
	g := startGateway(t, path)
	g.waitReady(t, config.Blue, config.Green)
	ifMatch := func(etag string) http.Header { return http.Header{"If-Match": {etag}} }

	first := g.status(t).ETag
	require.NotEmpty(t, first)
	resp, body := g.post(t, "/admin/switch", `{"to": "green"}`, ifMatch(first))
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	second := resp.Header.Get("ETag")
	require.NotEqual(t, first, second)

	// Someone else's view from before the switch is stale.
	resp, body = g.post(t, "/admin/switch", `{"to": "blue"}`, ifMatch(first))
	assert.Equal(t, http.StatusPreconditionFailed, resp.StatusCode, "%s", body)
	assert.Equal(t, second, resp.Header.Get("ETag"))
	assert.Equal(t, config.Green, g.status(t).Active)

	// A config reload moves the generation too.
	writeConfig(t, path, b.config(fileConfig{Active: "blue", ResponseHeader: "30s"}))
	third := g.waitStatus(t, "the edit is applied", func(st statusDoc) bool { return st.Config.Generation == 2 }).ETag
	require.NotEqual(t, second, third)
	resp, body = g.post(t, "/admin/switch", `{"to": "blue"}`, ifMatch(second))
	assert.Equal(t, http.StatusPreconditionFailed, resp.StatusCode, "%s", body)
	assert.Equal(t, config.Green, g.status(t).Active)

	resp, body = g.post(t, "/admin/switch", `{"to": "blue"}`, ifMatch(third))
	assert.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	assert.Equal(t, config.Blue, g.status(t).Active)
	g.requireTraffic(t, config.Blue)
}

func TestFileEdit_SwitchToAGreenStillLoadingWaitsThenGoesThrough(t *testing.T) {
	b := startBackends(t, 2*time.Second)
	path := newConfigFile(t, b.config(fileConfig{Active: "blue"}))
	g := startGateway(t, path)
	g.waitReady(t, config.Blue)
	// Start green's load time over, so it is surely not ready when the
	// edit is applied below.
	b.green.Restart()

	writeConfig(t, path, b.config(fileConfig{Active: "green"}))
	resp, body := g.post(t, "/admin/reload", "", nil)

	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	st := g.status(t)
	assert.Equal(t, config.Blue, st.Active, "switched to a pool that is not ready")
	assert.Contains(t, st.Config.PendingSwitch, "to green")
	assert.Contains(t, st.Config.PendingSwitch, "refused")
	g.requireTraffic(t, config.Blue)

	st = g.waitStatus(t, "the pending switch goes through", func(st statusDoc) bool { return st.Active == config.Green })
	assert.Empty(t, st.Config.PendingSwitch)
	assert.Equal(t, proxy.TriggerFile, lastSwitch(t, st).Trigger)
	assert.False(t, lastSwitch(t, st).Forced)
	g.requireTraffic(t, config.Green)
}

func TestRestart_StateFileAndConfigFilePrecedence(t *testing.T) {
	testCases := []struct {
		desc string
		// between runs after an admin switch to green in the first; nil
		// for no first run.
		between func(t *testing.T, b *backends, path, stateDir string)
		// before the first run, when there is none.
		before func(t *testing.T, stateDir string)
		want   config.Color
	}{
		{
			desc:    "switch newer than the unchanged file: the switch",
			between: func(*testing.T, *backends, string, string) {},
			want:    config.Green,
		},
		{
			desc: "file edited after the switch: the file",
			between: func(t *testing.T, b *backends, path, stateDir string) {
				writeConfig(t, path, b.config(fileConfig{Active: "blue", StateDir: stateDir, ResponseHeader: "30s"}))
				later := time.Now().Add(time.Second)
				require.NoError(t, os.Chtimes(path, later, later))
			},
			want: config.Blue,
		},
		{
			desc: "corrupt state file: the file, and the gateway starts",
			before: func(t *testing.T, stateDir string) {
				require.NoError(t, os.MkdirAll(stateDir, 0o755))
				require.NoError(t, os.WriteFile(filepath.Join(stateDir, state.FileName), []byte(`{"active": "green", "at": `), 0o644))
			},
			want: config.Blue,
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			b := startBackends(t, 0)
			stateDir := filepath.Join(t.TempDir(), "state")
			path := newConfigFile(t, b.config(fileConfig{Active: "blue", StateDir: stateDir}))
			if test.before != nil {
				test.before(t, stateDir)
			}
			if test.between != nil {
				first := startGateway(t, path)
				first.waitReady(t, config.Blue, config.Green)
				first.adminSwitch(t, config.Green)
				first.stop()
				test.between(t, b, path, stateDir)
			}

			g := startGateway(t, path)

			assert.Equal(t, test.want, g.status(t).Active)
			g.waitReady(t, test.want)
			g.requireTraffic(t, test.want)
			// The state file is usable again after the next switch.
			g.waitReady(t, test.want.Other())
			g.adminSwitch(t, test.want.Other())
			store, err := state.Open(stateDir)
			require.NoError(t, err)
			rec, err := store.Load()
			require.NoError(t, err)
			assert.Equal(t, test.want.Other(), rec.Active)
			assert.Equal(t, proxy.TriggerAdmin, rec.Trigger)
		})
	}
}

// Regression test (fixed): a file edit that leaves `active` alone does not undo an admin
// switch while the gateway runs, but it makes the file newer than the
// recorded switch, so the next start goes back to the file's color: a
// restart moves production traffic nobody asked to move.
func TestRestart_EditNotTouchingActiveKeepsTheAdminSwitch(t *testing.T) {
	b := startBackends(t, 0)
	stateDir := filepath.Join(t.TempDir(), "state")
	path := newConfigFile(t, b.config(fileConfig{Active: "blue", StateDir: stateDir}))
	first := startGateway(t, path)
	first.waitReady(t, config.Blue, config.Green)
	first.adminSwitch(t, config.Green)
	writeConfig(t, path, b.config(fileConfig{Active: "blue", StateDir: stateDir, ResponseHeader: "30s"}))
	st := first.waitStatus(t, "the edit is applied", func(st statusDoc) bool { return st.Config.Generation == 2 })
	require.Equal(t, config.Green, st.Active)
	first.stop()
	// File times come from a coarse clock that may lag the switch's
	// time.Now by a few ms: date the edit clearly after the switch.
	later := time.Now().Add(time.Second)
	require.NoError(t, os.Chtimes(path, later, later))

	g := startGateway(t, path)

	assert.Equal(t, config.Green, g.status(t).Active, "the restart undid the admin switch")
}

func TestRun_StopsWhenTheContextIsCancelled(t *testing.T) {
	b := startBackends(t, 0)
	path := newConfigFile(t, b.config(fileConfig{Active: "blue"}))
	g := startGateway(t, path)
	g.waitReady(t, config.Blue)
	g.requireTraffic(t, config.Blue)

	g.stop()

	_, err := g.client.Get(g.admin + "/healthz")
	assert.Error(t, err, "the admin listener is still open")
	_, err = g.client.Post(g.traffic+"/predict", "application/json", bytes.NewReader([]byte(predictBody)))
	assert.Error(t, err, "the traffic listener is still open")
}
