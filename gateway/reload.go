package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchyard/switchyard/admin"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proxy"
	"github.com/switchyard/switchyard/warmup"
	"github.com/switchyard/switchyard/watch"
	"go.uber.org/zap"
)

// ConfigStatus is the "config" object of GET /admin/status, which the
// admin package owns with the rest of the status document.
type ConfigStatus = admin.ConfigStatus

// reloader applies config file changes: a broken file is never applied,
// unchanged content does nothing, and an edit of `active` goes through the
// same gated switch as the admin API.
type reloader struct {
	path   string
	router *proxy.Router
	target reloadTarget
	log    *zap.Logger

	reloads *prometheus.CounterVec

	mu         sync.Mutex
	started    *config.Config // what the listeners were started with
	fileActive config.Color   // `active` as the file said at the last good load
	status     ConfigStatus
	pending    config.Color // a file switch refused by the gate, retried
	pendingWhy string
	pendingGen uint64 // routing generation when pending was set
	// lastManual is the generation of the last switch not made by the file.
	lastManual atomic.Uint64
	// applied is the sha256 of the config in force, readable under the
	// router's lock (by the state-saving hook) without taking r.mu.
	applied atomic.Pointer[string]
	// fleet is set in fleet mode, where the fleet's intent owns `active`
	// and an edit of it is one fleet change (instance.publish), not a
	// switch of this gateway.
	fleet bool
}

// reloadTarget is what a reload changes, in two steps: prepare may refuse
// the config and changes nothing; publish puts it in force.
type reloadTarget interface {
	prepare(cfg *config.Config) (*[2]*warmup.Spec, error)
	publish(cfg *config.Config, specs *[2]*warmup.Spec, sha256 string)
}

func newReloader(path string, data []byte, cfg *config.Config, fileActive config.Color, router *proxy.Router, target reloadTarget,
	log *zap.Logger, reg prometheus.Registerer) *reloader {
	r := &reloader{
		path: path, router: router, target: target, log: log, started: cfg, fileActive: fileActive,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchyard_config_reloads_total",
			Help: "Config loads after start, by result: ok, error (the running config was kept) or unchanged.",
		}, []string{"result"}),
	}
	for _, res := range []string{"ok", "error", "unchanged"} {
		r.reloads.WithLabelValues(res)
	}
	reg.MustRegister(r.reloads)
	sum := sha256.Sum256(data)
	r.status = ConfigStatus{Path: path, Generation: 1, LoadedAt: time.Now(), SHA256: hex.EncodeToString(sum[:])}
	r.applied.Store(&r.status.SHA256)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "switchyard_config_last_reload_successful",
		Help: "1 when the last config load succeeded, 0 while a broken config is being ignored.",
	}, func() float64 {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.status.LastError != "" {
			return 0
		}
		return 1
	}))
	return r
}

// AppliedSHA256 returns the sha256 of the config in force.
func (r *reloader) AppliedSHA256() string { return *r.applied.Load() }

// Reload re-reads the file now (POST /admin/reload). A file that cannot
// be read is recorded as a broken one is: the running config stays.
func (r *reloader) Reload(trigger string) error {
	data, err := config.ReadFile(r.path)
	if err != nil {
		r.fail(err)
		return err
	}
	return r.apply(data, trigger)
}

// ConfigStatus implements admin.Reloader.
func (r *reloader) ConfigStatus() ConfigStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.status
	if r.pending != "" {
		st.PendingSwitch = fmt.Sprintf("to %s: %s", r.pending, r.pendingWhy)
	}
	return st
}

func (r *reloader) fail(err error) {
	now := time.Now()
	r.mu.Lock()
	r.status.LastError, r.status.LastErrorAt = err.Error(), &now
	r.mu.Unlock()
	r.reloads.WithLabelValues("error").Inc()
	r.log.Error("config rejected; the running config stays in force", zap.String("path", r.path), zap.Error(err))
}

func (r *reloader) apply(data []byte, trigger string) error {
	sum := sha256.Sum256(data)
	hexSum := hex.EncodeToString(sum[:])
	r.mu.Lock()
	defer r.mu.Unlock()
	if hexSum == r.status.SHA256 {
		r.reloads.WithLabelValues("unchanged").Inc()
		if r.status.LastError != "" {
			// The file is back to what is running (an undo, a ConfigMap
			// rollback): the broken version is gone.
			r.status.LastError, r.status.LastErrorAt = "", nil
			r.log.Info("config file is back to the running config; earlier error cleared", zap.String("trigger", trigger))
		}
		return nil
	}
	// Decode and validate, then prepare: any of them may refuse the
	// config, and then nothing changed.
	cfg, err := config.Parse(data)
	var specs *[2]*warmup.Spec
	if err == nil {
		specs, err = r.target.prepare(cfg)
	}
	if err != nil {
		r.mu.Unlock()
		r.fail(err)
		r.mu.Lock()
		return err
	}
	restart := r.keepRestartOnly(cfg)
	// Publish and notify; the switch, if `active` changed, comes last.
	r.applied.Store(&hexSum)
	r.target.publish(cfg, specs, hexSum)

	now := time.Now()
	r.status.Generation++
	r.status.LoadedAt, r.status.SHA256 = now, hexSum
	r.status.LastError, r.status.LastErrorAt, r.status.RestartNeeded = "", nil, restart
	r.reloads.WithLabelValues("ok").Inc()
	fields := []zap.Field{zap.String("trigger", trigger), zap.Int("config_generation", r.status.Generation),
		zap.String("sha256", hexSum[:12]), zap.String("env", string(cfg.Active)), zap.String("version", cfg.Pools.Get(cfg.Active).Version)}
	if len(restart) > 0 {
		fields = append(fields, zap.Strings("restart_needed", restart))
	}
	r.log.Info("config applied", fields...)

	// Only an edit of `active` moves traffic: a file that still says what
	// it said before must not undo a switch made through the admin API.
	if cfg.Active != r.fileActive && !r.fleet {
		r.fileActive = cfg.Active
		r.pending, r.pendingWhy, r.pendingGen = cfg.Active, "", r.router.Snapshot().Generation
		r.trySwitchLocked()
	}
	return nil
}

