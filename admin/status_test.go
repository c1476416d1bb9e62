package admin_test

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/admin"
	"github.com/switchyard/switchyard/health"
	"github.com/switchyard/switchyard/proxy"
)

// inspector is a health checker that knows some backends.
type inspector map[string]*health.State

func (i inspector) Inspect(addr string) *health.State { return i[addr] }

// reloader is a config file that always loads.
type reloader struct{ st admin.ConfigStatus }

func (r reloader) Reload(string) error              { return nil }
func (r reloader) ConfigStatus() admin.ConfigStatus { return r.st }

// The CLI and the web console read GET /admin/status through admin.Status:
// every field the admin API sends must survive decoding into it and
// encoding again, or a reader would silently miss it.
func TestStatus_RoundTripsThroughItsType(t *testing.T) {
	at := time.Date(2025, 3, 1, 12, 0, 0, 123456789, time.UTC)
	used, total := 3.1*(1<<30), 80.0*(1<<30)
	loaded := true
	rg := newRig(t, withAnalyzer, func(_ *proxy.Router, opts *admin.Options) {
		opts.Inspect = inspector{blueAddr: {
			Addr: blueAddr, Color: "blue", Version: "v1", Probed: true, Healthy: true, Warm: true,
			LastProbe: at, Since: at.Add(-time.Minute), ColdLatency: 0.8, WarmLatency: 0.005, WarmupSeconds: 1.5, Restarts: 1,
			Report:        health.Report{ModelLoaded: &loaded, GPUUUID: "GPU-1", GPUMemUsed: &used, GPUMemTotal: &total, BootID: "b1"},
			SharedGPUWith: []string{greenAddr},
		}}
		opts.Reloader = reloader{admin.ConfigStatus{Path: "/etc/switchyard.yaml", Generation: 2, LoadedAt: at, SHA256: "ab12",
			LastError: "config: line 3: bad", LastErrorAt: &at, RestartNeeded: []string{"listen"}, PendingSwitch: "to blue: not ready"}}
	})
	// A switch, a canary and a mirror fill the history, a drain and the traffic.
	rep := rg.do(t, http.MethodPost, "/admin/switch", `{"to": "green"}`, nil)
	require.Equal(t, http.StatusOK, rep.status, rep.raw)
	rep = rg.do(t, http.MethodPut, "/admin/traffic", `{"blue": 5, "sticky_header": "X-User", "mirror": {"to": "blue", "percent": 1}}`, nil)
	require.Equal(t, http.StatusOK, rep.status, rep.raw)

	rep = rg.do(t, http.MethodGet, "/admin/status", "", nil)
	require.Equal(t, http.StatusOK, rep.status, rep.raw)
	var st admin.Status
	require.NoError(t, json.Unmarshal([]byte(rep.raw), &st))
	again, err := json.Marshal(st)
	require.NoError(t, err)

	assert.JSONEq(t, rep.raw, string(again))
	// The comparison covers each part only if the answer has it.
	assert.NotEmpty(t, st.Switches)
	assert.NotEmpty(t, st.Drains)
	assert.NotNil(t, st.Traffic.Mirror)
	assert.NotNil(t, st.Analysis)
	require.NotNil(t, st.Config)
	assert.NotNil(t, st.Config.LastErrorAt)
	require.NotEmpty(t, st.Pools["blue"].Backends)
	assert.NotNil(t, st.Pools["blue"].Backends[0].Health)
	require.NotEmpty(t, st.Pools["green"].Backends)
	assert.Nil(t, st.Pools["green"].Backends[0].Health, "a backend the checker does not know has no health object")
	assert.NotContains(t, rep.raw, `"health": null`)
}
