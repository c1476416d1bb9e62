// Package gateway assembles one running Switchyard: routing state, health
// and warmup, config watch and durable switch state, the traffic and
// admin listeners, and their orderly shutdown. cmd/switchyard calls it for
// serve and demo; tests run it in process.
package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/switchyard/switchyard/admin"
	"github.com/switchyard/switchyard/analysis"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/console"
	"github.com/switchyard/switchyard/fleet"
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
//
// It reads top to bottom: assemble the parts in dependency order, bind
// the listeners, start the background loops, serve, shut down.
func Run(ctx context.Context, opts Options) error {
	if opts.ShutdownTimeout == 0 {
		opts.ShutdownTimeout = 30 * time.Second
	}
	g, err := assemble(opts)
	if err != nil {
		return err
	}
	defer g.close()

	// The certificate is re-read whenever its files change.
	if g.trafficTLS, err = proxy.NewListenerTLS(opts.Config.TLS, g.log.Named("tls")); err != nil {
		return err
	}
	if g.fleet != nil {
		// Never serve before knowing the fleet's color.
		sum := sha256.Sum256(opts.ConfigData)
		if err := g.fleet.Start(ctx, opts.Config, hex.EncodeToString(sum[:])); err != nil {
			return err
		}
	}
	trafficLn, adminLn, err := listen(opts.Config)
	if err != nil {
		return err
	}
	g.admin.SetListenAddr(adminLn.Addr())

	bgCtx, stopBg := context.WithCancel(context.Background())
	var bg sync.WaitGroup
	defer func() {
		stopBg()
		bg.Wait()
	}()
	g.startBackground(bgCtx, &bg, opts)

	return g.serve(ctx, trafficLn, adminLn, opts)
}

// instance is one running gateway's parts. Each is built once, in
// dependency order, by assemble; a config reload flows through them as
// one pipeline (see reloader.apply): decode and validate, prepare (compile
// what the new config needs; it may still be refused), publish (the new
// routing snapshot), notify (health targets, admin token, state file),
// then the gated switch if `active` changed.
type instance struct {
	log      *zap.Logger
	prom     *prometheus.Registry
	warmer   *warmup.Warmer
	reg      *proxy.Registry
	router   *proxy.Router
	checker  *health.Checker
	mirror   *proxy.Mirror
	analyzer *analysis.Controller
	admin    *admin.Server
	store    *state.Store // nil without state_dir
	fleet    *fleet.Fleet // nil unless fleet mode is on
	reloader *reloader    // nil without a config file (the demo)
	// trafficTLS serves the traffic listener over TLS; nil in cleartext,
	// where HTTP/2 arrives as h2c.
	trafficTLS *tls.Config

	// specs are the pools' compiled warmups, replaced as a whole by a
	// reload before its snapshot is published.
	specs atomic.Pointer[[2]*warmup.Spec]
}

