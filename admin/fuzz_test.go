package admin

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/switchyard/switchyard/proxy"
)

// FuzzDecodeBody feeds arbitrary admin request bodies to the strict
// decoder, for each kind of body the admin API takes: it must never
// panic, must either accept the body or answer 400/413 with a JSON error,
// and must accept only bodies whose top-level keys are distinct in any
// case and, for a struct, exactly its fields' names.
func FuzzDecodeBody(f *testing.F) {
	f.Add(`{"to": "green", "force": true}`)
	f.Add(`{"to": "green"} {"to": "blue"}`)
	f.Add(`{"to": 5}`)
	f.Add(strings.Repeat("[", 10000))
	f.Add(`{"to": "blue", "to": "green"}`)
	f.Add(`{"TO": "green"}`)
	f.Add(`{"To": "green", "FORCE": true}`)
	f.Add(`{"to": "green", "t\u006f": "blue"}`)
	f.Add(`{"green": 5, "GREEN": 50}`)
	f.Add(`{"mirror": {"to": "green", "To": "blue", "percent": 1}}`)
	f.Add(`{"to": "green", "percent": 1}`)
	f.Fuzz(func(t *testing.T, body string) {
		targets := []struct {
			v      func() any
			fields []string // exact top-level names; nil for a map
		}{
			{v: func() any { return &switchBody{} }, fields: []string{"to", "force"}},
			{v: func() any { return &proxy.MirrorSetting{} }, fields: []string{"to", "percent"}},
			{v: func() any { return &map[string]json.RawMessage{} }},
		}
		for _, target := range targets {
			w := httptest.NewRecorder()
			r := httptest.NewRequest(http.MethodPost, "/admin/switch", strings.NewReader(body))
			if !decodeBody(w, r, target.v(), false, "{}") {
				if w.Code != http.StatusBadRequest && w.Code != http.StatusRequestEntityTooLarge {
					t.Fatalf("status %d for a rejected body", w.Code)
				}
				if !strings.Contains(w.Body.String(), `"error"`) {
					t.Fatalf("no JSON error: %s", w.Body)
				}
				continue
			}
			keys, ok := topLevelKeys(body)
			if !ok {
				continue // not an object: null, for instance
			}
			seen := map[string]bool{}
			for _, k := range keys {
				if seen[strings.ToLower(k)] {
					t.Fatalf("accepted %q, which gives the key %q twice", body, k)
				}
				seen[strings.ToLower(k)] = true
				if target.fields != nil && !contains(target.fields, k) {
					t.Fatalf("accepted %q, whose key %q is not exactly one of %q", body, k, target.fields)
				}
			}
		}
	})
}

// topLevelKeys lists the keys of the JSON object in body, in order,
// duplicates included; false when body is not an object.
func topLevelKeys(body string) ([]string, bool) {
	dec := json.NewDecoder(bytes.NewReader([]byte(body)))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, false
	}
	var keys []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return nil, false
		}
		keys = append(keys, k.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, false
		}
	}
	return keys, true
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}
