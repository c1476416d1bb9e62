package proxy

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proto/inference"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// grpcConfig is a config whose pools speak protocol, with poolExtra
// (", max_concurrency: 1") inside each pool's mapping and extra at the top
// level.
func grpcConfig(t testing.TB, protocol string, blue, green []string, poolExtra, extra string) *config.Config {
	t.Helper()
	pool := func(version string, backends []string) string {
		return "{version: " + version + ", protocol: " + protocol + ", backends: [" + strings.Join(backends, ", ") + "]" + poolExtra + "}"
	}
	y := "pools:\n  blue: " + pool("v1", blue) + "\n  green: " + pool("v2", green) + "\n" + extra
	cfg, err := config.Parse([]byte(y))
	require.NoError(t, err)
	return cfg
}

// infer sends one ModelInfer and returns the version (the color) that
// answered and the metadata: the headers, or for an error (which gRPC
// sends trailers-only) the trailers.
func infer(ctx context.Context, c inference.GRPCInferenceServiceClient) (string, metadata.MD, error) {
	var hdr, trailer metadata.MD
	res, err := c.ModelInfer(ctx, &inference.ModelInferRequest{ModelName: "mlp", Id: "1"}, grpc.Header(&hdr), grpc.Trailer(&trailer))
	if err != nil {
		return "", trailer, err
	}
	return res.GetModelVersion(), hdr, nil
}

func TestGRPC_UnaryGoesToTheActivePoolAndFollowsASwitch(t *testing.T) {
	t.Parallel()
	blue, green := startGRPCBackend(t, "blue"), startGRPCBackend(t, "green")
	gw := startTrafficGateway(t, grpcConfig(t, "grpc", []string{blue.addr}, []string{green.addr}, "", ""), nil)
	client := inference.NewGRPCInferenceServiceClient(grpcConn(t, gw.Addr, nil))

	var trailer metadata.MD
	res, err := client.ModelInfer(context.Background(), &inference.ModelInferRequest{ModelName: "mlp"}, grpc.Trailer(&trailer))
	require.NoError(t, err)
	assert.Equal(t, "blue", res.GetModelVersion())
	assert.Equal(t, []string{"blue"}, trailer.Get("x-backend-color"), "the backend's trailers reach the client")

	_, err = gw.Router.Switch(SwitchRequest{To: config.Green, Trigger: TriggerAdmin})
	require.NoError(t, err)
	color, hdr, err := infer(context.Background(), client)
	require.NoError(t, err)
	assert.Equal(t, "green", color)
	assert.Equal(t, []string{"green"}, hdr.Get(strings.ToLower(HeaderColor)), "the answer is labelled with its pool")
	assert.Equal(t, []string{"v2"}, hdr.Get(strings.ToLower(HeaderVersion)))
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(gw.Router.metrics.grpc.WithLabelValues("green", "v2", "OK")) == 1
	}, 5*time.Second, time.Millisecond, "the call is counted by its gRPC code once it ends")
}

// Unary ModelInfer under load while the active color flips every 100 ms:
// no call fails, and every answer comes from a color that was active at
// some moment of its call.
func TestGRPC_UnaryUnderSwitchesEvery100msNeverFailsNorAnswersFromAnInactiveColor(t *testing.T) {
	t.Parallel()
	blue, green := startGRPCBackend(t, "blue"), startGRPCBackend(t, "green")
	gw := startTrafficGateway(t, grpcConfig(t, "grpc", []string{blue.addr}, []string{green.addr}, "", ""), nil)
	client := inference.NewGRPCInferenceServiceClient(grpcConn(t, gw.Addr, nil))
	var log activeLog
	log.switched(config.Blue, time.Now(), time.Now())

	// The calls run until the switches are done: a count, not a duration,
	// so a slow machine makes the test slower, never flaky.
	const switchesWanted = 20
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	type result struct {
		color      string
		err        error
		start, end time.Time
	}
	results := make(chan result, 1<<16)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				start := time.Now()
				color, _, err := infer(context.Background(), client)
				results <- result{color, err, start, time.Now()}
			}
		}()
	}
	switches := 0
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for switches < switchesWanted {
		<-tick.C
		asked := time.Now()
		res, err := gw.Router.Switch(SwitchRequest{Toggle: true, Trigger: TriggerAdmin})
		require.NoError(t, err)
		log.switched(res.To, asked, time.Now())
		switches++
	}
	stop()
	wg.Wait()
	close(results)
	n, byColor := 0, map[string]int{}
	for r := range results {
		n++
		require.NoError(t, r.err, "call %d failed", n)
		require.True(t, log.possible(config.Color(r.color), r.start, r.end), "answered by %s, which was never active during the call", r.color)
		byColor[r.color]++
	}
	assert.Positive(t, byColor["blue"])
	assert.Positive(t, byColor["green"])
	t.Logf("%d calls, %d switches, none failed: %v", n, switches, byColor)
}

