// Package admin serves Switchyard's admin API: status, switch, rollback,
// warmup, reload, and the probes and metrics a platform scrapes. It runs
// on its own listener, never on the traffic port.
package admin

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/switchyard/switchyard/analysis"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/fleet"
	"github.com/switchyard/switchyard/health"
	"github.com/switchyard/switchyard/proxy"
	"github.com/switchyard/switchyard/state"
	"go.uber.org/zap"
)

// Router is the routing state the admin API drives.
type Router interface {
	Snapshot() *proxy.Snapshot
	Switch(proxy.SwitchRequest) (proxy.SwitchResult, error)
	Rollback(force bool) (proxy.SwitchResult, error)
	History() []proxy.SwitchRecord
	Drains() []proxy.DrainStatus
	SetTraffic(proxy.TrafficRequest) (proxy.Traffic, error)
}

// Analyzer judges the candidate and promotes it when the analysis passes.
type Analyzer interface {
	Promote() (proxy.SwitchResult, analysis.Verdict, error)
	Status() analysis.Status
}

// BackendInspector adds what the health checker knows about a backend to
// its status entry.
type BackendInspector interface {
	Inspect(addr string) *health.State
}

// Warmer re-runs warmup on a pool on demand.
type Warmer interface {
	Rewarm(color config.Color) error
}

// Reloader re-reads the config file and reports on the last load.
type Reloader interface {
	Reload(trigger string) error
	ConfigStatus() ConfigStatus
}

// StateReporter says whether the routing state reached the state file.
type StateReporter interface {
	Status() state.Status
}

// Fleet is the routing intent this replica shares with the others in
// fleet mode (package fleet): it says whether the replica may take
// traffic and what the fleet looks like.
type Fleet interface {
	Ready() error
	Status() fleet.Status
}

// Server is the admin API handler.
type Server struct {
	router   Router
	log      *zap.Logger
	metrics  http.Handler
	inspect  BackendInspector
	warmer   Warmer
	reloader Reloader
	analyzer Analyzer
	state    StateReporter
	fleet    Fleet
	mux      *http.ServeMux
	// cred is the bearer token in force; tokenMu serializes its changes
	// (token.go).
	cred    atomic.Pointer[credential]
	tokenMu sync.Mutex
	// listenAddr is where the admin listener is bound, once known.
	listenAddr atomic.Pointer[net.Addr]
	// writeMu serializes the admin calls that change state, so that an
	// If-Match check and the change it guards are not interleaved with
	// another admin call.
	writeMu sync.Mutex
	// shuttingDown makes /readyz fail first, so load balancers stop
	// sending before the listener closes.
	shuttingDown atomic.Bool
}

// Options are the Server's optional collaborators.
type Options struct {
	Gatherer prometheus.Gatherer
	Inspect  BackendInspector
	Warmer   Warmer
	Reloader Reloader
	Analyzer Analyzer
	// State, when set, is the state file switches are persisted to: switch
	// answers and GET /admin/status say when a write failed.
	State StateReporter
	// Fleet, in fleet mode, turns /readyz to 503 while the replica is
	// stale and adds "fleet" to GET /admin/status. The Router is then the
	// fleet's (fleet.Router), so changes go to the shared intent.
	Fleet Fleet
}

// New returns the admin handler for router.
func New(router Router, log *zap.Logger, opts Options) *Server {
	s := &Server{router: router, log: log, inspect: opts.Inspect, warmer: opts.Warmer, reloader: opts.Reloader,
		analyzer: opts.Analyzer, state: opts.State, fleet: opts.Fleet, mux: http.NewServeMux()}
	if opts.Gatherer != nil {
		s.metrics = promhttp.HandlerFor(opts.Gatherer, promhttp.HandlerOpts{ErrorLog: zap.NewStdLog(log), EnableOpenMetrics: false})
		s.mux.Handle("GET /metrics", s.metrics)
	}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.HandleFunc("GET /admin/status", s.auth(s.status))
	s.mux.HandleFunc("POST /admin/switch", s.auth(s.doSwitch))
	s.mux.HandleFunc("POST /admin/rollback", s.auth(s.rollback))
	s.mux.HandleFunc("POST /admin/warmup", s.auth(s.warmup))
	s.mux.HandleFunc("POST /admin/reload", s.auth(s.reload))
	s.mux.HandleFunc("PUT /admin/traffic", s.auth(s.traffic))
	s.mux.HandleFunc("GET /admin/traffic", s.auth(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.router.Snapshot().Traffic())
	}))
	s.mux.HandleFunc("POST /admin/promote", s.auth(s.promote))
	s.mux.HandleFunc("/admin/", s.auth(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no admin endpoint %s %s; see the README's admin API", r.Method, r.URL.Path))
	}))
	return s
}

