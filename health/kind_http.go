package health

import (
	"context"

	"github.com/switchyard/switchyard/config"
)

// httpKind is the plainest probe: any 2xx on the path. It suits a server
// whose health endpoint says nothing beyond answering; the body is not
// read, so it reports no model or GPU state.
type httpKind struct{ http *httpGetter }

var _ kind = httpKind{}

func (httpKind) defaultPath() string { return "/health" }

func (k httpKind) probe(ctx context.Context, ep endpoint, h *config.Health) (Report, error) {
	return Report{}, k.http.getOK(ctx, ep, h.Path, nil)
}
