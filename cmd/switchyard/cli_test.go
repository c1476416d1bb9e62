package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/admin"
	"github.com/switchyard/switchyard/analysis"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/gatewaytest"
	"github.com/switchyard/switchyard/health"
	"github.com/switchyard/switchyard/modelsim"
	"github.com/switchyard/switchyard/proxy"
)

// result is what one command did.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// runEnv runs an operator command with env as its whole environment, with
// short retry and poll periods.
func runEnv(t *testing.T, ctx context.Context, env map[string]string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	c := &cli{stdout: &out, stderr: &errOut, getenv: func(k string) string { return env[k] }, now: time.Now,
		poll: 20 * time.Millisecond, retryWait: 10 * time.Millisecond}
	run := c.command(args[0])
	require.NotNil(t, run, "no operator command %q", args[0])
	code := run(ctx, args[1:])
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// runAt runs an operator command against the admin API at admin.
func runAt(t *testing.T, admin string, args ...string) result {
	t.Helper()
	return runEnv(t, context.Background(), nil, append(args, "--admin", admin)...)
}

// testGateway is a gateway run in process with one simulated model server
// per color: blue serves v1, green v2.
type testGateway struct {
	*gatewaytest.Gateway
	blue, green *modelsim.Server
	configPath  string // "" unless gatewayOptions.fromFile
}

type gatewayOptions struct {
	// greenDown keeps green unhealthy, so a switch to it is refused.
	greenDown bool
	// token, when set, is written to admin.token_file.
	token string
	// fromFile starts the gateway from a config file, so reload works.
	fromFile bool
	// drainTimeout is switch.drain_timeout; default 30s.
	drainTimeout time.Duration
	// blueLatency is added to every blue prediction.
	blueLatency time.Duration
	// blueHealth is merged into blue's health answers (GPU fields).
	blueHealth map[string]any
}

// startGateway runs a gateway until the test ends and waits until every
// backend that can be ready is.
func startGateway(t *testing.T, o gatewayOptions) *testGateway {
	t.Helper()
	blue := gatewaytest.StartModel(t, modelsim.Options{Color: "blue", Version: "v1", Latency: o.blueLatency})
	if o.blueHealth != nil {
		blue.SetHealthFields(o.blueHealth)
	}
	green := gatewaytest.StartModel(t, modelsim.Options{Color: "green", Version: "v2"})
	green.SetDown(o.greenDown)

	tokenFile := ""
	if o.token != "" {
		tokenFile = filepath.Join(t.TempDir(), "admin.token")
		require.NoError(t, os.WriteFile(tokenFile, []byte(o.token+"\n"), 0o600))
	}
	drain := o.drainTimeout
	if drain == 0 {
		drain = 30 * time.Second
	}
	// The listeners in the text are never bound: gatewaytest.Start binds
	// both to 127.0.0.1:0.
	text := fmt.Sprintf(`listen: 127.0.0.1:18080
admin: {listen: 127.0.0.1:19901, token_file: %q}
active: blue
log: {format: console, level: warn}
health: {interval: 50ms, timeout: 50ms, healthy_threshold: 1, unhealthy_threshold: 1}
warmup:
  path: /predict
  body: '%s'
  headers: {Content-Type: application/json}
  requests: 1
pools:
  blue:  {version: v1, backends: [%s]}
  green: {version: v2, backends: [%s]}
switch: {drain_timeout: %s}
`, tokenFile, gatewaytest.PredictBody, blue.Addr(), green.Addr(), drain)
	g := &testGateway{blue: blue, green: green}
	opts := gatewaytest.Options{Config: text}
	if o.fromFile {
		g.configPath = gatewaytest.NewConfigFile(t, text)
		opts = gatewaytest.Options{Path: g.configPath}
	}
	g.Gateway = gatewaytest.Start(t, opts)
	g.SetToken(o.token)
	ready := []config.Color{config.Blue}
	if !o.greenDown {
		ready = append(ready, config.Green)
	}
	g.WaitReady(t, ready...)
	return g
}

// predictInBackground sends one prediction through the traffic port on a
// goroutine of its own; the returned channel yields its error.
func (g *testGateway) predictInBackground() <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := g.Predict()
		done <- err
	}()
	return done
}

