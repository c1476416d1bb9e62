package observe

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/admin"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/gateway"
	"github.com/switchyard/switchyard/modelsim"
	"github.com/switchyard/switchyard/proxy"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"go.yaml.in/yaml/v3"
)

// Generous deadlines: the suite runs with -race on small CI machines.
const (
	waitFor = 20 * time.Second
	tick    = 20 * time.Millisecond
)

const predictBody = `{"inputs": [[1,2,3,4]]}`

// Files under test, relative to the repository root.
const (
	dashboardFile  = "deploy/grafana/switchyard-dashboard.json"
	alertsFile     = "deploy/prometheus/alerts.yaml"
	alertTestsFile = "deploy/prometheus/alerts_test.yaml"
)

// switchyardFamilies is every Switchyard metric family a gateway exports
// once it has served traffic, switched leaving a straggler behind, and
// probed backends that report GPU and KV-cache signals.
var switchyardFamilies = []string{
	"switchyard_requests_total",
	"switchyard_request_duration_seconds",
	"switchyard_upstream_errors_total",
	"switchyard_switches_total",
	"switchyard_switch_swap_duration_seconds",
	"switchyard_drain_duration_seconds",
	"switchyard_drain_stragglers_total",
	"switchyard_backend_healthy",
	"switchyard_backend_ready",
	"switchyard_backend_warm",
	"switchyard_backend_ejections_total",
	"switchyard_backend_restarts_total",
	"switchyard_backend_gpu_memory_used_bytes",
	"switchyard_backend_gpu_memory_total_bytes",
	"switchyard_backend_gpu_utilization_ratio",
	"switchyard_backend_queue_depth",
	"switchyard_backend_kv_cache_usage_ratio",
	"switchyard_backend_warmup_latency_seconds",
	"switchyard_backend_warmup_duration_seconds",
	"switchyard_inflight_requests",
	"switchyard_active_color",
	"switchyard_routing_generation",
	"switchyard_build_info",
	"switchyard_config_reloads_total",
	"switchyard_config_last_reload_successful",
}

func TestMetrics_PromtoolCheckMetricsPasses(t *testing.T) {
	t.Parallel()
	promtool := requireTool(t, "promtool")
	body := scrapeFullyObserved(t)

	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "promtool check metrics found problems in GET /metrics:\n%s", out)
	if len(out) > 0 {
		t.Logf("promtool check metrics:\n%s", out)
	}
}

func TestAlertRules_PromtoolCheckRulesPasses(t *testing.T) {
	t.Parallel()
	promtool := requireTool(t, "promtool")
	root := repoRoot(t)
	testCases := []struct {
		desc string
		args []string
	}{
		{desc: "rules are valid", args: []string{"check", "rules", alertsFile}},
		{desc: "rule unit tests pass", args: []string{"test", "rules", alertTestsFile}},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(promtool, test.args...)
			cmd.Dir = root
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "promtool %s:\n%s", strings.Join(test.args, " "), out)
		})
	}
}

func TestAlertRules_EachSaysHowBadAndWhatToDo(t *testing.T) {
	t.Parallel()
	rules := readAlertRules(t)
	want := []string{"SwitchyardActivePoolNotReady", "SwitchyardNewColorErrorRatioWorse", "SwitchyardNewColorP99Worse",
		"SwitchyardDrainStuck", "SwitchyardConfigReloadFailing"}
	var got []string
	for _, r := range rules {
		got = append(got, r.Alert)
		assert.Contains(t, []string{"critical", "warning", "info"}, r.Labels["severity"], "%s: severity label", r.Alert)
		assert.NotEmpty(t, r.Annotations["summary"], "%s: summary annotation", r.Alert)
		assert.NotEmpty(t, r.Annotations["description"], "%s: description annotation", r.Alert)
	}
	assert.ElementsMatch(t, want, got)
}

func TestAlertRules_UseOnlyExportedMetrics(t *testing.T) {
	t.Parallel()
	var exprs []string
	for _, r := range readAlertRules(t) {
		exprs = append(exprs, r.Expr)
	}
	requireExported(t, alertsFile, exprs, parseFamilies(t, scrapeFullyObserved(t)))
}

