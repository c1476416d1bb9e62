package proxy

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
)

func TestApplyIntent_PublishesColorAndTrafficInOneSnapshot(t *testing.T) {
	r := newTestRouter(t, testConfig(t, blueAddrs, greenAddrs, ""), nil)
	var hooked []SwitchRecord
	r.OnSwitch(func(rec SwitchRecord) { hooked = append(hooked, rec) })
	before := r.Snapshot()

	res, err := r.ApplyIntent(Intent{Active: config.Green, Canary: 5, StickyHeader: "X-User",
		Mirror: &MirrorSetting{To: config.Blue, Percent: 1}, Trigger: TriggerAdmin})

	require.NoError(t, err)
	snap := r.Snapshot()
	assert.Equal(t, before.Generation+1, snap.Generation, "one snapshot for color and traffic")
	assert.Equal(t, config.Green, snap.Active)
	assert.Equal(t, Traffic{Weights: map[config.Color]float64{config.Green: 95, config.Blue: 5}, StickyHeader: "X-User",
		Mirror: &MirrorSetting{To: config.Blue, Percent: 1}, Generation: snap.Generation}, snap.Traffic())
	assert.False(t, res.NoOp)
	assert.Equal(t, config.Blue, res.From)
	require.NotNil(t, res.Drain)
	assert.Equal(t, config.Blue, res.Drain.Color)
	require.Len(t, r.History(), 1)
	assert.Equal(t, TriggerAdmin, r.History()[0].Trigger)
	assert.Equal(t, r.History(), hooked, "OnSwitch hooks run as for a switch")
}

func TestApplyIntent_FollowsTheFleetEvenWhenTheTargetIsNotReadyHere(t *testing.T) {
	r := newTestRouter(t, testConfig(t, blueAddrs, greenAddrs, ""), nil)
	for _, addr := range greenAddrs {
		b, ok := r.Registry().Lookup(addr)
		require.True(t, ok)
		b.SetReady(false)
	}
	require.Error(t, r.CheckSwitch(config.Green), "the local gate refuses green")

	res, err := r.ApplyIntent(Intent{Active: config.Green, Trigger: TriggerAdmin})

	require.NoError(t, err)
	assert.False(t, res.NoOp)
	assert.Equal(t, config.Green, r.ActiveColor())
}

func TestApplyIntent_SameStateIsNoOpAndPublishesNothing(t *testing.T) {
	r := newTestRouter(t, testConfig(t, blueAddrs, greenAddrs, ""), nil)
	before := r.Snapshot()

	res, err := r.ApplyIntent(Intent{Active: config.Blue, Trigger: TriggerAdmin})

	require.NoError(t, err)
	assert.True(t, res.NoOp)
	assert.Same(t, before, r.Snapshot())
	assert.Empty(t, r.History())
}

func TestApplyIntent_TrafficOnlyChangeIsNotASwitch(t *testing.T) {
	r := newTestRouter(t, testConfig(t, blueAddrs, greenAddrs, ""), nil)

	res, err := r.ApplyIntent(Intent{Active: config.Blue, Canary: 10, Trigger: TriggerAdmin})

	require.NoError(t, err)
	assert.True(t, res.NoOp, "the color did not change")
	assert.InDelta(t, 10, r.Snapshot().Traffic().Weights[config.Green], 1e-9)
	assert.Empty(t, r.History())
	assert.Empty(t, r.Drains())
}

func TestApplyIntent_RefusesWhatIsNoIntent(t *testing.T) {
	testCases := []struct {
		desc string
		in   Intent
	}{
		{desc: "no color", in: Intent{}},
		{desc: "canary above 100", in: Intent{Active: config.Blue, Canary: 101}},
		{desc: "negative canary", in: Intent{Active: config.Blue, Canary: -1}},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			r := newTestRouter(t, testConfig(t, blueAddrs, greenAddrs, ""), nil)
			before := r.Snapshot()

			_, err := r.ApplyIntent(test.in)

			require.Error(t, err)
			assert.Same(t, before, r.Snapshot())
		})
	}
}

func TestCheckSwitch_NamesTheBackendsThatAreNotReady(t *testing.T) {
	r := newTestRouter(t, testConfig(t, blueAddrs, greenAddrs, ""), func(b *Backend) string { return "warming " + b.Addr() })
	b, ok := r.Registry().Lookup(greenAddrs[1])
	require.True(t, ok)
	b.SetReady(false)
	before := r.Snapshot()

	err := r.CheckSwitch(config.Green)

	var refused *RefusedError
	require.ErrorAs(t, err, &refused)
	assert.Equal(t, map[string]string{greenAddrs[1]: "warming " + greenAddrs[1]}, refused.Backends)
	assert.Same(t, before, r.Snapshot(), "a check switches nothing")
	assert.NoError(t, r.CheckSwitch(config.Blue), "the active color passes")
}