func TestStatus_TableShowsBothColorsAndBackends(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOptions{blueHealth: map[string]any{
		"gpu_memory_used_bytes": 3.1 * (1 << 30), "gpu_memory_total_bytes": 80.0 * (1 << 30),
	}})
	g.WaitStatus(t, "blue's GPU memory reported", func(st gatewaytest.Status) bool {
		h := st.Pools["blue"].Backends[0].Health
		return h != nil && h.Report.GPUMemTotal != nil
	})

	r := runAt(t, g.Admin, "status")
	require.Equal(t, exitOK, r.code, r)
	for _, want := range []string{
		"active blue (v1), generation 1",
		"blue (v1)  ACTIVE  in-flight 0  ready 1/1",
		"green (v2)  standby  in-flight 0  ready 1/1",
		g.blue.Addr(), g.green.Addr(), "3.1/80 GiB",
	} {
		assert.Contains(t, r.stdout, want)
	}
	assert.NotContains(t, r.stdout, "traffic:", "the gateway reports no split")
	assert.Empty(t, r.stderr)
}

func TestStatus_JSONIsTheRawStatus(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOptions{})

	r := runAt(t, g.Admin, "status", "--json")
	require.Equal(t, exitOK, r.code, r)
	var doc map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &doc), r.stdout)
	assert.Equal(t, "blue", doc["active"])
	assert.Contains(t, r.stdout, "\n  \"active\"", "pretty-printed")
}

func TestStatus_WatchRefreshesUntilCount(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOptions{})

	r := runAt(t, g.Admin, "status", "--watch", "--interval", "10ms", "--count", "3")
	require.Equal(t, exitOK, r.code, r)
	assert.Equal(t, 3, strings.Count(r.stdout, "\x1b[H\x1b[2J"), "one screen clear per refresh")
	assert.Equal(t, 3, strings.Count(r.stdout, "active blue (v1)"))

	r = runAt(t, g.Admin, "status", "--watch", "--json", "--interval", "10ms", "--count", "2")
	require.Equal(t, exitOK, r.code, r)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	require.Len(t, lines, 2, r.stdout)
	for _, l := range lines {
		var doc map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &doc))
		assert.Equal(t, "blue", doc["active"])
	}
}

func TestStatus_WatchStopsWhenInterrupted(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()

	r := runEnv(t, ctx, nil, "status", "--watch", "--interval", "20ms", "--admin", g.Admin)
	assert.Equal(t, exitOK, r.code, r)
	assert.GreaterOrEqual(t, strings.Count(r.stdout, "active blue"), 2)
}

func TestSwitch_MovesTrafficAndSaysSo(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOptions{})

	r := runAt(t, g.Admin, "switch", "green")
	require.Equal(t, exitOK, r.code, r)
	assert.Regexp(t, `^switched blue \(v1\) -> green \(v2\) in \S+; nothing in flight on blue \(generation 2\)\n$`, r.stdout)
	assert.Equal(t, config.Green, g.Status(t).Active)

	r = runAt(t, g.Admin, "switch", "green")
	require.Equal(t, exitOK, r.code, r)
	assert.Equal(t, "green (v2) is already active; nothing changed\n", r.stdout)

	r = runAt(t, g.Admin, "switch", "toggle")
	require.Equal(t, exitOK, r.code, r)
	assert.Contains(t, r.stdout, "switched green (v2) -> blue (v1)")
}

func TestSwitch_IfMatchRefusesAStaleGeneration(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOptions{})

	r := runAt(t, g.Admin, "switch", "green", "--if-match", "7")
	assert.Equal(t, exitRefused, r.code, r)
	assert.Contains(t, r.stderr, "generation 1 now")

	r = runAt(t, g.Admin, "switch", "--if-match", `"1"`, "green")
	assert.Equal(t, exitOK, r.code, r)
}

func TestSwitch_RefusedWhenGreenIsDown(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOptions{greenDown: true})

	r := runAt(t, g.Admin, "switch", "green")
	assert.Equal(t, exitRefused, r.code, r)
	assert.Contains(t, r.stderr, "switchyard: switch to green refused: 0 of 1 backends ready")
	assert.Contains(t, r.stderr, "  "+g.green.Addr()+": ", "the reason per backend")
	assert.Contains(t, r.stderr, "--force")
	assert.Empty(t, r.stdout)
	assert.Equal(t, config.Blue, g.Status(t).Active, "nothing changed")

	r = runAt(t, g.Admin, "switch", "green", "--force")
	assert.Equal(t, exitOK, r.code, r)
	assert.Contains(t, r.stdout, "forced past the readiness gate")
}

func TestSwitch_WaitFollowsTheDrainToTheEnd(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOptions{blueLatency: 800 * time.Millisecond})
	req := g.predictInBackground()
	g.WaitStatus(t, "a request in flight on blue", func(st gatewaytest.Status) bool { return st.Pools["blue"].Inflight == 1 })

	r := runAt(t, g.Admin, "switch", "green", "--wait")
	require.Equal(t, exitOK, r.code, r)
	assert.Contains(t, r.stdout, "; draining 1 request on blue")
	assert.Contains(t, r.stdout, "draining blue: 1 in flight, ")
	assert.Regexp(t, `blue \(v1\) drained in [0-9.]+s; 1 request finished\n$`, r.stdout)
	assert.NoError(t, <-req, "the drained request did not finish normally")
}