// assemble builds every part from opts.Config. The router comes before
// the health checker, which follows its active color; the checker then
// explains the router's switch refusals.
func assemble(opts Options) (_ *instance, err error) {
	cfg, log := opts.Config, opts.Log
	specs, err := compileWarmups(cfg)
	if err != nil {
		return nil, err
	}
	fileActive := cfg.Active
	store, err := startState(cfg, opts.ConfigPath, opts.ConfigData, log.Named("config"))
	if err != nil {
		return nil, err
	}

	g := &instance{log: log, prom: prometheus.NewRegistry(), store: store}
	g.specs.Store(&specs)
	defer func() {
		if err != nil {
			g.close()
		}
	}()
	g.prom.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registerBuildInfo(g.prom, opts.Version)

	g.warmer = warmup.New(log.Named("warmup"))
	g.reg = proxy.NewRegistry(proxy.RegistryOptions{MaxIdleConns: cfg.Proxy.MaxIdleConnsPerBackend,
		MaxConns: cfg.Proxy.MaxConnsPerBackend})
	g.router = proxy.NewRouter(cfg, proxy.Options{Registry: g.reg, Metrics: proxy.NewMetrics(g.prom), Log: log.Named("switch"),
		DNSRefresh: cfg.DNSRefresh.D()})
	registerRouterMetrics(g.prom, g.router)
	g.checker = health.New(log.Named("health"), g.warmer, g.router.ActiveColor)
	g.router.SetExplainer(g.checker.Explain)
	g.prom.MustRegister(health.NewCollector(g.checker))
	g.syncTargets(cfg, g.router.Snapshot())
	g.router.OnChange(g.syncTargets)

	g.mirror = proxy.NewMirror(g.router, cfg.Traffic.Mirror, g.prom, log.Named("mirror"))
	// In fleet mode the admin API and the analysis change the fleet's
	// shared intent; the router follows it (Run joins the fleet).
	var routes interface {
		admin.Router
		analysis.Router
	} = g.router
	if cfg.Fleet.On() {
		if g.fleet, err = fleet.Join(cfg.Fleet, g.router, log.Named("fleet")); err != nil {
			return nil, err
		}
		g.prom.MustRegister(g.fleet.Collectors()...)
		routes = g.fleet.Router(g.router)
	}
	g.analyzer = analysis.New(routes, log.Named("switch"))
	if opts.ConfigPath != "" {
		g.reloader = newReloader(opts.ConfigPath, opts.ConfigData, cfg, fileActive, g.router, g, log.Named("config"), g.prom)
	}
	if store != nil {
		g.prom.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "switchyard_state_write_failures_total",
			Help: "Failed writes of the state file: switches in force that would not survive a restart.",
		}, func() float64 { return float64(store.Status().WriteFailures) }))
	}
	g.router.OnSwitch(g.recordSwitch)

	adminOpts := admin.Options{Gatherer: g.prom, Inspect: g.checker, Warmer: g.checker, Analyzer: g.analyzer}
	if store != nil {
		adminOpts.State = store
	}
	if g.reloader != nil {
		adminOpts.Reloader = g.reloader
		g.reloader.fleet = g.fleet != nil
	}
	if g.fleet != nil {
		adminOpts.Fleet = g.fleet
	}
	g.admin = admin.New(routes, log.Named("admin"), adminOpts)
	console.Mount(g.admin, g.router)
	if err := g.admin.SetTokenFile(cfg.Admin.TokenFile); err != nil {
		return nil, err
	}
	return g, nil
}

// close stops the parts in the reverse order of assembly.
func (g *instance) close() {
	if g.fleet != nil {
		g.fleet.Close()
	}
	if g.mirror != nil {
		g.mirror.Close()
	}
	if g.router != nil {
		g.router.Close()
	}
	if g.reg != nil {
		g.reg.CloseIdle()
	}
	if g.checker != nil {
		g.checker.Close()
	}
	if g.warmer != nil {
		g.warmer.Close()
	}
}

// prepare is a reload's first step after validation: it compiles what the
// new config needs and refuses it, changing nothing, when that fails. A
// reload may point admin.token_file at another file but never drop it,
// nor name one without a token.
func (g *instance) prepare(cfg *config.Config) (*[2]*warmup.Spec, error) {
	specs, err := compileWarmups(cfg)
	if err != nil {
		return nil, err
	}
	if err := g.admin.CheckTokenFile(cfg.Admin.TokenFile); err != nil {
		return nil, err
	}
	return &specs, nil
}

// publish makes a prepared config the one in force: the routing snapshot
// (whose change notifies the health checker through syncTargets), then
// the admin token, then the state file's record of the config it stands
// against.
func (g *instance) publish(cfg *config.Config, specs *[2]*warmup.Spec, sum string) {
	g.specs.Store(specs)
	if g.fleet != nil {
		// The fleet's intent owns active and traffic: an edit of them is
		// one fleet change, and the reload keeps the fleet's routing.
		g.fleet.FromFile(cfg, sum)
	}
	g.router.Apply(cfg)
	if cfg.Admin.TokenFile != g.admin.TokenFile() {
		// An error means the file broke since prepare read it: admin logs
		// it and refuses every /admin/ call until the file holds a token.
		_ = g.admin.SetTokenFile(cfg.Admin.TokenFile)
	}
	// The recorded switch stands against this file: the gateway saw it and
	// it did not change active.
	if g.store != nil {
		if rec, err := g.store.Load(); err == nil && rec.ConfigSHA256 != sum {
			rec.ConfigSHA256 = sum
			if err := g.store.Save(rec); err != nil {
				g.log.Error("updating the state file failed", zap.Error(err))
			}
		}
	}
}

// syncTargets keeps the checker's targets equal to the pools, with each
// pool's settings, on every reload or DNS change. The router calls it
// under its writer lock, so calls never overlap.
func (g *instance) syncTargets(cfg *config.Config, snap *proxy.Snapshot) {
	g.checker.Sync(targets(cfg, snap, *g.specs.Load()))
}

