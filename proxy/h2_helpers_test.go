package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proto/inference"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// trafficGateway is the whole traffic listener (both stacks) on a
// loopback port, for tests of HTTP/2 and gRPC.
type trafficGateway struct {
	Addr    string
	Router  *Router
	Metrics *prometheus.Registry
	Handler *Handler
	Server  *TrafficServer
}

// startTrafficGateway runs cfg's traffic listener, with TLS when tlsConf
// is set, until the test ends. tweaks change the server before it serves.
func startTrafficGateway(t testing.TB, cfg *config.Config, tlsConf *tls.Config, tweaks ...func(*TrafficServer)) *trafficGateway {
	t.Helper()
	log := zap.NewNop()
	if tt, ok := t.(*testing.T); ok {
		log = zaptest.NewLogger(tt, zaptest.Level(zap.WarnLevel))
	}
	reg := NewRegistry(RegistryOptions{StartReady: true})
	promReg := prometheus.NewRegistry()
	r := NewRouter(cfg, Options{Registry: reg, Metrics: NewMetrics(promReg), Log: log})
	h := NewHandler(r, log)
	srv := NewTrafficServer(h, NewServer(h, cfg.Proxy.MaxRequestBodyBytes), tlsConf)
	for _, tweak := range tweaks {
		tweak(srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.ShutdownWithContext(ctx)
		require.NoError(t, <-done)
		r.Close()
		reg.CloseIdle()
	})
	return &trafficGateway{Addr: ln.Addr().String(), Router: r, Metrics: promReg, Handler: h, Server: srv}
}

// grpcConn dials the gateway (or any address) with grpc-go: cleartext
// HTTP/2 with prior knowledge, or TLS with ALPN h2 when tlsConf is set.
func grpcConn(t testing.TB, addr string, tlsConf *tls.Config) *grpc.ClientConn {
	t.Helper()
	creds := insecure.NewCredentials()
	if tlsConf != nil {
		creds = credentials.NewTLS(tlsConf)
	}
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds))
	require.NoError(t, err)
	t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// grpcBackend is a real grpc-go server on loopback: the KServe v2
// GRPCInferenceService from the published proto, and grpc.testing's
// TestService for server and bidirectional streams. Every answer names
// the color that gave it.
type grpcBackend struct {
	inference.UnimplementedGRPCInferenceServiceServer
	grpc_testing.UnimplementedTestServiceServer

	addr, color string
	srv         *grpc.Server
	infers      atomic.Int64
	// inferHook, when set, runs inside ModelInfer before the answer.
	inferHook func(ctx context.Context) error
	// step paces StreamingOutputCall: one response per receive.
	step chan struct{}
	// started receives once per stream the backend began; cancelled once
	// per call whose context the client ended.
	started, cancelled chan struct{}
}

// startGRPCBackend serves color's backend until the test ends.
func startGRPCBackend(t testing.TB, color string, opts ...grpc.ServerOption) *grpcBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	b := &grpcBackend{addr: ln.Addr().String(), color: color, step: make(chan struct{}),
		started: make(chan struct{}, 16), cancelled: make(chan struct{}, 16)}
	b.srv = grpc.NewServer(opts...)
	inference.RegisterGRPCInferenceServiceServer(b.srv, b)
	grpc_testing.RegisterTestServiceServer(b.srv, b)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = b.srv.Serve(ln)
	}()
	t.Cleanup(func() {
		b.srv.Stop()
		<-done
	})
	return b
}

// stop ends the server now, as a crashed pod would.
func (b *grpcBackend) stop() { b.srv.Stop() }

