package fleet

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/analysis"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proxy"
	"go.uber.org/goleak"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestStart_FirstReplicaWritesTheIntentFromItsConfig(t *testing.T) {
	cs := newCluster(t)

	r := startReplica(t, cs, "gw-0", testConfig(t, "green", ""))

	cm, err := cs.CoreV1().ConfigMaps(testNS).Get(context.Background(), "switchyard-fleet", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, "1", cm.Data["generation"])
	assert.Equal(t, "green", cm.Data["active"])
	assert.Equal(t, "gw-0", cm.Data["by"])
	assert.Equal(t, config.Green, r.router.ActiveColor())
	assert.NoError(t, r.fleet.Ready())
}

func TestStart_NewReplicaServesTheFleetsColorNotItsFiles(t *testing.T) {
	cs, rs := startFleet(t, 1, "blue")
	res, err := rs[0].fleet.Switch(context.Background(), proxy.SwitchRequest{To: config.Green, Trigger: proxy.TriggerAdmin})
	require.NoError(t, err)

	late := startReplica(t, cs, "gw-late", testConfig(t, "blue", ""))

	assert.Equal(t, config.Green, late.router.ActiveColor(), "a new replica starts on the fleet's color, not its file's")
	assert.Equal(t, res.Generation, late.fleet.applied.Load().generation)
}

func TestSwitch_MovesEveryReplica(t *testing.T) {
	_, rs := startFleet(t, 3, "blue")

	res, err := rs[1].fleet.Switch(context.Background(), proxy.SwitchRequest{To: config.Green, Trigger: proxy.TriggerAdmin})

	require.NoError(t, err)
	assert.False(t, res.NoOp)
	assert.EqualValues(t, 2, res.Generation)
	waitServing(t, rs, config.Green, 2)
	for _, r := range rs {
		h := r.fleet.History()
		require.Len(t, h, 1, r.name)
		assert.Equal(t, proxy.SwitchRecord{From: config.Blue, To: config.Green, Version: "v2", Trigger: proxy.TriggerAdmin,
			At: h[0].At, Generation: 2}, h[0])
	}
	require.Eventually(t, func() bool { return rs[0].fleet.Status().Agree }, 5*time.Second, 5*time.Millisecond)
}

func TestSwitch_RefusedWhenOneReplicaFindsTheTargetNotReady(t *testing.T) {
	cs, rs := startFleet(t, 3, "blue")
	rs[2].setNotReady(t, "10.0.0.4:5000")
	before, err := cs.CoreV1().ConfigMaps(testNS).Get(context.Background(), "switchyard-fleet", metav1.GetOptions{})
	require.NoError(t, err)

	_, err = rs[0].fleet.Switch(context.Background(), proxy.SwitchRequest{To: config.Green, Trigger: proxy.TriggerAdmin})

	var refused *RefusedError
	require.ErrorAs(t, err, &refused)
	assert.Equal(t, "gw-2", refused.Replica)
	assert.Equal(t, map[string]string{"10.0.0.4:5000": "probe failed: 10.0.0.4:5000"}, refused.Refused.Backends)
	assert.Contains(t, err.Error(), "refused by replica gw-2")
	var local *proxy.RefusedError
	assert.ErrorAs(t, err, &local, "callers that know a local refusal handle it alike")
	after, err := cs.CoreV1().ConfigMaps(testNS).Get(context.Background(), "switchyard-fleet", metav1.GetOptions{})
	require.NoError(t, err)
	assert.Equal(t, before.Data["generation"], after.Data["generation"], "nothing committed")
	assert.Empty(t, after.Data["pending"], "the prepare was taken back")
	for _, r := range rs {
		assert.Equal(t, config.Blue, r.router.ActiveColor(), "%s moved", r.name)
	}
}

func TestSwitch_ForceSkipsTheFleetGate(t *testing.T) {
	_, rs := startFleet(t, 2, "blue")
	rs[1].setNotReady(t, "10.0.0.4:5000")
	rs[0].setNotReady(t, "10.0.0.2:5000")

	res, err := rs[0].fleet.Switch(context.Background(), proxy.SwitchRequest{To: config.Green, Force: true, Trigger: proxy.TriggerAdmin})

	require.NoError(t, err)
	assert.True(t, res.Forced, "the local gate refused, so the switch is recorded as forced")
	waitServing(t, rs, config.Green, res.Generation)
}

