// Package gateway assembles one running Switchyard: routing state, health
// and warmup, config watch and durable switch state, the traffic and
// admin listeners, and their orderly shutdown. cmd/switchyard calls it for
// serve and demo; tests run it in process.
package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/switchyard/switchyard/admin"
	"github.com/switchyard/switchyard/analysis"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/health"
	"github.com/switchyard/switchyard/proxy"
	"github.com/switchyard/switchyard/state"
	"github.com/switchyard/switchyard/warmup"
	"github.com/switchyard/switchyard/watch"
	"go.uber.org/zap"
)

// Options configure Run.
type Options struct {
	// Config is the validated configuration to start with.
	Config *config.Config
	// ConfigPath is the file Config came from; empty for the demo. When
	// set, the file is watched and POST /admin/reload re-reads it.
	ConfigPath string
	// ConfigData is the file's content as loaded, so the watcher reports
	// only real changes.
	ConfigData []byte
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
	specs, err := compileWarmups(cfg)
	if err != nil {
		return err
	}
	fileActive := cfg.Active
	store, err := startState(cfg, opts.ConfigPath, opts.ConfigData, log.Named("config"))
	if err != nil {
		return err
	}

	promReg := prometheus.NewRegistry()
	promReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registerBuildInfo(promReg, opts.Version)

	warmer := warmup.New(log.Named("warmup"))
	defer warmer.Close()
	// The checker and the router need each other: the checker asks which
	// color is live, the router asks why a backend is not ready.
	var router *proxy.Router
	checker := health.New(log.Named("health"), warmer, func() config.Color { return router.Snapshot().Active })
	defer checker.Close()
	promReg.MustRegister(health.NewCollector(checker))

	reg := proxy.NewRegistry(proxy.RegistryOptions{MaxIdleConns: cfg.Proxy.MaxIdleConnsPerBackend})
	defer reg.CloseIdle()
	router = proxy.NewRouter(cfg, proxy.Options{Registry: reg, Metrics: proxy.NewMetrics(promReg), Log: log.Named("switch"),
		Explain: checker.Explain, DNSRefresh: cfg.DNSRefresh.D()})
	defer router.Close()
	registerRouterMetrics(promReg, router)

	// Keep the checker's targets equal to the pools, with each pool's
	// settings, on every reload or DNS change.
	var specsMu sync.Mutex
	syncTargets := func(c *config.Config, snap *proxy.Snapshot) {
		specsMu.Lock()
		defer specsMu.Unlock()
		checker.Sync(targets(c, snap, specs))
	}
	syncTargets(cfg, router.Snapshot())
	router.OnChange(syncTargets)
	mirror := proxy.NewMirror(router, cfg.Traffic.Mirror, promReg, log.Named("mirror"))
	defer mirror.Close()
	analyzer := analysis.New(router, log.Named("switch"))

	adminOpts := admin.Options{Gatherer: promReg, Inspect: checker, Warmer: checker, Analyzer: analyzer}
	var rl *reloader
	if opts.ConfigPath != "" {
		rl = newReloader(opts.ConfigPath, opts.ConfigData, cfg, fileActive, router, log.Named("config"), promReg)
	}
	if store != nil {
		router.OnSwitch(func(rec proxy.SwitchRecord) {
			r := state.Record{Active: rec.To, Version: rec.Version, Trigger: rec.Trigger, At: rec.At, Generation: rec.Generation}
			if rl != nil {
				r.ConfigSHA256 = rl.AppliedSHA256()
			}
			if err := store.Save(r); err != nil {
				log.Error("persisting the switch failed; it will not survive a restart", zap.Error(err))
			}
		})
	}
	if rl != nil {
		rl.prepare = func(c *config.Config) error {
			s, err := compileWarmups(c)
			if err != nil {
				return err
			}
			specsMu.Lock()
			specs = s
			specsMu.Unlock()
			return nil
		}
		router.OnSwitch(rl.noteSwitch)
		adminOpts.Reloader = rl
	}
	adm := admin.New(router, log.Named("admin"), adminOpts)
	adm.SetToken(token)
	if rl != nil {
		rl.onApply = func(c *config.Config, sum string) {
			if tok, err := readToken(c.Admin.TokenFile); err == nil {
				adm.SetToken(tok)
			} else {
				log.Error("admin token not reloaded; the old one stays", zap.Error(err))
			}
			// The recorded switch stands against this file: the gateway saw
			// it and it did not change active.
			if store != nil {
				if rec, err := store.Load(); err == nil && rec.ConfigSHA256 != sum {
					rec.ConfigSHA256 = sum
					if err := store.Save(rec); err != nil {
						log.Error("updating the state file failed", zap.Error(err))
					}
				}
			}
		}
	}

	trafficLn, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("gateway: listen %s: %w (is another process using it? change listen)", cfg.Listen, err)
	}
	adminLn, err := net.Listen("tcp", cfg.Admin.Listen)
	if err != nil {
		_ = trafficLn.Close()
		return fmt.Errorf("gateway: admin listen %s: %w (change admin.listen)", cfg.Admin.Listen, err)
	}
	handler := proxy.NewHandler(router, log.Named("proxy"))
	handler.SetMirror(mirror)
	traffic := proxy.NewServer(handler, cfg.Proxy.MaxRequestBodyBytes)
	adminSrv := &http.Server{Handler: adm, ReadHeaderTimeout: 10 * time.Second}

	var bg sync.WaitGroup
	bgCtx, stopBg := context.WithCancel(context.Background())
	defer func() {
		stopBg()
		bg.Wait()
	}()
	bg.Add(1)
	go func() {
		defer bg.Done()
		analyzer.Run(bgCtx)
	}()
	if rl != nil {
		w, err := watch.New(opts.ConfigPath, opts.ConfigData, 0, log.Named("config"))
		if err != nil {
			log.Warn("config file watch unavailable; use POST /admin/reload", zap.Error(err))
		} else {
			bg.Add(1)
			go func() {
				defer bg.Done()
				rl.run(bgCtx, w)
			}()
		}
	}

	errc := make(chan error, 2)
	go func() { errc <- traffic.Serve(trafficLn) }()
	go func() { errc <- adminSrv.Serve(adminLn) }()
	log.Info("gateway started", zap.String("listen", trafficLn.Addr().String()), zap.String("admin", adminLn.Addr().String()),
		zap.String("env", string(router.Snapshot().Active)), zap.String("version", router.Snapshot().ActivePool().Version))
	if opts.Started != nil {
		opts.Started(trafficLn.Addr().String(), adminLn.Addr().String())
	}

	var serveErr error
	pending := 2
	select {
	case <-ctx.Done():
	case err := <-errc:
		pending--
		serveErr = fmt.Errorf("gateway: listener stopped: %w", err)
	}

	log.Info("shutting down: no new connections, finishing in-flight requests", zap.Duration("timeout", opts.ShutdownTimeout))
	adm.SetShuttingDown()
	sctx, cancel := context.WithTimeout(context.Background(), opts.ShutdownTimeout)
	defer cancel()
	if err := traffic.ShutdownWithContext(sctx); err != nil {
		log.Warn("in-flight requests did not finish before the shutdown timeout", zap.Error(err))
	}
	// Shutdown does nothing to a Serve that has not registered its
	// listener yet (a stop right at start): closing it ends that Serve.
	_ = trafficLn.Close()
	_ = adminSrv.Shutdown(sctx)
	for ; pending > 0; pending-- {
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) && serveErr == nil {
			serveErr = err
		}
	}
	log.Info("stopped")
	return serveErr
}

