package logs

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
)

// lockedBuffer is a concurrency-safe log sink.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) lines() []map[string]any {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

func TestNew_SamplesChattyLinesButNeverReleaseLines(t *testing.T) {
	var out lockedBuffer
	log, err := New(Options{Format: "json", Level: "info", Initial: 5, Thereafter: 1000}, &out)
	require.NoError(t, err)
	for _, name := range []string{"switch", "health", "warmup", "config", "proxy"} {
		l := log.Named(name).With(zap.String("env", "green"), zap.String("version", "v2.7"))
		for range 200 {
			l.Info(name + " line")
		}
	}
	count := map[string]int{}
	for _, m := range out.lines() {
		count[m["logger"].(string)]++
		assert.Equal(t, "green", m["env"])
		assert.Equal(t, "v2.7", m["version"])
	}
	for _, name := range []string{"switch", "health", "warmup", "config"} {
		assert.Equal(t, 200, count[name], "%s lines were sampled away", name)
	}
	assert.Less(t, count["proxy"], 200, "chatty lines are not sampled")
	assert.GreaterOrEqual(t, count["proxy"], 5)
}

// named returns log named by each of names in turn, as the gateway names
// its loggers: log.Named("proxy").Named("access") is "proxy.access".
func named(log *zap.Logger, names ...string) *zap.Logger {
	for _, n := range names {
		log = log.Named(n)
	}
	return log
}

// Regression test (issue 11): the gateway names the access logger
// proxy.access (gateway.Run: log.Named("proxy"), proxy.NewHandler:
// log.Named("access")), and isProtected looked only at the first name,
// "proxy", so with log.access.sample 1 the access log was sampled like any
// chatty line: 109 of 1000 lines in a burst were written.
func TestNew_AccessLogOfTheGatewayIsNeverSampled(t *testing.T) {
	var out lockedBuffer
	// The options cmd/switchyard uses: zap's production sampling.
	log, err := New(Options{Format: "json", Level: "info"}, &out)
	require.NoError(t, err)
	proxyLog := log.Named("proxy")
	access := proxyLog.Named("access")

	for i := range 1000 {
		access.Info("request", zap.Int("n", i))
		proxyLog.Info("upstream connection reset")
	}

	count := map[string]int{}
	for _, m := range out.lines() {
		count[m["logger"].(string)]++
	}
	assert.Equal(t, 1000, count["proxy.access"], "access lines were sampled away")
	assert.Less(t, count["proxy"], 1000, "the proxy's own chatty lines are not sampled")
	assert.GreaterOrEqual(t, count["proxy"], 100, "zap keeps the first 100 a second")
}

// The protected list is the names the gateway gives its loggers
// (gateway.Run and proxy.NewHandler), no more: there is no "drain" logger
// (drains log on the switch logger), and "access" alone is not the access
// log.
func TestNew_ProtectsExactlyTheGatewayLoggersThatMustNotBeSampled(t *testing.T) {
	testCases := []struct {
		desc      string
		names     []string
		protected bool
	}{
		{desc: "switch, drain and automatic rollback", names: []string{"switch"}, protected: true},
		{desc: "health", names: []string{"health"}, protected: true},
		{desc: "warmup", names: []string{"warmup"}, protected: true},
		{desc: "config, watch and state", names: []string{"config"}, protected: true},
		{desc: "admin", names: []string{"admin"}, protected: true},
		{desc: "access log", names: []string{"proxy", "access"}, protected: true},
		{desc: "logger named under a protected one", names: []string{"health", "probe"}, protected: true},
		{desc: "proxy", names: []string{"proxy"}},
		{desc: "mirror", names: []string{"mirror"}},
		{desc: "unnamed root", names: nil},
		{desc: "access outside the proxy", names: []string{"access"}},
		{desc: "drain, which the gateway never names", names: []string{"drain"}},
		{desc: "name that only starts like a protected one", names: []string{"switchboard"}},
		{desc: "access-like name under proxy", names: []string{"proxy", "accessory"}},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			var out lockedBuffer
			log, err := New(Options{Format: "json", Level: "info", Initial: 5, Thereafter: 1000}, &out)
			require.NoError(t, err)
			l := named(log, test.names...)

			for range 200 {
				l.Info("line")
			}

			n := len(out.lines())
			if test.protected {
				assert.Equal(t, 200, n, "lines of %q were sampled away", l.Name())
			} else {
				assert.Less(t, n, 200, "lines of %q are not sampled", l.Name())
			}
		})
	}
}

func TestNew_JSONByDefaultConsoleOnRequest(t *testing.T) {
	var js, con bytes.Buffer
	l1, err := New(Options{Level: "info"}, &js)
	require.NoError(t, err)
	l1.Info("hello")
	assert.True(t, json.Valid(bytes.TrimSpace(js.Bytes())), js.String())

	l2, err := New(Options{Format: "console", Level: "info"}, &con)
	require.NoError(t, err)
	l2.Info("hello")
	assert.False(t, json.Valid(bytes.TrimSpace(con.Bytes())))
	assert.Contains(t, con.String(), "hello")
}

func TestNew_RejectsBadLevelAndFormat(t *testing.T) {
	_, err := New(Options{Level: "loud"}, &bytes.Buffer{})
	assert.ErrorContains(t, err, "log.level")
	_, err = New(Options{Level: "info", Format: "xml"}, &bytes.Buffer{})
	assert.ErrorContains(t, err, "log.format")
}

// failingSyncer is stdout on a terminal or pipe: Sync fails with EINVAL.
type failingSyncer struct{ bytes.Buffer }

func (f *failingSyncer) Sync() error { return errors.New("sync /dev/stdout: invalid argument") }

func TestSyncQuietly_FailingSyncDoesNotFailShutdown(t *testing.T) {
	out := &failingSyncer{}
	log, err := New(Options{Level: "info"}, out)
	require.NoError(t, err)
	log.Info("bye")
	assert.Error(t, log.Sync(), "the sink's Sync error must reach zap for this test to mean anything")
	assert.NotPanics(t, func() { SyncQuietly(log) })
}