// SetShuttingDown makes /readyz fail from now on.
func (s *Server) SetShuttingDown() { s.shuttingDown.Store(true) }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Handle serves h at pattern (a ServeMux pattern) behind the admin token,
// like every /admin/ call: the web console's data endpoint.
func (s *Server) Handle(pattern string, h http.Handler) {
	s.mux.HandleFunc(pattern, s.auth(h.ServeHTTP))
}

// HandlePublic serves h at pattern without the token: only for what holds
// no data, such as the web console's page, which asks for the token.
func (s *Server) HandlePublic(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

func (s *Server) auth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c := s.currentCredential(false)
		if c == nil || (c.path == "" && len(c.token) == 0) {
			next(w, r)
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if c.err != nil {
			// Fail closed: no readable token is no access, never open access.
			w.Header().Set("WWW-Authenticate", `Bearer realm="switchyard"`)
			writeError(w, http.StatusUnauthorized, "unauthorized",
				"the gateway cannot read its admin.token_file, so every /admin/ call is refused; an operator must write the token to it (see the gateway log)")
			return
		}
		if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), c.token) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="switchyard"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "send Authorization: Bearer <token> with the token from admin.token_file")
			return
		}
		next(w, r)
	}
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if s.shuttingDown.Load() {
		writeError(w, http.StatusServiceUnavailable, "shutting_down", "the gateway is shutting down")
		return
	}
	if s.fleet != nil {
		if err := s.fleet.Ready(); err != nil {
			writeError(w, http.StatusServiceUnavailable, "fleet_not_ready", err.Error())
			return
		}
	}
	p := s.router.Snapshot().ActivePool()
	if p.ReadyBackends() == 0 {
		writeError(w, http.StatusServiceUnavailable, "not_ready",
			fmt.Sprintf("no backend of the active pool %s (%s) is ready; see GET /admin/status", p.Color, p.Version))
		return
	}
	_, _ = io.WriteString(w, "ok\n")
}

// switchBody is the body of POST /admin/switch.
type switchBody struct {
	To    string `json:"to"`
	Force bool   `json:"force"`
}

// switchReply is the answer to a call that switched: what the router
// did, and whether the state file has it.
type switchReply struct {
	proxy.SwitchResult
	// Persisted is set when a state_dir is configured and the call moved
	// traffic. False means the switch is in force but not on disk: a
	// restart would start on the config file's color.
	Persisted *bool `json:"persisted,omitempty"`
	// Warning says, with Persisted false, why and what to do.
	Warning string `json:"warning,omitempty"`
}

func (s *Server) doSwitch(w http.ResponseWriter, r *http.Request) {
	var body switchBody
	if !decodeBody(w, r, &body, false, `{"to": "blue"|"green"|"toggle", "force": false}`) {
		return
	}
	req := proxy.SwitchRequest{Trigger: proxy.TriggerAdmin, Force: body.Force}
	switch body.To {
	case "toggle":
		req.Toggle = true
	case string(config.Blue), string(config.Green):
		req.To = config.Color(body.To)
	case "":
		writeError(w, http.StatusBadRequest, "bad_request", `body: "to" is missing (want "blue", "green" or "toggle")`)
		return
	default:
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf(`body: "to" is %q (want "blue", "green" or "toggle")`, body.To))
		return
	}
	gen, ok := ifMatch(w, r)
	if !ok {
		return
	}
	// The router checks the generation under its own lock.
	req.IfGeneration = gen
	var rep switchReply
	var err error
	s.change(0, func() {
		var res proxy.SwitchResult
		res, err = s.router.Switch(req)
		rep = s.switchReply(res, err)
	})
	s.writeSwitch(w, rep, err)
}

