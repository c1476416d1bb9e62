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
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/switchyard/switchyard/analysis"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proxy"
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
	Inspect(addr string) any
}

// Warmer re-runs warmup on a pool on demand.
type Warmer interface {
	Rewarm(color config.Color) error
}

// Reloader re-reads the config file and reports on the last load.
type Reloader interface {
	Reload(trigger string) error
	ConfigStatus() any
}

// Server is the admin API handler.
type Server struct {
	router   Router
	log      *zap.Logger
	metrics  http.Handler
	token    atomic.Pointer[[]byte]
	inspect  BackendInspector
	warmer   Warmer
	reloader Reloader
	analyzer Analyzer
	mux      *http.ServeMux
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
}

// New returns the admin handler for router.
func New(router Router, log *zap.Logger, opts Options) *Server {
	s := &Server{router: router, log: log, inspect: opts.Inspect, warmer: opts.Warmer, reloader: opts.Reloader,
		analyzer: opts.Analyzer, mux: http.NewServeMux()}
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

// SetToken sets the bearer token every /admin/ call must present; empty
// disables the check.
func (s *Server) SetToken(token string) {
	t := []byte(strings.TrimSpace(token))
	s.token.Store(&t)
}

// SetShuttingDown makes /readyz fail from now on.
func (s *Server) SetShuttingDown() { s.shuttingDown.Store(true) }

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

func (s *Server) auth(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if t := s.token.Load(); t != nil && len(*t) > 0 {
			got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !ok || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), *t) != 1 {
				w.Header().Set("WWW-Authenticate", `Bearer realm="switchyard"`)
				writeError(w, http.StatusUnauthorized, "unauthorized", "send Authorization: Bearer <token> with the token from admin.token_file")
				return
			}
		}
		next(w, r)
	}
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if s.shuttingDown.Load() {
		writeError(w, http.StatusServiceUnavailable, "shutting_down", "the gateway is shutting down")
		return
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
	req.IfGeneration = gen
	res, err := s.router.Switch(req)
	s.writeSwitch(w, res, err)
}

func (s *Server) rollback(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Force bool `json:"force"`
	}
	if !decodeBody(w, r, &body, true, `{"force": false} or no body`) {
		return
	}
	res, err := s.router.Rollback(body.Force)
	s.writeSwitch(w, res, err)
}

func (s *Server) writeSwitch(w http.ResponseWriter, res proxy.SwitchResult, err error) {
	var refused *proxy.RefusedError
	switch {
	case err == nil:
		w.Header().Set("ETag", etag(res.Generation))
		writeJSON(w, http.StatusOK, res)
	case errors.As(err, &refused):
		writeJSON(w, http.StatusConflict, map[string]any{"error": "refused", "message": err.Error(), "refused": refused})
	case errors.Is(err, proxy.ErrStaleGeneration):
		w.Header().Set("ETag", etag(s.router.Snapshot().Generation))
		writeError(w, http.StatusPreconditionFailed, "stale_generation",
			fmt.Sprintf("the routing state is at generation %d now; re-read GET /admin/status and retry", s.router.Snapshot().Generation))
	case errors.Is(err, proxy.ErrNothingToRollBack):
		writeError(w, http.StatusConflict, "nothing_to_roll_back", err.Error())
	default:
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
	}
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
	if err := s.warmer.Rewarm(c); err != nil {
		writeError(w, http.StatusConflict, "warmup_failed", err.Error())
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "warming", "color": string(c)})
}

func (s *Server) reload(w http.ResponseWriter, _ *http.Request) {
	if s.reloader == nil {
		writeError(w, http.StatusConflict, "no_config_file", "the gateway was not started from a config file")
		return
	}
	if err := s.reloader.Reload("admin"); err != nil {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": "reload_failed", "message": err.Error(), "config": s.reloader.ConfigStatus()})
		return
	}
	w.Header().Set("ETag", etag(s.router.Snapshot().Generation))
	writeJSON(w, http.StatusOK, map[string]any{"status": "reloaded", "config": s.reloader.ConfigStatus()})
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
			if err := json.Unmarshal(val, &h); err != nil || strings.ContainsAny(h, " :\r\n") {
				writeError(w, http.StatusBadRequest, "bad_request", `body: "sticky_header" must be a header name such as "X-User-ID", or ""`)
				return
			}
			req.StickyHeader = &h
		case "mirror":
			req.SetMirror = true
			if string(val) != "null" {
				var m proxy.MirrorSetting
				dec := json.NewDecoder(strings.NewReader(string(val)))
				dec.DisallowUnknownFields()
				if err := dec.Decode(&m); err != nil {
					writeError(w, http.StatusBadRequest, "bad_request", `body: "mirror" must be {"to": "green", "percent": 1} or null: `+strings.TrimPrefix(err.Error(), "json: "))
					return
				}
				req.Mirror = &m
			}
		default:
			writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("body: unknown field %q (want %s)", key, want))
			return
		}
	}
	t, err := s.router.SetTraffic(req)
	switch {
	case errors.Is(err, proxy.ErrBadTraffic):
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
		return
	case err != nil:
		writeError(w, http.StatusConflict, "refused", err.Error())
		return
	}
	w.Header().Set("ETag", etag(t.Generation))
	writeJSON(w, http.StatusOK, t)
}

func (s *Server) promote(w http.ResponseWriter, _ *http.Request) {
	if s.analyzer == nil {
		writeError(w, http.StatusConflict, "analysis_disabled", "release analysis is not running")
		return
	}
	res, verdict, err := s.analyzer.Promote()
	var refused *analysis.RefusedError
	switch {
	case err == nil:
		w.Header().Set("ETag", etag(res.Generation))
		writeJSON(w, http.StatusOK, map[string]any{"switch": res, "verdict": verdict})
	case errors.As(err, &refused):
		writeJSON(w, http.StatusConflict, map[string]any{"error": "refused", "message": err.Error(), "verdict": verdict})
	case errors.Is(err, analysis.ErrNothingToPromote):
		writeJSON(w, http.StatusConflict, map[string]any{"error": "nothing_to_promote", "message": err.Error(), "verdict": verdict})
	default:
		s.writeSwitch(w, res, err)
	}
}

// maxAdminBody bounds admin request bodies; they are a few bytes of JSON.
const maxAdminBody = 64 << 10

// decodeBody strictly decodes a JSON body into v. It writes a 400 naming
// the problem and returns false when the body is malformed.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, optional bool, want string) bool {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxAdminBody+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "reading body: "+err.Error())
		return false
	}
	if len(data) > maxAdminBody {
		writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", "admin request bodies are limited to 64 KiB")
		return false
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		if optional {
			return true
		}
		writeError(w, http.StatusBadRequest, "bad_request", "body: empty (want "+want+")")
		return false
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "body: "+strings.TrimPrefix(err.Error(), "json: ")+" (want "+want+")")
		return false
	}
	// More() is false before a stray '}' or ']': ask for one more token.
	if _, err := dec.Token(); err != io.EOF {
		writeError(w, http.StatusBadRequest, "bad_request", "body: trailing data after the JSON object (want "+want+")")
		return false
	}
	return true
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
