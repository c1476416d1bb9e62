package proxy

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"go.uber.org/zap/zaptest"
)

// fakeDNS answers lookups from a table the test changes.
type fakeDNS struct {
	mu    sync.Mutex
	hosts map[string][]string
}

func (d *fakeDNS) set(host string, ips ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.hosts[host] = ips
}

func (d *fakeDNS) lookup(_ context.Context, host string) ([]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.hosts[host]...), nil
}

func addrs(p *Pool) []string {
	var out []string
	for _, b := range p.Backends {
		out = append(out, b.Addr())
	}
	return out
}

// A headless Service name stands for all its pods: new addresses join the
// pool (not ready until the health checker says so) and vanished ones
// leave it, drained and forgotten.
func TestRouter_ReResolvesHostnameBackends(t *testing.T) {
	dns := &fakeDNS{hosts: map[string][]string{"model-green.ml.svc": {"10.1.0.1"}}}
	cfg := testConfig(t, []string{"127.0.0.1:5001"}, []string{"model-green.ml.svc:5000"}, "")
	reg := NewRegistry(RegistryOptions{})
	r := NewRouter(cfg, Options{Registry: reg, Metrics: NewMetrics(prometheus.NewRegistry()), Log: zaptest.NewLogger(t),
		Resolve: dns.lookup, DNSRefresh: 10 * time.Millisecond})
	defer r.Close()
	var changes []*Snapshot
	var mu sync.Mutex
	r.OnChange(func(_ *config.Config, s *Snapshot) {
		mu.Lock()
		defer mu.Unlock()
		changes = append(changes, s)
	})
	require.Equal(t, []string{"10.1.0.1:5000"}, addrs(r.Snapshot().Pool("green")))
	old, _ := reg.Lookup("10.1.0.1:5000")

	dns.set("model-green.ml.svc", "10.1.0.2", "10.1.0.3")
	require.Eventually(t, func() bool {
		return assert.ObjectsAreEqual([]string{"10.1.0.2:5000", "10.1.0.3:5000"}, addrs(r.Snapshot().Pool("green")))
	}, 5*time.Second, 5*time.Millisecond)

	_, still := reg.Lookup("10.1.0.1:5000")
	assert.False(t, still, "a vanished address stays in the registry")
	assert.True(t, old.t.retired.Load(), "a vanished address keeps its connections")
	nb, _ := reg.Lookup("10.1.0.2:5000")
	assert.False(t, nb.Ready(), "a new address is ready before it was probed and warmed")
	mu.Lock()
	assert.NotEmpty(t, changes, "the health checker was not told about the new addresses")
	mu.Unlock()
	assert.Equal(t, []string{"127.0.0.1:5001"}, addrs(r.Snapshot().Pool("blue")), "IP backends are not looked up")
}