func (s *Server) rollback(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Force bool `json:"force"`
	}
	if !decodeBody(w, r, &body, true, `{"force": false} or no body`) {
		return
	}
	gen, ok := ifMatch(w, r)
	if !ok {
		return
	}
	var rep switchReply
	var err error
	s.change(0, func() {
		var res proxy.SwitchResult
		if gen == 0 {
			res, err = s.router.Rollback(body.Force)
		} else {
			res, err = s.rollbackIf(gen, body.Force)
		}
		rep = s.switchReply(res, err)
	})
	s.writeSwitch(w, rep, err)
}

// rollbackIf is Router.Rollback applied only while the routing state is
// at generation gen, as atomically as a switch with If-Match: gen is
// checked before the history is read and again by the switch under the
// router's lock, and generations only grow, so the history read is that
// of generation gen.
func (s *Server) rollbackIf(gen uint64, force bool) (proxy.SwitchResult, error) {
	if cur := s.router.Snapshot().Generation; cur != gen {
		return proxy.SwitchResult{Generation: cur}, proxy.ErrStaleGeneration
	}
	h := s.router.History()
	if len(h) == 0 {
		return proxy.SwitchResult{}, proxy.ErrNothingToRollBack
	}
	last := h[len(h)-1]
	if last.Trigger == proxy.TriggerAutoRollback {
		// As Router.Rollback: the gateway already rolled back, and rolling
		// back again would bring the broken color back. A switch to the
		// active color is the no-op, checked against gen.
		res, err := s.router.Switch(proxy.SwitchRequest{To: last.To, Trigger: proxy.TriggerRollback, IfGeneration: gen})
		if err == nil && res.NoOp {
			res.Message = fmt.Sprintf("already rolled back automatically from %s to %s at %s; to return to %s, switch to it by name",
				last.From, last.To, last.At.Format(time.RFC3339), last.From)
		}
		return res, err
	}
	return s.router.Switch(proxy.SwitchRequest{To: last.From, Trigger: proxy.TriggerRollback, Force: force, IfGeneration: gen})
}

// change runs fn, which changes state, with writeMu held, once the
// If-Match generation gen (0: none) is checked against the routing state.
// It returns false, without running fn, when the state moved past gen.
//
// Serializing admin changes makes If-Match exact between admin callers.
// Calls the router cannot check under its own lock (traffic, promote,
// warmup, reload) still race changes the gateway makes by itself (a file
// edit, a DNS change, auto-promote) by the microseconds between the check
// and the change.
func (s *Server) change(gen uint64, fn func()) bool {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if gen != 0 && gen != s.router.Snapshot().Generation {
		return false
	}
	fn()
	return true
}

// switchReply adds to a switch result whether the state file has it. Call
// it right after the switch, with writeMu held.
func (s *Server) switchReply(res proxy.SwitchResult, err error) switchReply {
	rep := switchReply{SwitchResult: res}
	if err != nil || res.NoOp || s.state == nil {
		return rep
	}
	st := s.state.Status()
	persisted := st.Persisted && st.Generation >= res.Generation
	rep.Persisted = &persisted
	if !persisted {
		why := st.LastError
		if why == "" {
			why = fmt.Sprintf("no write recorded for generation %d", res.Generation)
		}
		rep.Warning = fmt.Sprintf("the switch is in force but was NOT persisted (%s): a restart would start on the config file's color "+
			"until a later switch is written; make state_dir writable (GET /admin/status shows state)", why)
	}
	return rep
}

// warnings returns the state file's last write, if any, and the problems
// GET /admin/status reports.
func (s *Server) warnings() (*state.Status, []string) {
	warns := s.tokenWarnings()
	if s.state == nil {
		return nil, warns
	}
	st := s.state.Status()
	if !st.Persisted {
		warns = append(warns, fmt.Sprintf("the routing state is NOT persisted to %s (%s): a restart would start on the config file's color "+
			"until a later switch is written; make state_dir writable", st.Path, st.LastError))
	}
	return &st, warns
}

