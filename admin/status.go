package admin

import (
	"net/http"
	"time"

	"github.com/switchyard/switchyard/analysis"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/fleet"
	"github.com/switchyard/switchyard/health"
	"github.com/switchyard/switchyard/proxy"
	"github.com/switchyard/switchyard/state"
)

// Status is the body of GET /admin/status: the one schema the admin API
// encodes and the CLI and the web console decode. Its parts are the types
// of the packages that own them (proxy's switches, drains and traffic,
// analysis's verdict, health's backend state), so a field added there
// reaches every reader. Readers ignore fields they do not know and leave
// absent ones zero, so one reader works with older and newer gateways.
type Status struct {
	// Generation counts routing changes; it is also the ETag, for
	// If-Match on POST /admin/switch.
	Generation    uint64       `json:"generation"`
	Active        config.Color `json:"active"`
	ActiveVersion string       `json:"active_version"`
	// Pools is keyed by color.
	Pools map[string]PoolStatus `json:"pools"`
	// Switches are the latest switches, oldest first; never null.
	Switches []proxy.SwitchRecord `json:"switches"`
	// Drains are the drains of the colors traffic left; never null.
	Drains   []proxy.DrainStatus `json:"drains"`
	Traffic  proxy.Traffic       `json:"traffic"`
	Analysis *analysis.Status    `json:"analysis,omitempty"`
	// Config is absent when the gateway was not started from a file.
	Config *ConfigStatus `json:"config,omitempty"`
	// State is the state file's last write; absent without state_dir.
	State *state.Status `json:"state,omitempty"`
	// Fleet is every replica and the generation it serves, in fleet
	// mode; absent otherwise. Generation above is then the fleet's.
	Fleet *fleet.Status `json:"fleet,omitempty"`
	// Warnings are problems an operator must fix, also logged at Warn
	// level: an admin API open beyond loopback without a token, a token
	// file others can read, a switch not persisted.
	Warnings []string `json:"warnings,omitempty"`
}

// PoolStatus is one color in Status.
type PoolStatus struct {
	Version        string `json:"version"`
	Active         bool   `json:"active"`
	Inflight       int64  `json:"inflight"`
	ReadyBackends  int    `json:"ready_backends"`
	MaxConcurrency int64  `json:"max_concurrency,omitempty"`
	// Backends is never null, so a pool with none reads as empty.
	Backends []BackendStatus `json:"backends"`
}

// BackendStatus is one backend in PoolStatus.
type BackendStatus struct {
	Addr      string `json:"addr"`
	Ready     bool   `json:"ready"`
	Inflight  int64  `json:"inflight"`
	Requests  uint64 `json:"requests"`
	OpenConns int64  `json:"open_conns"`
	// EjectedUntil is set while passive health keeps the backend out.
	EjectedUntil *time.Time `json:"ejected_until,omitempty"`
	// Health is what the health checker knows; absent without one.
	Health *health.State `json:"health,omitempty"`
}

// ConfigStatus is the "config" object of Status: the file the gateway
// runs from and how its last load went.
type ConfigStatus struct {
	Path string `json:"path"`
	// Generation counts the loads that were applied, from 1.
	Generation int       `json:"generation"`
	LoadedAt   time.Time `json:"loaded_at"`
	SHA256     string    `json:"sha256"`
	// LastError is why the last load was refused (the running config
	// stays in force); empty once a good file is loaded.
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
	// RestartNeeded lists changed settings that only a restart applies.
	RestartNeeded []string `json:"restart_needed,omitempty"`
	// PendingSwitch is a switch the file asked for that waits for the
	// target to be ready.
	PendingSwitch string `json:"pending_switch,omitempty"`
}

func (s *Server) status(w http.ResponseWriter, _ *http.Request) {
	snap := s.router.Snapshot()
	st := Status{
		Generation:    snap.Generation,
		Active:        snap.Active,
		ActiveVersion: snap.ActivePool().Version,
		Pools:         map[string]PoolStatus{},
		Switches:      s.router.History(),
		Drains:        s.router.Drains(),
		Traffic:       snap.Traffic(),
	}
	if s.analyzer != nil {
		a := s.analyzer.Status()
		st.Analysis = &a
	}
	for _, p := range snap.Pools {
		ps := PoolStatus{Version: p.Version, Active: p.Color == snap.Active, Inflight: p.Inflight(),
			ReadyBackends: p.ReadyBackends(), MaxConcurrency: p.MaxConcurrency, Backends: []BackendStatus{}}
		for _, b := range p.Backends {
			bs := BackendStatus{Addr: b.Addr(), Ready: b.Ready(), Inflight: b.Inflight(), Requests: b.Requests(), OpenConns: b.OpenConns()}
			if t := b.EjectedUntil(); !t.IsZero() && t.After(time.Now()) {
				bs.EjectedUntil = &t
			}
			if s.inspect != nil {
				bs.Health = s.inspect.Inspect(b.Addr())
			}
			ps.Backends = append(ps.Backends, bs)
		}
		st.Pools[string(p.Color)] = ps
	}
	if s.reloader != nil {
		c := s.reloader.ConfigStatus()
		st.Config = &c
	}
	st.State, st.Warnings = s.warnings()
	if s.fleet != nil {
		f := s.fleet.Status()
		st.Fleet = &f
	}
	if st.Switches == nil {
		st.Switches = []proxy.SwitchRecord{}
	}
	if st.Drains == nil {
		st.Drains = []proxy.DrainStatus{}
	}
	w.Header().Set("ETag", etag(snap.Generation))
	writeJSON(w, http.StatusOK, st)
}
