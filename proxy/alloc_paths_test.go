//go:build !race

package proxy

import (
	"bytes"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/logs"
	"github.com/valyala/fasthttp"
)

// Every request shape the gateway serves stays at zero allocations per
// request once warm (issue 15), not only the small buffered POST of
// TestProxy_HotPathDoesNotAllocate.
//
// How an allocation is caught: testing.AllocsPerRun counts the mallocs of
// the whole process (runtime.MemStats.Mallocs) across 1000 runs and
// divides by the runs, rounding down. Everything below runs in this
// process: the test's client, the gateway, its mirror workers and the
// backends, which are fasthttp servers answering preset bodies and
// allocate nothing once warm. So any allocation the gateway makes per
// request, on the handler's goroutine or any other, adds at least 1000
// mallocs and makes the result at least 1; the rounding only absorbs the
// few allocations of timers that run once a second (fasthttp's Date
// header). Asynchronous work is waited for inside the run: a mirrored
// copy is counted to its end (see the mirror case).
//
// The sockets are loopback TCP, as in production, not in-memory pipes:
// a *net.TCPConn takes a streamed body through its ReadFrom, which
// allocates, and a pipe has no ReadFrom to hide that behind.
//
// The race detector allocates on its own, so this runs without -race.
func TestProxy_RequestShapesDoNotAllocate(t *testing.T) {
	small := []byte(`{"inputs":[[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]]}`)
	// Larger than bufferBodyMax, so the answer is streamed to the client,
	// and larger than every buffer on the way.
	large := bytes.Repeat([]byte(`{"token":"0123456789abcdef"}`+"\n"), (4*bufferBodyMax)/29)
	require.Greater(t, len(large), bufferBodyMax)

	testCases := []struct {
		desc string
		// extra is YAML appended to the config.
		extra string
		// backends is how many backends each color has; 1 when 0.
		backends int
		// upstream answers on every backend; a small JSON answer when nil.
		upstream fasthttp.RequestHandler
		// body is the request body.
		body []byte
		// gpu sets both pools' balance to gpu.
		gpu bool
		// sticky, when set, is the header carrying a sticky key.
		sticky string
		// mirror starts a Mirror for the gateway, as the gateway does.
		mirror bool
		// requests is how many requests one run sends; 1 when 0.
		requests int
		// check runs after the measurement and proves the shape took the
		// path it names.
		check func(t *testing.T, rig *shapeRig, resp *fasthttp.Response)
	}{
		{
			desc:     "fixed-length answer larger than bufferBodyMax is streamed",
			upstream: presetAnswer(large, ""),
			body:     small,
			check: func(t *testing.T, rig *shapeRig, resp *fasthttp.Response) {
				assert.Equal(t, len(large), resp.Header.ContentLength())
				assert.Equal(t, large, resp.Body())
			},
		},
		{
			desc:     "chunked answer is re-chunked to the client",
			upstream: chunkedAnswer(large),
			body:     small,
			check: func(t *testing.T, rig *shapeRig, resp *fasthttp.Response) {
				assert.Equal(t, -1, resp.Header.ContentLength(), "the client got no chunked answer")
				assert.Equal(t, large, resp.Body())
			},
		},
		{
			// fasthttp reads every request body whole (the server does not
			// set StreamRequestBody): there is no streamed request path.
			// A body larger than the head's buffer gets its own read
			// deadline and is written through the connection's buffer.
			desc: "request body larger than every buffer is read whole and sent on",
			body: large,
			check: func(t *testing.T, rig *shapeRig, resp *fasthttp.Response) {
				assert.Equal(t, upstreamReply, resp.Body())
			},
		},
		{
			desc:   "mirrored request",
			extra:  "traffic:\n  mirror: {to: green, percent: 100, concurrency: 1, queue: 4}\n",
			body:   small,
			mirror: true,
			// The run waits until the shadow pool's answer to each copy is
			// recorded; what the worker does after that for the last copy
			// may fall outside the measurement. Two copies a run make one
			// allocation per copy count at least 1999 times, never rounded
			// away.
			requests: 2,
			check: func(t *testing.T, rig *shapeRig, resp *fasthttp.Response) {
				assert.Zero(t, rig.router.ShadowStats(config.Green).Summary(rig.start, time.Now()).Errors)
			},
		},
		{
			desc:     "gpu policy with in-band load reports",
			gpu:      true,
			backends: 2,
			upstream: presetAnswer(upstreamReply, "TEXT named_metrics.kv_cache_usage_perc=0.42, named_metrics.num_requests_waiting=3"),
			body:     small,
			check: func(t *testing.T, rig *shapeRig, resp *fasthttp.Response) {
				assert.Empty(t, resp.Header.Peek(orcaResponseHeader))
				for _, b := range rig.router.Snapshot().ActivePool().Backends {
					assert.Equal(t, LoadScore(3, 0.42), b.score.Load(), "no load report reached %s", b.addr)
					assert.Positive(t, b.Requests(), "the policy never picked %s", b.addr)
				}
			},
		},
		{
			desc:  "access-logged request",
			extra: "log: {access: {enabled: true, sample: 1}}\n",
			body:  small,
			check: func(t *testing.T, rig *shapeRig, resp *fasthttp.Response) {
				assert.Equal(t, rig.sent.Load(), rig.logLines.Load(), "not every request was logged")
			},
		},
		{
			desc:   "canary split by sticky key",
			extra:  "traffic: {green: 50, sticky_header: X-User-ID}\n",
			body:   small,
			sticky: "X-User-ID",
			check: func(t *testing.T, rig *shapeRig, resp *fasthttp.Response) {
				for _, c := range []config.Color{config.Blue, config.Green} {
					assert.Positive(t, rig.router.Stats(c).Summary(rig.start, time.Now()).Requests, "no request went to %s", c)
				}
			},
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			rig := newShapeRig(t, shapeOptions{
				extra:    test.extra,
				backends: max(test.backends, 1),
				upstream: test.upstream,
				mirror:   test.mirror,
				gpu:      test.gpu,
			})
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			keys := make([][]byte, 64)
			for i := range keys {
				keys[i] = []byte("user-" + strconv.Itoa(i))
			}
			var n int
			do := func() {
				for range max(test.requests, 1) {
					req.SetRequestURI("http://gateway/predict")
					req.Header.SetMethod(fasthttp.MethodPost)
					if test.sticky != "" {
						req.Header.SetBytesV(test.sticky, keys[n%len(keys)])
					}
					req.SetBody(test.body)
					rig.do(t, req, resp)
					n++
					if test.mirror {
						rig.waitMirrored(t, uint64(n))
					}
				}
			}
			for range 200 { // warm the pools, connections and buffers
				do()
			}
			assert.Zero(t, testing.AllocsPerRun(1000, do))
			test.check(t, rig, resp)
		})
	}
}

