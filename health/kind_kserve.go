package health

import (
	"context"
	"net/url"

	"github.com/switchyard/switchyard/config"
)

// kserveKind follows the KServe v2 (Open Inference Protocol) health API:
// the server is ready when GET /v2/health/ready is 2xx and, with a model
// named, that model is too. A server can be ready while one of its models
// is still loading, hence the second request.
type kserveKind struct{ http *httpGetter }

var _ kind = kserveKind{}

func (kserveKind) defaultPath() string { return "/v2/health/ready" }

// probe asks the server before the model, so a server that is not ready
// is reported as such rather than as a missing model.
func (k kserveKind) probe(ctx context.Context, ep endpoint, h *config.Health) (Report, error) {
	if err := k.http.getOK(ctx, ep, h.Path, nil); err != nil {
		return Report{}, err
	}
	if h.Model == "" {
		return Report{}, nil
	}
	return Report{}, k.http.getOK(ctx, ep, "/v2/models/"+url.PathEscape(h.Model)+"/ready", nil)
}
