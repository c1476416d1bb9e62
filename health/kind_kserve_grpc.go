package health

import (
	"context"
	"errors"
	"fmt"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proto/inference"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// kserveGRPCKind follows the KServe v2 (Open Inference Protocol) gRPC
// API that Triton (port 8001), KServe and TorchServe's KServe mode
// serve: the server is ready when ServerReady says so and, with a model
// named, when ModelReady says that model is and its ModelMetadata
// answers (a model that is ready but cannot describe itself cannot take
// a ModelInfer either).
//
// A server that sends a "boot-id" header with its ServerReady answer (the
// reference model server does) has it read as the Report's BootID, so a
// restart is noticed and the backend warmed again even when no probe
// failed in between.
type kserveGRPCKind struct{ conns *grpcConns }

var _ kind = kserveGRPCKind{}

// bootIDKey is the response metadata that carries a server's boot ID.
const bootIDKey = "boot-id"

func (kserveGRPCKind) defaultPath() string { return "" }

func (k kserveGRPCKind) probe(ctx context.Context, ep endpoint, h *config.Health) (Report, error) {
	cc, err := k.conns.get(ep)
	if err != nil {
		return Report{}, err
	}
	c := inference.NewGRPCInferenceServiceClient(cc)
	var md metadata.MD
	ready, err := c.ServerReady(ctx, &inference.ServerReadyRequest{}, grpc.Header(&md))
	var rep Report
	if v := md.Get(bootIDKey); len(v) > 0 {
		rep.BootID = v[0]
	}
	switch {
	case err != nil:
		return rep, fmt.Errorf("ServerReady: %w", grpcErr(err))
	case !ready.GetReady():
		return rep, errors.New("ServerReady: not ready")
	case h.Model == "":
		return rep, nil
	}
	mr, err := c.ModelReady(ctx, &inference.ModelReadyRequest{Name: h.Model})
	switch {
	case err != nil:
		return rep, fmt.Errorf("ModelReady %s: %w", h.Model, grpcErr(err))
	case !mr.GetReady():
		return rep, fmt.Errorf("ModelReady %s: not ready", h.Model)
	}
	meta, err := c.ModelMetadata(ctx, &inference.ModelMetadataRequest{Name: h.Model})
	if err != nil {
		return rep, fmt.Errorf("ModelMetadata %s: %w", h.Model, grpcErr(err))
	}
	if v := meta.GetVersions(); len(v) == 1 {
		rep.Version = v[0]
	}
	loaded := true
	rep.ModelLoaded = &loaded
	return rep, nil
}