func (s *Server) writeSwitch(w http.ResponseWriter, rep switchReply, err error) {
	var refused *proxy.RefusedError
	switch {
	case err == nil:
		w.Header().Set("ETag", etag(rep.Generation))
		writeJSON(w, http.StatusOK, rep)
	case errors.As(err, &refused):
		writeJSON(w, http.StatusConflict, map[string]any{"error": "refused", "message": err.Error(), "refused": refused})
	case errors.Is(err, proxy.ErrStaleGeneration):
		s.writeStale(w)
	case errors.Is(err, proxy.ErrNothingToRollBack):
		writeError(w, http.StatusConflict, "nothing_to_roll_back", err.Error())
	case errors.Is(err, fleet.ErrUnavailable), errors.Is(err, fleet.ErrBadIntent):
		writeError(w, http.StatusServiceUnavailable, "fleet_unavailable", err.Error())
	default:
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
	}
}

// writeStale answers 412 for an If-Match the routing state moved past,
// with the state in force, so the caller can decide again without
// another read.
func (s *Server) writeStale(w http.ResponseWriter) {
	snap := s.router.Snapshot()
	w.Header().Set("ETag", etag(snap.Generation))
	writeJSON(w, http.StatusPreconditionFailed, map[string]any{
		"error": "stale_generation",
		"message": fmt.Sprintf("the routing state is at generation %d now and nothing was changed; check the state below (or GET /admin/status) "+
			"and retry with If-Match: %s", snap.Generation, etag(snap.Generation)),
		"generation":     snap.Generation,
		"active":         snap.Active,
		"active_version": snap.ActivePool().Version,
		"traffic":        snap.Traffic(),
	})
}

func (s *Server) warmup(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Color string `json:"color"`
	}
	if !decodeBody(w, r, &body, false, `{"color": "blue"|"green"}`) {
		return
	}
	c := config.Color(body.Color)
	if !c.Valid() {
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf(`body: "color" is %q (want "blue" or "green")`, body.Color))
		return
	}
	if s.warmer == nil {
		writeError(w, http.StatusConflict, "warmup_disabled", "warmup is not configured; set warmup.path")
		return
	}
	gen, ok := ifMatch(w, r)
	if !ok {
		return
	}
	var err error
	if !s.change(gen, func() { err = s.warmer.Rewarm(c) }) {
		s.writeStale(w)
		return
	}
	if err != nil {
		writeError(w, http.StatusConflict, "warmup_failed", err.Error())
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "warming", "color": string(c)})
}

func (s *Server) reload(w http.ResponseWriter, r *http.Request) {
	gen, ok := ifMatch(w, r)
	if !ok {
		return
	}
	var err error
	var cfg any
	if !s.change(gen, func() {
		// The token file is re-read on every reload, changed or not.
		s.currentCredential(true)
		if s.reloader != nil {
			err = s.reloader.Reload("admin")
			cfg = s.reloader.ConfigStatus()
		}
	}) {
		s.writeStale(w)
		return
	}
	switch {
	case s.reloader == nil:
		writeError(w, http.StatusConflict, "no_config_file", "the gateway was not started from a config file")
	case err != nil:
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": "reload_failed", "message": err.Error(), "config": cfg})
	default:
		w.Header().Set("ETag", etag(s.router.Snapshot().Generation))
		writeJSON(w, http.StatusOK, map[string]any{"status": "reloaded", "config": cfg})
	}
}

