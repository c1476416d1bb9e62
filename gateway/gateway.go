// Package gateway assembles one running Switchyard: the routing state, the
// traffic and admin listeners, and their orderly shutdown. cmd/switchyard
// calls it for serve and demo; tests run it in process.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/switchyard/switchyard/admin"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proxy"
	"go.uber.org/zap"
)

// Options configure Run.
type Options struct {
	// Config is the validated configuration to start with.
	Config *config.Config
	// ConfigPath is the file Config came from; empty for the demo.
	ConfigPath string
	// Log receives everything; it is never nil.
	Log *zap.Logger
	// Version is reported in build info.
	Version string
	// ShutdownTimeout bounds how long in-flight requests may finish after
	// a stop signal. Default 30s.
	ShutdownTimeout time.Duration
	// Started, when set, is called with the bound addresses once both
	// listeners accept connections.
	Started func(traffic, admin string)
}

// Run serves until ctx is cancelled, then stops accepting, lets in-flight
// requests finish up to ShutdownTimeout, and returns nil.
func Run(ctx context.Context, opts Options) error {
	cfg, log := opts.Config, opts.Log
	if opts.ShutdownTimeout == 0 {
		opts.ShutdownTimeout = 30 * time.Second
	}
	token, err := readToken(cfg.Admin.TokenFile)
	if err != nil {
		return err
	}

	promReg := prometheus.NewRegistry()
	promReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registerBuildInfo(promReg, opts.Version)

	reg := proxy.NewRegistry(proxy.RegistryOptions{MaxIdleConns: cfg.Proxy.MaxIdleConnsPerBackend, StartReady: true})
	router := proxy.NewRouter(cfg, proxy.Options{Registry: reg, Metrics: proxy.NewMetrics(promReg), Log: log.Named("switch")})
	defer router.Close()
	defer reg.CloseIdle()

	adm := admin.New(router, log.Named("admin"), admin.Options{Gatherer: promReg})
	adm.SetToken(token)

	trafficLn, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("gateway: listen %s: %w (is another process using it? change listen)", cfg.Listen, err)
	}
	adminLn, err := net.Listen("tcp", cfg.Admin.Listen)
	if err != nil {
		_ = trafficLn.Close()
		return fmt.Errorf("gateway: admin listen %s: %w (change admin.listen)", cfg.Admin.Listen, err)
	}
	traffic := proxy.NewServer(proxy.NewHandler(router, log.Named("proxy")), cfg.Proxy.MaxRequestBodyBytes)
	adminSrv := &http.Server{Handler: adm, ReadHeaderTimeout: 10 * time.Second}

	errc := make(chan error, 2)
	go func() { errc <- traffic.Serve(trafficLn) }()
	go func() { errc <- adminSrv.Serve(adminLn) }()
	log.Info("gateway started", zap.String("listen", trafficLn.Addr().String()), zap.String("admin", adminLn.Addr().String()),
		zap.String("env", string(cfg.Active)), zap.String("version", cfg.Pools.Get(cfg.Active).Version))
	if opts.Started != nil {
		opts.Started(trafficLn.Addr().String(), adminLn.Addr().String())
	}

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
		serveErr = fmt.Errorf("gateway: listener stopped: %w", serveErr)
	}

	log.Info("shutting down: no new connections, finishing in-flight requests", zap.Duration("timeout", opts.ShutdownTimeout))
	adm.SetShuttingDown()
	sctx, cancel := context.WithTimeout(context.Background(), opts.ShutdownTimeout)
	defer cancel()
	if err := traffic.ShutdownWithContext(sctx); err != nil {
		log.Warn("in-flight requests did not finish before the shutdown timeout", zap.Error(err))
	}
	_ = adminSrv.Shutdown(sctx)
	// Both Serve calls have returned by now (or return promptly).
	for range 2 - boolInt(serveErr != nil) {
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) && serveErr == nil && ctx.Err() == nil {
			serveErr = err
		}
	}
	log.Info("stopped")
	return serveErr
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func readToken(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("gateway: reading admin.token_file: %w", err)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", fmt.Errorf("gateway: admin.token_file %s is empty; put a token in it or unset token_file", path)
	}
	return tok, nil
}

func registerBuildInfo(reg prometheus.Registerer, version string) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "switchyard_build_info",
		Help:        "Build information; the value is always 1.",
		ConstLabels: prometheus.Labels{"version": version},
	})
	g.Set(1)
	reg.MustRegister(g)
}