// keepRestartOnly puts back settings that only a restart can change and
// says which ones the file tried to change.
func (r *reloader) keepRestartOnly(cfg *config.Config) []string {
	var msgs []string
	keep := func(name string, field *string, was string) {
		if *field != was {
			msgs = append(msgs, fmt.Sprintf("%s: %q -> %q needs a restart; still %q", name, was, *field, was))
			*field = was
		}
	}
	keep("listen", &cfg.Listen, r.started.Listen)
	keep("admin.listen", &cfg.Admin.Listen, r.started.Admin.Listen)
	keep("state_dir", &cfg.StateDir, r.started.StateDir)
	if cfg.Fleet != r.started.Fleet {
		msgs = append(msgs, fmt.Sprintf("fleet: %+v -> %+v needs a restart; still %+v", r.started.Fleet, cfg.Fleet, r.started.Fleet))
		cfg.Fleet = r.started.Fleet
	}
	// The listener's kind (TLS or cleartext), the files its certificate is
	// re-read from and its lowest version are fixed when it starts; new
	// contents of the same files need no restart.
	keep("tls.cert_file", &cfg.TLS.CertFile, r.started.TLS.CertFile)
	keep("tls.key_file", &cfg.TLS.KeyFile, r.started.TLS.KeyFile)
	keep("tls.min_version", &cfg.TLS.MinVersion, r.started.TLS.MinVersion)
	if cfg.Proxy.Client != r.started.Proxy.Client {
		msgs = append(msgs, fmt.Sprintf("proxy.client: %+v -> %+v needs a restart; still %+v",
			r.started.Proxy.Client, cfg.Proxy.Client, r.started.Proxy.Client))
		cfg.Proxy.Client = r.started.Proxy.Client
	}
	if cfg.Proxy.MaxRequestBodyBytes > r.started.Proxy.MaxRequestBodyBytes {
		msgs = append(msgs, fmt.Sprintf("proxy.max_request_body_bytes: raising %d -> %d needs a restart; %d applies until then",
			r.started.Proxy.MaxRequestBodyBytes, cfg.Proxy.MaxRequestBodyBytes, r.started.Proxy.MaxRequestBodyBytes))
		cfg.Proxy.MaxRequestBodyBytes = r.started.Proxy.MaxRequestBodyBytes
	}
	for _, m := range msgs {
		r.log.Warn("config change not applied live", zap.String("change", m))
	}
	return msgs
}

// trySwitchLocked performs the pending file switch if the gate allows.
func (r *reloader) trySwitchLocked() {
	to := r.pending
	if to == "" {
		return
	}
	if r.lastManual.Load() > r.pendingGen {
		r.log.Info("pending config switch dropped: an operator switched since", zap.String("env", string(to)))
		r.pending, r.pendingWhy = "", ""
		return
	}
	res, err := r.router.Switch(proxy.SwitchRequest{To: to, Trigger: proxy.TriggerFile})
	var refused *proxy.RefusedError
	switch {
	case err == nil:
		r.pending, r.pendingWhy = "", ""
		if res.NoOp {
			r.log.Info("config active color already in force", zap.String("env", string(to)))
		}
	case errors.As(err, &refused):
		if r.pendingWhy == "" {
			r.log.Warn("config switch waits until the target pool is ready", zap.String("env", string(to)), zap.Error(err))
		}
		r.pendingWhy = strings.TrimPrefix(err.Error(), "proxy: ")
	default:
		r.pending, r.pendingWhy = "", ""
		r.log.Error("config switch failed", zap.String("env", string(to)), zap.Error(err))
	}
}

// noteSwitch records an operator's switch: a file switch still waiting
// from before it is dropped, since the later, explicit intent wins. It runs
// under the router's lock, so it only touches an atomic.
func (r *reloader) noteSwitch(rec proxy.SwitchRecord) {
	if rec.Trigger != proxy.TriggerFile {
		r.lastManual.Store(rec.Generation)
	}
}

// run watches the file and retries a pending switch until ctx ends.
func (r *reloader) run(ctx context.Context, w *watch.Watcher) {
	changes := make(chan watch.Change)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		w.Run(ctx, func(c watch.Change) {
			select {
			case changes <- c:
			case <-ctx.Done():
			}
		})
	}()
	defer wg.Wait()
	retry := time.NewTicker(500 * time.Millisecond)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case c := <-changes:
			if c.Err != nil {
				r.fail(c.Err)
				continue
			}
			_ = r.apply(c.Data, proxy.TriggerFile)
		case <-retry.C:
			r.mu.Lock()
			r.trySwitchLocked()
			r.mu.Unlock()
		}
	}
}
