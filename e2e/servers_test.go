//go:build e2e

package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The model versions the two colors serve; their weights are seeded from
// the version, so the two answer the same input differently.
const (
	blueVersion  = "v2.6"
	greenVersion = "v2.7"
)

// modelServer is deploy/model-server run by gunicorn: one worker with a
// few threads, as in production.
type modelServer struct {
	*process
	color, version, addr string
}

// modelEnvKnobs are the model server's settings; none may leak in from the
// environment the tests run in.
var modelEnvKnobs = []string{"BIND", "MODEL_VERSION", "MODEL_COLOR", "MODEL_NAME", "THREADS", "LOG_LEVEL",
	"LOAD_DELAY_SECONDS", "WARMUP_SLOW_REQUESTS", "WARMUP_SLOW_SECONDS", "FAIL_RATIO", "GRPC_BIND", "GRPC_THREADS",
	"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"}

// startModel starts a model server for color on addr. knobs are extra
// environment settings, e.g. "LOAD_DELAY_SECONDS=5".
func startModel(t *testing.T, color, version, addr string, knobs ...string) *modelServer {
	t.Helper()
	env := make([]string, 0, len(os.Environ())+8)
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(modelEnvKnobs, name) {
			env = append(env, kv)
		}
	}
	env = append(env, "BIND="+addr, "MODEL_VERSION="+version, "MODEL_COLOR="+color, "THREADS=8")
	env = append(env, knobs...)
	p := startProcess(t, "model-"+color, filepath.Join(repoRoot, "deploy", "model-server"), env,
		python, "-m", "gunicorn", "--config", "gunicorn.conf.py", "app:app")
	return &modelServer{process: p, color: color, version: version, addr: addr}
}

// waitHealthy waits until the server's own /health answers 200.
func (m *modelServer) waitHealthy(t *testing.T, client *http.Client) {
	t.Helper()
	eventually(t, 90*time.Second, 100*time.Millisecond, m.name+" answers GET /health 200", func() (bool, string) {
		if !m.alive() {
			t.Fatalf("%s exited while starting", m.name)
		}
		var h struct{ Status string }
		if err := getJSON(client, "http://"+m.addr+"/health", &h); err != nil {
			return false, err.Error()
		}
		return h.Status == "ok", "status " + h.Status
	})
}

// startModels starts blue and green side by side, each with its knobs, and
// waits until both are healthy: their starts (importing torch) overlap.
func startModels(t *testing.T, client *http.Client) (blue, green *modelServer) {
	t.Helper()
	blue = startModel(t, "blue", blueVersion, freeAddr(t))
	green = startModel(t, "green", greenVersion, freeAddr(t))
	blue.waitHealthy(t, client)
	green.waitHealthy(t, client)
	return blue, green
}

// gatewayConfig is what a test's switchyard.yaml varies.
type gatewayConfig struct {
	Traffic, Admin string
	Active         string
	Blue, Green    string // backend addresses
	// NoAutoRollback turns off the analysis' automatic rollback (on by
	// default), for a test of the operator's rollback that it would race.
	NoAutoRollback bool
	// RetryNonIdempotent sets both pools' retry_non_idempotent.
	RetryNonIdempotent bool
}

// predictBody is the request the load, the warmup and the reference
// answers all send: one row of 16 numbers.
const predictBody = `{"inputs": [[0.5, -1.25, 2, 0.75, -0.5, 1, 0, 3, -2, 0.25, 1.5, -0.75, 0.125, -3, 2.5, 1]]}`

// yaml renders the config. Probes run every 200ms so that readiness and
// failure show up within a second; warmup sends three real inferences.
func (c gatewayConfig) yaml() string {
	analysis := ""
	if c.NoAutoRollback {
		analysis = "analysis:\n  auto_rollback: false\n"
	}
	return fmt.Sprintf(`# e2e: switchyard in front of two gunicorn model servers on loopback.
listen: %s
admin:
  listen: %s
active: %s
log:
  format: console
  level: info
proxy:
  timeouts:
    connect: 1s
    response_header: 10s
    idle: 1s
health:
  kind: json
  path: /health
  interval: 200ms
  timeout: 200ms
  healthy_threshold: 2
  unhealthy_threshold: 3
warmup:
  method: POST
  path: /predict
  headers: {Content-Type: application/json}
  body: '%s'
  requests: 3
  expect_status: 200
  expect_json_field: outputs
  timeout: 10s
pools:
  blue: {version: %s, backends: [%s], retry_non_idempotent: %t}
  green: {version: %s, backends: [%s], retry_non_idempotent: %t}
switch:
  drain_timeout: 5s
  min_ready: "100%%"
%s`, c.Traffic, c.Admin, c.Active, predictBody, blueVersion, c.Blue, c.RetryNonIdempotent, greenVersion, c.Green,
		c.RetryNonIdempotent, analysis)
}