func TestDashboard_ParsesAndUsesExportedMetrics(t *testing.T) {
	t.Parallel()
	dash := readDashboard(t)
	assert.GreaterOrEqual(t, dash["schemaVersion"], 36.0, "schemaVersion")
	assert.Contains(t, string(mustJSON(t, dash["__inputs"])), `"name":"DS_PROMETHEUS"`, "the datasource is an import input")
	walkJSON(dash, func(key string, v any) {
		ds, ok := v.(map[string]any)
		if key != "datasource" || !ok || ds["type"] != "prometheus" {
			return
		}
		assert.Equal(t, "${DS_PROMETHEUS}", ds["uid"], "every Prometheus datasource is the ${DS_PROMETHEUS} input")
	})
	exprs := dashboardExprs(dash)
	require.NotEmpty(t, exprs, "the dashboard has no expressions")

	requireExported(t, dashboardFile, exprs, parseFamilies(t, scrapeFullyObserved(t)))
}

// TestPrometheus_ScrapesRateByColorAcrossSwitch is not parallel, so the
// rates it reads are not skewed by the other tests' load.
func TestPrometheus_ScrapesRateByColorAcrossSwitch(t *testing.T) {
	bin := requireTool(t, "prometheus")
	g := startGateway(t, gatewayOptions{})
	g.waitReady(t)
	prom := startPrometheus(t, bin, g.adminAddr)
	prom.waitTargetUp(t)

	l := g.startLoad(4)
	loadStart := time.Now()
	// Blue is loaded for 5s: the rate window before the switch lies
	// wholly inside that stretch.
	prom.waitScrapedPast(t, loadStart.Add(5*time.Second))
	switchStart := time.Now()
	g.switchTo(t, config.Green)
	switchDone := time.Now()
	prom.waitScrapedPast(t, switchDone.Add(5*time.Second))
	l.Stop()
	t.Logf("load: %v, %d failed (last error: %v)", l.byColor, l.failures, l.lastErr)
	require.Positive(t, l.byColor["green"], "no request reached green")

	const query = `sum by (color) (rate(switchyard_requests_total[3s]))`
	before := prom.vector(t, query, switchStart.Add(-time.Second))
	t.Logf("%s at 1s before the switch: %v", query, before)
	assert.Positive(t, before["blue"], "blue's request rate before the switch")
	assert.Zero(t, before["green"], "green's request rate before the switch")

	after := prom.vector(t, query, switchDone.Add(4*time.Second))
	t.Logf("%s at 4s after the switch: %v", query, after)
	assert.Positive(t, after["green"], "green's request rate after the switch")
	assert.LessOrEqual(t, after["blue"], after["green"]/100, "blue's request rate after the switch")

	t.Run("dashboard expressions evaluate", func(t *testing.T) {
		for _, expr := range dashboardExprs(readDashboard(t)) {
			q := strings.NewReplacer("$__rate_interval", "1m", "$__range", "5m", "$job", ".*", "$instance", ".*").Replace(expr)
			if strings.HasPrefix(q, "label_values(") {
				continue // a Grafana function, not PromQL
			}
			_, err := prom.query(q, switchDone.Add(4*time.Second))
			assert.NoError(t, err, "dashboard expression %s", expr)
		}
	})
}

