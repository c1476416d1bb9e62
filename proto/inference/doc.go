// Package inference is the Go code generated from the KServe v2 (Open
// Inference Protocol) gRPC API, open_inference_grpc.proto, as published
// in github.com/kserve/open-inference-protocol (Apache 2.0, LICENSE beside
// it): the GRPCInferenceService that Triton, KServe and TorchServe serve.
// Switchyard's gRPC probes and warmup call it; the tests serve it.
//
// Regenerate with `make proto` (protoc, protoc-gen-go, protoc-gen-go-grpc).
package inference
