package proxy

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// peerTransport is a transport to a loopback listener whose end of every
// connection goes to the test, in the order they were dialed.
func peerTransport(t *testing.T) (*transport, <-chan net.Conn) {
	t.Helper()
	peers := make(chan net.Conn, 16)
	stop := make(chan struct{})
	addr := rawBackend(t, func(c net.Conn) {
		peers <- c
		<-stop // the test alone reads and writes c
	})
	t.Cleanup(func() { close(stop) }) // runs before rawBackend's cleanup
	return newTransport(addr, 16, 16, (&net.Dialer{}).DialContext), peers
}

// dialPeer opens a connection through tr and returns both of its ends.
func dialPeer(t *testing.T, tr *transport, peers <-chan net.Conn) (*upstreamConn, net.Conn) {
	t.Helper()
	tr.slots <- struct{}{} // as get does before it dials
	c, err := tr.dialNew(5 * time.Second)
	require.NoError(t, err)
	require.NotNil(t, c.rc, "a TCP connection must get the liveness probe")
	return c, receive(t, peers)
}

// peerClosed reports whether the gateway closed the connection whose
// backend end is peer: a read sees EOF rather than waiting.
func peerClosed(t *testing.T, peer net.Conn) bool {
	t.Helper()
	require.NoError(t, peer.SetReadDeadline(time.Now().Add(5*time.Second)))
	_, err := peer.Read(make([]byte, 1))
	return err != nil && !isTimeout(err) // EOF, or a reset
}