// scrapeFullyObserved runs a gateway through everything that makes each
// of its metric families appear, and returns GET /metrics.
func scrapeFullyObserved(t *testing.T) []byte {
	t.Helper()
	const blueLatency = 300 * time.Millisecond
	g := startGateway(t, gatewayOptions{blueLatency: blueLatency, drainTimeout: 50 * time.Millisecond})
	g.waitReady(t)
	for range 2 {
		g.requireColor(t, config.Blue)
	}
	// A blue request still running when the drain after the switch times
	// out is a straggler.
	slow := make(chan error, 1)
	go func() {
		color, err := g.predict()
		if err == nil && color != string(config.Blue) {
			err = fmt.Errorf("answered by %s, want blue", color)
		}
		slow <- err
	}()
	g.waitStatus(t, "a request in flight on blue", func(st admin.Status) bool { return st.Pools["blue"].Inflight > 0 })
	g.switchTo(t, config.Green)
	select {
	case err := <-slow:
		require.NoError(t, err, "the request in flight on blue during the switch")
	case <-time.After(waitFor):
		require.FailNow(t, "the request in flight on blue never finished")
	}
	for range 5 {
		g.requireColor(t, config.Green)
	}
	return g.waitFamilies(t, switchyardFamilies)
}

// gatewayOptions vary the gateway and backends that startGateway runs.
type gatewayOptions struct {
	// blueLatency is added to each of blue's predictions, warmup included.
	blueLatency time.Duration
	// drainTimeout is switch.drain_timeout; default 30s.
	drainTimeout time.Duration
}

// gw is a gateway run in process by gateway.Run, in front of one
// simulated model server per color: blue serves v1, green v2. Both report
// GPU memory and utilization in their health answer; green also serves
// vLLM metrics with its KV-cache use.
type gw struct {
	traffic   string // base URL of the traffic listener
	admin     string // base URL of the admin listener
	adminAddr string // host:port of the admin listener
	client    *http.Client
}

// startGateway runs the gateway and its backends until the test ends.
func startGateway(t *testing.T, opts gatewayOptions) *gw {
	t.Helper()
	if opts.drainTimeout == 0 {
		opts.drainTimeout = 30 * time.Second
	}
	gpu := map[string]any{"gpu_memory_used_bytes": 12e9, "gpu_memory_total_bytes": 80e9, "gpu_utilization": 37.5}
	blue := startModel(t, modelsim.Options{Color: "blue", Version: "v1", Latency: opts.blueLatency})
	blue.SetHealthFields(gpu)
	green := startModel(t, modelsim.Options{Color: "green", Version: "v2"})
	green.SetHealthFields(gpu)
	greenAddr := startVLLMFront(t, green.Addr())

	path := filepath.Join(t.TempDir(), "switchyard.yaml")
	// The listeners in the file are never bound: both are replaced by
	// 127.0.0.1:0 below.
	require.NoError(t, os.WriteFile(path, []byte(fmt.Sprintf(`listen: 127.0.0.1:18080
admin:
  listen: 127.0.0.1:19901
active: blue
log: {format: console, level: warn}
switch:
  drain_timeout: %s
health:
  interval: 100ms
  timeout: 100ms
  healthy_threshold: 1
  unhealthy_threshold: 3
  metrics_path: /metrics
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
    version: v2
    backends: [%s]
`, opts.drainTimeout, predictBody, blue.Addr(), greenAddr)), 0o644))
	cfg, data, err := config.Load(path)
	require.NoError(t, err)
	cfg.Listen, cfg.Admin.Listen = "127.0.0.1:0", "127.0.0.1:0"

	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan [2]string, 1)
	done := make(chan error, 1)
	go func() {
		done <- gateway.Run(ctx, gateway.Options{
			Config: cfg, ConfigPath: path, ConfigData: data, Version: "test",
			Log:             zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)),
			ShutdownTimeout: 5 * time.Second,
			Started:         func(traffic, admin string) { started <- [2]string{traffic, admin} },
		})
	}()
	var addrs [2]string
	select {
	case addrs = <-started:
	case err := <-done:
		cancel()
		require.FailNow(t, "gateway.Run returned before it started", "%v", err)
	case <-time.After(waitFor):
		cancel()
		require.FailNow(t, "gateway.Run did not start")
	}

	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err, "gateway.Run")
		case <-time.After(waitFor):
			assert.Fail(t, "gateway.Run did not return after cancel")
		}
	})
	return &gw{traffic: "http://" + addrs[0], admin: "http://" + addrs[1], adminAddr: addrs[1],
		client: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

func startModel(t *testing.T, opts modelsim.Options) *modelsim.Server {
	t.Helper()
	s, err := modelsim.Start("127.0.0.1:0", opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// startVLLMFront puts a front before the model server at addr that also
// answers GET /metrics in vLLM's format: KV-cache use reaches the gateway
// only through a metrics scrape, which modelsim does not serve.
func startVLLMFront(t *testing.T, addr string) string {
	t.Helper()
	tr := &http.Transport{}
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: addr})
	rp.Transport = tr
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_, _ = io.WriteString(w, "# TYPE vllm:kv_cache_usage_perc gauge\nvllm:kv_cache_usage_perc 0.42\n")
	})
	mux.Handle("/", rp)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		srv.Close()
		tr.CloseIdleConnections()
	})
	return srv.Listener.Addr().String()
}

