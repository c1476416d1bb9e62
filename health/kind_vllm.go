package health

import (
	"context"

	"github.com/switchyard/switchyard/config"
)

// vllmKind probes vLLM's OpenAI-compatible server: GET /health is 200
// with an empty body while the engine runs and 5xx once it has died, so
// the status is all there is to read. Queue depth and KV-cache use come
// from metrics_path (vllm:num_requests_waiting, vllm:kv_cache_usage_perc),
// read by ParseMetrics.
type vllmKind struct{ http *httpGetter }

var _ kind = vllmKind{}

func (vllmKind) defaultPath() string { return "/health" }

func (k vllmKind) probe(ctx context.Context, ep endpoint, h *config.Health) (Report, error) {
	return Report{}, k.http.getOK(ctx, ep, h.Path, nil)
}
