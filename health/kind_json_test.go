package health

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
)

// okJSON is a healthy json-kind body with GPU and boot fields.
const okJSON = `{"status": "ok", "model_loaded": true, "gpu_uuid": "GPU-1", "queue_depth": 2, "boot_id": "b1"}`

func TestJSONKind_StatusOKAndModelLoadedAreHealthy(t *testing.T) {
	t.Parallel()
	testProbeCases(t, []probeCase{
		{
			desc:   "json ok body",
			kind:   config.ProbeJSON,
			routes: map[string]route{"/health": {200, okJSON}},
			want:   Report{ModelLoaded: ptr(true), GPUUUID: "GPU-1", QueueDepth: ptr(2.0), BootID: "b1"},
		},
		{
			desc:    "json loading answers 503",
			kind:    config.ProbeJSON,
			routes:  map[string]route{"/health": {503, `{"status": "loading", "model_loaded": false, "boot_id": "b1"}`}},
			wantErr: `GET /health: status 503: status is "loading", not ok`,
			want:    Report{ModelLoaded: ptr(false), BootID: "b1"},
		},
		{
			desc:    "json 200 but model not loaded",
			kind:    config.ProbeJSON,
			routes:  map[string]route{"/health": {200, `{"status": "ok", "model_loaded": false}`}},
			wantErr: "GET /health: model not loaded",
			want:    Report{ModelLoaded: ptr(false)},
		},
		{
			desc:    "json 500 with a non-JSON body",
			kind:    config.ProbeJSON,
			routes:  map[string]route{"/health": {500, "Internal Server Error"}},
			wantErr: "GET /health: status 500: health body is not JSON",
		},
		{
			desc:    "json 200 with garbage",
			kind:    config.ProbeJSON,
			routes:  map[string]route{"/health": {200, "<html>hi</html>"}},
			wantErr: `GET /health: health body is not JSON`,
		},
	})
}

func TestParseJSONHealth_OKBodyReportsEveryField(t *testing.T) {
	t.Parallel()
	body := `{
		"status": "ok", "model_loaded": true, "cuda_available": true, "device": "cuda:0",
		"gpu_uuid": "GPU-5f6e0c1a", "gpu_memory_used_bytes": 6442450944, "gpu_memory_total_bytes": 25769803776,
		"gpu_utilization": 0.83, "queue_depth": 4, "boot_id": "b00t", "version": "v2.7",
		"color": "green", "workers": 2
	}`

	r, err := ParseJSONHealth([]byte(body))

	require.NoError(t, err)
	assert.Equal(t, Report{
		ModelLoaded:   ptr(true),
		CUDAAvailable: ptr(true),
		Device:        "cuda:0",
		GPUUUID:       "GPU-5f6e0c1a",
		GPUMemUsed:    ptr(6442450944.0),
		GPUMemTotal:   ptr(25769803776.0),
		GPUUtil:       ptr(0.83),
		QueueDepth:    ptr(4.0),
		BootID:        "b00t",
		Version:       "v2.7",
	}, r)
}

func TestParseJSONHealth_AcceptsStatusSpellingsOfServers(t *testing.T) {
	t.Parallel()
	for _, status := range []string{"ok", "OK", "healthy", "Healthy", "ready", "up", "UP", "serving", "SERVING"} {
		t.Run(status, func(t *testing.T) {
			t.Parallel()
			r, err := ParseJSONHealth([]byte(`{"status": "` + status + `"}`))
			require.NoError(t, err)
			assert.Nil(t, r.ModelLoaded, "an absent model_loaded stays unknown")
		})
	}
}

func TestParseJSONHealth_RejectsWhatIsNotHealthy(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		desc    string
		body    string
		wantErr string
		// want is the part of the report still parsed, for logs and status.
		want Report
	}{
		{
			desc:    "status not ok",
			body:    `{"status": "loading", "model_loaded": false, "boot_id": "b1"}`,
			wantErr: `status is "loading", not ok`,
			want:    Report{ModelLoaded: ptr(false), BootID: "b1"},
		},
		{
			desc:    "status degraded",
			body:    `{"status": "degraded"}`,
			wantErr: `status is "degraded", not ok`,
		},
		{
			desc:    "model not loaded although status is ok",
			body:    `{"status": "ok", "model_loaded": false, "gpu_uuid": "GPU-1"}`,
			wantErr: "model not loaded",
			want:    Report{ModelLoaded: ptr(false), GPUUUID: "GPU-1"},
		},
		{
			desc:    "missing status",
			body:    `{"model_loaded": true, "version": "v1"}`,
			wantErr: `no "status" field`,
			want:    Report{ModelLoaded: ptr(true), Version: "v1"},
		},
		{
			desc:    "null status",
			body:    `{"status": null}`,
			wantErr: `no "status" field`,
		},
		{
			desc:    "JSON null",
			body:    `null`,
			wantErr: `no "status" field`,
		},
		{
			desc:    "HTML error page",
			body:    `<html><body>502 Bad Gateway</body></html>`,
			wantErr: `health body is not JSON`,
		},
		{
			desc:    "plain text OK",
			body:    `OK`,
			wantErr: `health body is not JSON`,
		},
		{
			desc:    "truncated JSON",
			body:    `{"status": "ok", "model_loa`,
			wantErr: `health body is not JSON`,
		},
		{
			desc:    "empty body",
			body:    ``,
			wantErr: `health body is not JSON`,
		},
		{
			desc:    "array",
			body:    `["ok"]`,
			wantErr: `health body is not JSON`,
		},
		{
			desc:    "status of the wrong type",
			body:    `{"status": 200}`,
			wantErr: `health body is not JSON`,
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			r, err := ParseJSONHealth([]byte(test.body))
			require.Error(t, err)
			assert.Contains(t, err.Error(), test.wantErr)
			assert.Equal(t, test.want, r)
		})
	}
}

func TestParseJSONHealth_ErrorQuotesOnlyTheStartOfALongBody(t *testing.T) {
	t.Parallel()
	body := "<html>" + string(make([]byte, 4096)) + "</html>"

	_, err := ParseJSONHealth([]byte(body))

	require.Error(t, err)
	assert.Less(t, len(err.Error()), 600, "the error message quotes the whole body")
	assert.Contains(t, err.Error(), "<html>")
}
