package health

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
)

// configKinds are the probe kinds config accepts. config cannot import
// health (health imports config), so it keeps its own names; these tests
// keep the two lists from drifting.
var configKinds = []string{
	config.ProbeHTTP, config.ProbeJSON, config.ProbeKServe,
	config.ProbeTriton, config.ProbeTorchServe, config.ProbeVLLM,
	config.ProbeGRPC, config.ProbeKServeGRPC,
}

func TestKinds_AreTheKindsConfigAccepts(t *testing.T) {
	t.Parallel()
	kinds := builtinKinds(nil, nil)
	names := make([]string, 0, len(kinds))
	for name := range kinds {
		names = append(names, name)
		_, err := config.Parse([]byte(healthConfig(name)))
		assert.NoError(t, err, "config refuses the built-in kind %q", name)
	}
	assert.ElementsMatch(t, configKinds, names)

	_, err := config.Parse([]byte(healthConfig("smtp")))
	assert.ErrorIs(t, err, config.ErrInvalid, "config accepts a kind that is not built in")
}

func TestKinds_DefaultPathsAreConfigs(t *testing.T) {
	t.Parallel()
	for name, k := range builtinKinds(nil, nil) {
		assert.Equal(t, config.DefaultProbePath(name), k.defaultPath(), "kind %s", name)
		cfg, err := config.Parse([]byte(healthConfig(name)))
		require.NoError(t, err)
		assert.Equal(t, k.defaultPath(), cfg.Health.Path, "kind %s: the path config fills in", name)
	}
}

// healthConfig is a minimal config whose global health.kind is kind.
func healthConfig(kind string) string {
	return "health: {kind: \"" + kind + "\"}\n" +
		"pools:\n  blue: {version: v1, backends: [\"127.0.0.1:1\"]}\n  green: {version: v2, backends: [\"127.0.0.1:2\"]}\n"
}

// A pool that overrides only health.kind must probe that kind's default
// path, as config.Health.Path documents ("Path overrides the kind's
// default path"). Regression test: the pool inherited no path and got no
// default either, so the probe went to "/" and a Triton backend that is
// ready never became healthy.
func TestProbe_PoolKindOverrideProbesTheKindsDefaultPath(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		desc     string
		kind     string
		wantPath string
		routes   map[string]route
	}{
		{desc: "triton", kind: config.ProbeTriton, wantPath: "/v2/health/ready", routes: map[string]route{"/v2/health/ready": {200, ""}}},
		{desc: "kserve", kind: config.ProbeKServe, wantPath: "/v2/health/ready", routes: map[string]route{"/v2/health/ready": {200, ""}}},
		{desc: "torchserve", kind: config.ProbeTorchServe, wantPath: "/ping", routes: map[string]route{"/ping": {200, `{"status":"Healthy"}`}}},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			f := startFake(t, routes(test.routes))
			cfg, err := config.Parse([]byte("pools:\n" +
				"  blue: {version: v1, backends: [\"127.0.0.1:1\"]}\n" +
				"  green: {version: v2, backends: [" + f.addr() + "], health: {kind: " + test.kind + "}}\n"))
			require.NoError(t, err)
			h := *cfg.Pools.Green.Health

			_, err = probeOnce(t, newProber(t), f.addr(), h)

			assert.NoError(t, err, "health config %+v", h)
			assert.Equal(t, 1, f.count(test.wantPath), "the probe did not reach %s", test.wantPath)
		})
	}
}