// A server-streaming call started on blue keeps streaming from blue after
// a switch to green, and blue's drain waits for it.
func TestGRPC_ServerStreamStartedOnBlueEndsOnBlueAfterASwitch(t *testing.T) {
	t.Parallel()
	blue, green := startGRPCBackend(t, "blue"), startGRPCBackend(t, "green")
	gw := startTrafficGateway(t, grpcConfig(t, "grpc", []string{blue.addr}, []string{green.addr}, "", "switch: {drain_timeout: 30s}\n"), nil)
	client := grpc_testing.NewTestServiceClient(grpcConn(t, gw.Addr, nil))

	stream, err := client.StreamingOutputCall(context.Background(), &grpc_testing.StreamingOutputCallRequest{
		Payload:            &grpc_testing.Payload{Type: grpc_testing.PayloadType_COMPRESSABLE},
		ResponseParameters: make([]*grpc_testing.ResponseParameters, 4),
	})
	require.NoError(t, err)
	blue.step <- struct{}{}
	first, err := stream.Recv()
	require.NoError(t, err)
	assert.Equal(t, "blue", colorOf(first.GetPayload()))

	_, err = gw.Router.Switch(SwitchRequest{To: config.Green, Trigger: TriggerAdmin})
	require.NoError(t, err)
	require.Equal(t, DrainRunning, gw.Router.Drains()[0].State, "blue drains while its stream runs")
	for range 3 {
		blue.step <- struct{}{}
		msg, err := stream.Recv()
		require.NoError(t, err)
		assert.Equal(t, "blue", colorOf(msg.GetPayload()), "a stream stays on the backend it started on")
	}
	_, err = stream.Recv()
	require.ErrorIs(t, err, io.EOF)
	require.Eventually(t, func() bool { return gw.Router.Drains()[0].State == DrainDone }, 5*time.Second, 5*time.Millisecond)

	color, _, err := infer(context.Background(), inference.NewGRPCInferenceServiceClient(grpcConn(t, gw.Addr, nil)))
	require.NoError(t, err)
	assert.Equal(t, "green", color, "new calls go to green")
}

// A bidirectional stream opened on blue keeps talking to blue after a
// switch, in both directions.
func TestGRPC_BidiStreamStaysOnBlueAcrossASwitch(t *testing.T) {
	t.Parallel()
	blue, green := startGRPCBackend(t, "blue"), startGRPCBackend(t, "green")
	gw := startTrafficGateway(t, grpcConfig(t, "h2c", []string{blue.addr}, []string{green.addr}, "", ""), nil)
	client := grpc_testing.NewTestServiceClient(grpcConn(t, gw.Addr, nil))
	stream, err := client.FullDuplexCall(context.Background())
	require.NoError(t, err)
	say := func(s string) string {
		t.Helper()
		require.NoError(t, stream.Send(&grpc_testing.StreamingOutputCallRequest{Payload: &grpc_testing.Payload{Body: []byte(s)}}))
		res, err := stream.Recv()
		require.NoError(t, err)
		return string(res.GetPayload().GetBody())
	}
	assert.Equal(t, "blue one", say("one"))
	_, err = gw.Router.Switch(SwitchRequest{To: config.Green, Trigger: TriggerAdmin})
	require.NoError(t, err)
	assert.Equal(t, "blue two", say("two"))
	assert.Equal(t, int64(1), gw.Router.Snapshot().Pool(config.Blue).Inflight(), "the stream counts as blue's until it ends")
	require.NoError(t, stream.CloseSend())
	_, err = stream.Recv()
	require.ErrorIs(t, err, io.EOF)
	require.Eventually(t, func() bool { return gw.Router.Snapshot().Pool(config.Blue).Inflight() == 0 }, 5*time.Second, 5*time.Millisecond)
}

