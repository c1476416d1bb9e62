package health

// tritonKind probes NVIDIA Triton, which serves the KServe v2 health API
// (/v2/health/ready, /v2/models/{model}/ready) unchanged, so it is
// kserveKind under Triton's name. Its queue and GPU signals come from
// metrics_path (nv_inference_pending_request_count, nv_gpu_*), read by
// ParseMetrics.
type tritonKind struct{ kserveKind }

var _ kind = tritonKind{}
