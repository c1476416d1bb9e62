//go:build e2e

package e2e

import (
	"testing"
	"time"
)

// TestBackendKilled_PoolWithAnotherReadyBackendLosesNoRequest: one of two
// blue gunicorn servers is killed with SIGKILL under load. Every request
// must still be answered correctly by the other: a request that was being
// sent to the dead one is retried after its refused connect, one whose
// kept-alive connection died without an answer is retried because the
// backend now refuses connections, and no answer is ever half-sent,
// because small answers are read whole before the client sees a byte.
func TestBackendKilled_PoolWithAnotherReadyBackendLosesNoRequest(t *testing.T) {
	testCases := []struct {
		desc  string
		retry bool
	}{
		{desc: "default settings"},
		{desc: "retry_non_idempotent", retry: true},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			client := newClient(t)
			blue1 := startModel(t, "blue", blueVersion, freeAddr(t))
			blue2 := startModel(t, "blue", blueVersion, freeAddr(t))
			green := startModel(t, "green", greenVersion, freeAddr(t))
			for _, m := range []*modelServer{blue1, blue2, green} {
				m.waitHealthy(t, client)
			}
			want := expected{}
			want.reference(t, client, blue1)
			gw := startGateway(t, client, gatewayConfig{Blue: blue1.addr + ", " + blue2.addr, Green: green.addr,
				NoAutoRollback: true, RetryNonIdempotent: test.retry})
			gw.waitReady(t, "blue")

			l := startLoad(t, client, gw.cfg.Traffic)
			l.waitFor(t, 30*time.Second, "answers from both blue backends before the kill", 200, fromColor("blue"))
			killed := time.Now()
			blue2.kill(t)
			l.waitFor(t, 30*time.Second, "answers after the kill", 400, startedAfter(killed))
			answers := l.stop()
			want.requireAllGood(t, "requests around the kill of one of two blue backends", answers)
			t.Logf("%d requests, %d started after the kill, all answered by the surviving backend's model",
				len(answers), count(answers, startedAfter(killed)))
		})
	}
}
