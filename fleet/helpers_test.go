package fleet

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proxy"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

const testNS = "ml"

// cluster is a fake API server that can be taken down.
type cluster struct {
	*fake.Clientset
	// down makes every call fail as a stopped API server does; getsFail
	// only reads of the intent.
	down, getsFail atomic.Bool
}

// newCluster returns a fake API server that, unlike client-go's fake
// clientset alone, keeps resourceVersions and refuses an update based on
// an old one with 409 Conflict, as the real one does. The real-API-server
// tests (build tag k8s) prove the same against kube-apiserver and etcd.
func newCluster(t *testing.T) *cluster {
	t.Helper()
	cs := &cluster{Clientset: fake.NewClientset()}
	var mu sync.Mutex
	var rv int64
	stamp := func(m metav1.Object) {
		rv++
		m.SetResourceVersion(strconv.FormatInt(rv, 10))
	}
	cs.PrependReactor("*", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if cs.down.Load() || (cs.getsFail.Load() && a.GetVerb() == "get" && a.GetResource().Resource == "configmaps") {
			return true, nil, errors.New("dial tcp 127.0.0.1:6443: connect: connection refused")
		}
		if a.GetSubresource() != "" {
			return false, nil, nil
		}
		switch a.GetVerb() {
		case "create":
			mu.Lock()
			defer mu.Unlock()
			obj := a.(k8stesting.CreateAction).GetObject()
			m := obj.(metav1.Object)
			stamp(m)
			m.SetUID(types.UID(fmt.Sprintf("uid-%d", rv)))
			if err := cs.Tracker().Create(a.GetResource(), obj, a.GetNamespace()); err != nil {
				return true, nil, err
			}
			return true, obj.DeepCopyObject(), nil
		case "update":
			mu.Lock()
			defer mu.Unlock()
			obj := a.(k8stesting.UpdateAction).GetObject()
			m := obj.(metav1.Object)
			cur, err := cs.Tracker().Get(a.GetResource(), a.GetNamespace(), m.GetName())
			if err != nil {
				return true, nil, err
			}
			if cur.(metav1.Object).GetResourceVersion() != m.GetResourceVersion() {
				return true, nil, apierrors.NewConflict(a.GetResource().GroupResource(), m.GetName(),
					fmt.Errorf("the object has been modified; please apply your changes to the latest version and try again"))
			}
			stamp(m)
			m.SetUID(cur.(metav1.Object).GetUID())
			if err := cs.Tracker().Update(a.GetResource(), obj, a.GetNamespace()); err != nil {
				return true, nil, err
			}
			return true, obj.DeepCopyObject(), nil
		}
		return false, nil, nil
	})
	return cs
}

// replica is one gateway's fleet membership over its own router.
type replica struct {
	name   string
	fleet  *Fleet
	router *proxy.Router
	cfg    *config.Config
}

// testConfig is a config whose pools need not exist (routers start with
// every backend ready and no traffic flows), with fast fleet timings.
func testConfig(t *testing.T, active, extra string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(`active: ` + active + `
pools:
  blue: {version: v1, backends: [10.0.0.1:5000, 10.0.0.3:5000]}
  green: {version: v2, backends: [10.0.0.2:5000, 10.0.0.4:5000]}
fleet:
  kubernetes: {namespace: ` + testNS + `, name: switchyard-fleet}
  heartbeat: 50ms
  member_timeout: 2s
  prepare_timeout: 2s
  stale_timeout: 3s
  start_timeout: 10s
` + extra))
	require.NoError(t, err)
	return cfg
}

// startReplica joins a replica named name with cfg to the fleet on cs.
func startReplica(t *testing.T, cs *cluster, name string, cfg *config.Config) *replica {
	t.Helper()
	return startReplicaAt(t, cs, name, cfg, nil)
}

// testClock is a clock that moves only when told.
type testClock struct{ ns atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *testClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *testClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// startReplicaAt is startReplica with the clock now (time.Now when nil).
func startReplicaAt(t *testing.T, cs *cluster, name string, cfg *config.Config, now func() time.Time) *replica {
	t.Helper()
	log := zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel)).Named(name)
	r := proxy.NewRouter(cfg, proxy.Options{
		Registry: proxy.NewRegistry(proxy.RegistryOptions{StartReady: true}),
		Metrics:  proxy.NewMetrics(prometheus.NewRegistry()),
		Log:      log,
		Explain:  func(b *proxy.Backend) string { return "probe failed: " + b.Addr() },
	})
	f := New(cfg.Fleet, Options{Client: cs, Namespace: testNS, Replica: name, Router: r, Log: log, Now: now})
	t.Cleanup(func() {
		f.Close()
		r.Close()
	})
	require.NoError(t, f.Start(context.Background(), cfg, "sha-"+name+"-"+string(cfg.Active)))
	return &replica{name: name, fleet: f, router: r, cfg: cfg}
}

// startFleet starts n replicas named gw-0... on one fake API server and
// waits until each sees all the others live.
func startFleet(t *testing.T, n int, active string) (*cluster, []*replica) {
	t.Helper()
	cs := newCluster(t)
	var rs []*replica
	for i := range n {
		rs = append(rs, startReplica(t, cs, fmt.Sprintf("gw-%d", i), testConfig(t, active, "")))
	}
	for _, r := range rs {
		require.Eventually(t, func() bool { return len(r.fleet.liveMembers(time.Now())) == n-1 }, 10*time.Second, 5*time.Millisecond,
			"%s sees the other replicas", r.name)
	}
	return cs, rs
}

// setNotReady marks addr of r's registry not ready, as a failed probe
// would.
func (r *replica) setNotReady(t *testing.T, addr string) {
	t.Helper()
	b, ok := r.router.Registry().Lookup(addr)
	require.True(t, ok, "%s has no backend %s", r.name, addr)
	b.SetReady(false)
}

// waitServing waits until every replica serves color at fleet generation
// gen.
func waitServing(t *testing.T, rs []*replica, color config.Color, gen uint64) {
	t.Helper()
	for _, r := range rs {
		require.Eventually(t, func() bool {
			a := r.fleet.applied.Load()
			return r.router.ActiveColor() == color && a.generation == gen
		}, 10*time.Second, 2*time.Millisecond, "%s serves %s at generation %d", r.name, color, gen)
	}
}

// fileQueued reports whether a config edit waits to be written.
func (r *replica) fileQueued() bool {
	r.fleet.file.mu.Lock()
	defer r.fleet.file.mu.Unlock()
	return r.fleet.file.job != nil
}
