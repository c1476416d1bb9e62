package health

import (
	"testing"

	"github.com/switchyard/switchyard/config"
)

func TestKServeKind_ServerThenModelMustBeReady(t *testing.T) {
	t.Parallel()
	testProbeCases(t, []probeCase{
		{
			desc:   "kserve ready",
			kind:   config.ProbeKServe,
			routes: map[string]route{"/v2/health/ready": {200, ""}},
		},
		{
			desc:    "kserve not ready",
			kind:    config.ProbeKServe,
			routes:  map[string]route{"/v2/health/ready": {503, ""}},
			wantErr: "GET /v2/health/ready: status 503",
		},
		{
			desc:   "kserve with a ready model",
			kind:   config.ProbeKServe,
			edit:   func(h *config.Health) { h.Model = "sklearn-iris" },
			routes: map[string]route{"/v2/health/ready": {200, ""}, "/v2/models/sklearn-iris/ready": {200, ""}},
		},
	})
}