// pendingBytes reports whether bytes are waiting in c's socket, unread: a
// stray answer reached the gateway, not only left the backend.
func pendingBytes(t *testing.T, c *upstreamConn) bool {
	t.Helper()
	var n int
	require.NoError(t, c.rc.Control(func(fd uintptr) {
		n, _, _ = syscall.Recvfrom(int(fd), make([]byte, 1), syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	}))
	return n > 0
}

func TestUpstreamConn_IdleAliveOnlyWhileNothingArrived(t *testing.T) {
	testCases := []struct {
		desc string
		// do makes the connection what the case says, from either end.
		do   func(t *testing.T, c *upstreamConn, peer net.Conn)
		want bool
	}{
		{desc: "open and quiet", do: func(*testing.T, *upstreamConn, net.Conn) {}, want: true},
		{
			// Read fails once a deadline passed; the probe must not, or
			// every connection idle longer than response_header is lost.
			desc: "quiet after the last exchange's deadline passed",
			do: func(t *testing.T, c *upstreamConn, _ net.Conn) {
				require.NoError(t, c.nc.SetDeadline(time.Now().Add(-time.Second)))
			},
			want: true,
		},
		{
			desc: "the backend sent a stray answer",
			do: func(t *testing.T, _ *upstreamConn, peer net.Conn) {
				_, err := io.WriteString(peer, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray")
				require.NoError(t, err)
			},
		},
		{
			desc: "the backend closed it",
			do: func(t *testing.T, _ *upstreamConn, peer net.Conn) {
				require.NoError(t, peer.Close())
			},
		},
		{
			desc: "the backend reset it",
			do: func(t *testing.T, _ *upstreamConn, peer net.Conn) {
				require.NoError(t, peer.(*net.TCPConn).SetLinger(0))
				require.NoError(t, peer.Close())
			},
		},
		{
			desc: "bytes past the last answer sit in the read buffer",
			do: func(t *testing.T, c *upstreamConn, peer net.Conn) {
				_, err := io.WriteString(peer, "ok")
				require.NoError(t, err)
				require.NoError(t, c.nc.SetReadDeadline(time.Now().Add(5*time.Second)))
				_, err = c.br.Peek(2) // waits for both bytes
				require.NoError(t, err)
				_, err = c.br.Discard(1) // the answer ends after the first
				require.NoError(t, err)
			},
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			tr, peers := peerTransport(t)
			c, peer := dialPeer(t, tr, peers)
			defer tr.close(c)
			test.do(t, c, peer)
			if test.want {
				assert.True(t, c.idleAlive())
				return
			}
			// What the backend did reaches the socket a moment later.
			assert.Eventually(t, func() bool { return !c.idleAlive() }, 5*time.Second, time.Millisecond)
		})
	}
}

func TestTransport_PutClosesConnectionWithBytesPastTheAnswer(t *testing.T) {
	tr, peers := peerTransport(t)
	c, peer := dialPeer(t, tr, peers)
	const stray = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray"
	_, err := io.WriteString(peer, "ok"+stray)
	require.NoError(t, err)
	require.NoError(t, c.nc.SetReadDeadline(time.Now().Add(5*time.Second)))
	// The exchange reads its two-byte answer; the stray came with it.
	_, err = c.br.Peek(2 + len(stray))
	require.NoError(t, err)
	_, err = c.br.Discard(2)
	require.NoError(t, err)

	tr.put(c, time.Now())
	assert.Zero(t, len(tr.idle), "a connection that got bytes nobody asked for was pooled")
	assert.Zero(t, tr.open.Load())
	assert.True(t, peerClosed(t, peer))
}

func TestTransport_ReapClosesConnectionsIdleForTheTimeout(t *testing.T) {
	const idle = time.Second
	t0 := time.Unix(1_700_000_000, 0)
	testCases := []struct {
		desc  string
		since []time.Duration // when each connection went idle, after t0
		now   time.Duration   // when the sweep runs, after t0
		kept  []int           // connections left open, in pool order
	}{
		{desc: "all younger than the timeout", since: []time.Duration{0, 100 * time.Millisecond}, now: 900 * time.Millisecond, kept: []int{0, 1}},
		{desc: "exactly the timeout old is closed", since: []time.Duration{0, 500 * time.Millisecond}, now: time.Second, kept: []int{1}},
		{desc: "only the old ones go, order kept", since: []time.Duration{0, time.Second, 2 * time.Second, 2500 * time.Millisecond}, now: 2500 * time.Millisecond, kept: []int{2, 3}},
		{desc: "all past the timeout", since: []time.Duration{0, 0, 0}, now: time.Hour},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			tr, peers := peerTransport(t)
			var conns []*upstreamConn
			var ends []net.Conn
			for _, since := range test.since {
				c, peer := dialPeer(t, tr, peers)
				tr.put(c, t0.Add(since))
				conns, ends = append(conns, c), append(ends, peer)
			}
			defer tr.closeIdle()

			tr.reap(t0.Add(test.now), idle)

			require.EqualValues(t, len(test.kept), tr.open.Load())
			require.Len(t, tr.idle, len(test.kept))
			for _, i := range test.kept {
				assert.Same(t, conns[i], <-tr.idle, "the sweep changed the pool's order")
				tr.put(conns[i], t0.Add(test.since[i]))
			}
			for i, peer := range ends {
				if !slices.Contains(test.kept, i) {
					assert.True(t, peerClosed(t, peer), "connection %d was not closed", i)
				}
			}
		})
	}
}

// A young connection the backend closed or wrote to is closed by the next
// sweep, not kept until a request picks it.
func TestTransport_ReapClosesConnectionsTheBackendClosedOrWroteTo(t *testing.T) {
	tr, peers := peerTransport(t)
	now := time.Now()
	quiet, _ := dialPeer(t, tr, peers)
	wrote, wroteEnd := dialPeer(t, tr, peers)
	closed, closedEnd := dialPeer(t, tr, peers)
	for _, c := range []*upstreamConn{quiet, wrote, closed} {
		tr.put(c, now)
	}
	defer tr.closeIdle()
	_, err := io.WriteString(wroteEnd, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray")
	require.NoError(t, err)
	require.NoError(t, closedEnd.Close())

	require.Eventually(t, func() bool {
		tr.reap(now, time.Hour)
		return tr.open.Load() == 1
	}, 5*time.Second, time.Millisecond)
	require.Len(t, tr.idle, 1)
	c := <-tr.idle
	assert.Same(t, quiet, c)
	tr.put(c, now)
}

// startReaper runs reg.ReapIdle until the test ends, and checks that it
// returns once its context is cancelled.
func startReaper(t *testing.T, reg *Registry, idle func() time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		reg.ReapIdle(ctx, idle)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("ReapIdle did not return after its context was cancelled")
		}
	})
}