func TestSwitch_IfMatchChecksTheFleetsGeneration(t *testing.T) {
	testCases := []struct {
		desc    string
		ifGen   uint64
		wantErr error
	}{
		{desc: "current generation switches", ifGen: 1},
		{desc: "older generation is refused", ifGen: 7, wantErr: proxy.ErrStaleGeneration},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			_, rs := startFleet(t, 2, "blue")

			_, err := rs[1].fleet.Switch(context.Background(), proxy.SwitchRequest{To: config.Green, IfGeneration: test.ifGen, Trigger: proxy.TriggerAdmin})

			if test.wantErr != nil {
				require.ErrorIs(t, err, test.wantErr)
				assert.Equal(t, config.Blue, rs[0].router.ActiveColor())
				return
			}
			require.NoError(t, err)
			waitServing(t, rs, config.Green, 2)
		})
	}
}

func TestSwitch_ConcurrentOnTwoReplicasExactlyOneWins(t *testing.T) {
	for range 5 {
		_, rs := startFleet(t, 3, "blue")
		var wg sync.WaitGroup
		errs := make([]error, 2)
		results := make([]proxy.SwitchResult, 2)
		for i := range 2 {
			wg.Go(func() {
				results[i], errs[i] = rs[i].fleet.Switch(context.Background(),
					proxy.SwitchRequest{To: config.Green, IfGeneration: 1, Trigger: proxy.TriggerAdmin})
			})
		}
		wg.Wait()

		won := 0
		for i, err := range errs {
			if err == nil {
				won++
				assert.False(t, results[i].NoOp)
				continue
			}
			var refused *RefusedError
			assert.True(t, errors.Is(err, proxy.ErrStaleGeneration) || errors.As(err, &refused), "the loser is told why: %v", err)
		}
		require.Equal(t, 1, won, "exactly one of two concurrent switches wins: %v", errs)
		waitServing(t, rs, config.Green, 2)
		assert.Len(t, rs[2].fleet.History(), 1, "one switch, one history entry")
	}
}

func TestSwitch_APIUnreachableAnswersUnavailableAndMovesNothing(t *testing.T) {
	cs, rs := startFleet(t, 2, "blue")
	cs.getsFail.Store(true)

	_, err := rs[0].fleet.Switch(context.Background(), proxy.SwitchRequest{To: config.Green, Trigger: proxy.TriggerAdmin})

	require.ErrorIs(t, err, ErrUnavailable)
	assert.Contains(t, err.Error(), "connection refused")
	for _, r := range rs {
		assert.Equal(t, config.Blue, r.router.ActiveColor())
	}
}

func TestRollback_ReturnsTheFleetToItsPreviousColor(t *testing.T) {
	_, rs := startFleet(t, 2, "blue")
	_, err := rs[0].fleet.Switch(context.Background(), proxy.SwitchRequest{To: config.Green, Trigger: proxy.TriggerAdmin})
	require.NoError(t, err)
	waitServing(t, rs, config.Green, 2)

	res, err := rs[1].fleet.Rollback(context.Background(), false)

	require.NoError(t, err)
	assert.Equal(t, config.Blue, res.To)
	waitServing(t, rs, config.Blue, 3)
	h := rs[0].fleet.History()
	require.Len(t, h, 2)
	assert.Equal(t, proxy.TriggerRollback, h[1].Trigger)
}

func TestRollback_WithoutHistoryHasNothingToRollBack(t *testing.T) {
	_, rs := startFleet(t, 1, "blue")

	_, err := rs[0].fleet.Rollback(context.Background(), false)

	require.ErrorIs(t, err, proxy.ErrNothingToRollBack)
}

func TestSetTraffic_SetsTheSplitOnEveryReplica(t *testing.T) {
	_, rs := startFleet(t, 3, "blue")
	pct := 5.5

	tr, err := rs[2].fleet.SetTraffic(context.Background(), proxy.TrafficRequest{Color: config.Green, Percent: &pct,
		SetMirror: true, Mirror: &proxy.MirrorSetting{To: config.Green, Percent: 1}})

	require.NoError(t, err)
	assert.EqualValues(t, 2, tr.Generation)
	for _, r := range rs {
		require.Eventually(t, func() bool {
			got := r.router.Snapshot().Traffic()
			return got.Weights[config.Green] == 5.5 && got.Mirror != nil && got.Mirror.Percent == 1
		}, 5*time.Second, 2*time.Millisecond, "%s has the split", r.name)
	}
}