// gateway is a running `switchyard serve`.
type gateway struct {
	*process
	cfg        gatewayConfig
	configPath string
	client     *http.Client
}

// startGateway writes cfg, on free ports with blue active, and runs the
// built binary on it, then waits until the admin listener answers /healthz.
func startGateway(t *testing.T, client *http.Client, cfg gatewayConfig) *gateway {
	t.Helper()
	cfg.Traffic, cfg.Admin, cfg.Active = freeAddr(t), freeAddr(t), "blue"
	path := filepath.Join(t.TempDir(), "switchyard.yaml")
	require.NoError(t, os.WriteFile(path, []byte(cfg.yaml()), 0o644))
	p := startProcess(t, "switchyard", repoRoot, os.Environ(), switchyardBin, "serve", "--config", path)
	g := &gateway{process: p, cfg: cfg, configPath: path, client: client}
	eventually(t, 30*time.Second, 50*time.Millisecond, "switchyard answers /healthz", func() (bool, string) {
		if !p.alive() {
			t.Fatal("switchyard exited while starting")
		}
		resp, err := client.Get(g.adminURL("/healthz"))
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
	return g
}

func (g *gateway) adminURL(path string) string { return "http://" + g.cfg.Admin + path }

// adminStatus is the part of GET /admin/status the tests read.
type adminStatus struct {
	Generation    uint64                `json:"generation"`
	Active        string                `json:"active"`
	ActiveVersion string                `json:"active_version"`
	Pools         map[string]poolStatus `json:"pools"`
	Switches      []switchRecord        `json:"switches"`
	Config        *struct {
		Generation    int    `json:"generation"`
		LastError     string `json:"last_error"`
		PendingSwitch string `json:"pending_switch"`
	} `json:"config"`
}

type poolStatus struct {
	Version       string          `json:"version"`
	Active        bool            `json:"active"`
	ReadyBackends int             `json:"ready_backends"`
	Backends      []backendStatus `json:"backends"`
}

type backendStatus struct {
	Addr   string         `json:"addr"`
	Ready  bool           `json:"ready"`
	Health *backendHealth `json:"health"`
}

type backendHealth struct {
	Probed      bool   `json:"probed"`
	Healthy     bool   `json:"healthy"`
	Warm        bool   `json:"warm"`
	Warming     bool   `json:"warming"`
	LastError   string `json:"last_error"`
	WarmupError string `json:"warmup_error"`
}

type switchRecord struct {
	From    string `json:"from"`
	To      string `json:"to"`
	Version string `json:"version"`
	Trigger string `json:"trigger"`
	Forced  bool   `json:"forced"`
}

// switchResult is the 200 answer of /admin/switch and /admin/rollback.
type switchResult struct {
	From    string `json:"from"`
	To      string `json:"to"`
	Version string `json:"version"`
	NoOp    bool   `json:"noop"`
	Forced  bool   `json:"forced"`
}

// refusal is the 409 answer of a switch the gate refused.
type refusal struct {
	Error   string `json:"error"`
	Message string `json:"message"`
	Refused struct {
		Color    string            `json:"color"`
		Ready    int               `json:"ready"`
		Need     int               `json:"need"`
		Backends map[string]string `json:"backends"`
		Reason   string            `json:"reason"`
	} `json:"refused"`
}

func (g *gateway) status(t *testing.T) adminStatus {
	t.Helper()
	var st adminStatus
	require.NoError(t, getJSON(g.client, g.adminURL("/admin/status"), &st))
	return st
}

// backend returns the status of the one backend of color.
func (st adminStatus) backend(t *testing.T, color string) backendStatus {
	t.Helper()
	p, ok := st.Pools[color]
	require.True(t, ok, "GET /admin/status has no pool %s", color)
	require.Len(t, p.Backends, 1, "pool %s", color)
	return p.Backends[0]
}

// waitReady waits until every backend of color is ready (healthy and warm).
func (g *gateway) waitReady(t *testing.T, color string) {
	t.Helper()
	eventually(t, 60*time.Second, 100*time.Millisecond, color+" ready in switchyard", func() (bool, string) {
		if !g.alive() {
			t.Fatal("switchyard exited")
		}
		var st adminStatus
		if err := getJSON(g.client, g.adminURL("/admin/status"), &st); err != nil {
			return false, err.Error()
		}
		p := st.Pools[color]
		return len(p.Backends) > 0 && p.ReadyBackends == len(p.Backends), fmt.Sprintf("%+v", p)
	})
}
