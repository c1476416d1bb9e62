package admin

import (
	"net/http"
	"time"

	"github.com/switchyard/switchyard/analysis"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proxy"
)

// Status is the body of GET /admin/status.
type Status struct {
	Generation    uint64                `json:"generation"`
	Active        config.Color          `json:"active"`
	ActiveVersion string                `json:"active_version"`
	Pools         map[string]PoolStatus `json:"pools"`
	Switches      []proxy.SwitchRecord  `json:"switches"`
	Drains        []proxy.DrainStatus   `json:"drains"`
	Traffic       proxy.Traffic         `json:"traffic"`
	Analysis      *analysis.Status      `json:"analysis,omitempty"`
	Config        any                   `json:"config,omitempty"`
}

// PoolStatus is one color in Status.
type PoolStatus struct {
	Version        string          `json:"version"`
	Active         bool            `json:"active"`
	Inflight       int64           `json:"inflight"`
	ReadyBackends  int             `json:"ready_backends"`
	MaxConcurrency int64           `json:"max_concurrency,omitempty"`
	Backends       []BackendStatus `json:"backends"`
}

// BackendStatus is one backend in PoolStatus.
type BackendStatus struct {
	Addr         string     `json:"addr"`
	Ready        bool       `json:"ready"`
	Inflight     int64      `json:"inflight"`
	Requests     uint64     `json:"requests"`
	OpenConns    int64      `json:"open_conns"`
	EjectedUntil *time.Time `json:"ejected_until,omitempty"`
	Health       any        `json:"health,omitempty"`
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
		st.Config = s.reloader.ConfigStatus()
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
