package proxy

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A GPU holds only max_concurrency requests: the next one waits in the
// queue and goes through once a slot frees, rather than piling onto the GPU.
func TestProxy_QueuesBeyondMaxConcurrencyThenServes(t *testing.T) {
	backend := newHoldServer(t, "blue")
	defer backend.Release()
	cfg := testConfig(t, []string{hostPort(backend.Server)}, nil, "")
	cfg.Pools.Blue.MaxConcurrency = 1
	gw := startGateway(t, cfg)
	client := newClient(t)

	first := getAsync(client, gw.URL+"/hold")
	backend.waitArrived(t)
	second := getAsync(client, gw.URL+"/hold")
	require.Eventually(t, func() bool { return gw.Router.Snapshot().ActivePool().waiting.Load() == 1 },
		5*time.Second, time.Millisecond, "the second request did not queue")
	select {
	case <-backend.arrived:
		t.Fatal("a request beyond max_concurrency reached the backend")
	default:
	}

	backend.Release()
	assert.Equal(t, http.StatusOK, await(t, first).status)
	assert.Equal(t, http.StatusOK, await(t, second).status)
}

// Past the queue, a request gets 503 with Retry-After at once.
func TestProxy_Answers503WithRetryAfterWhenQueueIsFull(t *testing.T) {
	backend := newHoldServer(t, "blue")
	defer backend.Release()
	cfg := testConfig(t, []string{hostPort(backend.Server)}, nil, "")
	cfg.Pools.Blue.MaxConcurrency = 1
	cfg.Pools.Blue.MaxQueue = 0
	gw := startGateway(t, cfg)
	client := newClient(t)

	held := getAsync(client, gw.URL+"/hold")
	backend.waitArrived(t)
	resp, err := client.Get(gw.URL + "/predict")
	require.NoError(t, err)
	resp.Body.Close()

	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, "1", resp.Header.Get("Retry-After"))
	backend.Release()
	assert.Equal(t, http.StatusOK, await(t, held).status)
}

// Consecutive failures eject a backend for a cooldown, but never more than
// max_ejection_percent of the pool.
func TestProxy_PassiveHealthEjectsFailingBackendWithinShare(t *testing.T) {
	good, good2 := colorServer(t, "good"), colorServer(t, "good2")
	dead1, dead2 := deadAddr(t), deadAddr(t)
	cfg := testConfig(t, []string{hostPort(good), hostPort(good2), dead1, dead2}, nil,
		"outlier: {consecutive_failures: 2, base_ejection: 1m, max_ejection_percent: 25}\n")
	gw := startGateway(t, cfg)
	client := newClient(t)
	for range 40 {
		resp, err := client.Post(gw.URL+"/predict", "application/json", nil)
		require.NoError(t, err)
		resp.Body.Close()
	}
	ejected := 0
	for _, b := range gw.Router.Snapshot().ActivePool().Backends {
		if !b.EjectedUntil().IsZero() {
			ejected++
			assert.Equal(t, uint32(1), b.Ejections())
		}
	}
	assert.Equal(t, 1, ejected, "25%% of 4 backends allows one ejection, though two are dead")
}

// With capacity_check, a switch to a pool that cannot hold the live load
// at max_concurrency is refused, with the numbers.
func TestSwitch_CapacityCheckRefusesAnUndersizedPool(t *testing.T) {
	blue := newHoldServer(t, "blue")
	defer blue.Release()
	green := colorServer(t, "green")
	cfg := testConfig(t, []string{hostPort(blue.Server)}, []string{hostPort(green)}, "switch: {capacity_check: true}\n")
	cfg.Pools.Green.MaxConcurrency = 1
	gw := startGateway(t, cfg)
	client := newClient(t)
	a, b := getAsync(client, gw.URL+"/hold"), getAsync(client, gw.URL+"/hold")
	backend := blue
	backend.waitArrived(t)
	backend.waitArrived(t)

	_, err := gw.Router.Switch(SwitchRequest{To: "green", Trigger: TriggerAdmin})
	var refused *RefusedError
	require.ErrorAs(t, err, &refused)
	assert.Contains(t, refused.Reason, "capacity")

	blue.Release()
	await(t, a)
	await(t, b)
	_, err = gw.Router.Switch(SwitchRequest{To: "green", Trigger: TriggerAdmin})
	assert.NoError(t, err, "with the load gone the switch fits")
}

// A request fasthttp rejects before the handler (a body over the server's
// cap) still says which pool it concerns, like every other answer.
func TestProxy_ParseErrorsCarryPoolHeaders(t *testing.T) {
	backend := colorServer(t, "blue")
	cfg := testConfig(t, []string{hostPort(backend)}, nil, "proxy: {max_request_body_bytes: 16}\n")
	gw := startGateway(t, cfg)

	resp, err := newClient(t).Post(gw.URL+"/predict", "application/json", strings.NewReader(strings.Repeat("x", 100)))
	require.NoError(t, err)
	resp.Body.Close()

	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	assert.Equal(t, "blue", resp.Header.Get(HeaderColor))
	assert.Equal(t, "v1", resp.Header.Get(HeaderVersion))
}
