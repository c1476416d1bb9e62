package admin_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/admin"
	"github.com/switchyard/switchyard/fleet"
	"github.com/switchyard/switchyard/proxy"
	"go.uber.org/zap"
)

// stubFleet is a fleet membership whose readiness and status a test sets.
type stubFleet struct {
	ready  error
	status fleet.Status
}

func (f *stubFleet) Ready() error         { return f.ready }
func (f *stubFleet) Status() fleet.Status { return f.status }

// failingRouter is a router whose changes fail with err, as the fleet's
// do when the API server is gone or another replica wrote first.
type failingRouter struct {
	*proxy.Router
	err error
}

func (r failingRouter) Switch(proxy.SwitchRequest) (proxy.SwitchResult, error) {
	return proxy.SwitchResult{}, r.err
}

func (r failingRouter) SetTraffic(proxy.TrafficRequest) (proxy.Traffic, error) {
	return r.Router.Snapshot().Traffic(), r.err
}

// newFleetRig serves the admin API over router with f as its fleet.
func newFleetRig(t *testing.T, router admin.Router, f admin.Fleet) *rig {
	t.Helper()
	srv := admin.New(router, zap.NewNop(), admin.Options{Fleet: f})
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return &rig{url: ts.URL, client: ts.Client(), admin: srv}
}

func TestReadyz_FailsWhileTheFleetSaysTheReplicaIsStale(t *testing.T) {
	testCases := []struct {
		desc   string
		ready  error
		status int
	}{
		{desc: "in contact", status: http.StatusOK},
		{desc: "stale", ready: fmt.Errorf("%w: no contact with the Kubernetes API for 31s", fleet.ErrNotReady), status: http.StatusServiceUnavailable},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			rg := newRig(t)
			fr := newFleetRig(t, rg.router, &stubFleet{ready: test.ready})

			rep := fr.do(t, http.MethodGet, "/readyz", "", nil)

			assert.Equal(t, test.status, rep.status)
			if test.ready != nil {
				assert.Equal(t, "fleet_not_ready", rep.json["error"])
				assert.Contains(t, rep.message(), "no contact with the Kubernetes API")
			}
		})
	}
}

func TestStatus_ShowsTheFleetOnlyInFleetMode(t *testing.T) {
	rg := newRig(t)
	fr := newFleetRig(t, rg.router, &stubFleet{status: fleet.Status{ConfigMap: "switchyard-fleet", Generation: 4,
		Replicas: []fleet.Replica{{ID: "gw-0", Generation: 4, State: fleet.StateOK, Live: true, Agrees: true}}}})

	with := fr.do(t, http.MethodGet, "/admin/status", "", nil)
	without := rg.do(t, http.MethodGet, "/admin/status", "", nil)

	require.Equal(t, http.StatusOK, with.status)
	f, ok := with.json["fleet"].(map[string]any)
	require.True(t, ok, "fleet in %s", with.raw)
	assert.Equal(t, "switchyard-fleet", f["configmap"])
	assert.Len(t, f["replicas"], 1)
	assert.NotContains(t, without.json, "fleet")
}

func TestSwitch_FleetErrorsMapToTheirStatus(t *testing.T) {
	testCases := []struct {
		desc   string
		err    error
		status int
		code   string
	}{
		{desc: "API server unreachable", err: fmt.Errorf("%w: connection refused", fleet.ErrUnavailable), status: http.StatusServiceUnavailable, code: "fleet_unavailable"},
		{desc: "intent unreadable", err: fmt.Errorf("%w: data.active", fleet.ErrBadIntent), status: http.StatusServiceUnavailable, code: "fleet_unavailable"},
		{desc: "another replica wrote first", err: fmt.Errorf("%w: conflict", proxy.ErrStaleGeneration), status: http.StatusPreconditionFailed, code: "stale_generation"},
		{desc: "refused by another replica", err: &fleet.RefusedError{Replica: "gw-2", Refused: &proxy.RefusedError{Color: "green", Need: 1,
			Backends: map[string]string{"10.0.0.4:5000": "unhealthy"}}}, status: http.StatusConflict, code: "refused"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			rg := newRig(t)
			fr := newFleetRig(t, failingRouter{Router: rg.router, err: test.err}, &stubFleet{})

			sw := fr.do(t, http.MethodPost, "/admin/switch", `{"to": "green"}`, nil)

			assert.Equal(t, test.status, sw.status, sw.raw)
			assert.Equal(t, test.code, sw.json["error"])
			var refused *fleet.RefusedError
			if errors.As(test.err, &refused) {
				assert.Contains(t, sw.message(), "refused by replica gw-2")
			}
		})
	}
}

func TestTraffic_FleetErrorsMapToTheirStatus(t *testing.T) {
	testCases := []struct {
		desc   string
		err    error
		status int
	}{
		{desc: "API server unreachable", err: fmt.Errorf("%w: connection refused", fleet.ErrUnavailable), status: http.StatusServiceUnavailable},
		{desc: "another replica wrote first", err: fmt.Errorf("%w: conflict", proxy.ErrStaleGeneration), status: http.StatusPreconditionFailed},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			rg := newRig(t)
			fr := newFleetRig(t, failingRouter{Router: rg.router, err: test.err}, &stubFleet{})

			rep := fr.do(t, http.MethodPut, "/admin/traffic", `{"green": 5}`, nil)

			assert.Equal(t, test.status, rep.status, rep.raw)
		})
	}
}
