package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/switchyard/switchyard/proto/inference"
	"google.golang.org/grpc"
)

// upstreamServer answers ModelInfer at once with one FP32 output: the
// proxies' cost, not a model's, is what is measured.
type upstreamServer struct {
	inference.UnimplementedGRPCInferenceServiceServer
}

func (upstreamServer) ServerReady(context.Context, *inference.ServerReadyRequest) (*inference.ServerReadyResponse, error) {
	return &inference.ServerReadyResponse{Ready: true}, nil
}

func (upstreamServer) ModelInfer(_ context.Context, req *inference.ModelInferRequest) (*inference.ModelInferResponse, error) {
	var sum float32
	if in := req.GetInputs(); len(in) > 0 {
		for _, v := range in[0].GetContents().GetFp32Contents() {
			sum += v
		}
	}
	return &inference.ModelInferResponse{ModelName: req.GetModelName(), ModelVersion: "v1",
		Outputs: []*inference.ModelInferResponse_InferOutputTensor{{Name: "output", Datatype: "FP32", Shape: []int64{1, 1},
			Contents: &inference.InferTensorContents{Fp32Contents: []float32{sum}}}}}, nil
}

// upstreamMain serves until SIGTERM or SIGINT.
func upstreamMain(args []string) int {
	fs := flag.NewFlagSet("upstream", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "upstream:", err)
		return 1
	}
	srv := grpc.NewServer()
	inference.RegisterGRPCInferenceServiceServer(srv, upstreamServer{})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Stop()
	}()
	if err := srv.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, "upstream:", err)
		return 1
	}
	return 0
}