// presetAnswer answers every request with body and, when set, an ORCA
// load report, allocating nothing.
func presetAnswer(body []byte, orca string) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		if orca != "" {
			ctx.Response.Header.Set(orcaResponseHeader, orca)
		}
		ctx.Response.SetBodyRaw(body)
	}
}

// chunkedAnswer answers every request with body in chunks of a few KiB,
// as a token stream with no length comes, allocating nothing once warm.
func chunkedAnswer(body []byte) fasthttp.RequestHandler {
	pool := sync.Pool{New: func() any { return new(chunkSource) }}
	return func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/x-ndjson")
		src := pool.Get().(*chunkSource)
		src.body, src.pool = body, &pool
		ctx.Response.SetBodyStream(src, -1)
	}
}

// chunkSource is a body stream with no length: fasthttp frames what each
// Read returns as one chunk, and Close returns it to its pool.
type chunkSource struct {
	body []byte
	pool *sync.Pool
}

func (s *chunkSource) Read(p []byte) (int, error) {
	if len(s.body) == 0 {
		return 0, io.EOF
	}
	n := copy(p[:min(len(p), 3000)], s.body)
	s.body = s.body[n:]
	return n, nil
}

func (s *chunkSource) Close() error {
	s.body = nil
	s.pool.Put(s)
	return nil
}

