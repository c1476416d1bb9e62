package health

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/switchyard/switchyard/config"
)

// torchServeKind probes TorchServe's inference API: GET /ping answers
// {"status": "Healthy"} once its workers are up.
type torchServeKind struct{ http *httpGetter }

var _ kind = torchServeKind{}

func (torchServeKind) defaultPath() string { return "/ping" }

func (k torchServeKind) probe(ctx context.Context, ep endpoint, h *config.Health) (Report, error) {
	return Report{}, k.http.getOK(ctx, ep, h.Path, parseTorchServePing)
}

// parseTorchServePing checks a 2xx /ping body. The body, not the status
// code, is what TorchServe documents as its health answer, so a 200 that
// does not say "Healthy" (or is not JSON) is not trusted.
func parseTorchServePing(body []byte) error {
	var ping struct {
		Status string `json:"status"`
	}
	if json.Unmarshal(body, &ping) != nil || ping.Status != "Healthy" {
		return fmt.Errorf(`want {"status": "Healthy"}, got %q`, prefix(body))
	}
	return nil
}
