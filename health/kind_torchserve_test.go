package health

import (
	"testing"

	"github.com/switchyard/switchyard/config"
)

func TestTorchServeKind_PingMustSayHealthy(t *testing.T) {
	t.Parallel()
	testProbeCases(t, []probeCase{
		{
			desc:   "torchserve healthy",
			kind:   config.ProbeTorchServe,
			routes: map[string]route{"/ping": {200, `{"status": "Healthy"}`}},
		},
		{
			desc:    "torchserve unhealthy with 200",
			kind:    config.ProbeTorchServe,
			routes:  map[string]route{"/ping": {200, `{"status": "Unhealthy"}`}},
			wantErr: `GET /ping: want {"status": "Healthy"}`,
		},
		{
			desc:    "torchserve unhealthy with 500",
			kind:    config.ProbeTorchServe,
			routes:  map[string]route{"/ping": {500, `{"status": "Unhealthy"}`}},
			wantErr: "GET /ping: status 500",
		},
		{
			desc:    "torchserve answer that is not JSON",
			kind:    config.ProbeTorchServe,
			routes:  map[string]route{"/ping": {200, `Healthy`}},
			wantErr: `GET /ping: want {"status": "Healthy"}, got "Healthy"`,
		},
	})
}
