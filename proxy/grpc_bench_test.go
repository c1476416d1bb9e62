package proxy

import (
	"context"
	"testing"

	"github.com/switchyard/switchyard/proto/inference"
	"github.com/valyala/fasthttp"
)

// BenchmarkGRPC_UnaryThroughGateway times a unary ModelInfer from a
// grpc-go client through the HTTP/2 side to a grpc-go backend, everything
// on loopback in this process; BenchmarkGRPC_UnaryDirect is the same call
// without the gateway.
func BenchmarkGRPC_UnaryThroughGateway(b *testing.B) {
	be := startGRPCBackend(b, "blue")
	gw := startTrafficGateway(b, grpcConfig(b, "grpc", []string{be.addr}, nil, "", ""), nil)
	benchInfer(b, gw.Addr)
}

func BenchmarkGRPC_UnaryDirect(b *testing.B) {
	be := startGRPCBackend(b, "blue")
	benchInfer(b, be.addr)
}

func benchInfer(b *testing.B, addr string) {
	client := inference.NewGRPCInferenceServiceClient(grpcConn(b, addr, nil))
	req := &inference.ModelInferRequest{ModelName: "mlp"}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := client.ModelInfer(context.Background(), req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkListener_HTTP1 times HTTP/1.1 keep-alive requests over
// loopback TCP to a colorServer through the bare fasthttp server
// ("fasthttp") and through the two-stack traffic listener ("traffic"):
// the second must cost no more, since HTTP/1.1 connections are handed
// to fasthttp as they were accepted.
func BenchmarkListener_HTTP1(b *testing.B) {
	web := colorServer(b, "blue")
	cfg := testConfig(b, []string{hostPort(web)}, nil, "")
	for _, tc := range []struct {
		name string
		addr func() string
	}{
		{"fasthttp", func() string { return startGateway(b, cfg).Addr() }},
		{"traffic", func() string { return startTrafficGateway(b, cfg, nil).Addr }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			addr := tc.addr()
			c := &fasthttp.HostClient{Addr: addr, MaxConns: 64}
			defer c.CloseIdleConnections()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				defer fasthttp.ReleaseRequest(req)
				defer fasthttp.ReleaseResponse(resp)
				for pb.Next() {
					req.SetRequestURI("http://" + addr + "/predict")
					req.Header.SetMethod(fasthttp.MethodPost)
					req.SetBodyString(`{"inputs":[[0]]}`)
					if err := c.Do(req, resp); err != nil || resp.StatusCode() != 200 {
						b.Errorf("%v %d", err, resp.StatusCode())
						return
					}
				}
			})
		})
	}
}