func TestRegistry_ReapIdleReturnsWhenCancelled(t *testing.T) {
	testCases := []struct {
		desc string
		idle time.Duration
	}{
		{desc: "long idle timeout", idle: time.Hour},
		{desc: "short idle timeout", idle: time.Millisecond},
		{desc: "no idle timeout", idle: 0},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			reg := NewRegistry(RegistryOptions{})
			reg.Get("127.0.0.1:1")
			startReaper(t, reg, func() time.Duration { return test.idle })
		})
	}
}

// Regression test for issue 12 item 10: 512 idle upstream sockets were left
// open after a burst, because idle connections were only dropped when a
// request picked them.
func TestRegistry_ReapIdleClosesBurstConnectionsWithoutFurtherRequests(t *testing.T) {
	const burst = 8
	arrived, release := make(chan struct{}, burst), make(chan struct{})
	var accepted, closed atomic.Int64
	addr := rawBackend(t, func(c net.Conn) {
		accepted.Add(1)
		defer closed.Add(1)
		br := bufio.NewReader(c)
		for {
			if _, err := readRawRequest(br); err != nil {
				return // the gateway closed the connection
			}
			arrived <- struct{}{}
			<-release
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
	gw := startGateway(t, testConfig(t, []string{addr}, nil, "proxy: {timeouts: {idle: 200ms}}\n"))
	startReaper(t, gw.Router.Registry(), func() time.Duration { return gw.Router.Snapshot().idleTimeout })
	b, ok := gw.Router.Registry().Lookup(addr)
	require.True(t, ok)
	client := newClient(t)

	// Every request is held until all have arrived, so each needs a
	// connection of its own.
	var results []<-chan result
	for range burst {
		results = append(results, getAsync(client, gw.URL+"/predict"))
	}
	for range burst {
		receive(t, arrived)
	}
	close(release)
	for _, ch := range results {
		r := await(t, ch)
		require.NoError(t, r.err)
		require.Equal(t, http.StatusOK, r.status)
		require.Equal(t, "ok", r.body)
	}
	require.EqualValues(t, burst, accepted.Load())

	require.Eventually(t, func() bool { return b.OpenConns() == 0 && closed.Load() == burst },
		10*time.Second, 5*time.Millisecond, "idle connections still open: gateway %d, backend %d",
		b.OpenConns(), burst-closed.Load())
}

// strayBackend is a raw backend that answers each request with the count
// of requests so far, and on its first connection writes one unasked
// answer, "stray", when the test says so.
type strayBackend struct {
	addr string
	// stray makes the first connection write its stray answer; strayed
	// says it was written.
	stray, strayed chan struct{}
	// hold, when set, delays the answer to the second request until
	// release; held says the second request was read.
	hold, held chan struct{}
	release    func()
	conns      atomic.Int64
	// reused is set if a request was read on the connection after it sent
	// its stray answer.
	reused atomic.Bool
}

func newStrayBackend(t *testing.T, hold bool) *strayBackend {
	t.Helper()
	sb := &strayBackend{stray: make(chan struct{}), strayed: make(chan struct{}, 1), release: func() {}}
	if hold {
		sb.hold, sb.held = make(chan struct{}), make(chan struct{}, 1)
		var once sync.Once
		sb.release = func() { once.Do(func() { close(sb.hold) }) }
	}
	var calls atomic.Int64
	sb.addr = rawBackend(t, func(c net.Conn) {
		var (
			mu      sync.Mutex // one writer at a time on c
			sent    atomic.Bool
			wg      sync.WaitGroup
			stopped = make(chan struct{})
		)
		defer wg.Wait()
		defer close(stopped)
		if sb.conns.Add(1) == 1 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				select {
				case <-sb.stray:
				case <-stopped:
					return
				}
				mu.Lock()
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray")
				sent.Store(true)
				mu.Unlock()
				sb.strayed <- struct{}{}
			}()
		}
		br := bufio.NewReader(c)
		for {
			if _, err := readRawRequest(br); err != nil {
				return
			}
			if sent.Load() {
				sb.reused.Store(true)
			}
			n := calls.Add(1)
			if n == 2 && sb.hold != nil {
				sb.held <- struct{}{}
				<-sb.hold
			}
			mu.Lock()
			_, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n"+strconv.FormatInt(n, 10))
			mu.Unlock()
			if err != nil {
				return
			}
		}
	})
	t.Cleanup(sb.release) // runs before rawBackend's cleanup waits for serve
	return sb
}

// sendStray has the backend write its stray answer and waits until it sits
// unread in the gateway's idle connection.
func (sb *strayBackend) sendStray(t *testing.T, b *Backend) {
	t.Helper()
	sb.stray <- struct{}{}
	receive(t, sb.strayed)
	waitPending(t, b)
}

// waitPending waits until an idle connection to b has unread bytes.
func waitPending(t *testing.T, b *Backend) {
	t.Helper()
	require.Eventually(t, func() bool {
		select {
		case c := <-b.t.idle:
			pending := pendingBytes(t, c)
			b.t.idle <- c
			return pending
		default:
			return false
		}
	}, 5*time.Second, time.Millisecond, "the stray answer never reached the gateway")
}

// Regression test for issue 12 item 8: a backend that sent an extra answer
// after a complete one had it delivered to the next client.
func TestProxy_StrayAnswerOnIdleConnectionNeverReachesAClient(t *testing.T) {
	testCases := []struct {
		desc string
		// before is how many requests the kept connection serves before
		// the stray arrives on it.
		before int
	}{
		{desc: "stray arrives after one answer", before: 1},
		{desc: "stray arrives after the connection was reused", before: 2},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			sb := newStrayBackend(t, false)
			gw := startGateway(t, testConfig(t, []string{sb.addr}, nil, "proxy: {timeouts: {idle: 1m}}\n"))
			b, ok := gw.Router.Registry().Lookup(sb.addr)
			require.True(t, ok)
			client := newClient(t)
			get := func() string {
				resp, err := client.Get(gw.URL + "/predict")
				require.NoError(t, err)
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				require.NoError(t, err)
				require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
				return string(body)
			}

			for i := 1; i <= test.before; i++ {
				require.Equal(t, strconv.Itoa(i), get())
			}
			require.EqualValues(t, 1, sb.conns.Load(), "the connection was not reused")
			sb.sendStray(t, b)

			for i := test.before + 1; i <= test.before+3; i++ {
				assert.Equal(t, strconv.Itoa(i), get(), "a client got an answer that was not its own")
			}
			assert.False(t, sb.reused.Load(), "a request went out on the connection that got the stray")
			assert.EqualValues(t, 2, sb.conns.Load())
		})
	}
}

