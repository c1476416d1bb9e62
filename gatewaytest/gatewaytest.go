// Package gatewaytest runs a whole gateway in process for tests, in front
// of simulated model servers on loopback ports, and drives it the way an
// operator and a client would: admin calls, predictions, a steady load.
// It is what net/http/httptest is to an http.Handler, for gateway.Run.
//
// Everything a test starts here is stopped when the test ends (t.Cleanup),
// and the HTTP clients close their connections, so a package that checks
// for leaked goroutines (goleak) can use it.
//
// gatewaytest imports gateway, so the tests of gateway itself that use it
// are in package gateway_test.
package gatewaytest

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/gateway"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// Deadlines for what the harness waits on: a start, a stop, a status
// condition. They are generous because the suites run with -race on
// small, shared CI machines; a test that passes waits only as long as its
// condition takes.
const (
	WaitFor = 20 * time.Second
	Tick    = 20 * time.Millisecond
)

// PredictBody is the inference request Predict sends, and what the tests'
// configs give warmup: modelsim answers it.
const PredictBody = `{"inputs": [[1,2,3,4]]}`

// Options say how Start runs the gateway. Exactly one of Path and Config
// is set.
type Options struct {
	// Path is a config file to run from, as `switchyard serve --config`
	// does: the gateway watches it and POST /admin/reload re-reads it.
	Path string
	// Config is the YAML of a config run without a file, as the demo
	// does: there is nothing to watch or reload.
	Config string
	// Log receives the gateway's logs. Default: the test's log, Warn level
	// and above.
	Log *zap.Logger
}

// Gateway is a gateway run by gateway.Run on loopback ports. Whatever the
// config says, both listeners are bound to 127.0.0.1:0.
type Gateway struct {
	// Traffic and Admin are the base URLs of the two listeners
	// ("http://127.0.0.1:PORT"); AdminAddr is the admin listener's
	// host:port.
	Traffic, Admin, AdminAddr string
	// Client is an HTTP client of the gateway's own: Stop closes its idle
	// connections. It adds no token; the admin helpers below do.
	Client *http.Client

	token atomic.Pointer[string]
	stop  func()
	once  sync.Once
}

// Start runs the gateway until Stop is called or the test ends. It returns
// once both listeners accept connections; backends may not be ready yet
// (WaitReady).
func Start(t testing.TB, opts Options) *Gateway {
	t.Helper()
	var cfg *config.Config
	var data []byte
	var err error
	if opts.Path != "" {
		cfg, data, err = config.Load(opts.Path)
	} else {
		cfg, err = config.Parse([]byte(opts.Config))
	}
	require.NoError(t, err)
	cfg.Listen, cfg.Admin.Listen = "127.0.0.1:0", "127.0.0.1:0"
	log := opts.Log
	if log == nil {
		log = zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	}

	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan [2]string, 1)
	done := make(chan error, 1)
	go func() {
		done <- gateway.Run(ctx, gateway.Options{
			Config: cfg, ConfigPath: opts.Path, ConfigData: data, Version: "test", Log: log,
			ShutdownTimeout: 5 * time.Second,
			Started:         func(traffic, admin string) { started <- [2]string{traffic, admin} },
		})
	}()
	var addrs [2]string
	select {
	case addrs = <-started:
	case err := <-done:
		cancel()
		require.FailNow(t, "gateway.Run returned before it started", "%v", err)
	case <-time.After(WaitFor):
		cancel()
		require.FailNow(t, "gateway.Run did not start")
	}

	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	g := &Gateway{Traffic: "http://" + addrs[0], Admin: "http://" + addrs[1], AdminAddr: addrs[1],
		Client: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
	g.stop = func() {
		tr.CloseIdleConnections()
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err, "gateway.Run")
		case <-time.After(WaitFor):
			assert.Fail(t, "gateway.Run did not return after cancel")
		}
	}
	t.Cleanup(g.Stop)
	return g
}

// Stop cancels the gateway's context and waits until gateway.Run returns,
// which it must do without an error. Calling it again does nothing.
func (g *Gateway) Stop() { g.once.Do(g.stop) }

// SetToken makes every admin helper present token as a bearer token from
// now on; "" sends none.
func (g *Gateway) SetToken(token string) { g.token.Store(&token) }

// LogBuffer is where a test has a logger write (Options.Log, or a child
// process's output) while it reads what was written: writes and reads may
// come from different goroutines.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// NewConfigFile writes content to a new config file in a directory of the
// test's and returns its path.
func NewConfigFile(t testing.TB, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "switchyard.yaml")
	WriteConfig(t, path, content)
	return path
}

// WriteConfig replaces the file at path as an editor does: a temporary
// file in the same directory renamed over it, so a watcher never reads it
// half written.
func WriteConfig(t testing.TB, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".switchyard.yaml.tmp")
	require.NoError(t, os.WriteFile(tmp, []byte(content), 0o644))
	require.NoError(t, os.Rename(tmp, path))
}