// getStatus reads GET /admin/status; it does not fail the test, so it can
// run inside a poll.
func (g *gw) getStatus() (admin.Status, error) {
	var st admin.Status
	resp, err := g.client.Get(g.admin + "/admin/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET /admin/status: %s", resp.Status)
	}
	err = json.NewDecoder(resp.Body).Decode(&st)
	return st, err
}

// waitStatus waits until GET /admin/status satisfies cond.
func (g *gw) waitStatus(t *testing.T, what string, cond func(admin.Status) bool) {
	t.Helper()
	var last admin.Status
	var lastErr error
	ok := assert.Eventually(t, func() bool {
		last, lastErr = g.getStatus()
		return lastErr == nil && cond(last)
	}, waitFor, tick, what)
	if !ok {
		require.FailNow(t, "gave up waiting", "%s; last status error %v, status %+v", what, lastErr, last)
	}
}

// waitReady waits until the backends of both colors are ready.
func (g *gw) waitReady(t *testing.T) {
	t.Helper()
	g.waitStatus(t, "both pools ready", func(st admin.Status) bool {
		return st.Pools["blue"].ReadyBackends == 1 && st.Pools["green"].ReadyBackends == 1
	})
}

// predict sends one inference through the gateway and returns the color
// that answered.
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
	return color, nil
}

func (g *gw) requireColor(t *testing.T, want config.Color) {
	t.Helper()
	got, err := g.predict()
	require.NoError(t, err)
	require.Equal(t, string(want), got, "traffic went to the wrong color")
}

// switchTo switches through POST /admin/switch and requires success.
func (g *gw) switchTo(t *testing.T, to config.Color) {
	t.Helper()
	resp, err := g.client.Post(g.admin+"/admin/switch", "application/json", strings.NewReader(`{"to": "`+string(to)+`"}`))
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "POST /admin/switch: %s", body)
}

func (g *gw) scrape() ([]byte, error) {
	resp, err := g.client.Get(g.admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// waitFamilies waits until GET /metrics holds every family in names, as
// probes and drains report on their own schedule, and returns that body.
func (g *gw) waitFamilies(t *testing.T, names []string) []byte {
	t.Helper()
	var body []byte
	var missing []string
	var lastErr error
	ok := assert.Eventually(t, func() bool {
		body, lastErr = g.scrape()
		if lastErr != nil {
			return false
		}
		fams, err := parseText(body)
		if err != nil {
			lastErr = err
			return false
		}
		missing = missing[:0]
		for _, n := range names {
			if _, ok := fams[n]; !ok {
				missing = append(missing, n)
			}
		}
		return len(missing) == 0
	}, waitFor, tick, "GET /metrics never held every metric family")
	if !ok {
		require.FailNow(t, "metric families missing", "missing %v; last error %v; last scrape:\n%s", missing, lastErr, body)
	}
	return body
}

func parseText(body []byte) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(bytes.NewReader(body))
}

func parseFamilies(t *testing.T, body []byte) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := parseText(body)
	require.NoError(t, err, "GET /metrics is not Prometheus text")
	return fams
}

// metricName finds metric names in PromQL; Switchyard's names are snake
// case.
var metricName = regexp.MustCompile(`switchyard_[a-z_]+`)

