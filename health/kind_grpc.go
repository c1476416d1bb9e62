package health

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"

	"github.com/switchyard/switchyard/config"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
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

func (k grpcKind) probe(ctx context.Context, ep endpoint, h *config.Health) (Report, error) {
	cc, err := k.conns.get(ep)
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
// theirs. A backend is dialed in cleartext (h2c), or with its endpoint's
// TLS config when its pool's tls is enabled; a probe with another config
// (a reload edited pools.*.tls) replaces the connection.
type grpcConns struct {
	mu    sync.Mutex
	conns map[string]grpcConn
}

// grpcConn is a backend's connection and the TLS config it dials with
// (nil: cleartext).
type grpcConn struct {
	tls *tls.Config
	cc  *grpc.ClientConn
}

func newGRPCConns() *grpcConns { return &grpcConns{conns: map[string]grpcConn{}} }

// get returns ep's connection, creating it (lazily: no I/O) on first use
// or when ep's TLS config is not the one it was built with.
func (g *grpcConns) get(ep endpoint) (*grpc.ClientConn, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	old, ok := g.conns[ep.addr]
	if ok && old.tls == ep.tls {
		return old.cc, nil
	}
	if g.conns == nil {
		return nil, fmt.Errorf("health: gRPC probes are stopped")
	}
	creds := insecure.NewCredentials()
	if ep.tls != nil {
		creds = credentials.NewTLS(ep.tls)
	}
	cc, err := grpc.NewClient("passthrough:///"+ep.addr, grpc.WithTransportCredentials(creds),
		grpc.WithUserAgent("switchyard-probe"))
	if err != nil {
		return nil, fmt.Errorf("gRPC client for %s: %w", ep.addr, err)
	}
	if ok {
		_ = old.cc.Close()
	}
	g.conns[ep.addr] = grpcConn{tls: ep.tls, cc: cc}
	return cc, nil
}

// forget closes the connection of a backend no longer watched.
func (g *grpcConns) forget(addr string) {
	g.mu.Lock()
	c, ok := g.conns[addr]
	delete(g.conns, addr)
	g.mu.Unlock()
	if ok {
		_ = c.cc.Close()
	}
}

// close closes every connection; later probes fail.
func (g *grpcConns) close() {
	g.mu.Lock()
	conns := g.conns
	g.conns = nil
	g.mu.Unlock()
	for _, c := range conns {
		_ = c.cc.Close()
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
