package observe

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
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
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/gatewaytest"
	"github.com/switchyard/switchyard/modelsim"
	"go.yaml.in/yaml/v3"
)

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
	g.WaitReady(t, config.Blue, config.Green)
	prom := startPrometheus(t, bin, g.AdminAddr)
	prom.waitTargetUp(t)

	l := g.StartLoad(t, 4)
	loadStart := time.Now()
	// Blue is loaded for 5s: the rate window before the switch lies
	// wholly inside that stretch.
	prom.waitScrapedPast(t, loadStart.Add(5*time.Second))
	switchStart := time.Now()
	g.Switch(t, config.Green)
	switchDone := time.Now()
	prom.waitScrapedPast(t, switchDone.Add(5*time.Second))
	l.Stop()
	failed := l.Failed()
	t.Logf("load: blue %d, green %d, %d failed", l.Count(config.Blue), l.Count(config.Green), len(failed))
	if len(failed) > 0 {
		t.Logf("last failure: %s", failed[len(failed)-1])
	}
	require.Positive(t, l.Count(config.Green), "no request reached green")

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
	g.WaitReady(t, config.Blue, config.Green)
	for range 2 {
		g.RequireColor(t, config.Blue)
	}
	// A blue request still running when the drain after the switch times
	// out is a straggler.
	slow := make(chan error, 1)
	go func() {
		color, err := g.Predict()
		if err == nil && color != string(config.Blue) {
			err = fmt.Errorf("answered by %s, want blue", color)
		}
		slow <- err
	}()
	g.WaitStatus(t, "a request in flight on blue", func(st gatewaytest.Status) bool { return st.Pools["blue"].Inflight > 0 })
	g.Switch(t, config.Green)
	select {
	case err := <-slow:
		require.NoError(t, err, "the request in flight on blue during the switch")
	case <-time.After(gatewaytest.WaitFor):
		require.FailNow(t, "the request in flight on blue never finished")
	}
	for range 5 {
		g.RequireColor(t, config.Green)
	}
	return waitFamilies(t, g, switchyardFamilies)
}

// gatewayOptions vary the gateway and backends that startGateway runs.
type gatewayOptions struct {
	// blueLatency is added to each of blue's predictions, warmup included.
	blueLatency time.Duration
	// drainTimeout is switch.drain_timeout; default 30s.
	drainTimeout time.Duration
}

// startGateway runs a gateway in front of one simulated model server per
// color until the test ends: blue serves v1, green v2. Both report GPU
// memory and utilization in their health answer; green also serves vLLM
// metrics with its KV-cache use. The gateway runs from a config file, so
// the config reload metrics are exported too.
func startGateway(t *testing.T, opts gatewayOptions) *gatewaytest.Gateway {
	t.Helper()
	if opts.drainTimeout == 0 {
		opts.drainTimeout = 30 * time.Second
	}
	gpu := map[string]any{"gpu_memory_used_bytes": 12e9, "gpu_memory_total_bytes": 80e9, "gpu_utilization": 37.5}
	blue := gatewaytest.StartModel(t, modelsim.Options{Color: "blue", Version: "v1", Latency: opts.blueLatency})
	blue.SetHealthFields(gpu)
	green := gatewaytest.StartModel(t, modelsim.Options{Color: "green", Version: "v2"})
	green.SetHealthFields(gpu)
	greenAddr := startVLLMFront(t, green.Addr())

	// The listeners in the file are never bound: gatewaytest.Start binds
	// both to 127.0.0.1:0.
	path := gatewaytest.NewConfigFile(t, fmt.Sprintf(`listen: 127.0.0.1:18080
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
`, opts.drainTimeout, gatewaytest.PredictBody, blue.Addr(), greenAddr))
	return gatewaytest.Start(t, gatewaytest.Options{Path: path})
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

// waitFamilies waits until GET /metrics holds every family in names, as
// probes and drains report on their own schedule, and returns that body.
func waitFamilies(t *testing.T, g *gatewaytest.Gateway, names []string) []byte {
	t.Helper()
	var body []byte
	var missing []string
	var lastErr error
	ok := assert.Eventually(t, func() bool {
		body, lastErr = g.Metrics()
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
	}, gatewaytest.WaitFor, gatewaytest.Tick, "GET /metrics never held every metric family")
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

// prometheusServer is a real Prometheus scraping one gateway.
type prometheusServer struct {
	url    string
	client *http.Client
	logs   *gatewaytest.LogBuffer
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
	addr := gatewaytest.UnusedAddr(t)

	logs := &gatewaytest.LogBuffer{}
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
	}, gatewaytest.WaitFor, 100*time.Millisecond, "prometheus never became ready")
	if !ready {
		require.FailNow(t, "prometheus not ready", "output:\n%s", logs.String())
	}
	return p
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
	}, gatewaytest.WaitFor, 100*time.Millisecond, "prometheus never scraped the gateway")
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
	}, gatewaytest.WaitFor, 100*time.Millisecond, "prometheus stopped scraping the gateway")
	if !ok {
		require.FailNow(t, "no recent scrape", "wanted one after %s, newest at %v; last error %v; output:\n%s",
			at.Format(time.RFC3339Nano), last, lastErr, p.logs.String())
	}
}