// HTTP/1.1 has no request ids: bytes that arrive after a request was
// written are that request's answer. This documents what we guarantee
// then: the stray reaches that one client only, and the real answer, which
// arrives after it outside any exchange, reaches no one.
func TestProxy_StrayAnswerDuringAnExchangeReachesOnlyThatClient(t *testing.T) {
	sb := newStrayBackend(t, true)
	gw := startGateway(t, testConfig(t, []string{sb.addr}, nil, "proxy: {timeouts: {idle: 1m}}\n"))
	b, ok := gw.Router.Registry().Lookup(sb.addr)
	require.True(t, ok)
	client := newClient(t)

	first := await(t, getAsync(client, gw.URL+"/predict"))
	require.NoError(t, first.err)
	require.Equal(t, "1", first.body)
	require.Eventually(t, func() bool { return len(b.t.idle) == 1 }, 5*time.Second, time.Millisecond)

	// The second request is on the wire when the stray arrives.
	second := getAsync(client, gw.URL+"/predict")
	receive(t, sb.held)
	sb.stray <- struct{}{}
	receive(t, sb.strayed)
	r := await(t, second)
	require.NoError(t, r.err)
	assert.Equal(t, "stray", r.body, "HTTP/1.1 framing makes the stray this request's answer")

	// The backend's real answer to the second request now arrives on an
	// idle connection: it closes the connection and reaches no one.
	sb.release()
	waitPending(t, b)
	for _, want := range []string{"3", "4"} {
		r := await(t, getAsync(client, gw.URL+"/predict"))
		require.NoError(t, r.err)
		assert.Equal(t, want, r.body)
	}
	assert.False(t, sb.reused.Load(), "a request went out on the connection that got the stray")
	assert.EqualValues(t, 2, sb.conns.Load())
}