func TestSwitch_WaitReportsStragglersWhenTheDrainTimesOut(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOptions{blueLatency: 1500 * time.Millisecond, drainTimeout: 100 * time.Millisecond})
	req := g.predictInBackground()
	defer func() { <-req }()
	g.WaitStatus(t, "a request in flight on blue", func(st gatewaytest.Status) bool { return st.Pools["blue"].Inflight == 1 })

	r := runAt(t, g.Admin, "switch", "green", "--wait")
	assert.Equal(t, exitRefused, r.code, r)
	assert.Contains(t, r.stderr, "the drain of blue (v1) timed out after")
	assert.Contains(t, r.stderr, "1 request still running on blue")
	assert.Contains(t, r.stderr, "switch.drain_timeout")
}

func TestRollback(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOptions{})

	r := runAt(t, g.Admin, "rollback")
	assert.Equal(t, exitRefused, r.code, r)
	assert.Contains(t, r.stderr, "switchyard: no earlier switch to roll back")

	require.Equal(t, exitOK, runAt(t, g.Admin, "switch", "green").code)
	r = runAt(t, g.Admin, "rollback", "--wait")
	require.Equal(t, exitOK, r.code, r)
	assert.Contains(t, r.stdout, "rolled back green (v2) -> blue (v1)")
	assert.Contains(t, r.stdout, "green (v2) drained in")
	assert.Equal(t, config.Blue, g.Status(t).Active)
}

func TestWarmup(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOptions{})

	r := runAt(t, g.Admin, "warmup", "green")
	assert.Equal(t, exitOK, r.code, r)
	assert.Contains(t, r.stdout, "warming green again")
}

func TestReload(t *testing.T) {
	t.Parallel()
	t.Run("without a config file", func(t *testing.T) {
		t.Parallel()
		g := startGateway(t, gatewayOptions{})
		r := runAt(t, g.Admin, "reload")
		assert.Equal(t, exitRefused, r.code, r)
		assert.Contains(t, r.stderr, "switchyard: the gateway was not started from a config file")
	})
	t.Run("from a config file", func(t *testing.T) {
		t.Parallel()
		g := startGateway(t, gatewayOptions{fromFile: true})
		r := runAt(t, g.Admin, "reload")
		require.Equal(t, exitOK, r.code, r)
		assert.Contains(t, r.stdout, "reloaded "+g.configPath+": config generation 1")

		require.NoError(t, os.WriteFile(g.configPath, []byte("active: purple\n"), 0o644))
		r = runAt(t, g.Admin, "reload")
		assert.Equal(t, exitRefused, r.code, r)
		assert.Contains(t, r.stderr, "the config was rejected; the running one stays in force")
		assert.Contains(t, r.stderr, "purple")

		r = runAt(t, g.Admin, "status")
		require.Equal(t, exitOK, r.code, r)
		assert.Contains(t, r.stdout, "config: "+g.configPath)
		assert.Contains(t, r.stdout, "last error (the running config stays in force)")
	})
}

func TestToken(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOptions{token: "s3cret"})
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600))
	wrongFile := filepath.Join(t.TempDir(), "wrong")
	require.NoError(t, os.WriteFile(wrongFile, []byte("nope"), 0o600))

	testCases := []struct {
		desc   string
		env    map[string]string
		args   []string
		code   int
		stderr string
	}{
		{desc: "no token", code: exitUsage, stderr: "needs a token (401); pass --token-file FILE"},
		{desc: "wrong token", args: []string{"--token", "nope"}, code: exitUsage, stderr: "did not accept the token (401)"},
		{desc: "--token", args: []string{"--token", "s3cret"}, code: exitOK},
		{desc: "SWITCHYARD_TOKEN", env: map[string]string{"SWITCHYARD_TOKEN": "s3cret"}, code: exitOK},
		{desc: "--token-file", args: []string{"--token-file", tokenFile}, code: exitOK},
		{desc: "--token-file beats SWITCHYARD_TOKEN", env: map[string]string{"SWITCHYARD_TOKEN": "nope"},
			args: []string{"--token-file", tokenFile}, code: exitOK},
		{desc: "wrong --token-file", args: []string{"--token-file", wrongFile}, code: exitUsage, stderr: "did not accept the token"},
		{desc: "missing --token-file", args: []string{"--token-file", tokenFile + ".missing"}, code: exitUsage, stderr: "reading --token-file"},
		{desc: "both flags", args: []string{"--token", "s3cret", "--token-file", tokenFile}, code: exitUsage, stderr: "pass one"},
		{desc: "SWITCHYARD_ADMIN", env: map[string]string{"SWITCHYARD_ADMIN": g.Admin, "SWITCHYARD_TOKEN": "s3cret"}, code: exitOK},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"status"}, test.args...)
			if test.env["SWITCHYARD_ADMIN"] == "" {
				args = append(args, "--admin", g.Admin)
			}
			r := runEnv(t, context.Background(), test.env, args...)
			assert.Equal(t, test.code, r.code, r)
			assert.Contains(t, r.stderr, test.stderr)
			if test.code == exitOK {
				assert.Contains(t, r.stdout, "active blue")
			}
		})
	}
}

