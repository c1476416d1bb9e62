package proxy

import (
	"context"
	"net"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/switchyard/switchyard/config"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"
	"go.uber.org/zap"
)

// inmemRig is a gateway and an upstream joined by in-memory listeners, so
// benchmarks measure the proxy, not the kernel.
type inmemRig struct {
	client *fasthttp.HostClient
	router *Router
	stop   func()
}

var upstreamReply = []byte(`{"outputs":[[0.1,0.2,0.3,0.4]],"model_version":"v1"}`)

func newInmemRig(tb testing.TB, upstream fasthttp.RequestHandler) *inmemRig {
	tb.Helper()
	if upstream == nil {
		upstream = func(ctx *fasthttp.RequestCtx) {
			ctx.SetContentType("application/json")
			ctx.SetBody(upstreamReply)
		}
	}
	upLn := fasthttputil.NewInmemoryListener()
	upSrv := &fasthttp.Server{Handler: upstream}
	go func() { _ = upSrv.Serve(upLn) }()

	cfg := testConfig(tb, []string{"10.0.0.1:5000"}, []string{"10.0.0.2:5000"}, "")
	reg := NewRegistry(RegistryOptions{StartReady: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		return upLn.Dial()
	}})
	r := NewRouter(cfg, Options{Registry: reg, Metrics: NewMetrics(prometheus.NewRegistry()), Log: zap.NewNop()})
	gwLn := fasthttputil.NewInmemoryListener()
	gwSrv := NewServer(NewHandler(r, zap.NewNop()), cfg.Proxy.MaxRequestBodyBytes)
	go func() { _ = gwSrv.Serve(gwLn) }()

	client := &fasthttp.HostClient{Addr: "gateway", Dial: func(string) (net.Conn, error) { return gwLn.Dial() }}
	return &inmemRig{client: client, router: r, stop: func() {
		_ = gwSrv.Shutdown()
		_ = upSrv.Shutdown()
		r.Close()
		reg.CloseIdle()
		client.CloseIdleConnections()
	}}
}

func (rig *inmemRig) do(tb testing.TB, req *fasthttp.Request, resp *fasthttp.Response) {
	if err := rig.client.Do(req, resp); err != nil {
		tb.Fatal(err)
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		tb.Fatalf("status %d: %s", resp.StatusCode(), resp.Body())
	}
}

// BenchmarkProxy measures one proxied request end to end through the
// gateway's handler, with metrics on, over in-memory connections.
func BenchmarkProxy(b *testing.B) {
	rig := newInmemRig(b, nil)
	defer rig.stop()
	body := []byte(`{"inputs":[[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]]}`)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		for pb.Next() {
			req.SetRequestURI("http://gateway/predict")
			req.Header.SetMethod(fasthttp.MethodPost)
			req.SetBody(body)
			rig.do(b, req, resp)
		}
	})
}

// BenchmarkDirect is the baseline for BenchmarkProxy: the same client and
// upstream with no gateway between them.
func BenchmarkDirect(b *testing.B) {
	upLn := fasthttputil.NewInmemoryListener()
	upSrv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("application/json")
		ctx.SetBody(upstreamReply)
	}}
	go func() { _ = upSrv.Serve(upLn) }()
	defer func() { _ = upSrv.Shutdown() }()
	client := &fasthttp.HostClient{Addr: "upstream", Dial: func(string) (net.Conn, error) { return upLn.Dial() }}
	body := []byte(`{"inputs":[[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]]}`)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		for pb.Next() {
			req.SetRequestURI("http://upstream/predict")
			req.Header.SetMethod(fasthttp.MethodPost)
			req.SetBody(body)
			if err := client.Do(req, resp); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkSwitch measures one switch: gate, snapshot copy, pointer swap
// and drain bookkeeping.
func BenchmarkSwitch(b *testing.B) {
	cfg := testConfig(b, []string{"10.0.0.1:5000"}, []string{"10.0.0.2:5000"}, "")
	r := NewRouter(cfg, Options{Registry: NewRegistry(RegistryOptions{StartReady: true}),
		Metrics: NewMetrics(prometheus.NewRegistry()), Log: zap.NewNop()})
	defer r.Close()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Switch(SwitchRequest{Toggle: true, Trigger: TriggerAdmin}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSwap measures the publish step alone: the atomic pointer store
// that moves traffic.
func BenchmarkSwap(b *testing.B) {
	cfg := testConfig(b, []string{"10.0.0.1:5000"}, []string{"10.0.0.2:5000"}, "")
	r := NewRouter(cfg, Options{Registry: NewRegistry(RegistryOptions{StartReady: true}),
		Metrics: NewMetrics(prometheus.NewRegistry()), Log: zap.NewNop()})
	defer r.Close()
	snaps := [2]*Snapshot{r.Snapshot(), r.Snapshot()}
	next := *snaps[0]
	next.Active = config.Green
	snaps[1] = &next
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		r.snap.Store(snaps[i&1])
		i++
	}
}

// BenchmarkPick measures backend selection in pools of growing size.
func BenchmarkPick(b *testing.B) {
	for _, n := range []int{1, 10, 100, 1000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			p := &Pool{selector: leastInflight{}}
			for i := range n {
				be := &Backend{addr: strconv.Itoa(i)}
				be.ready.Store(true)
				p.Backends = append(p.Backends, be)
			}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if p.pick(nil, 1) == nil {
						b.Fatal("no backend")
					}
				}
			})
		})
	}
}
