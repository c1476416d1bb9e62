// Package modelsim is a simulated model server: it speaks the HTTP a
// PyTorch inference pod speaks (predict, health in Switchyard's json probe
// format, KServe v2 readiness, TorchServe ping) and can imitate a slow
// model load, a cold GPU, failures and restarts. The demo runs it, and
// tests use it where the real PyTorch server would be too slow.
package modelsim

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Options shape a simulated server's behaviour.
type Options struct {
	// Color and Version are echoed in every answer.
	Color   string
	Version string
	// LoadTime is how long the "model" takes to load after Start; health
	// answers 503 and predict 503 until then.
	LoadTime time.Duration
	// ColdRequests is how many first predictions take ColdDelay extra,
	// like the first forward passes on a GPU.
	ColdRequests int
	ColdDelay    time.Duration
	// Latency is added to every prediction.
	Latency time.Duration
}

// Server is a running simulated model server.
type Server struct {
	opts     Options
	ln       net.Listener
	srv      *http.Server
	started  time.Time
	bootID   atomic.Pointer[string]
	predicts atomic.Int64
	inflight atomic.Int64
	// failEvery makes every Nth prediction answer 500 when > 0.
	failEvery atomic.Int64
	// down makes health fail and predictions 503, as a crashing model would.
	down atomic.Bool
	mu   sync.Mutex
	// extraHealth is merged into the health body, e.g. GPU fields.
	extraHealth map[string]any
}

// Start listens on addr (e.g. 127.0.0.1:0) and serves until Close.
func Start(addr string, opts Options) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("modelsim: listening on %s: %w", addr, err)
	}
	s := &Server{opts: opts, ln: ln, started: time.Now()}
	s.newBoot()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /predict", s.predict)
	mux.HandleFunc("GET /health", s.health)
	mux.HandleFunc("GET /v2/health/ready", s.ready)
	mux.HandleFunc("GET /v2/health/live", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("GET /ping", s.ping)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Addr returns the host:port the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server and its connections.
func (s *Server) Close() error { return s.srv.Close() }

// Predictions returns how many predictions were requested.
func (s *Server) Predictions() int64 { return s.predicts.Load() }

// FailEvery makes every nth prediction fail with 500; 0 stops failing.
func (s *Server) FailEvery(n int64) { s.failEvery.Store(n) }

// SetDown makes the server report itself broken (true) or fine (false).
func (s *Server) SetDown(v bool) { s.down.Store(v) }

// Restart simulates a process restart: a new boot ID, the load time and
// cold requests start over.
func (s *Server) Restart() {
	s.mu.Lock()
	s.started = time.Now()
	s.mu.Unlock()
	s.predicts.Store(0)
	s.newBoot()
}

// SetHealthFields merges extra fields (GPU memory, queue depth, ...) into
// every health answer.
func (s *Server) SetHealthFields(m map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.extraHealth = m
}

func (s *Server) newBoot() {
	var b [8]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	s.bootID.Store(&id)
}

func (s *Server) loaded() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.down.Load() && time.Since(s.started) >= s.opts.LoadTime
}

func (s *Server) predict(w http.ResponseWriter, r *http.Request) {
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	if !s.loaded() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "model loading"})
		return
	}
	var in struct {
		Inputs [][]float64 `json:"inputs"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&in); err != nil || len(in.Inputs) == 0 {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": `want {"inputs": [[numbers...], ...]}`})
		return
	}
	n := s.predicts.Add(1)
	delay := s.opts.Latency
	if n <= int64(s.opts.ColdRequests) {
		delay += s.opts.ColdDelay
	}
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if every := s.failEvery.Load(); every > 0 && n%every == 0 {
		writeJSON(w, http.StatusInternalServerError, map[string]any{"error": "simulated failure"})
		return
	}
	// A deterministic "model": the sum of each row scaled by a
	// version-specific factor, so two versions answer differently.
	scale := float64(len(s.opts.Version)%7 + 1)
	for _, c := range s.opts.Version {
		scale += float64(c) / 1000
	}
	out := make([][]float64, len(in.Inputs))
	for i, row := range in.Inputs {
		var sum float64
		for _, v := range row {
			sum += v
		}
		out[i] = []float64{sum * scale, sum + scale}
	}
	writeJSON(w, http.StatusOK, map[string]any{"outputs": out, "model_version": s.opts.Version, "color": s.opts.Color})
}

func (s *Server) health(w http.ResponseWriter, _ *http.Request) {
	loaded := s.loaded()
	body := map[string]any{
		"status": "ok", "model_loaded": loaded, "cuda_available": false, "device": "cpu",
		"queue_depth": s.inflight.Load(), "boot_id": *s.bootID.Load(),
		"version": s.opts.Version, "color": s.opts.Color,
	}
	s.mu.Lock()
	for k, v := range s.extraHealth {
		body[k] = v
	}
	s.mu.Unlock()
	status := http.StatusOK
	if !loaded {
		body["status"] = "loading"
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, body)
}

func (s *Server) ready(w http.ResponseWriter, _ *http.Request) {
	if !s.loaded() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) ping(w http.ResponseWriter, _ *http.Request) {
	if !s.loaded() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "Unhealthy"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "Healthy"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