// TestRunCLI_ReadsTheEnvironment goes through runCLI, as main does, with
// the token and address in the real environment.
func TestRunCLI_ReadsTheEnvironment(t *testing.T) {
	g := startGateway(t, gatewayOptions{token: "s3cret"})
	t.Setenv("SWITCHYARD_ADMIN", g.Admin)
	t.Setenv("SWITCHYARD_TOKEN", "s3cret")

	var out, errOut bytes.Buffer
	code, ok := runCLI("status", nil, &out, &errOut)
	require.True(t, ok)
	assert.Equal(t, exitOK, code, errOut.String())
	assert.Contains(t, out.String(), "active blue (v1)")

	_, ok = runCLI("serve", nil, &out, &errOut)
	assert.False(t, ok, "serve is main's, not the CLI's")
}

func TestUnreachableAdmin(t *testing.T) {
	t.Parallel()
	admin := "http://" + gatewaytest.UnusedAddr(t)

	r := runAt(t, admin, "status")
	assert.Equal(t, exitUsage, r.code, r)
	assert.Equal(t, "switchyard: cannot reach the admin API at "+admin+
		" (connection refused); is the gateway running? set --admin or SWITCHYARD_ADMIN\n", r.stderr)

	r = runAt(t, admin, "switch", "toggle")
	assert.Equal(t, exitUsage, r.code, r)
	assert.Contains(t, r.stderr, "cannot reach the admin API")
}

func TestAdminPointingAtTheTrafficPort(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOptions{})

	r := runAt(t, g.Traffic, "status")
	assert.Equal(t, exitUsage, r.code, r)
	assert.Contains(t, r.stderr, "is --admin the admin listener (admin.listen), not the traffic port?")
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	admin := "http://" + gatewaytest.UnusedAddr(t) // nothing may be sent
	testCases := []struct {
		desc   string
		args   []string
		stderr string
	}{
		{desc: "switch to an unknown color", args: []string{"switch", "red"}, stderr: `unknown color "red" (want blue, green or toggle)`},
		{desc: "switch without a color", args: []string{"switch"}, stderr: "want one color"},
		{desc: "switch to two colors", args: []string{"switch", "blue", "green"}, stderr: "want one color"},
		{desc: "bad --if-match", args: []string{"switch", "green", "--if-match", "x"}, stderr: "is not a generation"},
		{desc: "unknown flag", args: []string{"switch", "green", "--frce"}, stderr: "flag provided but not defined: -frce"},
		{desc: "traffic without a split", args: []string{"traffic"}, stderr: "want COLOR=PERCENT"},
		{desc: "traffic percent not a number", args: []string{"traffic", "green=abc"}, stderr: `"green=abc": the percent must be a number from 0 to 100`},
		{desc: "traffic percent above 100", args: []string{"traffic", "green=101"}, stderr: "from 0 to 100"},
		{desc: "traffic without =", args: []string{"traffic", "green"}, stderr: "is not COLOR=PERCENT"},
		{desc: "traffic to an unknown color", args: []string{"traffic", "red=5"}, stderr: `unknown color "red"`},
		{desc: "traffic to both colors", args: []string{"traffic", "blue=95", "green=5"}, stderr: "give one color's share"},
		{desc: "mirror without a percent", args: []string{"mirror", "green"}, stderr: "want COLOR PERCENT"},
		{desc: "mirror 0", args: []string{"mirror", "green", "0"}, stderr: "mirror off stops mirroring"},
		{desc: "mirror to an unknown color", args: []string{"mirror", "red", "1"}, stderr: `unknown color "red"`},
		{desc: "warmup without a color", args: []string{"warmup"}, stderr: "want one color: blue or green"},
		{desc: "warmup toggle", args: []string{"warmup", "toggle"}, stderr: `unknown color "toggle"`},
		{desc: "status with an argument", args: []string{"status", "blue"}, stderr: `unexpected argument "blue"`},
		{desc: "status --interval 0", args: []string{"status", "--watch", "--interval", "0s"}, stderr: "--interval must be positive"},
		{desc: "rollback with an argument", args: []string{"rollback", "green"}, stderr: `unexpected argument "green"`},
		{desc: "--timeout 0", args: []string{"reload", "--timeout", "0s"}, stderr: "--timeout must be positive"},
		{desc: "--admin not a URL", args: []string{"reload", "--admin", "ftp://x"}, stderr: "is not an admin API URL"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			args := append([]string{test.args[0], "--admin", admin}, test.args[1:]...)
			r := runEnv(t, context.Background(), nil, args...)
			assert.Equal(t, exitUsage, r.code, r)
			assert.Contains(t, r.stderr, test.stderr)
			assert.Contains(t, r.stderr, "Usage: switchyard "+test.args[0])
			assert.NotContains(t, r.stderr, "cannot reach", "a usage error is found before any request")
			assert.Empty(t, r.stdout)
		})
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	r := runEnv(t, context.Background(), nil, "switch", "-h")
	assert.Equal(t, exitOK, r.code, r)
	assert.Contains(t, r.stdout, "switchyard switch blue|green|toggle")
	assert.Contains(t, r.stdout, "--token-file FILE")
	assert.NotContains(t, cliUsage+r.stdout, "--count", "a test-only flag stays hidden")
}

