package admin

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
)

// maxAdminBody bounds admin request bodies; they are a few bytes of JSON.
const maxAdminBody = 64 << 10

// decodeBody strictly decodes a JSON body into v. It writes a 400 naming
// the problem (413 past maxAdminBody) and returns false when the body is
// malformed.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, optional bool, want string) bool {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxAdminBody+1))
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "reading body: "+err.Error())
		return false
	}
	if len(data) > maxAdminBody {
		writeError(w, http.StatusRequestEntityTooLarge, "body_too_large", "admin request bodies are limited to 64 KiB")
		return false
	}
	if len(bytes.TrimSpace(data)) == 0 {
		if optional {
			return true
		}
		writeError(w, http.StatusBadRequest, "bad_request", "body: empty (want "+want+")")
		return false
	}
	if err := strictUnmarshal(data, v); err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "body: "+err.Error()+" (want "+want+")")
		return false
	}
	return true
}

// strictUnmarshal decodes exactly one JSON value from data into v, more
// strictly than encoding/json: an unknown field, a key given twice and a
// key that names a field in another case ("TO" for "to") are all errors,
// where encoding/json would take the last duplicate and match names
// case-insensitively. Either would let {"to": "blue", "to": "green"} or
// {"TO": "green"} switch traffic on a body the operator did not mean.
func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "json: "))
	}
	// More() is false before a stray '}' or ']': ask for one more token.
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("trailing data after the JSON object")
	}
	// The value is well-formed and within encoding/json's nesting limit:
	// walk it again for what encoding/json lets through.
	keys := json.NewDecoder(bytes.NewReader(data))
	keys.UseNumber()
	return checkKeys(keys, reflect.TypeOf(v), "")
}

var rawMessageType = reflect.TypeFor[json.RawMessage]()

// checkKeys reads one JSON value from dec, which holds well-formed JSON,
// and checks every object in it: no key twice (in any case), and, where t
// is a struct, every key exactly a field's JSON name. t is the Go type the
// value decodes into, or nil when unknown (an interface, a RawMessage
// decoded later); path names the value in errors.
func checkKeys(dec *json.Decoder, t reflect.Type, path string) error {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == rawMessageType {
		t = nil
	}
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]string{} // case-folded key -> key as given
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return err
			}
			key, _ := kt.(string)
			at := joinPath(path, key)
			if prev, ok := seen[strings.ToLower(key)]; ok {
				if prev == key {
					return fmt.Errorf("%s: key %q appears twice; give each field once", at, key)
				}
				return fmt.Errorf("%s: keys %q and %q differ only in case; give each field once, in lower case", at, prev, key)
			}
			seen[strings.ToLower(key)] = key
			var child reflect.Type
			if t != nil {
				switch t.Kind() {
				case reflect.Struct:
					f, ok := fieldByJSONName(t, key)
					if !ok {
						return unknownField(t, key, at)
					}
					child = f
				case reflect.Map:
					child = t.Elem()
				}
			}
			if err := checkKeys(dec, child, at); err != nil {
				return err
			}
		}
		_, err = dec.Token() // '}'
		return err
	case json.Delim('['):
		var elem reflect.Type
		if t != nil && (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) {
			elem = t.Elem()
		}
		for i := 0; dec.More(); i++ {
			if err := checkKeys(dec, elem, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
		_, err = dec.Token() // ']'
		return err
	}
	return nil
}

func joinPath(path, key string) string {
	if path == "" {
		return fmt.Sprintf("%q", key)
	}
	return fmt.Sprintf("%s.%q", path, key)
}

// fieldByJSONName returns the type of t's field whose JSON name is
// exactly name.
func fieldByJSONName(t reflect.Type, name string) (reflect.Type, bool) {
	for _, f := range reflect.VisibleFields(t) {
		if n, ok := jsonName(f); ok && n == name {
			return f.Type, true
		}
	}
	return nil, false
}

// unknownField is the error for a key that is not exactly a field of t,
// with a hint when it is one in another case.
func unknownField(t reflect.Type, key, at string) error {
	for _, f := range reflect.VisibleFields(t) {
		if n, ok := jsonName(f); ok && strings.EqualFold(n, key) {
			return fmt.Errorf("%s: unknown field %q: field names are case-sensitive; did you mean %q?", at, key, n)
		}
	}
	return fmt.Errorf("%s: unknown field %q", at, key)
}

// jsonName is the name encoding/json gives f; false for a field it skips.
func jsonName(f reflect.StructField) (string, bool) {
	if !f.IsExported() || f.Anonymous {
		return "", false
	}
	tag := f.Tag.Get("json")
	if tag == "-" {
		return "", false
	}
	if name, _, _ := strings.Cut(tag, ","); name != "" {
		return name, true
	}
	return f.Name, true
}