func TestGRPC_ClientCancellationReachesTheBackend(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		desc string
		call func(ctx context.Context, c grpc_testing.TestServiceClient) error
	}{
		{"server stream", func(ctx context.Context, c grpc_testing.TestServiceClient) error {
			s, err := c.StreamingOutputCall(ctx, &grpc_testing.StreamingOutputCallRequest{
				Payload: &grpc_testing.Payload{Type: grpc_testing.PayloadType_COMPRESSABLE}, ResponseParameters: make([]*grpc_testing.ResponseParameters, 1)})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}},
		{"bidirectional stream", func(ctx context.Context, c grpc_testing.TestServiceClient) error {
			s, err := c.FullDuplexCall(ctx)
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			blue := startGRPCBackend(t, "blue")
			gw := startTrafficGateway(t, grpcConfig(t, "grpc", []string{blue.addr}, nil, "", ""), nil)
			client := grpc_testing.NewTestServiceClient(grpcConn(t, gw.Addr, nil))
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() { errc <- test.call(ctx, client) }()
			select {
			case <-blue.started:
			case <-time.After(10 * time.Second):
				t.Fatal("the call never reached the backend")
			}
			cancel()
			requireCode(t, <-errc, codes.Canceled)
			select {
			case <-blue.cancelled:
			case <-time.After(10 * time.Second):
				t.Fatal("the backend's call was not cancelled")
			}
			require.Eventually(t, func() bool { return gw.Router.Snapshot().ActivePool().Inflight() == 0 }, 5*time.Second, time.Millisecond)
		})
	}
}

// The gateway's own failures reach a gRPC client as gRPC statuses, never
// as an HTTP error with a JSON body.
func TestGRPC_GatewayErrorsAreGRPCStatuses(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		desc      string
		poolExtra string
		extra     string
		setup     func(t *testing.T, b *grpcBackend) []string // returns blue's backends
		ready     bool
		ctx       func() (context.Context, context.CancelFunc)
		hold      bool // one call holds the only slot
		want      codes.Code
		msg       string
	}{
		{desc: "no ready backend", ready: false, want: codes.Unavailable, msg: "no backend of blue (v1) is ready"},
		{desc: "connection refused", want: codes.Unavailable, msg: "connection refused",
			setup: func(t *testing.T, b *grpcBackend) []string { b.stop(); return []string{b.addr} }},
		{desc: "response header timeout", extra: "proxy: {timeouts: {response_header: 100ms}}\n", want: codes.DeadlineExceeded, msg: "did not answer within",
			setup: func(t *testing.T, b *grpcBackend) []string {
				b.inferHook = func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
				return []string{b.addr}
			}},
		{desc: "client deadline (grpc-timeout)", want: codes.DeadlineExceeded,
			ctx: func() (context.Context, context.CancelFunc) {
				return context.WithTimeout(context.Background(), 100*time.Millisecond)
			},
			setup: func(t *testing.T, b *grpcBackend) []string {
				b.inferHook = func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
				return []string{b.addr}
			}},
		{desc: "queue full", poolExtra: ", max_concurrency: 1, max_queue: 0", hold: true, want: codes.ResourceExhausted, msg: "max_concurrency"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			b := startGRPCBackend(t, "blue")
			backends := []string{b.addr}
			if test.setup != nil {
				backends = test.setup(t, b)
			}
			release := make(chan struct{})
			if test.hold {
				b.inferHook = func(ctx context.Context) error {
					select {
					case <-release:
					case <-ctx.Done():
					}
					return nil
				}
			}
			gw := startTrafficGateway(t, grpcConfig(t, "grpc", backends, nil, test.poolExtra, test.extra), nil)
			if test.desc == "no ready backend" {
				gw.Router.Snapshot().ActivePool().Backends[0].SetReady(false)
			}
			client := inference.NewGRPCInferenceServiceClient(grpcConn(t, gw.Addr, nil))
			if test.hold {
				done := make(chan struct{})
				go func() {
					defer close(done)
					_, _, _ = infer(context.Background(), client)
				}()
				t.Cleanup(func() { close(release); <-done })
				require.Eventually(t, func() bool { return b.infers.Load() == 1 }, 5*time.Second, time.Millisecond)
			}
			ctx, cancel := context.WithCancel(context.Background())
			if test.ctx != nil {
				ctx, cancel = test.ctx()
			}
			defer cancel()
			_, hdr, err := infer(ctx, client)
			st := requireCode(t, err, test.want)
			assert.Contains(t, st.Message(), test.msg)
			if test.ctx == nil {
				assert.Equal(t, []string{"blue"}, hdr.Get("x-switchyard-color"), "the status is labelled with the pool")
			}
		})
	}
}

