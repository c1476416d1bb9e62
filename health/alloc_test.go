//go:build !race

package health

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
)

// startCannedServer answers every request read on a loopback port with
// answer, allocating nothing per request, until the test ends.
func startCannedServer(t *testing.T, answer string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		buf, out := make([]byte, 4096), []byte(answer)
		for {
			if _, err := conn.Read(buf); err != nil { // one request per read on loopback
				return
			}
			if _, err := conn.Write(out); err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		<-done
	})
	return ln.Addr().String()
}

// A probe on a kept connection allocates nothing but what its report
// keeps (and, in the monitor, its context): no buffers, no request, no
// goroutine.
func TestProbe_HTTPKindsAllocateOnlyTheirReport(t *testing.T) {
	// Not parallel: other tests' allocations would count.
	testCases := []struct {
		desc, kind, body string
		want             float64
	}{
		{desc: "http", kind: config.ProbeHTTP, body: "OK", want: 0},
		{desc: "vllm", kind: config.ProbeVLLM, body: "", want: 0},
		// The report's values and strings.
		{desc: "json", kind: config.ProbeJSON, body: `{"status":"ok","model_loaded":true,"boot_id":"b1","queue_depth":0}`, want: 2},
	}
	for _, test := range testCases {
		answer := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
			strconv.Itoa(len(test.body)) + "\r\n\r\n" + test.body
		addr := startCannedServer(t, answer)
		p := newProber(t)
		ep := keptEndpoint(t, addr)
		h := testHealth(test.kind, nil)
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		_, err := p.probe(ctx, ep, &h) // dials
		require.NoError(t, err, test.desc)

		allocs := testing.AllocsPerRun(100, func() {
			if _, err := p.probe(ctx, ep, &h); err != nil {
				t.Fatal(err)
			}
		})
		cancel()

		assert.Equal(t, test.want, allocs, test.desc)
	}
}