// requireExported fails for each metric name in exprs, histogram series
// suffixes stripped, that is not among the exported families.
func requireExported(t *testing.T, file string, exprs []string, fams map[string]*dto.MetricFamily) {
	t.Helper()
	used := map[string]string{} // name -> first expression using it
	for _, e := range exprs {
		for _, n := range metricName.FindAllString(e, -1) {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				n = strings.TrimSuffix(n, suffix)
			}
			if _, ok := used[n]; !ok {
				used[n] = e
			}
		}
	}
	require.NotEmpty(t, used, "%s names no switchyard_ metric", file)
	names := make([]string, 0, len(used))
	for n := range used {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		assert.Contains(t, fams, n, "%s uses %s, which GET /metrics does not export, in %q", file, n, used[n])
	}
}

// repoRoot is the module root: tests run in their package directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	require.NoError(t, err)
	require.FileExists(t, filepath.Join(root, "go.mod"))
	return root
}

// requireTool finds a binary the test runs; a missing one fails the test,
// never skips it.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	require.NoError(t, err, "%s is not installed: install the Debian package prometheus (make deps)", name)
	return path
}

func readDashboard(t *testing.T) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), dashboardFile))
	require.NoError(t, err)
	var dash map[string]any
	require.NoError(t, json.Unmarshal(data, &dash), "%s is not JSON", dashboardFile)
	return dash
}

// dashboardExprs returns the dashboard's PromQL: panel targets, annotation
// queries and template variable queries.
func dashboardExprs(dash map[string]any) []string {
	var out []string
	walkJSON(dash, func(key string, v any) {
		if s, ok := v.(string); ok && (key == "expr" || key == "query" || key == "definition") && s != "" {
			out = append(out, s)
		}
	})
	return out
}