// A status the backend sends (with its message) reaches the client as
// sent, and a server that broke counts against the backend.
func TestGRPC_BackendStatusPassesThroughAndUnavailableEjects(t *testing.T) {
	t.Parallel()
	b := startGRPCBackend(t, "blue")
	b.inferHook = func(context.Context) error { return status.Error(codes.Unavailable, "model unloading") }
	gw := startTrafficGateway(t, grpcConfig(t, "grpc", []string{b.addr}, nil, "", "outlier: {consecutive_failures: 3, max_ejection_percent: 100}\n"), nil)
	client := inference.NewGRPCInferenceServiceClient(grpcConn(t, gw.Addr, nil))
	for range 3 {
		_, _, err := infer(context.Background(), client)
		st := requireCode(t, err, codes.Unavailable)
		assert.Equal(t, "model unloading", st.Message())
	}
	backend := gw.Router.Snapshot().ActivePool().Backends[0]
	require.Eventually(t, func() bool { return !backend.EjectedUntil().IsZero() }, 5*time.Second, time.Millisecond,
		"three UNAVAILABLE in a row eject the backend")
	assert.Equal(t, 3.0, testutil.ToFloat64(gw.Router.metrics.grpc.WithLabelValues("blue", "v1", "UNAVAILABLE")))
	assert.Equal(t, 3.0, testutil.ToFloat64(gw.Router.metrics.requests.WithLabelValues("blue", "v1", "5xx")), "UNAVAILABLE counts as a 5xx answer")
}

// A connect failure on one backend is retried on another of the pool.
func TestGRPC_RefusedConnectionIsRetriedOnAnotherBackend(t *testing.T) {
	t.Parallel()
	dead, live := startGRPCBackend(t, "blue"), startGRPCBackend(t, "blue")
	dead.stop()
	gw := startTrafficGateway(t, grpcConfig(t, "grpc", []string{dead.addr, live.addr}, nil, "", ""), nil)
	client := inference.NewGRPCInferenceServiceClient(grpcConn(t, gw.Addr, nil))
	for range 10 {
		color, _, err := infer(context.Background(), client)
		require.NoError(t, err)
		assert.Equal(t, "blue", color)
	}
	assert.Equal(t, int64(10), live.infers.Load())
}

