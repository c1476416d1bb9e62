package health

import (
	"testing"

	"github.com/switchyard/switchyard/config"
)

func TestVLLMKind_TwoXXOnHealthIsHealthy(t *testing.T) {
	t.Parallel()
	testProbeCases(t, []probeCase{
		{
			desc:   "vllm ready",
			kind:   config.ProbeVLLM,
			routes: map[string]route{"/health": {200, ""}},
		},
		{
			desc:    "vllm engine dead",
			kind:    config.ProbeVLLM,
			routes:  map[string]route{"/health": {500, ""}},
			wantErr: "GET /health: status 500",
		},
	})
}