// recordSwitch runs after every switch, under the router's lock: the
// state file records it, and a file switch still waiting from before an
// operator's switch is dropped.
func (g *instance) recordSwitch(rec proxy.SwitchRecord) {
	if g.store != nil {
		r := state.Record{Active: rec.To, Version: rec.Version, Trigger: rec.Trigger, At: rec.At, Generation: rec.Generation}
		if g.reloader != nil {
			r.ConfigSHA256 = g.reloader.AppliedSHA256()
		}
		if err := g.store.Save(r); err != nil {
			g.log.Error("persisting the switch failed; it will not survive a restart", zap.Error(err))
		}
	}
	if g.reloader != nil {
		g.reloader.noteSwitch(rec)
	}
}

// listen binds both listeners, or neither.
func listen(cfg *config.Config) (traffic, adminLn net.Listener, err error) {
	traffic, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, nil, fmt.Errorf("gateway: listen %s: %w (is another process using it? change listen)", cfg.Listen, err)
	}
	adminLn, err = net.Listen("tcp", cfg.Admin.Listen)
	if err != nil {
		_ = traffic.Close()
		return nil, nil, fmt.Errorf("gateway: admin listen %s: %w (change admin.listen)", cfg.Admin.Listen, err)
	}
	return traffic, adminLn, nil
}

// startBackground starts the loops that run beside the listeners: the
// release analysis, the idle-connection reaper and, with a config file,
// its watch. Each stops when ctx ends; bg waits for them.
func (g *instance) startBackground(ctx context.Context, bg *sync.WaitGroup, opts Options) {
	bg.Add(1)
	go func() {
		defer bg.Done()
		g.analyzer.Run(ctx)
	}()
	bg.Add(1)
	go func() {
		defer bg.Done()
		// Idle upstream connections are closed once stale, not only when
		// the next request would have picked them.
		g.reg.ReapIdle(ctx, func() time.Duration { return g.router.Config().Proxy.Timeouts.Idle.D() })
	}()
	if g.reloader == nil {
		return
	}
	w, err := watch.New(opts.ConfigPath, opts.ConfigData, 0, g.log.Named("config"))
	if err != nil {
		g.log.Warn("config file watch unavailable; use POST /admin/reload", zap.Error(err))
		return
	}
	bg.Add(1)
	go func() {
		defer bg.Done()
		g.reloader.run(ctx, w)
	}()
}

// serve runs both listeners until ctx ends or one fails, then shuts down:
// no new connections, in-flight requests finish up to ShutdownTimeout.
func (g *instance) serve(ctx context.Context, trafficLn, adminLn net.Listener, opts Options) error {
	log := g.log
	handler := proxy.NewHandler(g.router, log.Named("proxy"))
	handler.SetMirror(g.mirror)
	traffic := proxy.NewTrafficServer(handler, proxy.NewServer(handler, opts.Config.Proxy.MaxRequestBodyBytes), g.trafficTLS)
	adminSrv := admin.NewHTTPServer(g.admin, admin.Limits{}, log.Named("admin"))

	errc := make(chan error, 2)
	go func() { errc <- traffic.Serve(trafficLn) }()
	go func() { errc <- adminSrv.Serve(adminLn) }()
	snap := g.router.Snapshot()
	log.Info("gateway started", zap.String("listen", trafficLn.Addr().String()), zap.String("admin", adminLn.Addr().String()),
		zap.String("env", string(snap.Active)), zap.String("version", snap.ActivePool().Version))
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
	g.admin.SetShuttingDown()
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
		// A Serve that had not registered its listener when shutdown began
		// ends on the listener we closed: that is a clean stop too.
		if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) && serveErr == nil {
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
	if st := store.Status(); !st.Persisted {
		log.Warn("state_dir is not writable: switches will not survive a restart until it is", zap.String("state_dir", cfg.StateDir),
			zap.String("error", st.LastError))
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
				Warmup: specs[i], KeepWarm: pc.Warmup.KeepWarmInterval.D(), TLS: pc.TLS})
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

func registerBuildInfo(reg prometheus.Registerer, version string) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "switchyard_build_info",
		Help:        "Build information; the value is always 1.",
		ConstLabels: prometheus.Labels{"version": version},
	})
	g.Set(1)
	reg.MustRegister(g)
}
