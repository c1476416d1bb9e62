package health

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
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

// FuzzScanJSONHealth holds ParseJSONHealth's fast path to encoding/json:
// whatever body it decodes, json must decode to the same fields.
func FuzzScanJSONHealth(f *testing.F) {
	// More seeds are in testdata/fuzz/FuzzScanJSONHealth.
	f.Add([]byte(`{"status":"ok","model_loaded":true,"queue_depth":0}`))
	f.Add([]byte(`{"Status":"ok"}`))
	f.Add([]byte(`{"status":"ok","gpu_uuid":null,"queue_depth":-1.5e3,"extra":[1]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var fast jsonHealth
		if !scanJSONHealth(body, &fast) {
			return
		}
		var slow jsonHealth
		if err := json.Unmarshal(body, &slow); err != nil {
			t.Fatalf("the fast path decoded %q, which encoding/json refuses: %v", body, err)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("%q: the fast path decoded %s, encoding/json %s", body, show(fast), show(slow))
		}
	})
}

// show writes h's fields for a failure message.
func show(h jsonHealth) string {
	b, _ := json.Marshal(h)
	return string(b)
}

// FuzzReadProbeResponse feeds the probes' HTTP/1.1 answer reader
// anything a server may send, in pieces of any size: it must never panic
// nor return more than maxProbeBody, and an answer that net/http reads
// too must have the same status and body.
func FuzzReadProbeResponse(f *testing.F) {
	// More seeds are in testdata/fuzz/FuzzReadProbeResponse.
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{\"status\":\"ok\"}"), uint8(0))
	f.Add([]byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nbusy\r\n0\r\nT: 1\r\n\r\n"), uint8(3))
	f.Add([]byte("HTTP/1.0 204 No Content\nConnection: keep-alive\n\n"), uint8(1))
	f.Fuzz(func(t *testing.T, answer []byte, chunk uint8) {
		rr := respReader{src: &chunkReader{b: answer, n: int(chunk)}}
		status, body, keep, err := rr.readResponse()
		if err != nil {
			return
		}
		if len(body) > maxProbeBody {
			t.Fatalf("a body of %d bytes, over the limit", len(body))
		}
		if keep && rr.r != rr.w {
			t.Fatalf("kept a connection with %d bytes unread", rr.w-rr.r)
		}
		// Read as net/http's Transport does, past informational answers.
		req, _ := http.NewRequest(http.MethodGet, "http://backend/health", nil)
		br := bufio.NewReader(bytes.NewReader(answer))
		resp, err := http.ReadResponse(br, req)
		for err == nil && resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != 101 {
			resp, err = http.ReadResponse(br, req)
		}
		if err != nil {
			return
		}
		defer resp.Body.Close()
		want, err := io.ReadAll(io.LimitReader(resp.Body, maxProbeBody))
		if err != nil {
			return
		}
		if status != resp.StatusCode || !bytes.Equal(body, want) {
			t.Fatalf("%q: read status %d body %q; net/http reads %d %q", answer, status, body, resp.StatusCode, want)
		}
	})
}

// chunkReader returns b n bytes a read (all of it when n is 0), then
// io.EOF.
type chunkReader struct {
	b []byte
	n int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := len(p)
	if r.n > 0 {
		n = min(n, r.n)
	}
	n = copy(p[:n], r.b)
	r.b = r.b[n:]
	return n, nil
}
