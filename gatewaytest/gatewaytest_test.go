package gatewaytest_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/gatewaytest"
	"github.com/switchyard/switchyard/modelsim"
	"go.uber.org/goleak"
)

// TestMain fails the package if the harness leaves a gateway, a model
// server, a load client or a connection behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// fasthttp starts one goroutine per process, on the first server
		// use, that refreshes the cached Date header every second; it has no
		// way to stop.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		// fasthttp's worker pool cleaner notices Stop only after its
		// time.Sleep(MaxIdleWorkerDuration, 10s by default) returns, so it
		// outlives a cleanly shut down server by up to 10s.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
	)
}

func TestGateway_RunsAReleaseAndStops(t *testing.T) {
	blue := gatewaytest.StartModel(t, modelsim.Options{Color: "blue", Version: "v1"})
	green := gatewaytest.StartModel(t, modelsim.Options{Color: "green", Version: "v2"})
	tokenFile := filepath.Join(t.TempDir(), "admin.token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600))
	g := gatewaytest.Start(t, gatewaytest.Options{Config: fmt.Sprintf(`
admin: {token_file: %q}
log: {level: warn}
health: {interval: 50ms, timeout: 50ms, healthy_threshold: 1}
warmup: {path: /predict, body: '%s', headers: {Content-Type: application/json}, requests: 1}
pools:
  blue:  {version: v1, backends: [%s]}
  green: {version: v2, backends: [%s]}
`, tokenFile, gatewaytest.PredictBody, blue.Addr(), green.Addr())})

	_, err := g.ReadStatus()
	require.Error(t, err, "the admin API answered without the token")
	g.SetToken("s3cret")
	g.WaitReady(t, config.Blue, config.Green)
	g.RequireColor(t, config.Blue)
	l := g.StartLoad(t, 2)
	require.Eventually(t, func() bool { return l.Count(config.Blue) > 0 }, gatewaytest.WaitFor, gatewaytest.Tick)

	g.Switch(t, config.Green)

	require.Eventually(t, func() bool { return l.Count(config.Green) > 0 }, gatewaytest.WaitFor, gatewaytest.Tick)
	l.Stop()
	assert.Empty(t, l.Failed())
	assert.Zero(t, l.Flaps())
	st := g.Status(t)
	assert.Equal(t, config.Green, st.Active)
	assert.Equal(t, fmt.Sprintf(`"%d"`, st.Generation), st.ETag)
	n, err := g.Metric(`switchyard_active_color{color="green"}`)
	require.NoError(t, err)
	assert.Equal(t, 1.0, n)

	g.Stop()
	g.Stop()
	_, err = g.Client.Get(g.Traffic + "/predict")
	assert.Error(t, err, "the traffic listener is still open")
	_, err = http.Get("http://" + gatewaytest.UnusedAddr(t))
	assert.Error(t, err)
}
