package health

import (
	"context"
	"fmt"
	"sync"

	"github.com/switchyard/switchyard/config"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// grpcKind asks the standard gRPC health service
// (grpc.health.v1.Health/Check), which grpc-go, grpc-java and most gRPC
// servers, vLLM's and SGLang's included, register: healthy when the
// status of Service ("" is the whole server) is SERVING.
type grpcKind struct{ conns *grpcConns }

var _ kind = grpcKind{}

func (grpcKind) defaultPath() string { return "" }

func (k grpcKind) probe(ctx context.Context, addr string, h *config.Health) (Report, error) {
	cc, err := k.conns.get(addr)
	if err != nil {
		return Report{}, err
	}
	res, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: h.Service})
	if err != nil {
		return Report{}, fmt.Errorf("grpc.health.v1 Check: %w", grpcErr(err))
	}
	if s := res.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
		return Report{}, fmt.Errorf("grpc.health.v1 Check: service %q is %s", h.Service, s)
	}
	return Report{}, nil
}

// grpcConns keeps one gRPC client connection per backend, so that probes
// reuse an HTTP/2 connection across intervals, as the HTTP kinds reuse
// theirs. Backends are dialed in cleartext (h2c), as the gateway's grpc
// and h2c pools are by default.
type grpcConns struct {
	mu    sync.Mutex
	conns map[string]*grpc.ClientConn
}

func newGRPCConns() *grpcConns { return &grpcConns{conns: map[string]*grpc.ClientConn{}} }

// get returns addr's connection, creating it (lazily: no I/O) on first use.
func (g *grpcConns) get(addr string) (*grpc.ClientConn, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if cc, ok := g.conns[addr]; ok {
		return cc, nil
	}
	if g.conns == nil {
		return nil, fmt.Errorf("health: gRPC probes are stopped")
	}
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUserAgent("switchyard-probe"))
	if err != nil {
		return nil, fmt.Errorf("gRPC client for %s: %w", addr, err)
	}
	g.conns[addr] = cc
	return cc, nil
}

// forget closes the connection of a backend no longer watched.
func (g *grpcConns) forget(addr string) {
	g.mu.Lock()
	cc, ok := g.conns[addr]
	delete(g.conns, addr)
	g.mu.Unlock()
	if ok {
		_ = cc.Close()
	}
}

// close closes every connection; later probes fail.
func (g *grpcConns) close() {
	g.mu.Lock()
	conns := g.conns
	g.conns = nil
	g.mu.Unlock()
	for _, cc := range conns {
		_ = cc.Close()
	}
}

// grpcErr words a gRPC error as its code and message, without the
// "rpc error: " prefix.
func grpcErr(err error) error {
	if st, ok := status.FromError(err); ok {
		return fmt.Errorf("%s: %s", st.Code(), st.Message())
	}
	return err
}
