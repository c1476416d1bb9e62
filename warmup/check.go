package warmup

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strconv"
)

// maxBody is how much of an answer body is kept for checking, so that a
// garbage upstream cannot exhaust the gateway's memory.
const maxBody = 1 << 20

// maxNumberLen bounds the JSON numbers equalNumber parses.
const maxNumberLen = 128

// snippetLen is how much of a body or value an error message quotes.
const snippetLen = 64

// ErrWrongAnswer is matched (errors.Is) by every error that says a backend
// answered but the answer failed a check: wrong status, missing or wrong
// JSON field, body mismatch, too slow. Callers use it to tell a server
// that is up but serving the wrong thing from one that cannot be reached.
var ErrWrongAnswer = errors.New("warmup: wrong answer")

// answerError is a failed check; its text reads after "last " in Warm's
// give-up message ("last answer 200 but ...").
type answerError struct{ msg string }

func (e *answerError) Error() string        { return e.msg }
func (e *answerError) Is(target error) bool { return target == ErrWrongAnswer }

func wrong(format string, args ...any) error {
	return &answerError{msg: fmt.Sprintf(format, args...)}
}

// checkAnswer reports why an answer with this status and body fails spec's
// checks, or nil when it passes. truncated says the body was cut at
// maxBody. body comes from outside, so checkAnswer must never panic.
func checkAnswer(spec *Spec, status int, body []byte, truncated bool) error {
	if status != spec.ExpectStatus {
		return wrong("answer %d, want status %d (body starts %s)", status, spec.ExpectStatus, snippet(body))
	}
	if truncated && (spec.ExpectJSONField != "" || spec.ExpectBody != nil) {
		return wrong("answer %d but body is over %d bytes, too large to check; use a smaller warmup input", status, maxBody)
	}
	if spec.ExpectJSONField != "" {
		if err := checkJSONField(spec, status, body); err != nil {
			return err
		}
	}
	if spec.ExpectBody != nil && !spec.ExpectBody.Match(body) {
		return wrong("answer %d but body does not match expect_body %q (body starts %s)", status, spec.ExpectBody.String(), snippet(body))
	}
	return nil
}

func checkJSONField(spec *Spec, status int, body []byte) error {
	field := spec.ExpectJSONField
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		if !json.Valid(trimmed) {
			return wrong("answer %d but body is not JSON (starts %s), want an object with field %q", status, snippet(body), field)
		}
		return wrong("answer %d but body is JSON %s, not an object with field %q", status, snippet(trimmed), field)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(trimmed, &obj); err != nil {
		return wrong("answer %d but body is not JSON (%v; starts %s), want an object with field %q", status, err, snippet(body), field)
	}
	raw, ok := obj[field]
	if !ok {
		return wrong("answer %d but field %q is missing (body starts %s)", status, field, snippet(body))
	}
	if spec.ExpectJSONValue == "" {
		return nil
	}
	want, err := decodeJSON([]byte(spec.ExpectJSONValue))
	if err != nil {
		return fmt.Errorf("warmup: expect_json_value %q is not JSON text: %w", spec.ExpectJSONValue, err)
	}
	got, err := decodeJSON(raw)
	if err != nil || !equalJSON(got, want) {
		return wrong("answer %d but field %q is %s, want %s", status, field, compact(raw), spec.ExpectJSONValue)
	}
	return nil
}

// decodeJSON decodes one JSON value, keeping numbers as json.Number so
// equalJSON can compare them exactly.
func decodeJSON(b []byte) (any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// equalJSON compares decoded JSON values semantically: object key order and
// number spelling (4, 4.0, 4e0) do not matter.
func equalJSON(a, b any) bool {
	switch a := a.(type) {
	case json.Number:
		b, ok := b.(json.Number)
		return ok && equalNumber(a, b)
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, av := range a {
			bv, ok := b[k]
			if !ok || !equalJSON(av, bv) {
				return false
			}
		}
		return true
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !equalJSON(a[i], b[i]) {
				return false
			}
		}
		return true
	default: // string, bool, nil
		return a == b
	}
}

// equalNumber compares two JSON numbers at 256-bit precision, which keeps
// large integer IDs exact where float64 would not. A huge exponent costs
// only a bounded parse; a number spelled with over maxNumberLen characters
// is compared as text so a garbage body cannot make the parse slow.
func equalNumber(a, b json.Number) bool {
	if a == b {
		return true
	}
	if len(a) > maxNumberLen || len(b) > maxNumberLen {
		return false
	}
	x, _, errA := big.ParseFloat(string(a), 10, 256, big.ToNearestEven)
	y, _, errB := big.ParseFloat(string(b), 10, 256, big.ToNearestEven)
	return errA == nil && errB == nil && x.Cmp(y) == 0
}

// compact is raw JSON on one line, shortened for an error message.
func compact(raw []byte) string {
	var buf bytes.Buffer
	if json.Compact(&buf, raw) == nil {
		raw = buf.Bytes()
	}
	if len(raw) > snippetLen {
		return string(raw[:snippetLen]) + "..."
	}
	return string(raw)
}

// snippet quotes the start of a body for an error message.
func snippet(b []byte) string {
	if len(b) > snippetLen {
		return strconv.Quote(string(b[:snippetLen])) + "..."
	}
	return strconv.Quote(string(b))
}
