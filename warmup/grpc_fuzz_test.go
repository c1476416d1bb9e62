package warmup

import (
	"testing"

	"github.com/switchyard/switchyard/proto/inference"
)

// FuzzDecodeRaw feeds raw output contents a backend sent: decoding never
// panics, and what it decodes can be written as JSON.
func FuzzDecodeRaw(f *testing.F) {
	for _, dt := range []string{"FP32", "BYTES", "INT64", "BOOL", "FP16"} {
		f.Add(dt, []byte{0, 0, 128, 63, 1, 0, 0, 0, 'x'})
	}
	f.Fuzz(func(t *testing.T, datatype string, raw []byte) {
		res := &inference.ModelInferResponse{
			Outputs:           []*inference.ModelInferResponse_InferOutputTensor{{Name: "o", Datatype: datatype}},
			RawOutputContents: [][]byte{raw},
		}
		_, _ = answerJSON(res)
	})
}

// FuzzCompileInfer feeds warmup bodies: a KServe v2 JSON request is
// compiled or refused with an error, never a panic.
func FuzzCompileInfer(f *testing.F) {
	f.Add(`{"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [[1, 2]]}]}`)
	f.Add(`{"inputs": [{"name": "x", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}`)
	f.Add(`{"inputs": [{"name": "x", "datatype": "INT64", "shape": [2], "data": [1e300, -1]}]}`)
	f.Fuzz(func(t *testing.T, body string) {
		_, _ = compileInfer("mlp", []byte(body))
	})
}
