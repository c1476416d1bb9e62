package config

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParse_FleetIsOffByDefault(t *testing.T) {
	cfg, err := Parse([]byte(pools))

	require.NoError(t, err)
	assert.False(t, cfg.Fleet.On())
	assert.Equal(t, Fleet{
		Heartbeat:      Duration(DefaultFleetHeartbeat),
		MemberTimeout:  Duration(DefaultFleetMemberTimeout),
		PrepareTimeout: Duration(DefaultFleetPrepareTimeout),
		StaleTimeout:   Duration(DefaultFleetStaleTimeout),
		StartTimeout:   Duration(DefaultFleetStartTimeout),
	}, cfg.Fleet)
}

func TestParse_FleetSectionIsDecodedOntoTheDefaults(t *testing.T) {
	const y = `fleet:
  kubernetes: {namespace: ml, name: switchyard-fleet, kubeconfig: /etc/kube/config}
  replica: gw-0
  stale_timeout: 0s
` + pools

	cfg, err := Parse([]byte(y))

	require.NoError(t, err)
	assert.True(t, cfg.Fleet.On())
	assert.Equal(t, FleetKubernetes{Namespace: "ml", Name: "switchyard-fleet", Kubeconfig: "/etc/kube/config"}, cfg.Fleet.Kubernetes)
	assert.Equal(t, "gw-0", cfg.Fleet.Replica)
	assert.Zero(t, cfg.Fleet.StaleTimeout, "0 is never unready, kept as written")
	assert.Equal(t, time.Second, cfg.Fleet.Heartbeat.D(), "an unwritten field keeps its default")
}

func TestParse_FleetProblemsNameTheFieldAndTheFix(t *testing.T) {
	testCases := []struct {
		desc string
		yaml string
		want string
	}{
		{
			desc: "name that is no ConfigMap name",
			yaml: "fleet: {kubernetes: {name: Switchyard_Fleet}}\n",
			want: `config: line 1: fleet.kubernetes.name: "Switchyard_Fleet" is not a ConfigMap name`,
		},
		{
			desc: "namespace with a dot",
			yaml: "fleet: {kubernetes: {name: sf, namespace: a.b}}\n",
			want: `config: line 1: fleet.kubernetes.namespace: "a.b" is not a namespace name`,
		},
		{
			desc: "replica in upper case",
			yaml: "fleet: {kubernetes: {name: sf}, replica: GW}\n",
			want: `config: line 1: fleet.replica: "GW" is not a replica name`,
		},
		{
			desc: "namespace without a name",
			yaml: "fleet: {kubernetes: {namespace: ml}}\n",
			want: `config: line 1: fleet.kubernetes.name: missing: fleet.kubernetes or fleet.replica is set but fleet mode stays off`,
		},
		{
			desc: "state_dir beside fleet mode",
			yaml: "state_dir: /var/lib/switchyard\nfleet: {kubernetes: {name: sf}}\n",
			want: `config: line 1: state_dir: "/var/lib/switchyard": in fleet mode the switch is kept in the intent ConfigMap sf`,
		},
		{
			desc: "heartbeat zero",
			yaml: "fleet: {heartbeat: 0s}\n",
			want: `config: line 1: fleet.heartbeat: must be a positive duration such as 2s, got 0s`,
		},
		{
			desc: "member timeout below two heartbeats",
			yaml: "fleet: {heartbeat: 2s, member_timeout: 3s}\n",
			want: `config: line 1: fleet.member_timeout: 3s is shorter than twice fleet.heartbeat (2s)`,
		},
		{
			desc: "stale timeout below member timeout",
			yaml: "fleet: {stale_timeout: 2s}\n",
			want: `config: line 1: fleet.stale_timeout: must be 0 (never unready) or at least fleet.member_timeout (5s), got 2s`,
		},
		{
			desc: "prepare timeout zero",
			yaml: "fleet: {prepare_timeout: 0s}\n",
			want: `config: line 1: fleet.prepare_timeout: must be a positive duration such as 2s, got 0s`,
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()

			_, err := Parse([]byte(test.yaml + pools))

			require.Error(t, err)
			assert.Contains(t, err.Error(), test.want)
		})
	}
}
