// Package inferencetest runs a KServe v2 gRPC inference server in process,
// for tests, as net/http/httptest runs an HTTP server: the
// GRPCInferenceService of the published proto and the standard
// grpc.health.v1 service, on a loopback port.
package inferencetest

import (
	"context"
	"net"
	"sync/atomic"
	"testing"

	"github.com/switchyard/switchyard/proto/inference"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Server is a running inference server. By default it is ready, serves
// Model at Version, and answers ModelInfer with one FP32 output "output"
// holding the sum of the first input's fp32_contents.
type Server struct {
	inference.UnimplementedGRPCInferenceServiceServer

	// Addr is the server's host:port.
	Addr string
	// Model and Version are the one model served.
	Model, Version string
	// Health is the grpc.health.v1 service; set statuses on it.
	Health *health.Server
	// Infers counts ModelInfer calls.
	Infers atomic.Int64

	notReady, modelNotReady atomic.Bool
	bootID                  atomic.Value
	infer                   atomic.Value
	srv                     *grpc.Server
}

// InferFunc answers a ModelInfer in place of the default.
type InferFunc func(ctx context.Context, req *inference.ModelInferRequest) (*inference.ModelInferResponse, error)

// Start serves model at version until the test ends. opts configure the
// gRPC server, e.g. grpc.Creds(credentials.NewTLS(...)) to serve TLS.
func Start(t testing.TB, model, version string, opts ...grpc.ServerOption) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("inferencetest: %v", err)
	}
	s := &Server{Addr: ln.Addr().String(), Model: model, Version: version, Health: health.NewServer(), srv: grpc.NewServer(opts...)}
	s.bootID.Store("")
	inference.RegisterGRPCInferenceServiceServer(s.srv, s)
	healthpb.RegisterHealthServer(s.srv, s.Health)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.srv.Serve(ln)
	}()
	t.Cleanup(func() {
		s.srv.Stop()
		<-done
	})
	return s
}

// SetReady sets what ServerReady answers.
func (s *Server) SetReady(v bool) { s.notReady.Store(!v) }

// SetModelReady sets what ModelReady answers for Model.
func (s *Server) SetModelReady(v bool) { s.modelNotReady.Store(!v) }

// SetBootID makes ServerReady send a boot-id header ("" sends none).
func (s *Server) SetBootID(id string) { s.bootID.Store(id) }

// SetInfer replaces the ModelInfer answer; nil restores the default.
func (s *Server) SetInfer(f InferFunc) { s.infer.Store(f) }

// Stop ends the server now, as a crashed pod would.
func (s *Server) Stop() { s.srv.Stop() }

// ServerLive is always true while the server runs.
func (s *Server) ServerLive(context.Context, *inference.ServerLiveRequest) (*inference.ServerLiveResponse, error) {
	return &inference.ServerLiveResponse{Live: true}, nil
}

// ServerReady answers SetReady's value, with the boot-id header.
func (s *Server) ServerReady(ctx context.Context, _ *inference.ServerReadyRequest) (*inference.ServerReadyResponse, error) {
	if id := s.bootID.Load().(string); id != "" {
		_ = grpc.SetHeader(ctx, metadata.Pairs("boot-id", id))
	}
	return &inference.ServerReadyResponse{Ready: !s.notReady.Load()}, nil
}

// ModelReady answers for Model; any other name is NOT_FOUND.
func (s *Server) ModelReady(_ context.Context, req *inference.ModelReadyRequest) (*inference.ModelReadyResponse, error) {
	if req.GetName() != s.Model {
		return nil, status.Errorf(codes.NotFound, "unknown model %q", req.GetName())
	}
	return &inference.ModelReadyResponse{Ready: !s.modelNotReady.Load()}, nil
}

// ModelMetadata describes Model: one FP32 input and one FP32 output.
func (s *Server) ModelMetadata(_ context.Context, req *inference.ModelMetadataRequest) (*inference.ModelMetadataResponse, error) {
	if req.GetName() != s.Model {
		return nil, status.Errorf(codes.NotFound, "unknown model %q", req.GetName())
	}
	return &inference.ModelMetadataResponse{
		Name: s.Model, Versions: []string{s.Version}, Platform: "inferencetest",
		Inputs:  []*inference.ModelMetadataResponse_TensorMetadata{{Name: "input", Datatype: "FP32", Shape: []int64{-1, 4}}},
		Outputs: []*inference.ModelMetadataResponse_TensorMetadata{{Name: "output", Datatype: "FP32", Shape: []int64{-1, 1}}},
	}, nil
}

// ModelInfer runs SetInfer's function, or sums the first input.
func (s *Server) ModelInfer(ctx context.Context, req *inference.ModelInferRequest) (*inference.ModelInferResponse, error) {
	s.Infers.Add(1)
	if f, ok := s.infer.Load().(InferFunc); ok && f != nil {
		return f(ctx, req)
	}
	if req.GetModelName() != s.Model {
		return nil, status.Errorf(codes.NotFound, "unknown model %q", req.GetModelName())
	}
	var sum float32
	if in := req.GetInputs(); len(in) > 0 {
		for _, v := range in[0].GetContents().GetFp32Contents() {
			sum += v
		}
	}
	return &inference.ModelInferResponse{
		ModelName: s.Model, ModelVersion: s.Version, Id: req.GetId(),
		Outputs: []*inference.ModelInferResponse_InferOutputTensor{{
			Name: "output", Datatype: "FP32", Shape: []int64{1, 1},
			Contents: &inference.InferTensorContents{Fp32Contents: []float32{sum}},
		}},
	}, nil
}
