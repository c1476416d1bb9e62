package health

import (
	"encoding/json"
	"testing"
)

// Health bodies and metrics pages come from model servers, which may be
// broken, misconfigured or not model servers at all: the parsers must
// never panic, and what they accept must be consistent.

func FuzzParseJSONHealth(f *testing.F) {
	// More seeds are in testdata/fuzz/FuzzParseJSONHealth.
	f.Add([]byte(`{"status":"ok"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := ParseJSONHealth(body)
		if err == nil && r.ModelLoaded != nil && !*r.ModelLoaded {
			t.Fatalf("accepted a body whose model is not loaded: %q", body)
		}
		_ = r.LoadScore()
		if err != nil && len(err.Error()) > 1024 {
			t.Fatalf("error message of %d bytes for a %d-byte body", len(err.Error()), len(body))
		}
	})
}

func FuzzParseMetrics(f *testing.F) {
	// More seeds are in testdata/fuzz/FuzzParseMetrics.
	f.Add([]byte("vllm:num_requests_waiting 1\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := ParseMetrics(body)
		if err != nil {
			if r != (Report{}) {
				t.Fatalf("a rejected page reported %+v", r)
			}
			return
		}
		_ = r.LoadScore()
		var h Report
		h.merge(r)
	})
}

func FuzzParseTorchServePing(f *testing.F) {
	f.Add([]byte(`{"status": "Healthy"}`))
	f.Add([]byte(`{"status": "Unhealthy"}`))
	f.Add([]byte(`Healthy`))
	f.Fuzz(func(t *testing.T, body []byte) {
		err := parseTorchServePing(body)
		if err == nil && !json.Valid(body) {
			t.Fatalf("accepted a body that is not JSON: %q", body)
		}
		if err != nil && len(err.Error()) > 1024 {
			t.Fatalf("error message of %d bytes for a %d-byte body", len(err.Error()), len(body))
		}
	})
}
