package health

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proto/inference/inferencetest"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func TestGRPCKind_HealthyWhenTheHealthServiceSaysServing(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		desc    string
		service string
		set     healthpb.HealthCheckResponse_ServingStatus
		wantErr string
	}{
		{desc: "server serving", set: healthpb.HealthCheckResponse_SERVING},
		{desc: "server not serving", set: healthpb.HealthCheckResponse_NOT_SERVING, wantErr: `service "" is NOT_SERVING`},
		{desc: "named service serving", service: "inference.GRPCInferenceService", set: healthpb.HealthCheckResponse_SERVING},
		{desc: "unknown service", service: "nope", set: healthpb.HealthCheckResponse_SERVING, wantErr: "NotFound"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			s := inferencetest.Start(t, "mlp", "v1")
			s.Health.SetServingStatus("", test.set)
			s.Health.SetServingStatus("inference.GRPCInferenceService", test.set)
			_, err := probeOnce(t, newProber(t), s.Addr, testHealth(config.ProbeGRPC, func(h *config.Health) { h.Service = test.service }))
			if test.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), test.wantErr)
		})
	}
}

func TestGRPCKind_NothingListeningIsUnhealthy(t *testing.T) {
	t.Parallel()
	s := inferencetest.Start(t, "mlp", "v1")
	s.Stop()
	_, err := probeOnce(t, newProber(t), s.Addr, testHealth(config.ProbeGRPC, nil))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "Unavailable")
}

func TestKServeGRPCKind_ReadyWhenServerAndModelAreAndMetadataAnswers(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		desc       string
		model      string
		ready      bool
		modelReady bool
		wantErr    string
	}{
		{desc: "server ready, no model named", ready: true},
		{desc: "server not ready", ready: false, modelReady: true, model: "mlp", wantErr: "ServerReady: not ready"},
		{desc: "model ready", ready: true, modelReady: true, model: "mlp"},
		{desc: "model loading", ready: true, modelReady: false, model: "mlp", wantErr: "ModelReady mlp: not ready"},
		{desc: "model unknown", ready: true, modelReady: true, model: "resnet", wantErr: "ModelReady resnet: NotFound"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			s := inferencetest.Start(t, "mlp", "v2.7")
			s.SetReady(test.ready)
			s.SetModelReady(test.modelReady)
			s.SetBootID("boot-1")
			rep, err := probeOnce(t, newProber(t), s.Addr, testHealth(config.ProbeKServeGRPC, func(h *config.Health) { h.Model = test.model }))
			assert.Equal(t, "boot-1", rep.BootID, "the boot-id header is read even from a server that is not ready")
			if test.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), test.wantErr)
				return
			}
			require.NoError(t, err)
			if test.model != "" {
				assert.Equal(t, "v2.7", rep.Version, "the model's version from its metadata")
			}
		})
	}
}

// A gRPC backend restarting (a new boot-id) is warmed again, through the
// same checker loop as the HTTP kinds.
func TestKServeGRPCKind_NewBootIDCountsAsARestart(t *testing.T) {
	t.Parallel()
	s := inferencetest.Start(t, "mlp", "v1")
	s.SetBootID("boot-1")
	p := newProber(t)
	h := testHealth(config.ProbeKServeGRPC, func(h *config.Health) { h.Model = "mlp" })
	first, err := probeOnce(t, p, s.Addr, h)
	require.NoError(t, err)
	s.SetBootID("boot-2")
	second, err := probeOnce(t, p, s.Addr, h)
	require.NoError(t, err)
	assert.NotEqual(t, first.BootID, second.BootID)
}

// A gRPC backend becomes ready only once kserve-grpc probes pass and its
// ModelInfer warmup passed; a new boot-id makes it warm again.
func TestChecker_GRPCBackendIsReadyAfterGRPCWarmupAndRewarmsOnRestart(t *testing.T) {
	t.Parallel()
	s := inferencetest.Start(t, "mlp", "v2.7")
	s.SetModelReady(false)
	s.SetBootID("boot-1")
	reg := newRegistry(t)
	b := reg.Get(s.Addr)
	spec := testWarmup(t, func(w *config.Warmup) {
		w.Kind, w.Model, w.Path = config.WarmupKServeGRPC, "mlp", ""
		w.Body = `{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}`
		w.ExpectJSONField, w.ExpectJSONValue = "model_version", `"v2.7"`
	})
	c := newChecker(t, newWarmer(t), nil)
	c.Sync([]Target{{Backend: b, Color: config.Blue, Version: "v2.7",
		Health: testHealth(config.ProbeKServeGRPC, func(h *config.Health) { h.Model = "mlp" }), Warmup: spec}})

	eventually(t, func() bool { return stateOf(t, c, s.Addr).Probed }, "probed")
	assert.False(t, b.Ready(), "not ready while the model loads")
	assert.Zero(t, s.Infers.Load(), "no warmup before the model is ready")
	s.SetModelReady(true)
	eventually(t, b.Ready, "ready once healthy and warm")
	assert.Equal(t, int64(3), s.Infers.Load(), "warmed by three ModelInfer calls")

	s.SetBootID("boot-2")
	eventually(t, func() bool { return stateOf(t, c, s.Addr).Restarts == 1 }, "the new boot-id counts as a restart")
	eventually(t, func() bool { return s.Infers.Load() >= 6 && b.Ready() }, "warmed again after the restart")
}
