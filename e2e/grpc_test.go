//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/internal/certtest"
	"github.com/switchyard/switchyard/proto/inference"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// grpcModel is a model server that also serves the KServe v2 gRPC API.
type grpcModel struct {
	*modelServer
	grpcAddr string
}

// startGRPCModels starts blue and green with their gRPC API on, and waits
// until both are healthy.
func startGRPCModels(t *testing.T, client *http.Client) (blue, green *grpcModel) {
	t.Helper()
	start := func(color, version string) *grpcModel {
		addr := freeAddr(t)
		return &grpcModel{modelServer: startModel(t, color, version, freeAddr(t), "GRPC_BIND="+addr), grpcAddr: addr}
	}
	blue, green = start("blue", blueVersion), start("green", greenVersion)
	blue.waitHealthy(t, client)
	green.waitHealthy(t, client)
	return blue, green
}

// grpcGatewayYAML is a gateway whose pools are the models' gRPC ports:
// probed with kserve-grpc, warmed with three ModelInfer calls.
func grpcGatewayYAML(traffic, admin, blue, green string) string {
	return fmt.Sprintf(`# e2e: switchyard in front of two model servers' KServe v2 gRPC APIs.
listen: %s
admin: {listen: %s}
active: blue
log: {format: console, level: info}
proxy:
  timeouts: {connect: 1s, response_header: 10s}
health:
  kind: kserve-grpc
  model: mlp
  interval: 200ms
  timeout: 200ms
  healthy_threshold: 2
  unhealthy_threshold: 2
warmup:
  kind: kserve-grpc
  model: mlp
  body: '%s'
  requests: 3
  expect_json_field: outputs
  timeout: 10s
analysis: {auto_rollback: false}
pools:
  blue: {version: %s, protocol: grpc, backends: [%s]}
  green: {version: %s, protocol: grpc, backends: [%s]}
switch:
  drain_timeout: 5s
`, traffic, admin, grpcWarmupBody, blueVersion, blue, greenVersion, green)
}

// grpcWarmupBody is the warmup's KServe v2 JSON request: one row of 16.
const grpcWarmupBody = `{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 16], "data": [[0.5, -1.25, 2, 0.75, -0.5, 1, 0, 3, -2, 0.25, 1.5, -0.75, 0.125, -3, 2.5, 1]]}]}`

// startGRPCGateway runs the built binary in front of the models' gRPC
// ports and waits until both pools are ready. extra is appended to the
// config, e.g. a tls section for the traffic listener.
func startGRPCGateway(t *testing.T, client *http.Client, blue, green *grpcModel, extra ...string) *gateway {
	t.Helper()
	cfg := gatewayConfig{Traffic: freeAddr(t), Admin: freeAddr(t), Active: "blue", Blue: blue.grpcAddr, Green: green.grpcAddr}
	path := filepath.Join(t.TempDir(), "switchyard.yaml")
	yaml := grpcGatewayYAML(cfg.Traffic, cfg.Admin, cfg.Blue, cfg.Green) + strings.Join(extra, "")
	require.NoError(t, os.WriteFile(path, []byte(yaml), 0o644))
	p := startProcess(t, "switchyard", repoRoot, os.Environ(), switchyardBin, "serve", "--config", path)
	g := &gateway{process: p, cfg: cfg, configPath: path, client: client}
	g.waitReady(t, "blue")
	g.waitReady(t, "green")
	return g
}

func inferRequest() *inference.ModelInferRequest {
	row := []float32{0.5, -1.25, 2, 0.75, -0.5, 1, 0, 3, -2, 0.25, 1.5, -0.75, 0.125, -3, 2.5, 1}
	return &inference.ModelInferRequest{ModelName: "mlp", Inputs: []*inference.ModelInferRequest_InferInputTensor{{
		Name: "input", Datatype: "FP32", Shape: []int64{1, 16}, Contents: &inference.InferTensorContents{Fp32Contents: row}}}}
}

func dialGRPC(t *testing.T, addr string) inference.GRPCInferenceServiceClient {
	t.Helper()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = cc.Close() })
	return inference.NewGRPCInferenceServiceClient(cc)
}

