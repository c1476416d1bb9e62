package health

import (
	"testing"

	"github.com/switchyard/switchyard/config"
)

func TestTritonKind_ServerThenModelMustBeReady(t *testing.T) {
	t.Parallel()
	testProbeCases(t, []probeCase{
		{
			desc:   "triton ready",
			kind:   config.ProbeTriton,
			routes: map[string]route{"/v2/health/ready": {200, ""}},
		},
		{
			desc:   "triton with a ready model",
			kind:   config.ProbeTriton,
			edit:   func(h *config.Health) { h.Model = "resnet50" },
			routes: map[string]route{"/v2/health/ready": {200, ""}, "/v2/models/resnet50/ready": {200, ""}},
		},
		{
			desc:    "triton with a missing model",
			kind:    config.ProbeTriton,
			edit:    func(h *config.Health) { h.Model = "resnet50" },
			routes:  map[string]route{"/v2/health/ready": {200, ""}, "/v2/models/bert/ready": {200, ""}},
			wantErr: "GET /v2/models/resnet50/ready: status 404",
		},
		{
			desc:    "triton with a model that is not ready yet",
			kind:    config.ProbeTriton,
			edit:    func(h *config.Health) { h.Model = "resnet50" },
			routes:  map[string]route{"/v2/health/ready": {200, ""}, "/v2/models/resnet50/ready": {400, ""}},
			wantErr: "GET /v2/models/resnet50/ready: status 400",
		},
		{
			desc:    "triton server not ready is reported before the model",
			kind:    config.ProbeTriton,
			edit:    func(h *config.Health) { h.Model = "resnet50" },
			routes:  map[string]route{"/v2/health/ready": {503, ""}, "/v2/models/resnet50/ready": {200, ""}},
			wantErr: "GET /v2/health/ready: status 503",
		},
		{
			desc:   "triton model name is escaped in the path",
			kind:   config.ProbeTriton,
			edit:   func(h *config.Health) { h.Model = "my model/v1" },
			routes: map[string]route{"/v2/health/ready": {200, ""}, "/v2/models/my%20model%2Fv1/ready": {200, ""}},
		},
	})
}