// fakeAdmin is an admin API that answers with canned replies and records
// what it was sent.
type fakeAdmin struct {
	*httptest.Server
	mu       sync.Mutex
	bodies   map[string][]string // "METHOD /path" -> bodies, in order
	auth     []string
	handlers map[string]func(n int) (int, string) // n counts calls, from 1
}

func newFakeAdmin(t *testing.T, handlers map[string]func(n int) (int, string)) *fakeAdmin {
	t.Helper()
	f := &fakeAdmin{bodies: map[string][]string{}, handlers: handlers}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.Method + " " + r.URL.Path
		data, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.bodies[key] = append(f.bodies[key], string(data))
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		n := len(f.bodies[key])
		f.mu.Unlock()
		h, ok := f.handlers[key]
		if !ok {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"error": "not_found", "message": "no admin endpoint"}`)
			return
		}
		status, body := h(n)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fakeAdmin) sent(key string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.bodies[key]...)
}

func always(status int, body string) func(int) (int, string) {
	return func(int) (int, string) { return status, body }
}

const trafficReply = `{"weights": {"blue": 95, "green": 5}, "sticky_header": "", "mirror": null, "generation": 3}`

func TestTraffic_SetsTheSplit(t *testing.T) {
	t.Parallel()
	f := newFakeAdmin(t, map[string]func(int) (int, string){"PUT /admin/traffic": always(http.StatusOK, trafficReply)})

	r := runEnv(t, context.Background(), map[string]string{"SWITCHYARD_TOKEN": "tok"}, "traffic", "green=5", "--admin", f.URL)
	require.Equal(t, exitOK, r.code, r)
	assert.Equal(t, "traffic: blue 95%, green 5% (generation 3)\nmirror: off\n", r.stdout)
	require.Equal(t, []string{`{"green":5}`}, f.sent("PUT /admin/traffic"))
	assert.Equal(t, []string{"Bearer tok"}, f.auth)

	r = runAt(t, f.URL, "traffic", "green=0.5%", "--sticky-header", "X-User")
	require.Equal(t, exitOK, r.code, r)
	r = runAt(t, f.URL, "traffic", "--sticky-header", "")
	require.Equal(t, exitOK, r.code, r)
	sent := f.sent("PUT /admin/traffic")
	require.Len(t, sent, 3)
	assert.JSONEq(t, `{"green": 0.5, "sticky_header": "X-User"}`, sent[1])
	assert.JSONEq(t, `{"sticky_header": ""}`, sent[2])
}

func TestMirror(t *testing.T) {
	t.Parallel()
	f := newFakeAdmin(t, map[string]func(int) (int, string){"PUT /admin/traffic": func(n int) (int, string) {
		if n == 1 {
			return http.StatusOK, `{"weights": {"blue": 100, "green": 0}, "sticky_header": "X-User", "mirror": {"to": "green", "percent": 1}, "generation": 4}`
		}
		return http.StatusOK, `{"weights": {"blue": 100, "green": 0}, "sticky_header": "X-User", "mirror": null, "generation": 5}`
	}})

	r := runAt(t, f.URL, "mirror", "green", "1")
	require.Equal(t, exitOK, r.code, r)
	assert.Equal(t, "traffic: blue 100%, green 0% (sticky on header X-User) (generation 4)\nmirror: 1% of requests copied to green\n", r.stdout)

	r = runAt(t, f.URL, "mirror", "off")
	require.Equal(t, exitOK, r.code, r)
	assert.Contains(t, r.stdout, "mirror: off")
	sent := f.sent("PUT /admin/traffic")
	require.Len(t, sent, 2)
	assert.JSONEq(t, `{"mirror": {"to": "green", "percent": 1}}`, sent[0])
	assert.JSONEq(t, `{"mirror": null}`, sent[1])
}

func TestTrafficMirrorPromote_UnsupportedByTheGateway(t *testing.T) {
	t.Parallel()
	f := newFakeAdmin(t, nil) // an older gateway: every call is its catch-all 404
	testCases := []struct {
		desc string
		args []string
		call string
	}{
		{desc: "traffic", args: []string{"traffic", "green=5"}, call: "PUT /admin/traffic"},
		{desc: "mirror", args: []string{"mirror", "green", "1"}, call: "PUT /admin/traffic"},
		{desc: "promote", args: []string{"promote"}, call: "POST /admin/promote"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			r := runAt(t, f.URL, test.args...)
			assert.Equal(t, exitUsage, r.code, r)
			assert.Equal(t, "switchyard: the gateway does not support "+test.call+" (404); upgrade it\n", r.stderr)
		})
	}
}

// TestCanary_AgainstTheGateway drives the canary commands against a real
// gateway: the split, the mirror, and a promotion the analysis refuses
// for want of requests.
func TestCanary_AgainstTheGateway(t *testing.T) {
	t.Parallel()
	g := startGateway(t, gatewayOptions{})

	r := runAt(t, g.Admin, "traffic", "green=5")
	require.Equal(t, exitOK, r.code, r)
	assert.Contains(t, r.stdout, "traffic: blue 95%, green 5% (generation ")

	r = runAt(t, g.Admin, "traffic", "blue=5")
	assert.Equal(t, exitRefused, r.code, r)
	assert.Contains(t, r.stderr, "blue is active")

	r = runAt(t, g.Admin, "mirror", "green", "1")
	require.Equal(t, exitOK, r.code, r)
	assert.Contains(t, r.stdout, "mirror: 1% of requests copied to green")

	r = runAt(t, g.Admin, "status")
	require.Equal(t, exitOK, r.code, r)
	assert.Contains(t, r.stdout, "traffic: blue 95%, green 5%\nmirror: 1% of requests copied to green\n")

	r = runAt(t, g.Admin, "promote")
	assert.Equal(t, exitRefused, r.code, r)
	assert.Contains(t, r.stderr, "switchyard: not promoted: ")
	assert.Contains(t, r.stderr, "not enough requests")
	assert.Equal(t, config.Blue, g.Status(t).Active, "a refused promotion changes nothing")

	require.Equal(t, exitOK, runAt(t, g.Admin, "mirror", "off").code)
	r = runAt(t, g.Admin, "traffic", "green=0")
	require.Equal(t, exitOK, r.code, r)
	assert.Contains(t, r.stdout, "traffic: blue 100%, green 0%")
	r = runAt(t, g.Admin, "status")
	assert.NotContains(t, r.stdout, "traffic:", "nothing to show once the canary ended")
}

func TestPromote(t *testing.T) {
	t.Parallel()
	switched := `{"from": "blue", "to": "green", "version": "v2.7", "noop": false, "forced": false, "swap_ns": 139, "generation": 2,
		"drain": {"color": "blue", "version": "v2.6", "state": "draining", "inflight_at_swap": 12, "inflight": 12, "seconds": 0}}`
	verdict := `{"phase": "canary", "candidate": "green", "baseline": "blue", "enough": true, "pass": %v,
		"candidate_stats": {"requests": 412, "errors": 37, "p99_ns": 120000000},
		"baseline_stats": {"requests": 8000, "errors": 40, "p99_ns": 80000000}, "reasons": %s}`
	testCases := []struct {
		desc   string
		status int
		reply  string
		code   int
		stdout string
		stderr string
	}{
		{desc: "a switch result", status: http.StatusOK, reply: switched, code: exitOK,
			stdout: "promoted blue (v2.6) -> green (v2.7) in 139ns; draining 12 requests on blue (generation 2)\n"},
		{desc: "a switch result and the verdict", status: http.StatusOK,
			reply: `{"switch": ` + switched + `, "verdict": ` + fmt.Sprintf(verdict, true, "[]") + `}`, code: exitOK,
			stdout: "promoted blue (v2.6) -> green (v2.7) in 139ns; draining 12 requests on blue (generation 2)\n" +
				"canary of green against blue: passing\n" +
				"  green: 412 requests, 37 errors (9%), p99 120ms\n" +
				"  blue: 8000 requests, 40 errors (0.5%), p99 80ms\n"},
		{desc: "analysis failed", status: http.StatusConflict,
			reply: `{"error": "refused", "message": "analysis: promotion of green refused: error ratio 0.09 above 0.05",
				"verdict": ` + fmt.Sprintf(verdict, false, `["error ratio 0.09 above max_error_ratio 0.05"]`) + `}`,
			code: exitRefused,
			stderr: "switchyard: not promoted: promotion of green refused: error ratio 0.09 above 0.05\n" +
				"  verdict:\n" +
				"    canary of green against blue: failing\n" +
				"      green: 412 requests, 37 errors (9%), p99 120ms\n" +
				"      blue: 8000 requests, 40 errors (0.5%), p99 80ms\n" +
				"      - error ratio 0.09 above max_error_ratio 0.05\n"},
		{desc: "a verdict of another shape", status: http.StatusConflict,
			reply: `{"error": "refused", "message": "analysis failed: ...", "verdict": {"score": 0.2}}`, code: exitRefused,
			stderr: "switchyard: not promoted: analysis failed: ...\n  verdict: {\"score\":0.2}\n"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			f := newFakeAdmin(t, map[string]func(int) (int, string){"POST /admin/promote": always(test.status, test.reply)})
			r := runAt(t, f.URL, "promote")
			assert.Equal(t, test.code, r.code, r)
			assert.Equal(t, test.stdout, r.stdout)
			assert.Equal(t, test.stderr, r.stderr)
			assert.Equal(t, []string{""}, f.sent("POST /admin/promote"), "sent once, without a body")
		})
	}
}

func TestRetries(t *testing.T) {
	t.Parallel()
	status := `{"generation": 1, "active": "blue", "active_version": "v1", "pools": {}, "switches": [], "drains": []}`
	testCases := []struct {
		desc  string
		reply func(int) (int, string)
		args  []string
		call  string
		code  int
		calls int
	}{
		{desc: "status retries 503 until it answers", args: []string{"status"}, call: "GET /admin/status",
			reply: func(n int) (int, string) {
				if n < 3 {
					return http.StatusServiceUnavailable, `{"error": "shutting_down", "message": "try later"}`
				}
				return http.StatusOK, status
			}, code: exitOK, calls: 3},
		{desc: "status gives up after 3 retries", args: []string{"status"}, call: "GET /admin/status",
			reply: always(http.StatusBadGateway, "bad gateway"), code: exitUsage, calls: 4},
		{desc: "a refused switch is not retried", args: []string{"switch", "green"}, call: "POST /admin/switch",
			reply: always(http.StatusConflict, `{"error": "refused", "message": "no"}`), code: exitRefused, calls: 1},
		{desc: "a stale generation is not retried", args: []string{"switch", "green"}, call: "POST /admin/switch",
			reply: always(http.StatusPreconditionFailed, `{"error": "stale_generation", "message": "moved"}`), code: exitRefused, calls: 1},
		{desc: "a rollback is not sent twice", args: []string{"rollback"}, call: "POST /admin/rollback",
			reply: always(http.StatusServiceUnavailable, `{"error": "x", "message": "y"}`), code: exitUsage, calls: 1},
		{desc: "a toggle is not sent twice", args: []string{"switch", "toggle"}, call: "POST /admin/switch",
			reply: always(http.StatusGatewayTimeout, `{"error": "x", "message": "y"}`), code: exitUsage, calls: 1},
		{desc: "a 500 is not retried", args: []string{"reload"}, call: "POST /admin/reload",
			reply: always(http.StatusInternalServerError, `{"error": "x", "message": "boom"}`), code: exitUsage, calls: 1},
		{desc: "a reply that is not JSON", args: []string{"status"}, call: "GET /admin/status",
			reply: always(http.StatusOK, "<html>"), code: exitUsage, calls: 1},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			f := newFakeAdmin(t, map[string]func(int) (int, string){test.call: test.reply})
			r := runAt(t, f.URL, test.args...)
			assert.Equal(t, test.code, r.code, r)
			assert.Len(t, f.sent(test.call), test.calls)
		})
	}
}

func TestRenderStatus(t *testing.T) {
	t.Parallel()
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	f := func(v float64) *float64 { return &v }
	finished := now.Add(-time.Minute)
	st := &admin.Status{
		Generation: 7, Active: config.Green, ActiveVersion: "v2.7",
		Pools: map[string]admin.PoolStatus{
			"blue": {Version: "v2.6", Inflight: 2, ReadyBackends: 1, Backends: []admin.BackendStatus{
				{Addr: "10.0.0.5:5000", Ready: true, Inflight: 2, Requests: 1204,
					Health: &health.State{Probed: true, Healthy: true, Warm: true,
						Report: health.Report{GPUMemUsed: f(3.1 * (1 << 30)), GPUMemTotal: f(80 * (1 << 30))}}},
				{Addr: "10.0.0.6:5000", Health: &health.State{Probed: true, LastError: "GET /health: status 503: model not loaded; " + strings.Repeat("x", 80)}},
			}},
			"green": {Version: "v2.7", Active: true, ReadyBackends: 0, Backends: []admin.BackendStatus{
				{Addr: "10.0.0.7:5000", Health: &health.State{Probed: true, Healthy: true, Warming: true, WarmPassed: 1, WarmNeeded: 3,
					SharedGPUWith: []string{"10.0.0.5:5000"}}},
			}},
		},
		Switches: []proxy.SwitchRecord{{From: config.Blue, To: config.Green, Version: "v2.7", Trigger: "admin", At: now.Add(-90 * time.Second), Generation: 7}},
		Drains: []proxy.DrainStatus{{Color: config.Blue, Version: "v2.6", State: proxy.DrainTimedOut, AtSwap: 12, Inflight: 2,
			Straggler: 2, Seconds: 30, Finished: &finished}},
		Config: &admin.ConfigStatus{Path: "/etc/switchyard.yaml", Generation: 4, LoadedAt: now.Add(-3 * time.Minute), SHA256: strings.Repeat("ab", 32),
			LastError: "config: line 3: active: \"purple\" is not a color", PendingSwitch: "to green: waiting for readiness"},
		Traffic: proxy.Traffic{Weights: map[config.Color]float64{config.Green: 5, config.Blue: 95}, StickyHeader: "X-User",
			Mirror: &proxy.MirrorSetting{To: config.Green, Percent: 1}},
		Analysis: &analysis.Status{Verdict: analysis.Verdict{Phase: "observe", Candidate: config.Green, Baseline: config.Blue,
			CandidateStats: proxy.Window{Requests: 3}, BaselineStats: proxy.Window{}, Reasons: []string{"not enough requests yet: 3 of min_requests 50"}}},
	}
	var out bytes.Buffer
	renderStatus(&out, st, now)
	got := out.String()
	for _, want := range []string{
		"active green (v2.7), generation 7\n",
		"blue (v2.6)  standby  in-flight 2  ready 1/2\n",
		"green (v2.7)  ACTIVE  in-flight 0  ready 0/1\n",
		"3.1/80 GiB",
		"warming 1/3",
		"GET /health: status 503: model not loaded; " + strings.Repeat("x", 16) + "…\n", // 60 runes
		"note: 10.0.0.7:5000 shares its GPU with 10.0.0.5:5000",
		"traffic: blue 95%, green 5% (sticky on header X-User)\nmirror: 1% of requests copied to green\n",
		"timed_out (2 stragglers)",
		"analysis: watching green after the switch, against blue: not enough requests yet\n  green: 3 requests, 0 errors (0%)\n  blue: 0 requests, 0 errors\n  - not enough requests yet: 3 of min_requests 50\n",
		"last switch: blue -> green (v2.7) by admin 1m30s ago, generation 7\n",
		"config: /etc/switchyard.yaml, generation 4, loaded 3m0s ago, sha256 abababababab\n",
		`last error (the running config stays in force): config: line 3: active: "purple" is not a color`,
		"pending switch to green: waiting for readiness",
	} {
		assert.Contains(t, got, want)
	}
	assert.Less(t, strings.Index(got, "blue (v2.6)"), strings.Index(got, "green (v2.7)  ACTIVE"), "blue first")
}

func TestGPUMemory(t *testing.T) {
	t.Parallel()
	f := func(v float64) *float64 { return &v }
	testCases := []struct {
		desc        string
		used, total *float64
		want        string
	}{
		{desc: "GiB", used: f(3.1 * (1 << 30)), total: f(80 * (1 << 30)), want: "3.1/80 GiB"},
		{desc: "MiB", used: f(512 * (1 << 20)), total: f(1000 * (1 << 20)), want: "512/1000 MiB"},
		{desc: "used under a GiB of a GiB total", used: f(1 << 29), total: f(1 << 30), want: "0.5/1 GiB"},
		{desc: "used only", used: f(2 * (1 << 30)), want: "2 GiB used"},
		{desc: "nothing reported", want: "-"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			assert.Equal(t, test.want, gpuMemory(test.used, test.total))
		})
	}
}

// TestParseInterspersed guards the interspersed parsing: flags after
// the color, and "--" ending the flags.
func TestParseInterspersed(t *testing.T) {
	t.Parallel()
	c := &cli{stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}
	f := c.flags("switch", "switchyard switch COLOR")
	force := f.Bool("force", false, "")
	pos, err := f.parse([]string{"green", "--force", "--timeout", "3s", "--", "--weird"})
	require.NoError(t, err)
	assert.Equal(t, []string{"green", "--weird"}, pos)
	assert.True(t, *force)
	assert.Equal(t, 3*time.Second, f.timeout)
}