func TestSetTraffic_RefusesWhatOneGatewayRefuses(t *testing.T) {
	testCases := []struct {
		desc    string
		req     proxy.TrafficRequest
		wantErr string
		bad     bool
	}{
		{desc: "percent above 100", req: proxy.TrafficRequest{Color: config.Green, Percent: ptr(101.0)}, wantErr: "not within 0-100", bad: true},
		{desc: "canary to the active color", req: proxy.TrafficRequest{Color: config.Blue, Percent: ptr(5.0)}, wantErr: "blue is active"},
		{desc: "mirror to the active color", req: proxy.TrafficRequest{SetMirror: true, Mirror: &proxy.MirrorSetting{To: config.Blue, Percent: 1}}, wantErr: "only the standby"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			_, rs := startFleet(t, 1, "blue")

			_, err := rs[0].fleet.SetTraffic(context.Background(), test.req)

			require.ErrorContains(t, err, test.wantErr)
			assert.Equal(t, test.bad, errors.Is(err, proxy.ErrBadTraffic))
			assert.EqualValues(t, 1, rs[0].fleet.Generation())
		})
	}
}

func TestFromFile_EditSeenByTwoReplicasAtDifferentTimesIsOneSwitch(t *testing.T) {
	_, rs := startFleet(t, 2, "blue")

	rs[0].fleet.FromFile(testConfig(t, "green", ""), "sha-edit-a")
	waitServing(t, rs, config.Green, 2)
	rs[1].fleet.FromFile(testConfig(t, "green", ""), "sha-edit-b")
	// The second replica's copy of the edit is dropped, never written.
	require.Eventually(t, func() bool { return !rs[1].fileQueued() }, 5*time.Second, 2*time.Millisecond)

	for _, r := range rs {
		h := r.fleet.History()
		require.Len(t, h, 1, "one fleet switch, one history entry")
		assert.Equal(t, proxy.TriggerFile, h[0].Trigger)
	}
	assert.EqualValues(t, 2, rs[1].fleet.Generation())
}

func TestFromFile_OperatorSwitchAfterTheEditWins(t *testing.T) {
	_, rs := startFleet(t, 2, "blue")
	rs[0].fleet.FromFile(testConfig(t, "green", ""), "sha-1")
	waitServing(t, rs, config.Green, 2)
	_, err := rs[0].fleet.Switch(context.Background(), proxy.SwitchRequest{To: config.Blue, Trigger: proxy.TriggerAdmin})
	require.NoError(t, err)
	waitServing(t, rs, config.Blue, 3)

	// A replica whose file shows the same content late, or only now.
	rs[1].fleet.FromFile(testConfig(t, "green", ""), "sha-1")
	require.Eventually(t, func() bool { return !rs[1].fileQueued() }, 5*time.Second, 2*time.Millisecond)

	assert.Equal(t, config.Blue, rs[1].router.ActiveColor(), "the operator's later switch stands")
	assert.EqualValues(t, 3, rs[1].fleet.Generation())
}

func TestFromFile_KeepsTheFleetsRoutingInTheReloadedConfig(t *testing.T) {
	_, rs := startFleet(t, 1, "blue")
	_, err := rs[0].fleet.SetTraffic(context.Background(), proxy.TrafficRequest{Color: config.Green, Percent: ptr(2.5)})
	require.NoError(t, err)
	reloaded := testConfig(t, "blue", "traffic: {sticky_header: X-User}\n")

	rs[0].fleet.FromFile(reloaded, "sha-sticky")

	assert.Equal(t, config.Blue, reloaded.Active)
	assert.Equal(t, 3, reloaded.Traffic.Green, "the whole percent nearest the fleet's 2.5")
	require.Eventually(t, func() bool { return rs[0].router.Snapshot().Traffic().StickyHeader == "X-User" }, 5*time.Second, 2*time.Millisecond,
		"the file's new sticky header becomes the fleet's")
}

func TestReady_TurnsUnreadyOnlyAfterTheStaleTimeout(t *testing.T) {
	cs := newCluster(t)
	clock := newTestClock()
	r := startReplicaAt(t, cs, "gw-0", testConfig(t, "blue", ""), clock.now)
	require.NoError(t, r.fleet.Ready())
	cs.down.Store(true)
	require.Eventually(t, func() bool { return r.fleet.leaseErr.Load() != nil }, 5*time.Second, time.Millisecond,
		"a heartbeat fails once the API server is gone")
	testCases := []struct {
		desc  string
		after time.Duration
		ready bool
	}{
		{desc: "lost for less than stale_timeout", after: 2 * time.Second, ready: true},
		{desc: "lost for longer", after: 2 * time.Second, ready: false},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			clock.advance(test.after)

			err := r.fleet.Ready()

			if test.ready {
				assert.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrNotReady)
			assert.Contains(t, err.Error(), "still serving generation 1")
			st := r.fleet.Status()
			assert.True(t, st.Stale)
			assert.Contains(t, st.LastError, "connection refused")
			assert.Equal(t, config.Blue, r.router.ActiveColor(), "losing the API server never changes routing")
		})
	}
}