// switchSpan is one switch: known to have happened between asked and done.
type switchSpan struct {
	asked, done time.Time
	to          string
}

// TestGRPC_UnaryInferUnderSwitchesEvery100ms: ModelInfer calls from eight
// clients run through the gateway against two real PyTorch servers' gRPC
// APIs while the active color flips every 100 ms through the admin API.
// No call fails, every answer is the output of the version that answered
// (the same tensor the backend gives directly), and every answer comes
// from a color that was active at some moment of its call.
func TestGRPC_UnaryInferUnderSwitchesEvery100ms(t *testing.T) {
	client := newClient(t)
	blue, green := startGRPCModels(t, client)
	gw := startGRPCGateway(t, client, blue, green)

	want := map[string][]float32{}
	for _, m := range []*grpcModel{blue, green} {
		res, err := dialGRPC(t, m.grpcAddr).ModelInfer(context.Background(), inferRequest())
		require.NoError(t, err)
		want[res.GetModelVersion()] = res.GetOutputs()[0].GetContents().GetFp32Contents()
	}
	require.NotEqual(t, want[blueVersion], want[greenVersion], "the versions answer alike; the test cannot tell them apart")
	colorOf := map[string]string{blueVersion: "blue", greenVersion: "green"}

	c := dialGRPC(t, gw.cfg.Traffic)
	type call struct {
		version    string
		out        []float32
		err        error
		start, end time.Time
	}
	var (
		mu    sync.Mutex
		calls []call
		wg    sync.WaitGroup
	)
	// The calls run until the switches are done: a count, not a duration,
	// so a slow machine makes the test slower, never flaky.
	const switchesWanted = 40
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				start := time.Now()
				cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				res, err := c.ModelInfer(cctx, inferRequest())
				cancel()
				cl := call{err: err, start: start, end: time.Now()}
				if err == nil {
					cl.version, cl.out = res.GetModelVersion(), res.GetOutputs()[0].GetContents().GetFp32Contents()
				}
				mu.Lock()
				calls = append(calls, cl)
				mu.Unlock()
			}
		}()
	}
	spans := []switchSpan{{to: "blue"}}
	tick := time.NewTicker(100 * time.Millisecond)
	for len(spans)-1 < switchesWanted {
		<-tick.C
		asked := time.Now()
		code, body := post(t, client, gw.adminURL("/admin/switch"), `{"to":"toggle"}`)
		require.Equal(t, http.StatusOK, code, "%s", body)
		var res switchResult
		require.NoError(t, json.Unmarshal(body, &res))
		spans = append(spans, switchSpan{asked: asked, done: time.Now(), to: res.To})
	}
	tick.Stop()
	stop()
	wg.Wait()

	possible := func(color string, start, end time.Time) bool {
		for i, s := range spans {
			until := end.Add(time.Hour)
			if i+1 < len(spans) {
				until = spans[i+1].done
			}
			if s.to == color && !s.asked.After(end) && until.After(start) {
				return true
			}
		}
		return false
	}
	byColor := map[string]int{}
	for i, cl := range calls {
		require.NoError(t, cl.err, "call %d failed", i)
		color := colorOf[cl.version]
		require.NotEmpty(t, color, "call %d answered by unknown version %q", i, cl.version)
		assert.Equal(t, want[cl.version], cl.out, "call %d: not %s's output", i, cl.version)
		require.True(t, possible(color, cl.start, cl.end), "call %d answered by %s, never active during it", i, color)
		byColor[color]++
	}
	assert.Positive(t, byColor["blue"])
	assert.Positive(t, byColor["green"])
	t.Logf("%d ModelInfer calls, %d switches, none failed: %v", len(calls), len(spans)-1, byColor)
}

