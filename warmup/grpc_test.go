package warmup

import (
	"context"
	"encoding/binary"
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proto/inference"
	"github.com/switchyard/switchyard/proto/inference/inferencetest"
	"go.uber.org/zap"
)

const grpcWarmupBody = `{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [[0.5, 1, 1.5, 2]]}]}`

// grpcSpec compiles a kserve-grpc warmup of model mlp.
func grpcSpec(t *testing.T, edit func(*config.Warmup)) *Spec {
	t.Helper()
	w := config.Default().Warmup
	w.Kind, w.Model, w.Body, w.Requests, w.MaxRequests, w.Timeout = config.WarmupKServeGRPC, "mlp", grpcWarmupBody, 2, 4, config.Duration(5*time.Second)
	if edit != nil {
		edit(&w)
	}
	s, err := Compile(&w)
	require.NoError(t, err)
	return s
}

func TestWarmGRPC_ModelInferAnswersAreCheckedLikeHTTPAnswers(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		desc    string
		edit    func(*config.Warmup)
		wantErr string
	}{
		{desc: "outputs present", edit: func(w *config.Warmup) { w.ExpectJSONField = "outputs" }},
		{desc: "the expected version", edit: func(w *config.Warmup) { w.ExpectJSONField, w.ExpectJSONValue = "model_version", `"v2.7"` }},
		{desc: "the expected output value", edit: func(w *config.Warmup) { w.ExpectBody = `"data":\[5\]` }},
		{desc: "the wrong version", edit: func(w *config.Warmup) { w.ExpectJSONField, w.ExpectJSONValue = "model_version", `"v2.6"` },
			wantErr: `field "model_version" is "v2.7", want "v2.6"`},
		{desc: "an unknown model", edit: func(w *config.Warmup) { w.Model = "resnet" }, wantErr: `ModelInfer NotFound: unknown model "resnet"`},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			s := inferencetest.Start(t, "mlp", "v2.7")
			w := New(zap.NewNop())
			defer w.Close()
			res, err := w.Warm(context.Background(), Backend{Addr: s.Addr}, grpcSpec(t, test.edit), nil)
			if test.wantErr == "" {
				require.NoError(t, err)
				assert.Equal(t, 2, res.Requests)
				return
			}
			require.ErrorIs(t, err, ErrGaveUp)
			require.ErrorIs(t, err, ErrWrongAnswer, "the server answered, wrongly")
			assert.Contains(t, err.Error(), test.wantErr)
			assert.Equal(t, 4, res.Requests)
		})
	}
}

func TestWarmGRPC_ServerDownIsNoAnswer(t *testing.T) {
	t.Parallel()
	s := inferencetest.Start(t, "mlp", "v2.7")
	s.Stop()
	w := New(zap.NewNop())
	defer w.Close()
	_, err := w.Ping(context.Background(), Backend{Addr: s.Addr}, grpcSpec(t, nil))
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrWrongAnswer)
	assert.Contains(t, err.Error(), "Unavailable")
}

// Triton answers in raw_output_contents, little-endian: the check sees
// the same JSON as for typed contents.
func TestWarmGRPC_RawOutputContentsAreDecoded(t *testing.T) {
	t.Parallel()
	s := inferencetest.Start(t, "mlp", "v2.7")
	raw := make([]byte, 8)
	binary.LittleEndian.PutUint32(raw, math.Float32bits(1.5))
	binary.LittleEndian.PutUint32(raw[4:], math.Float32bits(-2))
	s.SetInfer(func(_ context.Context, req *inference.ModelInferRequest) (*inference.ModelInferResponse, error) {
		return &inference.ModelInferResponse{ModelName: req.GetModelName(), ModelVersion: "v2.7",
			Outputs:           []*inference.ModelInferResponse_InferOutputTensor{{Name: "output", Datatype: "FP32", Shape: []int64{1, 2}}},
			RawOutputContents: [][]byte{raw}}, nil
	})
	w := New(zap.NewNop())
	defer w.Close()
	_, err := w.Ping(context.Background(), Backend{Addr: s.Addr}, grpcSpec(t, func(w *config.Warmup) { w.ExpectBody = `"data":\[1.5,-2\]` }))
	require.NoError(t, err)
}

func TestCompileGRPC_RefusesRequestsThatAreNotKServeV2(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		desc, body, wantErr string
	}{
		{"not JSON", `{`, "not a KServe v2 inference request"},
		{"no inputs", `{"inputs": []}`, "has no inputs"},
		{"an unknown key", `{"input": []}`, "unknown field"},
		{"shape and data disagree", `{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2]}]}`, "shape [1 3] holds 3 values, data has 2"},
		{"an unsupported datatype", `{"inputs": [{"name": "x", "datatype": "FP16", "shape": [1], "data": [1]}]}`, `datatype "FP16" is not supported`},
		{"a string in FP32 data", `{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": ["a"]}]}`, "is not a number"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			w := config.Default().Warmup
			w.Kind, w.Model, w.Body = config.WarmupKServeGRPC, "mlp", test.body
			_, err := Compile(&w)
			require.Error(t, err)
			assert.Contains(t, err.Error(), test.wantErr)
		})
	}
}