type shapeOptions struct {
	extra    string
	backends int
	upstream fasthttp.RequestHandler
	mirror   bool
	gpu      bool
}

// shapeRig is a gateway, its mirror and backends on loopback sockets, as
// the gateway package wires them, with the production logger writing JSON
// to a counting io.Discard.
type shapeRig struct {
	client   *fasthttp.HostClient
	router   *Router
	start    time.Time
	sent     atomic.Int64
	logLines atomic.Int64
}

func newShapeRig(t *testing.T, o shapeOptions) *shapeRig {
	t.Helper()
	upstream := o.upstream
	if upstream == nil {
		upstream = presetAnswer(upstreamReply, "")
	}
	var blue, green []string
	for range o.backends {
		blue = append(blue, serveBackend(t, upstream))
		green = append(green, serveBackend(t, upstream))
	}
	cfg := testConfig(t, blue, green, o.extra)
	if o.gpu {
		cfg.Pools.Blue.Balance = config.BalanceGPU
		cfg.Pools.Green.Balance = config.BalanceGPU
	}
	rig := &shapeRig{start: time.Now()}
	root, err := logs.New(logs.Options{Format: "json", Level: "info"}, accessCounter{&rig.logLines})
	require.NoError(t, err)
	log := root.Named("proxy") // as gateway.Run names it: its access log is never sampled
	reg := NewRegistry(RegistryOptions{StartReady: true})
	prom := prometheus.NewRegistry()
	rig.router = NewRouter(cfg, Options{Registry: reg, Metrics: NewMetrics(prom), Log: log})
	h := NewHandler(rig.router, log)
	var mirror *Mirror
	if o.mirror {
		mirror = NewMirror(rig.router, cfg.Traffic.Mirror, prom, root.Named("mirror"))
		h.SetMirror(mirror)
	}
	srv := NewServer(h, cfg.Proxy.MaxRequestBodyBytes)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	rig.client = &fasthttp.HostClient{Addr: ln.Addr().String(), Dial: func(addr string) (net.Conn, error) {
		return net.Dial("tcp", addr)
	}}
	t.Cleanup(func() {
		rig.client.CloseIdleConnections()
		_ = srv.Shutdown()
		<-done
		if mirror != nil {
			mirror.Close()
		}
		rig.router.Close()
		reg.CloseIdle()
	})
	return rig
}

// serveBackend runs a fasthttp server with handler on a loopback port
// until the test ends and returns its address.
func serveBackend(t *testing.T, handler fasthttp.RequestHandler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &fasthttp.Server{Handler: handler, CloseOnShutdown: true}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Shutdown()
		<-done
	})
	return ln.Addr().String()
}

func (rig *shapeRig) do(t *testing.T, req *fasthttp.Request, resp *fasthttp.Response) {
	if err := rig.client.Do(req, resp); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode(), resp.Body())
	}
	rig.sent.Add(1)
}

// waitMirrored waits until the shadow pool's answers to n copies are
// recorded. It polls with a deadline, as require.Eventually does, but
// without its ticker and goroutine, which would allocate. It sleeps
// between polls rather than yielding: a goroutine that only yields keeps
// the scheduler from polling the network, and the worker's answer waits.
func (rig *shapeRig) waitMirrored(t *testing.T, n uint64) {
	shadow := rig.router.ShadowStats(config.Green)
	deadline := time.Now().Add(10 * time.Second)
	for shadow.Summary(rig.start, time.Now()).Requests < n {
		if time.Now().After(deadline) {
			t.Fatalf("the mirror sent %d copies, want %d", shadow.Summary(rig.start, time.Now()).Requests, n)
		}
		time.Sleep(20 * time.Microsecond)
	}
}

// accessCounter discards what it is given and counts the access-log
// lines in it.
type accessCounter struct{ n *atomic.Int64 }

func (w accessCounter) Write(p []byte) (int, error) {
	w.n.Add(int64(bytes.Count(p, []byte(`"logger":"proxy.access"`))))
	return len(p), nil
}
