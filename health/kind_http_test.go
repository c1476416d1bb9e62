package health

import (
	"testing"

	"github.com/switchyard/switchyard/config"
)

func TestHTTPKind_AnyTwoXXOnThePathIsHealthy(t *testing.T) {
	t.Parallel()
	testProbeCases(t, []probeCase{
		{
			desc:   "http 200",
			kind:   config.ProbeHTTP,
			routes: map[string]route{"/health": {200, "OK"}},
		},
		{
			desc:   "http 204 with no body",
			kind:   config.ProbeHTTP,
			routes: map[string]route{"/health": {204, ""}},
		},
		{
			desc:    "http 500",
			kind:    config.ProbeHTTP,
			routes:  map[string]route{"/health": {500, "boom"}},
			wantErr: "GET /health: status 500",
		},
		{
			desc:    "http redirect is not followed",
			kind:    config.ProbeHTTP,
			routes:  map[string]route{"/health": {302, ""}},
			wantErr: "GET /health: status 302",
		},
		{
			desc:    "http custom path",
			kind:    config.ProbeHTTP,
			edit:    func(h *config.Health) { h.Path = "/healthz" },
			routes:  map[string]route{"/health": {200, ""}},
			wantErr: "GET /healthz: status 404",
		},
	})
}
