package warmup

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// model is a fake inference server on a loopback port. handle gets the
// 1-based number of the call it answers.
type model struct {
	srv   *httptest.Server
	calls atomic.Int32
}

func startModel(t *testing.T, handle func(call int, w http.ResponseWriter, r *http.Request)) *model {
	t.Helper()
	m := &model{}
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handle(int(m.calls.Add(1)), w, r)
	}))
	t.Cleanup(m.srv.Close)
	return m
}

// addr is the server's host:port, as Warm takes it.
func (m *model) addr() string { return m.srv.Listener.Addr().String() }

// answerVersion writes the answer a model server of this version gives.
func answerVersion(w http.ResponseWriter, version string) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"outputs": []float64{0.1, 0.9}, "model_version": version})
}

// healthyModel always answers 200 as version v2.7.
func healthyModel(t *testing.T) *model {
	t.Helper()
	return startModel(t, func(_ int, w http.ResponseWriter, _ *http.Request) { answerVersion(w, "v2.7") })
}

// hold delays an answer by d, or less when the client goes away, to play a
// cold GPU.
func hold(r *http.Request, d time.Duration) {
	drain(r)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
	}
}

// hang never answers: it returns once the client goes away, so the test
// server can close.
func hang(r *http.Request) {
	drain(r)
	<-r.Context().Done()
}

// drain reads the request body: only then does net/http watch the
// connection and cancel r.Context() when the client hangs up.
func drain(r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) }

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func newWarmer(t *testing.T) *Warmer {
	t.Helper()
	w := New(zaptest.NewLogger(t, zaptest.Level(zap.InfoLevel)))
	t.Cleanup(w.Close)
	return w
}

// testSpec is a small valid Spec; edit applies a test's changes.
func testSpec(edit func(*Spec)) *Spec {
	s := &Spec{
		Method:       http.MethodPost,
		Path:         "/predict",
		Body:         []byte(`{"inputs": [[1, 2, 3, 4]]}`),
		Headers:      map[string]string{"Content-Type": "application/json"},
		Requests:     3,
		MaxRequests:  10,
		ExpectStatus: http.StatusOK,
		Timeout:      5 * time.Second,
	}
	if edit != nil {
		edit(s)
	}
	return s
}

// progressLog records Progress calls.
type progressLog struct {
	mu    sync.Mutex
	calls [][2]int
}

func (p *progressLog) record(passed, needed int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls = append(p.calls, [2]int{passed, needed})
}

func (p *progressLog) get() [][2]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.calls
}
