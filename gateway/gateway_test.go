package gateway_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/gateway"
	"github.com/switchyard/switchyard/gatewaytest"
	"github.com/switchyard/switchyard/modelsim"
	"github.com/switchyard/switchyard/proxy"
	"github.com/switchyard/switchyard/state"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// backends are one simulated model server per color: blue serves v1,
// green v2.
type backends struct {
	blue, green *modelsim.Server
}

// startBackends starts the model servers until the test ends. greenLoad is
// how long green's model takes to load.
func startBackends(t *testing.T, greenLoad time.Duration) *backends {
	t.Helper()
	return &backends{
		blue:  gatewaytest.StartModel(t, modelsim.Options{Color: "blue", Version: "v1"}),
		green: gatewaytest.StartModel(t, modelsim.Options{Color: "green", Version: "v2", LoadTime: greenLoad}),
	}
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
// bound: gatewaytest.Start binds both to 127.0.0.1:0.
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
		gatewaytest.PredictBody, b.blue.Addr(), def(fc.GreenVersion, "v2"), def(fc.GreenBackend, b.green.Addr()))
}

// startGateway runs the gateway of the config file at path until the test
// ends, logging at Info level.
func startGateway(t *testing.T, path string) *gatewaytest.Gateway {
	t.Helper()
	return gatewaytest.Start(t, gatewaytest.Options{Path: path, Log: zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel))})
}

func lastSwitch(t *testing.T, st gatewaytest.Status) proxy.SwitchRecord {
	t.Helper()
	require.NotEmpty(t, st.Switches, "no switch recorded")
	return st.Switches[len(st.Switches)-1]
}

func TestFileEdit_ActiveSwitchesUnderLoadWithoutAFailedRequest(t *testing.T) {
	b := startBackends(t, 0)
	path := gatewaytest.NewConfigFile(t, b.config(fileConfig{Active: "blue"}))
	g := startGateway(t, path)
	g.WaitReady(t, config.Blue, config.Green)

	l := g.StartLoad(t, 8)
	require.Eventually(t, func() bool { return l.Count(config.Blue) >= 100 }, gatewaytest.WaitFor, gatewaytest.Tick, "load never reached blue")

	gatewaytest.WriteConfig(t, path, b.config(fileConfig{Active: "green"}))

	require.Eventually(t, func() bool { return l.Count(config.Green) >= 200 }, gatewaytest.WaitFor, gatewaytest.Tick, "traffic never moved to green")
	l.Stop()
	assert.Empty(t, l.Failed(), "requests failed during the switch")
	assert.Zero(t, l.Flaps(), "clients were sent back to blue after green answered")
	st := g.Status(t)
	assert.Equal(t, config.Green, st.Active)
	assert.Equal(t, proxy.TriggerFile, lastSwitch(t, st).Trigger)
	assert.Equal(t, 2, st.Config.Generation)
	assert.Empty(t, st.Config.LastError)
	assert.Positive(t, b.green.Predictions())
}

