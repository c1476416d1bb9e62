package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/gateway"
	"github.com/switchyard/switchyard/gatewaytest"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// withTokenFile adds admin.token_file to a config rendered by
// backends.config; "" leaves it out.
func withTokenFile(cfg, tokenFile string) string {
	if tokenFile == "" {
		return cfg
	}
	const listen = "admin:\n  listen: 127.0.0.1:19901\n"
	if !strings.Contains(cfg, listen) {
		panic("the test config has no admin block to add token_file to")
	}
	return strings.Replace(cfg, listen, listen+"  token_file: "+tokenFile+"\n", 1)
}

// startGatewayWithToken starts the gateway on a config with the token in
// a token file, and makes g's admin helpers present it. It returns the
// paths of the config file and the token file.
func startGatewayWithToken(t *testing.T, b *backends, fc fileConfig, token string) (*gatewaytest.Gateway, string, string) {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "admin-token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(token+"\n"), 0o600))
	path := gatewaytest.NewConfigFile(t, withTokenFile(b.config(fc), tokenFile))
	g := startGateway(t, path)
	g.SetToken(token)
	return g, path, tokenFile
}

// adminGet is GET path on the admin API with token, for its status code.
func adminGet(t *testing.T, g *gatewaytest.Gateway, path, token string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, g.Admin+path, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := g.Client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// Regression test (fixed): rewriting admin.token_file left the old token
// valid and the new one refused, even after POST /admin/reload, because
// the gateway read the file only at start and when the config changed.
func TestAdminToken_RewrittenTokenFileTakesEffectOnTheNextCall(t *testing.T) {
	testCases := []struct {
		desc   string
		reload bool
	}{
		{desc: "without a reload"},
		{desc: "with POST /admin/reload", reload: true},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			b := startBackends(t, 0)
			g, _, tokenFile := startGatewayWithToken(t, b, fileConfig{Active: "blue"}, "first-token")
			require.Equal(t, http.StatusOK, adminGet(t, g, "/admin/status", "first-token"))
			require.Equal(t, http.StatusUnauthorized, adminGet(t, g, "/admin/status", ""))

			tmp := tokenFile + ".tmp"
			require.NoError(t, os.WriteFile(tmp, []byte("second-token\n"), 0o600))
			require.NoError(t, os.Rename(tmp, tokenFile))
			g.SetToken("second-token")
			if test.reload {
				resp, body := g.Post(t, "/admin/reload", "", nil)
				require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
			}

			assert.Equal(t, http.StatusOK, adminGet(t, g, "/admin/status", "second-token"), "the new token is refused")
			assert.Equal(t, http.StatusUnauthorized, adminGet(t, g, "/admin/status", "first-token"), "the old token still works")
		})
	}
}

// Removing admin.token_file from the config must not turn authentication
// off: the reload is refused like a broken file, and the token stays.
func TestAdminReload_DroppingTheTokenFileIsRefusedAndTheTokenStays(t *testing.T) {
	b := startBackends(t, 0)
	g, path, _ := startGatewayWithToken(t, b, fileConfig{Active: "blue"}, "s3cret")
	g.WaitReady(t, config.Blue)

	gatewaytest.WriteConfig(t, path, b.config(fileConfig{Active: "blue", GreenVersion: "v3"}))
	resp, body := g.Post(t, "/admin/reload", "", nil)

	require.Equal(t, http.StatusUnprocessableEntity, resp.StatusCode, "%s", body)
	assert.Contains(t, string(body), "cannot turn authentication off")
	assert.Contains(t, string(body), "restart the gateway")
	st := g.Status(t)
	assert.Contains(t, st.Config.LastError, "admin.token_file removed")
	assert.Equal(t, 1, st.Config.Generation, "the rest of the refused config was applied")
	assert.Equal(t, "v2", st.Pools["green"].Version)
	assert.Equal(t, http.StatusUnauthorized, adminGet(t, g, "/admin/status", ""), "auth was turned off")
	assert.Equal(t, http.StatusOK, adminGet(t, g, "/admin/status", "s3cret"))
}

// A reload may point admin.token_file at another file: its token applies
// from the reload on.
func TestAdminReload_ANewTokenFileApplies(t *testing.T) {
	b := startBackends(t, 0)
	g, path, _ := startGatewayWithToken(t, b, fileConfig{Active: "blue"}, "s3cret")
	other := filepath.Join(t.TempDir(), "other-token")
	require.NoError(t, os.WriteFile(other, []byte("other\n"), 0o600))

	gatewaytest.WriteConfig(t, path, withTokenFile(b.config(fileConfig{Active: "blue"}), other))
	resp, body := g.Post(t, "/admin/reload", "", nil)

	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	assert.Equal(t, http.StatusOK, adminGet(t, g, "/admin/status", "other"))
	assert.Equal(t, http.StatusUnauthorized, adminGet(t, g, "/admin/status", "s3cret"))
	g.SetToken("other")
}

func TestRun_RefusesToStartWithATokenFileWithoutAToken(t *testing.T) {
	b := startBackends(t, 0)
	tokenFile := filepath.Join(t.TempDir(), "admin-token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("\n"), 0o600))
	cfg, err := config.Parse([]byte(withTokenFile(b.config(fileConfig{}), tokenFile)))
	require.NoError(t, err)
	cfg.Listen, cfg.Admin.Listen = "127.0.0.1:0", "127.0.0.1:0"

	err = gateway.Run(context.Background(), gateway.Options{Config: cfg, Log: zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))})

	require.Error(t, err)
	assert.Contains(t, err.Error(), "admin.token_file")
	assert.Contains(t, err.Error(), "is empty; put a token in it")
}

// Regression test (fixed): with a state_dir the gateway cannot write, a
// switch answered 200 as if it would survive a restart; only the log said
// otherwise. The answer, the status and a metric say so now.
func TestStateDir_FailedWriteIsReportedInTheAnswerStatusAndMetric(t *testing.T) {
	b := startBackends(t, 0)
	stateDir := filepath.Join(t.TempDir(), "state")
	g := startGateway(t, gatewaytest.NewConfigFile(t, b.config(fileConfig{Active: "blue", StateDir: stateDir})))
	g.WaitReady(t, config.Blue, config.Green)
	n, err := g.Metric("switchyard_state_write_failures_total")
	require.NoError(t, err)
	require.Zero(t, n)
	// The volume goes away: even root cannot write there now.
	require.NoError(t, os.RemoveAll(stateDir))

	resp, body := g.Post(t, "/admin/switch", `{"to": "green"}`, nil)

	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	var out struct {
		To        config.Color `json:"to"`
		Persisted *bool        `json:"persisted"`
		Warning   string       `json:"warning"`
	}
	require.NoError(t, json.Unmarshal(body, &out))
	assert.Equal(t, config.Green, out.To)
	require.NotNil(t, out.Persisted, "%s", body)
	assert.False(t, *out.Persisted)
	assert.Contains(t, out.Warning, "NOT persisted")
	g.RequireColor(t, config.Green)
	st := g.Status(t)
	require.NotNil(t, st.State)
	assert.False(t, st.State.Persisted)
	require.Len(t, st.Warnings, 1)
	assert.Contains(t, st.Warnings[0], stateDir)
	n, err = g.Metric("switchyard_state_write_failures_total")
	require.NoError(t, err)
	assert.Equal(t, 1.0, n)
}