// The canary share follows the sticky header, which gRPC clients send as
// metadata.
func TestGRPC_CanaryStickyKeyKeepsACallerOnOneColor(t *testing.T) {
	t.Parallel()
	blue, green := startGRPCBackend(t, "blue"), startGRPCBackend(t, "green")
	gw := startTrafficGateway(t, grpcConfig(t, "grpc", []string{blue.addr}, []string{green.addr}, "",
		"traffic: {green: 50, sticky_header: X-User-ID}\n"), nil)
	client := inference.NewGRPCInferenceServiceClient(grpcConn(t, gw.Addr, nil))
	seen := map[string]map[string]bool{}
	for _, user := range []string{"ada", "bob", "cy", "dee", "eve", "fay", "gus", "hal"} {
		seen[user] = map[string]bool{}
		for range 5 {
			ctx := metadata.AppendToOutgoingContext(context.Background(), "x-user-id", user)
			color, _, err := infer(ctx, client)
			require.NoError(t, err)
			seen[user][color] = true
		}
		assert.Len(t, seen[user], 1, "user %s saw both colors", user)
	}
}

func TestProtocolMismatch_IsRefusedInTheClientsLanguage(t *testing.T) {
	t.Parallel()
	grpcBackend := startGRPCBackend(t, "blue")
	t.Run("gRPC call to http1 backends", func(t *testing.T) {
		t.Parallel()
		web := colorServer(t, "blue")
		gw := startTrafficGateway(t, testConfig(t, []string{hostPort(web)}, nil, ""), nil)
		_, _, err := infer(context.Background(), inference.NewGRPCInferenceServiceClient(grpcConn(t, gw.Addr, nil)))
		st := requireCode(t, err, codes.Unimplemented)
		assert.Contains(t, st.Message(), "protocol is http1")
	})
	t.Run("HTTP/1.1 request to grpc backends", func(t *testing.T) {
		t.Parallel()
		gw := startTrafficGateway(t, grpcConfig(t, "grpc", []string{grpcBackend.addr}, nil, "", ""), nil)
		resp, err := newClient(t).Post("http://"+gw.Addr+"/predict", "application/json", strings.NewReader(`{}`))
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
		assert.Contains(t, string(body), "protocol_mismatch")
		assert.Equal(t, "blue", resp.Header.Get(HeaderColor))
	})
}

// Shadow traffic copies unary calls to the standby after the client has
// its answer from the active pool; streams are not copied.
func TestGRPC_MirrorCopiesUnaryCallsOnly(t *testing.T) {
	t.Parallel()
	blue, green := startGRPCBackend(t, "blue"), startGRPCBackend(t, "green")
	gw := startTrafficGateway(t, grpcConfig(t, "grpc", []string{blue.addr}, []string{green.addr}, "", ""), nil)
	m := NewMirror(gw.Router, config.Mirror{Concurrency: 2, Queue: 64, Timeout: config.Duration(5 * time.Second)}, gw.Metrics, gw.Handler.log)
	t.Cleanup(m.Close)
	gw.Handler.SetMirror(m)
	_, err := gw.Router.SetTraffic(TrafficRequest{SetMirror: true, Mirror: &MirrorSetting{To: config.Green, Percent: 100}})
	require.NoError(t, err)

	client := inference.NewGRPCInferenceServiceClient(grpcConn(t, gw.Addr, nil))
	for range 5 {
		color, _, err := infer(context.Background(), client)
		require.NoError(t, err)
		assert.Equal(t, "blue", color, "the client only ever sees the active answer")
	}
	require.Eventually(t, func() bool { return green.infers.Load() == 5 }, 5*time.Second, time.Millisecond, "each unary call reached green once")

	stream, err := grpc_testing.NewTestServiceClient(grpcConn(t, gw.Addr, nil)).StreamingOutputCall(context.Background(),
		&grpc_testing.StreamingOutputCallRequest{ResponseParameters: make([]*grpc_testing.ResponseParameters, 3)})
	require.NoError(t, err)
	for range 3 {
		blue.step <- struct{}{}
		_, err := stream.Recv()
		require.NoError(t, err)
	}
	_, err = stream.Recv()
	require.ErrorIs(t, err, io.EOF)
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(m.sent.WithLabelValues("green", "v2", "2xx")) == 5
	}, 5*time.Second, time.Millisecond)
	assert.Empty(t, green.started, "a server stream is not copied")
}