// traffic handles PUT /admin/traffic: {"green": 5}, {"sticky_header":
// "X-User-ID"}, {"mirror": {"to": "green", "percent": 1}} or {"mirror":
// null}, in any combination.
func (s *Server) traffic(w http.ResponseWriter, r *http.Request) {
	const want = `{"green": 5} (percent to the standby color), "sticky_header": "X-User-ID", "mirror": {"to": "green", "percent": 1} or null`
	var raw map[string]json.RawMessage
	if !decodeBody(w, r, &raw, false, want) {
		return
	}
	var req proxy.TrafficRequest
	for key, val := range raw {
		switch key {
		case string(config.Blue), string(config.Green):
			var p float64
			if err := json.Unmarshal(val, &p); err != nil {
				writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("body: %q must be a percent number (want %s)", key, want))
				return
			}
			if req.Percent != nil {
				writeError(w, http.StatusBadRequest, "bad_request", "body: give one color's share; the active color takes the rest")
				return
			}
			req.Color, req.Percent = config.Color(key), &p
		case "sticky_header":
			var h string
			if err := json.Unmarshal(val, &h); err != nil || (h != "" && !config.ValidHeaderName(h)) {
				writeError(w, http.StatusBadRequest, "bad_request", `body: "sticky_header" must be a header name such as "X-User-ID", or ""`)
				return
			}
			req.StickyHeader = &h
		case "mirror":
			req.SetMirror = true
			if string(val) != "null" {
				var m proxy.MirrorSetting
				if err := strictUnmarshal(val, &m); err != nil {
					writeError(w, http.StatusBadRequest, "bad_request", `body: "mirror" must be {"to": "green", "percent": 1} or null: `+err.Error())
					return
				}
				req.Mirror = &m
			}
		default:
			writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("body: unknown field %q (want %s)", key, want))
			return
		}
	}
	gen, ok := ifMatch(w, r)
	if !ok {
		return
	}
	var t proxy.Traffic
	var err error
	if !s.change(gen, func() { t, err = s.router.SetTraffic(req) }) {
		s.writeStale(w)
		return
	}
	switch {
	case errors.Is(err, proxy.ErrBadTraffic):
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	case errors.Is(err, fleet.ErrUnavailable), errors.Is(err, fleet.ErrBadIntent):
		writeError(w, http.StatusServiceUnavailable, "fleet_unavailable", err.Error())
		return
	case errors.Is(err, proxy.ErrStaleGeneration):
		s.writeStale(w)
		return
	case err != nil:
		writeError(w, http.StatusConflict, "refused", err.Error())
		return
	}
	w.Header().Set("ETag", etag(t.Generation))
	writeJSON(w, http.StatusOK, t)
}

func (s *Server) promote(w http.ResponseWriter, r *http.Request) {
	if s.analyzer == nil {
		writeError(w, http.StatusConflict, "analysis_disabled", "release analysis is not running")
		return
	}
	gen, ok := ifMatch(w, r)
	if !ok {
		return
	}
	var rep switchReply
	var verdict analysis.Verdict
	var err error
	if !s.change(gen, func() {
		var res proxy.SwitchResult
		res, verdict, err = s.analyzer.Promote()
		rep = s.switchReply(res, err)
	}) {
		s.writeStale(w)
		return
	}
	var refused *analysis.RefusedError
	switch {
	case err == nil:
		w.Header().Set("ETag", etag(rep.Generation))
		writeJSON(w, http.StatusOK, map[string]any{"switch": rep, "verdict": verdict})
	case errors.As(err, &refused):
		writeJSON(w, http.StatusConflict, map[string]any{"error": "refused", "message": err.Error(), "verdict": verdict})
	case errors.Is(err, analysis.ErrNothingToPromote):
		writeJSON(w, http.StatusConflict, map[string]any{"error": "nothing_to_promote", "message": err.Error(), "verdict": verdict})
	default:
		s.writeSwitch(w, rep, err)
	}
}

// ifMatch parses an If-Match generation; 0 when absent.
func ifMatch(w http.ResponseWriter, r *http.Request) (uint64, bool) {
	v := strings.TrimSpace(r.Header.Get("If-Match"))
	if v == "" || v == "*" {
		return 0, true
	}
	v = strings.TrimPrefix(v, "W/")
	gen, err := strconv.ParseUint(strings.Trim(v, `"`), 10, 64)
	if err != nil || gen == 0 {
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("If-Match %q is not a generation (want the ETag of GET /admin/status, e.g. \"7\")", v))
		return 0, false
	}
	return gen, true
}

func etag(gen uint64) string { return `"` + strconv.FormatUint(gen, 10) + `"` }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"error": code, "message": msg})
}