// walkJSON calls fn with every object member in v, depth first.
func walkJSON(v any, fn func(key string, v any)) {
	switch v := v.(type) {
	case map[string]any:
		for k, c := range v {
			fn(k, c)
			walkJSON(c, fn)
		}
	case []any:
		for _, c := range v {
			walkJSON(c, fn)
		}
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

type alertRule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func readAlertRules(t *testing.T) []alertRule {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), alertsFile))
	require.NoError(t, err)
	var doc struct {
		Groups []struct {
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	require.NoError(t, yaml.Unmarshal(data, &doc), alertsFile)
	var rules []alertRule
	for _, g := range doc.Groups {
		rules = append(rules, g.Rules...)
	}
	require.NotEmpty(t, rules, "%s has no rules", alertsFile)
	return rules
}

// load is continuous inference traffic through the gateway.
type load struct {
	stop chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex
	byColor  map[string]int
	failures int
	lastErr  error
}

// startLoad runs n clients that send requests back to back until Stop.
func (g *gw) startLoad(n int) *load {
	l := &load{stop: make(chan struct{}), byColor: map[string]int{}}
	for range n {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				color, err := g.predict()
				l.mu.Lock()
				if err != nil {
					l.failures++
					l.lastErr = err
				} else {
					l.byColor[color]++
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

// Stop stops the clients and waits for them.
func (l *load) Stop() {
	close(l.stop)
	l.wg.Wait()
}

// prometheusServer is a real Prometheus scraping one gateway.
type prometheusServer struct {
	url    string
	client *http.Client
	logs   *syncBuffer
	exited chan struct{}
}

// startPrometheus runs the Prometheus binary bin on a free loopback port,
// scraping target's /metrics every second, until the test ends.
func startPrometheus(t *testing.T, bin, target string) *prometheusServer {
	t.Helper()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "prometheus.yml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: switchyard
    static_configs:
      - targets: [%q]
`, target)), 0o644))
	addr := freeLoopbackAddr(t)

	logs := &syncBuffer{}
	cmd := exec.Command(bin,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
	)
	cmd.Stdout, cmd.Stderr = logs, logs
	// Its own process group, so the whole group is killed at the end.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	require.NoError(t, cmd.Start(), "starting %s", bin)
	p := &prometheusServer{url: "http://" + addr, client: &http.Client{Transport: &http.Transport{}, Timeout: 5 * time.Second},
		logs: logs, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.client.CloseIdleConnections()
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-p.exited
		}
		if t.Failed() {
			t.Logf("prometheus output:\n%s", logs.String())
		}
	})

	ready := assert.Eventually(t, func() bool {
		select {
		case <-p.exited:
			return false
		default:
		}
		resp, err := p.client.Get(p.url + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, waitFor, 100*time.Millisecond, "prometheus never became ready")
	if !ready {
		require.FailNow(t, "prometheus not ready", "output:\n%s", logs.String())
	}
	return p
}

// freeLoopbackAddr returns a loopback address with a port free right now.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// query evaluates an instant PromQL query at the time at.
func (p *prometheusServer) query(q string, at time.Time) ([]promSample, error) {
	v := url.Values{"query": {q}, "time": {strconv.FormatFloat(float64(at.UnixNano())/1e9, 'f', 3, 64)}}
	resp, err := p.client.Get(p.url + "/api/v1/query?" + v.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var doc struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return nil, fmt.Errorf("decoding the answer to %s: %w", q, err)
	}
	if doc.Status != "success" {
		return nil, fmt.Errorf("query %s: %s: %s", q, resp.Status, doc.Error)
	}
	if doc.Data.ResultType != "vector" {
		return nil, nil // scalars and strings: valid, but not samples
	}
	var raw []struct {
		Metric map[string]string `json:"metric"`
		Value  [2]any            `json:"value"`
	}
	if err := json.Unmarshal(doc.Data.Result, &raw); err != nil {
		return nil, fmt.Errorf("decoding the vector of %s: %w", q, err)
	}
	out := make([]promSample, 0, len(raw))
	for _, r := range raw {
		s, _ := r.Value[1].(string)
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("sample value %v of %s: %w", r.Value[1], q, err)
		}
		out = append(out, promSample{metric: r.Metric, value: f})
	}
	return out, nil
}

type promSample struct {
	metric map[string]string
	value  float64
}

// vector evaluates q at the time at and returns its samples by color.
func (p *prometheusServer) vector(t *testing.T, q string, at time.Time) map[string]float64 {
	t.Helper()
	samples, err := p.query(q, at)
	require.NoError(t, err)
	out := map[string]float64{}
	for _, s := range samples {
		out[s.metric["color"]] = s.value
	}
	return out
}

// waitTargetUp waits until Prometheus has scraped the gateway once.
func (p *prometheusServer) waitTargetUp(t *testing.T) {
	t.Helper()
	var lastErr error
	ok := assert.Eventually(t, func() bool {
		s, err := p.query(`up{job="switchyard"} == 1`, time.Now())
		lastErr = err
		return err == nil && len(s) == 1
	}, waitFor, 100*time.Millisecond, "prometheus never scraped the gateway")
	if !ok {
		require.FailNow(t, "gateway target not up", "last error %v; output:\n%s", lastErr, p.logs.String())
	}
}

// waitScrapedPast waits until Prometheus holds a scrape of the gateway
// taken after at, so that queries up to at see complete data.
func (p *prometheusServer) waitScrapedPast(t *testing.T, at time.Time) {
	t.Helper()
	var last float64
	var lastErr error
	ok := assert.Eventually(t, func() bool {
		s, err := p.query(`timestamp(switchyard_routing_generation)`, time.Now())
		lastErr = err
		if err != nil || len(s) != 1 {
			return false
		}
		last = s[0].value
		return last > float64(at.UnixNano())/1e9
	}, waitFor, 100*time.Millisecond, "prometheus stopped scraping the gateway")
	if !ok {
		require.FailNow(t, "no recent scrape", "wanted one after %s, newest at %v; last error %v; output:\n%s",
			at.Format(time.RFC3339Nano), last, lastErr, p.logs.String())
	}
}

// syncBuffer is a bytes.Buffer safe for the process writing to it and the
// test reading it at the same time.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