// startState opens the state directory and applies the start-up rule to
// cfg.Active: the newest intent, file edit or recorded switch, wins.
func startState(cfg *config.Config, path string, data []byte, log *zap.Logger) (*state.Store, error) {
	if cfg.StateDir == "" {
		return nil, nil
	}
	store, err := state.Open(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	rec, err := store.Load()
	have := err == nil
	if err != nil && !errors.Is(err, state.ErrNone) {
		log.Error("state file unusable; ignoring it", zap.Error(err))
	}
	var mod time.Time
	if path != "" {
		if fi, err := os.Stat(path); err == nil {
			mod = fi.ModTime()
		}
	}
	sum := sha256.Sum256(data)
	active, why := state.Choose(cfg.Active, mod, hex.EncodeToString(sum[:]), rec, have)
	if active != cfg.Active {
		log.Info("starting on the color of the last recorded switch", zap.String("env", string(active)), zap.String("reason", why))
	}
	cfg.Active = active
	return store, nil
}

// compileWarmups compiles each pool's warmup; a nil entry means none.
func compileWarmups(cfg *config.Config) ([2]*warmup.Spec, error) {
	var specs [2]*warmup.Spec
	for i, c := range []config.Color{config.Blue, config.Green} {
		s, err := warmup.Compile(cfg.Pools.Get(c).Warmup)
		if err != nil {
			return specs, fmt.Errorf("config: pools.%s.warmup: %w", c, err)
		}
		specs[i] = s
	}
	return specs, nil
}

func targets(cfg *config.Config, snap *proxy.Snapshot, specs [2]*warmup.Spec) []health.Target {
	var out []health.Target
	for i, c := range []config.Color{config.Blue, config.Green} {
		pc := cfg.Pools.Get(c)
		for _, b := range snap.Pool(c).Backends {
			out = append(out, health.Target{Backend: b, Color: c, Version: pc.Version, Health: *pc.Health,
				Warmup: specs[i], KeepWarm: pc.Warmup.KeepWarmInterval.D()})
		}
	}
	return out
}

func registerRouterMetrics(reg prometheus.Registerer, r *proxy.Router) {
	for _, c := range []config.Color{config.Blue, config.Green} {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "switchyard_inflight_requests",
			Help:        "Requests in flight per pool color, streams included.",
			ConstLabels: prometheus.Labels{"color": string(c)},
		}, func() float64 { return float64(r.Snapshot().Pool(c).Inflight()) }))
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "switchyard_active_color",
			Help:        "1 for the color receiving traffic, 0 for the standby.",
			ConstLabels: prometheus.Labels{"color": string(c)},
		}, func() float64 {
			if r.Snapshot().Active == c {
				return 1
			}
			return 0
		}))
	}
	for _, c := range []config.Color{config.Blue, config.Green} {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "switchyard_traffic_weight_percent",
			Help:        "Percent of live requests routed to each color (a canary split while below 100).",
			ConstLabels: prometheus.Labels{"color": string(c)},
		}, func() float64 { return r.Snapshot().Traffic().Weights[c] }))
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "switchyard_mirror_percent",
		Help: "Percent of live requests copied to the standby color as shadow traffic.",
	}, func() float64 {
		if m := r.Snapshot().Traffic().Mirror; m != nil {
			return m.Percent
		}
		return 0
	}))
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "switchyard_routing_generation",
		Help: "Generation of the routing state; it grows with every switch, reload or DNS change.",
	}, func() float64 { return float64(r.Snapshot().Generation) }))
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