// Regression test for issue 15: 1,000 busy clients made 15,227 upstream
// dials in a 5 s run, because every request that found no idle connection
// dialled one and the surplus was closed when it came back.
func TestProxy_BusyClientsShareAtMostMaxConnsPerBackend(t *testing.T) {
	const clients, maxConns = 24, 3
	var accepted, inflight, most atomic.Int64
	addr := rawBackend(t, func(c net.Conn) {
		accepted.Add(1)
		br := bufio.NewReader(c)
		for {
			if _, err := readRawRequest(br); err != nil {
				return
			}
			n := inflight.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			time.Sleep(time.Millisecond) // so that requests overlap
			inflight.Add(-1)
			if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
				return
			}
		}
	})
	gw := startGateway(t, testConfig(t, []string{addr}, nil, "proxy: {max_conns_per_backend: 3, max_idle_conns_per_backend: 3}\n"))
	client := newClient(t)
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for range clients {
		wg.Go(func() {
			for range 10 {
				r := await(t, getAsync(client, gw.URL+"/predict"))
				if r.err == nil && (r.status != http.StatusOK || r.body != "ok") {
					r.err = assert.AnError
				}
				if r.err != nil {
					errs <- r.err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	assert.LessOrEqual(t, accepted.Load(), int64(maxConns), "upstream connections dialled")
	assert.LessOrEqual(t, most.Load(), int64(maxConns), "requests in flight at the backend at once")
	b, ok := gw.Router.Registry().Lookup(addr)
	require.True(t, ok)
	assert.LessOrEqual(t, b.OpenConns(), int64(maxConns))
}

func TestTransport_WaitForABusyConnectionEndsAtTheDeadline(t *testing.T) {
	tr, peers := peerTransport(t)
	tr.slots = make(chan struct{}, 1)
	c, _ := dialPeer(t, tr, peers)
	defer tr.close(c)
	_, err := tr.get(time.Now(), time.Minute, time.Second, time.Now().Add(20*time.Millisecond))
	require.ErrorIs(t, err, errConnWait)
	assert.True(t, isTimeout(err), "a request that waited out its header deadline is a timeout (504)")
}

func TestTransport_WaiterGetsTheConnectionThatComesBack(t *testing.T) {
	tr, peers := peerTransport(t)
	tr.slots = make(chan struct{}, 1)
	c, _ := dialPeer(t, tr, peers)
	got := make(chan *upstreamConn, 1)
	go func() {
		w, err := tr.get(time.Now(), time.Minute, time.Second, time.Now().Add(time.Minute))
		assert.NoError(t, err)
		got <- w
	}()
	tr.put(c, time.Now())
	w := receive(t, got)
	assert.Same(t, c, w, "the waiter reuses the connection rather than dialling")
	tr.close(w)
}
