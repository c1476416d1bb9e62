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