func TestFileEdit_BrokenConfigChangesNothingAndAGoodEditClearsTheError(t *testing.T) {
	b := startBackends(t, 0)
	good := b.config(fileConfig{Active: "blue"})
	path := gatewaytest.NewConfigFile(t, good)
	g := startGateway(t, path)
	// Green is ready, so a broken file that were applied even in part
	// would move traffic.
	g.WaitReady(t, config.Blue, config.Green)
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
			before := g.Status(t)

			gatewaytest.WriteConfig(t, path, test.content)

			st := g.WaitStatus(t, "last_error names the problem", func(st gatewaytest.Status) bool {
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
			g.RequireColor(t, config.Blue)
			ok, err := g.Metric(`switchyard_config_last_reload_successful`)
			require.NoError(t, err)
			assert.Zero(t, ok)

			// A good edit clears the error and is applied.
			gatewaytest.WriteConfig(t, path, b.config(fileConfig{Active: "blue", ResponseHeader: fmt.Sprintf("%ds", 61+i)}))

			st = g.WaitStatus(t, "a good edit is applied", func(st gatewaytest.Status) bool {
				return st.Config.Generation == before.Config.Generation+1
			})
			assert.Empty(t, st.Config.LastError)
			assert.Nil(t, st.Config.LastErrorAt)
			assert.Equal(t, config.Blue, st.Active)
			ok, err = g.Metric(`switchyard_config_last_reload_successful`)
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
	path := gatewaytest.NewConfigFile(t, good)
	g := startGateway(t, path)
	g.WaitReady(t, config.Blue)

	gatewaytest.WriteConfig(t, path, good+"swtich: {}\n")
	g.WaitStatus(t, "the broken edit is reported", func(st gatewaytest.Status) bool { return st.Config.LastError != "" })
	gatewaytest.WriteConfig(t, path, good)
	g.WaitStatus(t, "the revert is read", func(gatewaytest.Status) bool {
		n, err := g.Metric(`switchyard_config_reloads_total{result="unchanged"}`)
		return err == nil && n >= 1
	})

	st := g.Status(t)
	assert.Empty(t, st.Config.LastError, "the good file is back, yet the error stays")
	ok, err := g.Metric(`switchyard_config_last_reload_successful`)
	require.NoError(t, err)
	assert.Equal(t, 1.0, ok)
}

func TestAdminReload_AppliesAnEditOnceEvenWhenTheWatcherAlsoSeesIt(t *testing.T) {
	b := startBackends(t, 0)
	path := gatewaytest.NewConfigFile(t, b.config(fileConfig{Active: "blue"}))
	g := startGateway(t, path)
	g.WaitReady(t, config.Blue, config.Green)

	gatewaytest.WriteConfig(t, path, b.config(fileConfig{Active: "green", GreenVersion: "v2.1"}))
	resp, body := g.Post(t, "/admin/reload", "", nil)

	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var out struct {
		Status string               `json:"status"`
		Config gateway.ConfigStatus `json:"config"`
	}
	require.NoError(t, json.Unmarshal(body, &out))
	assert.Equal(t, "reloaded", out.Status)
	assert.Equal(t, 2, out.Config.Generation)
	assert.Empty(t, out.Config.LastError)
	// Applied by the time the call returns.
	st := g.Status(t)
	assert.Equal(t, config.Green, st.Active)
	assert.Equal(t, "v2.1", st.Pools["green"].Version)
	assert.Equal(t, resp.Header.Get("ETag"), st.ETag)
	g.RequireColor(t, config.Green)

	// The watcher reads the same edit and finds nothing new to apply.
	g.WaitStatus(t, "the watcher read the edit", func(gatewaytest.Status) bool {
		n, err := g.Metric(`switchyard_config_reloads_total{result="unchanged"}`)
		return err == nil && n == 1
	})
	applied, err := g.Metric(`switchyard_config_reloads_total{result="ok"}`)
	require.NoError(t, err)
	assert.Equal(t, 1.0, applied)
	st = g.Status(t)
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
	path := gatewaytest.NewConfigFile(t, good)
	g := startGateway(t, path)
	g.WaitReady(t, config.Blue, config.Green)

	gatewaytest.WriteConfig(t, path, strings.Replace(good, "active: blue\n", "active: teal\n", 1))
	resp, body := g.Post(t, "/admin/reload", "", nil)

	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, "%s", body)
	assert.Contains(t, string(body), `active: \"teal\" is not a color`)
	st := g.Status(t)
	assert.Equal(t, 1, st.Config.Generation)
	assert.Contains(t, st.Config.LastError, `line 4: active: "teal" is not a color`)
	assert.Equal(t, config.Blue, st.Active)
	g.RequireColor(t, config.Blue)
}

func TestFileEdit_UnchangedActiveDoesNotUndoAnAdminSwitch(t *testing.T) {
	b := startBackends(t, 0)
	path := gatewaytest.NewConfigFile(t, b.config(fileConfig{Active: "blue"}))
	g := startGateway(t, path)
	g.WaitReady(t, config.Blue, config.Green)
	g.Switch(t, config.Green)

	// The file still says blue; only a timeout changes.
	gatewaytest.WriteConfig(t, path, b.config(fileConfig{Active: "blue", ResponseHeader: "30s"}))

	st := g.WaitStatus(t, "the edit is applied", func(st gatewaytest.Status) bool { return st.Config.Generation == 2 })
	assert.Empty(t, st.Config.LastError)
	assert.Equal(t, config.Green, st.Active, "the file event undid the admin switch")
	assert.Equal(t, proxy.TriggerAdmin, lastSwitch(t, st).Trigger)
	g.RequireColor(t, config.Green)
}

func TestFileEdit_ListenChangeIsReportedAndTheRestApplies(t *testing.T) {
	b := startBackends(t, 0)
	path := gatewaytest.NewConfigFile(t, b.config(fileConfig{Active: "blue"}))
	g := startGateway(t, path)
	g.WaitReady(t, config.Blue)

	gatewaytest.WriteConfig(t, path, b.config(fileConfig{Active: "blue", Listen: "127.0.0.1:18181", GreenVersion: "v2-rc2"}))

	st := g.WaitStatus(t, "the edit is applied", func(st gatewaytest.Status) bool { return st.Config.Generation == 2 })
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
	g.RequireColor(t, config.Blue)
}

func TestAdminSwitch_IfMatchRefusesAStaleGeneration(t *testing.T) {
	b := startBackends(t, 0)
	path := gatewaytest.NewConfigFile(t, b.config(fileConfig{Active: "blue"}))
	g := startGateway(t, path)
	g.WaitReady(t, config.Blue, config.Green)
	ifMatch := func(etag string) http.Header { return http.Header{"If-Match": {etag}} }

	first := g.Status(t).ETag
	require.NotEmpty(t, first)
	resp, body := g.Post(t, "/admin/switch", `{"to": "green"}`, ifMatch(first))
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	second := resp.Header.Get("ETag")
	require.NotEqual(t, first, second)

	// Someone else's view from before the switch is stale.
	resp, body = g.Post(t, "/admin/switch", `{"to": "blue"}`, ifMatch(first))
	assert.Equal(t, http.StatusPreconditionFailed, resp.StatusCode, "%s", body)
	assert.Equal(t, second, resp.Header.Get("ETag"))
	assert.Equal(t, config.Green, g.Status(t).Active)

	// A config reload moves the generation too.
	gatewaytest.WriteConfig(t, path, b.config(fileConfig{Active: "blue", ResponseHeader: "30s"}))
	third := g.WaitStatus(t, "the edit is applied", func(st gatewaytest.Status) bool { return st.Config.Generation == 2 }).ETag
	require.NotEqual(t, second, third)
	resp, body = g.Post(t, "/admin/switch", `{"to": "blue"}`, ifMatch(second))
	assert.Equal(t, http.StatusPreconditionFailed, resp.StatusCode, "%s", body)
	assert.Equal(t, config.Green, g.Status(t).Active)

	resp, body = g.Post(t, "/admin/switch", `{"to": "blue"}`, ifMatch(third))
	assert.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	assert.Equal(t, config.Blue, g.Status(t).Active)
	g.RequireColor(t, config.Blue)
}

func TestFileEdit_SwitchToAGreenStillLoadingWaitsThenGoesThrough(t *testing.T) {
	b := startBackends(t, 2*time.Second)
	path := gatewaytest.NewConfigFile(t, b.config(fileConfig{Active: "blue"}))
	g := startGateway(t, path)
	g.WaitReady(t, config.Blue)
	// Start green's load time over, so it is surely not ready when the
	// edit is applied below.
	b.green.Restart()

	gatewaytest.WriteConfig(t, path, b.config(fileConfig{Active: "green"}))
	resp, body := g.Post(t, "/admin/reload", "", nil)

	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	st := g.Status(t)
	assert.Equal(t, config.Blue, st.Active, "switched to a pool that is not ready")
	assert.Contains(t, st.Config.PendingSwitch, "to green")
	assert.Contains(t, st.Config.PendingSwitch, "refused")
	g.RequireColor(t, config.Blue)

	st = g.WaitStatus(t, "the pending switch goes through", func(st gatewaytest.Status) bool { return st.Active == config.Green })
	assert.Empty(t, st.Config.PendingSwitch)
	assert.Equal(t, proxy.TriggerFile, lastSwitch(t, st).Trigger)
	assert.False(t, lastSwitch(t, st).Forced)
	g.RequireColor(t, config.Green)
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
				gatewaytest.WriteConfig(t, path, b.config(fileConfig{Active: "blue", StateDir: stateDir, ResponseHeader: "30s"}))
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
			path := gatewaytest.NewConfigFile(t, b.config(fileConfig{Active: "blue", StateDir: stateDir}))
			if test.before != nil {
				test.before(t, stateDir)
			}
			if test.between != nil {
				first := startGateway(t, path)
				first.WaitReady(t, config.Blue, config.Green)
				first.Switch(t, config.Green)
				first.Stop()
				test.between(t, b, path, stateDir)
			}

			g := startGateway(t, path)

			assert.Equal(t, test.want, g.Status(t).Active)
			g.WaitReady(t, test.want)
			g.RequireColor(t, test.want)
			// The state file is usable again after the next switch.
			g.WaitReady(t, test.want.Other())
			g.Switch(t, test.want.Other())
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
	path := gatewaytest.NewConfigFile(t, b.config(fileConfig{Active: "blue", StateDir: stateDir}))
	first := startGateway(t, path)
	first.WaitReady(t, config.Blue, config.Green)
	first.Switch(t, config.Green)
	gatewaytest.WriteConfig(t, path, b.config(fileConfig{Active: "blue", StateDir: stateDir, ResponseHeader: "30s"}))
	st := first.WaitStatus(t, "the edit is applied", func(st gatewaytest.Status) bool { return st.Config.Generation == 2 })
	require.Equal(t, config.Green, st.Active)
	first.Stop()
	// File times come from a coarse clock that may lag the switch's
	// time.Now by a few ms: date the edit clearly after the switch.
	later := time.Now().Add(time.Second)
	require.NoError(t, os.Chtimes(path, later, later))

	g := startGateway(t, path)

	assert.Equal(t, config.Green, g.Status(t).Active, "the restart undid the admin switch")
}

func TestRun_StopsWhenTheContextIsCancelled(t *testing.T) {
	b := startBackends(t, 0)
	path := gatewaytest.NewConfigFile(t, b.config(fileConfig{Active: "blue"}))
	g := startGateway(t, path)
	g.WaitReady(t, config.Blue)
	g.RequireColor(t, config.Blue)

	g.Stop()

	_, err := g.Client.Get(g.Admin + "/healthz")
	assert.Error(t, err, "the admin listener is still open")
	_, err = g.Client.Post(g.Traffic+"/predict", "application/json", bytes.NewReader([]byte(gatewaytest.PredictBody)))
	assert.Error(t, err, "the traffic listener is still open")
}