// TestGRPC_PythonClientAndUnavailableWhenTheActivePoolIsDown: Python's
// grpcio client (the stubs checked in beside the model server) calls
// through the gateway and gets blue's model; once blue's process is
// killed, gRPC clients get UNAVAILABLE with the reason, not an HTTP error.
func TestGRPC_PythonClientAndUnavailableWhenTheActivePoolIsDown(t *testing.T) {
	client := newClient(t)
	blue, green := startGRPCModels(t, client)
	gw := startGRPCGateway(t, client, blue, green)

	script := `
import sys, json
sys.path.insert(0, sys.argv[1])
import grpc, open_inference_grpc_pb2 as pb, open_inference_grpc_pb2_grpc as pbg
stub = pbg.GRPCInferenceServiceStub(grpc.insecure_channel(sys.argv[2]))
req = pb.ModelInferRequest(model_name="mlp")
t = req.inputs.add(name="input", datatype="FP32", shape=[1, 16])
t.contents.fp32_contents.extend([0.0] * 16)
out = []
for _ in range(20):
    res, call = stub.ModelInfer.with_call(req, timeout=10)
    md = dict(call.initial_metadata())
    out.append([res.model_version, md.get("x-switchyard-color"), len(res.outputs[0].contents.fp32_contents)])
print(json.dumps(out))
`
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, python, "-c", script, filepath.Join(repoRoot, "deploy", "model-server"), gw.cfg.Traffic).CombinedOutput()
	require.NoError(t, err, "python grpcio client: %s", out)
	var answers [][]any
	require.NoError(t, json.Unmarshal(out, &answers), "%s", out)
	require.Len(t, answers, 20)
	for _, a := range answers {
		assert.Equal(t, []any{blueVersion, "blue", 4.0}, a)
	}

	blue.kill(t)
	c := dialGRPC(t, gw.cfg.Traffic)
	var last error
	eventually(t, 30*time.Second, 100*time.Millisecond, "UNAVAILABLE once blue is down", func() (bool, string) {
		_, last = c.ModelInfer(context.Background(), inferRequest())
		st, _ := status.FromError(last)
		return st.Code() == codes.Unavailable && strings.Contains(st.Message(), "no backend of blue"), fmt.Sprint(last)
	})
	t.Logf("with blue down: %v", last)
}

// TestGRPC_PythonClientOverTLSWithALPN: with a certificate on the traffic
// listener, a Python grpcio client on a secure channel (HTTP/2 chosen by
// ALPN) reaches the real PyTorch server through the gateway.
func TestGRPC_PythonClientOverTLSWithALPN(t *testing.T) {
	client := newClient(t)
	blue, green := startGRPCModels(t, client)
	caFile, certFile, keyFile := certtest.NewCA(t).Files(t, certtest.GatewayName)
	gw := startGRPCGateway(t, client, blue, green, fmt.Sprintf("tls: {cert_file: %q, key_file: %q}\n", certFile, keyFile))

	script := `
import sys, json
sys.path.insert(0, sys.argv[1])
import grpc, open_inference_grpc_pb2 as pb, open_inference_grpc_pb2_grpc as pbg
creds = grpc.ssl_channel_credentials(root_certificates=open(sys.argv[3], "rb").read())
channel = grpc.secure_channel(sys.argv[2], creds, options=[("grpc.ssl_target_name_override", sys.argv[4])])
stub = pbg.GRPCInferenceServiceStub(channel)
req = pb.ModelInferRequest(model_name="mlp")
t = req.inputs.add(name="input", datatype="FP32", shape=[1, 16])
t.contents.fp32_contents.extend([0.0] * 16)
out = []
for _ in range(5):
    res, call = stub.ModelInfer.with_call(req, timeout=10)
    out.append([res.model_version, dict(call.initial_metadata()).get("x-switchyard-color")])
print(json.dumps(out))
`
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, python, "-c", script, filepath.Join(repoRoot, "deploy", "model-server"),
		gw.cfg.Traffic, caFile, certtest.GatewayName).CombinedOutput()
	require.NoError(t, err, "python grpcio client over TLS: %s", out)
	var answers [][]any
	require.NoError(t, json.Unmarshal(out, &answers), "%s", out)
	require.Len(t, answers, 5)
	for _, a := range answers {
		assert.Equal(t, []any{blueVersion, "blue"}, a)
	}
}
