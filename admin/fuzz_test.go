package admin

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzDecodeBody feeds arbitrary admin request bodies to the strict
// decoder: it must never panic, and must either accept the body or answer
// 400/413 with a JSON error.
func FuzzDecodeBody(f *testing.F) {
	f.Add(`{"to": "green", "force": true}`)
	f.Add(`{"to": "green"} {"to": "blue"}`)
	f.Add(`{"to": 5}`)
	f.Add(strings.Repeat("[", 10000))
	f.Fuzz(func(t *testing.T, body string) {
		var v switchBody
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/admin/switch", strings.NewReader(body))
		if decodeBody(w, r, &v, false, "{}") {
			return
		}
		if w.Code != http.StatusBadRequest && w.Code != http.StatusRequestEntityTooLarge {
			t.Fatalf("status %d for a rejected body", w.Code)
		}
		if !strings.Contains(w.Body.String(), `"error"`) {
			t.Fatalf("no JSON error: %s", w.Body)
		}
	})
}