// ModelInfer answers with one FP32 output and the color as the model
// version, plus a trailer naming the color.
func (b *grpcBackend) ModelInfer(ctx context.Context, req *inference.ModelInferRequest) (*inference.ModelInferResponse, error) {
	b.infers.Add(1)
	if b.inferHook != nil {
		if err := b.inferHook(ctx); err != nil {
			return nil, err
		}
	}
	_ = grpc.SetTrailer(ctx, metadata.Pairs("x-backend-color", b.color))
	return &inference.ModelInferResponse{
		ModelName: req.GetModelName(), ModelVersion: b.color, Id: req.GetId(),
		Outputs: []*inference.ModelInferResponse_InferOutputTensor{{
			Name: "output", Datatype: "FP32", Shape: []int64{1, 1},
			Contents: &inference.InferTensorContents{Fp32Contents: []float32{1}},
		}},
	}, nil
}

func (b *grpcBackend) ServerReady(context.Context, *inference.ServerReadyRequest) (*inference.ServerReadyResponse, error) {
	return &inference.ServerReadyResponse{Ready: true}, nil
}

// StreamingOutputCall sends one response per entry of
// ResponseParameters, each after a receive from step (or at once when
// the test does not pace), each naming the color.
func (b *grpcBackend) StreamingOutputCall(req *grpc_testing.StreamingOutputCallRequest, stream grpc.ServerStreamingServer[grpc_testing.StreamingOutputCallResponse]) error {
	b.started <- struct{}{}
	for i := range req.GetResponseParameters() {
		if req.GetPayload().GetType() == grpc_testing.PayloadType_COMPRESSABLE {
			select {
			case <-b.step:
			case <-stream.Context().Done():
				b.cancelled <- struct{}{}
				return stream.Context().Err()
			}
		}
		err := stream.Send(&grpc_testing.StreamingOutputCallResponse{Payload: &grpc_testing.Payload{Body: []byte(fmt.Sprintf("%s %d", b.color, i))}})
		if err != nil {
			return err
		}
	}
	return nil
}

// FullDuplexCall echoes each message with the color, until the client
// closes its side.
func (b *grpcBackend) FullDuplexCall(stream grpc.BidiStreamingServer[grpc_testing.StreamingOutputCallRequest, grpc_testing.StreamingOutputCallResponse]) error {
	b.started <- struct{}{}
	for {
		req, err := stream.Recv()
		if err != nil {
			if stream.Context().Err() != nil {
				b.cancelled <- struct{}{}
			}
			return nil
		}
		body := b.color + " " + string(req.GetPayload().GetBody())
		if err := stream.Send(&grpc_testing.StreamingOutputCallResponse{Payload: &grpc_testing.Payload{Body: []byte(body)}}); err != nil {
			return err
		}
	}
}

// colorOf reads the color a payload names.
func colorOf(p *grpc_testing.Payload) string {
	color, _, _ := strings.Cut(string(p.GetBody()), " ")
	return color
}

// requireCode fails unless err is a gRPC status with code.
func requireCode(t testing.TB, err error, code codes.Code, msgAndArgs ...any) *status.Status {
	t.Helper()
	require.Error(t, err, msgAndArgs...)
	st, ok := status.FromError(err)
	require.True(t, ok, "not a gRPC status: %v", err)
	require.Equal(t, code, st.Code(), "%v", err)
	return st
}

// activeLog records which color was active when, so a test can tell
// whether an answer came from a color that could have been active at some
// moment of its call. A switch is known only to have happened between the
// moment it was asked for and the moment it returned, so around each one
// both colors count as possible.
type activeLog struct {
	mu      sync.Mutex
	changes []activeChange
}

type activeChange struct {
	asked, done time.Time
	color       config.Color
}

// switched records a switch to c asked at asked that returned at done.
func (l *activeLog) switched(c config.Color, asked, done time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.changes = append(l.changes, activeChange{asked, done, c})
}

// possible reports whether c may have been active at some moment of
// [start, end].
func (l *activeLog) possible(c config.Color, start, end time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, ch := range l.changes {
		from := ch.asked
		until := end.Add(time.Hour)
		if i+1 < len(l.changes) {
			until = l.changes[i+1].done
		}
		if ch.color == c && !from.After(end) && until.After(start) {
			return true
		}
	}
	return false
}
