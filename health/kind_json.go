package health

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/switchyard/switchyard/config"
)

// jsonKind is Switchyard's own probe, the default: a JSON body whose
// "status" says ok and whose "model_loaded", when present, is true. It is
// the only kind whose health answer carries GPU, queue and boot_id fields;
// the others get those from metrics_path.
type jsonKind struct{ http *httpGetter }

var _ kind = jsonKind{}

func (jsonKind) defaultPath() string { return "/health" }

// probe reads the body whatever the status: a server that answers 503
// while its model loads still reports its boot_id, and its own words
// ("status is loading") make a better error than the status code alone.
func (k jsonKind) probe(ctx context.Context, ep endpoint, h *config.Health) (Report, error) {
	status, body, err := k.http.get(ctx, ep, h.Path)
	if err != nil {
		return Report{}, err
	}
	r, err := ParseJSONHealth(body)
	if status/100 != 2 {
		if err != nil {
			return r, fmt.Errorf("GET %s: status %d: %w", h.Path, status, err)
		}
		return r, fmt.Errorf("GET %s: status %d", h.Path, status)
	}
	if err != nil {
		return r, fmt.Errorf("GET %s: %w", h.Path, err)
	}
	return r, nil
}

// jsonHealth is Switchyard's json probe body. Unknown fields are ignored:
// model servers add their own.
type jsonHealth struct {
	Status        *string  `json:"status"`
	ModelLoaded   *bool    `json:"model_loaded"`
	CUDAAvailable *bool    `json:"cuda_available"`
	Device        *string  `json:"device"`
	GPUUUID       *string  `json:"gpu_uuid"`
	GPUMemUsed    *float64 `json:"gpu_memory_used_bytes"`
	GPUMemTotal   *float64 `json:"gpu_memory_total_bytes"`
	GPUUtil       *float64 `json:"gpu_utilization"`
	QueueDepth    *float64 `json:"queue_depth"`
	Running       *float64 `json:"requests_running"`
	KVCacheUsage  *float64 `json:"kv_cache_usage"`
	BootID        *string  `json:"boot_id"`
	Version       *string  `json:"version"`
}

// ParseJSONHealth checks a json-kind health body: status must say ok and
// model_loaded, when present, must be true.
func ParseJSONHealth(body []byte) (Report, error) {
	var h jsonHealth
	if !scanJSONHealth(body, &h) {
		var slow jsonHealth // apart from h, which then stays on the stack
		if err := json.Unmarshal(body, &slow); err != nil {
			return Report{}, fmt.Errorf("health body is not JSON: %w (body starts %q)", err, prefix(body))
		}
		h = slow
	}
	r := Report{
		ModelLoaded: h.ModelLoaded, CUDAAvailable: h.CUDAAvailable, GPUMemUsed: h.GPUMemUsed,
		GPUMemTotal: h.GPUMemTotal, GPUUtil: h.GPUUtil, QueueDepth: h.QueueDepth,
		Running: h.Running, KVCacheUsage: h.KVCacheUsage,
	}
	r.Device, r.GPUUUID, r.BootID, r.Version = deref(h.Device), deref(h.GPUUUID), deref(h.BootID), deref(h.Version)
	if h.Status == nil {
		return r, fmt.Errorf(`health body has no "status" field (want "ok")`)
	}
	switch strings.ToLower(*h.Status) {
	case "ok", "healthy", "ready", "up", "serving":
	default:
		return r, fmt.Errorf("status is %q, not ok", *h.Status)
	}
	if h.ModelLoaded != nil && !*h.ModelLoaded {
		return r, fmt.Errorf("model not loaded")
	}
	return r, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
