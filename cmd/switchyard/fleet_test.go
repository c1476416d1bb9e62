package main

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/admin"
	"github.com/switchyard/switchyard/fleet"
	"github.com/switchyard/switchyard/proxy"
)

// fleetStatus is a status answer in fleet mode whose replicas serve gens.
func fleetStatus(t *testing.T, gens map[string]uint64) string {
	t.Helper()
	st := admin.Status{Active: "green", ActiveVersion: "v2", Generation: 5, Pools: map[string]admin.PoolStatus{},
		Switches: []proxy.SwitchRecord{}, Drains: []proxy.DrainStatus{},
		Fleet: &fleet.Status{Namespace: "ml", ConfigMap: "switchyard-fleet", Generation: 5, Replicas: []fleet.Replica{}}}
	for _, id := range []string{"gw-0", "gw-1", "gw-2"} {
		gen, ok := gens[id]
		if !ok {
			continue
		}
		st.Fleet.Replicas = append(st.Fleet.Replicas, fleet.Replica{ID: id, Generation: gen, Active: "green", State: fleet.StateOK,
			Live: true, HeartbeatAgeSeconds: 0.4, Pools: "blue=2/2 green=2/2"})
	}
	b, err := json.Marshal(st)
	require.NoError(t, err)
	return string(b)
}

func TestSwitchWait_ReturnsWhenEveryLiveReplicaServesTheSwitch(t *testing.T) {
	adm := newFakeAdmin(t, map[string]func(int) (int, string){
		"POST /admin/switch": func(int) (int, string) {
			return http.StatusOK, `{"from": "blue", "to": "green", "version": "v2", "generation": 5}`
		},
		"GET /admin/status": func(n int) (int, string) {
			if n == 1 {
				return http.StatusOK, fleetStatus(t, map[string]uint64{"gw-0": 5, "gw-1": 4, "gw-2": 5})
			}
			return http.StatusOK, fleetStatus(t, map[string]uint64{"gw-0": 5, "gw-1": 5, "gw-2": 5})
		},
	})

	r := runAt(t, adm.URL, "switch", "green", "--wait", "--wait-timeout", "5s")

	require.Equal(t, exitOK, r.code, r)
	assert.Contains(t, r.stdout, "all 3 live replicas serve generation 5")
}

func TestSwitchWait_NamesTheLaggardsAfterTheTimeout(t *testing.T) {
	adm := newFakeAdmin(t, map[string]func(int) (int, string){
		"POST /admin/switch": func(int) (int, string) {
			return http.StatusOK, `{"from": "blue", "to": "green", "version": "v2", "generation": 5}`
		},
		"GET /admin/status": func(int) (int, string) {
			return http.StatusOK, fleetStatus(t, map[string]uint64{"gw-0": 5, "gw-1": 4, "gw-2": 5})
		},
	})

	r := runAt(t, adm.URL, "switch", "green", "--wait", "--wait-timeout", "100ms")

	require.Equal(t, exitRefused, r.code, r)
	assert.Contains(t, r.stderr, "1 of 3 live replicas do not serve generation 5: gw-1 (at generation 4")
}

func TestStatus_ShowsEachReplicaOfTheFleet(t *testing.T) {
	adm := newFakeAdmin(t, map[string]func(int) (int, string){
		"GET /admin/status": func(int) (int, string) {
			return http.StatusOK, fleetStatus(t, map[string]uint64{"gw-0": 5, "gw-1": 5})
		},
	})

	r := runAt(t, adm.URL, "status")

	require.Equal(t, exitOK, r.code, r)
	assert.Contains(t, r.stdout, "fleet: configmap ml/switchyard-fleet, generation 5")
	assert.Regexp(t, `gw-1\s+5\s+green\s+ok\s+0\.4s ago\s+blue=2/2 green=2/2`, r.stdout)
}