func TestStatus_ShowsEachReplicaItsGenerationAndWhetherItAgrees(t *testing.T) {
	_, rs := startFleet(t, 3, "blue")
	_, err := rs[0].fleet.Switch(context.Background(), proxy.SwitchRequest{To: config.Green, Trigger: proxy.TriggerAdmin})
	require.NoError(t, err)
	waitServing(t, rs, config.Green, 2)

	var st Status
	require.Eventually(t, func() bool { st = rs[1].fleet.Status(); return st.Agree }, 5*time.Second, 5*time.Millisecond)

	assert.Equal(t, "gw-1", st.Replica)
	assert.EqualValues(t, 2, st.Generation)
	require.Len(t, st.Replicas, 3)
	for i, r := range st.Replicas {
		assert.Equal(t, rs[i].name, r.ID)
		assert.Equal(t, StateOK, r.State)
		assert.Equal(t, config.Green, r.Active)
		assert.True(t, r.Agrees)
		assert.Equal(t, i == 1, r.Self)
	}
	require.NotNil(t, st.Intent)
	assert.Equal(t, "gw-0", st.Intent.By)
}

func TestClose_RemovesTheReplicasLease(t *testing.T) {
	cs, rs := startFleet(t, 2, "blue")

	rs[1].fleet.Close()

	leases, err := cs.CoordinationV1().Leases(testNS).List(context.Background(), metav1.ListOptions{})
	require.NoError(t, err)
	require.Len(t, leases.Items, 1)
	assert.Equal(t, "switchyard-fleet-gw-0", leases.Items[0].Name)
}

func ptr[T any](v T) *T { return &v }

func TestCollectors_ReportTheGenerationsAndTheLiveReplicas(t *testing.T) {
	_, rs := startFleet(t, 2, "blue")
	_, err := rs[0].fleet.Switch(context.Background(), proxy.SwitchRequest{To: config.Green, Trigger: proxy.TriggerAdmin})
	require.NoError(t, err)
	waitServing(t, rs, config.Green, 2)
	reg := prometheus.NewRegistry()
	for _, c := range rs[1].fleet.Collectors() {
		reg.MustRegister(c)
	}

	got := map[string]float64{}
	require.Eventually(t, func() bool {
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			got[mf.GetName()] = mf.GetMetric()[0].GetGauge().GetValue()
		}
		return got["switchyard_fleet_agree"] == 1
	}, 5*time.Second, 5*time.Millisecond)

	assert.Equal(t, 2.0, got["switchyard_fleet_generation"])
	assert.Equal(t, 2.0, got["switchyard_fleet_applied_generation"])
	assert.Equal(t, 2.0, got["switchyard_fleet_live_replicas"])
	assert.Less(t, got["switchyard_fleet_api_contact_age_seconds"], 2.0)
}

func TestRouter_AutomaticRollbackByOneReplicaMovesTheFleetOnce(t *testing.T) {
	_, rs := startFleet(t, 3, "blue")
	var _ analysis.Router = rs[0].fleet.Router(rs[0].router)
	_, err := rs[0].fleet.Router(rs[0].router).Switch(proxy.SwitchRequest{To: config.Green, Trigger: proxy.TriggerAdmin})
	require.NoError(t, err)
	waitServing(t, rs, config.Green, 2)

	// Replica 2's analysis decides to roll back; replica 1's decides the
	// same a moment later.
	res, err := rs[2].fleet.Router(rs[2].router).Switch(proxy.SwitchRequest{To: config.Blue, Trigger: proxy.TriggerAutoRollback})
	require.NoError(t, err)
	waitServing(t, rs, config.Blue, res.Generation)
	again, err := rs[1].fleet.Router(rs[1].router).Switch(proxy.SwitchRequest{To: config.Blue, Trigger: proxy.TriggerAutoRollback})

	require.NoError(t, err)
	assert.True(t, again.NoOp, "the fleet already rolled back")
	h := rs[0].fleet.History()
	require.Len(t, h, 2)
	assert.Equal(t, proxy.TriggerAutoRollback, h[1].Trigger)
	op, err := rs[0].fleet.Router(rs[0].router).Rollback(false)
	require.NoError(t, err)
	assert.True(t, op.NoOp)
	assert.Contains(t, op.Message, "already rolled back automatically from green to blue")
}
