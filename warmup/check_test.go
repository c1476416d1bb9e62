package warmup

import (
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCheckAnswer_ComparesJSONSemantically(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		desc    string
		field   string
		want    string // ExpectJSONValue
		body    string
		wantErr string // "" passes
	}{
		{desc: "string equals", field: "model_version", want: `"v2.7"`, body: `{"model_version": "v2.7"}`},
		{desc: "string differs", field: "model_version", want: `"v2.7"`, body: `{"model_version": "v2.6"}`, wantErr: `answer 200 but field "model_version" is "v2.6", want "v2.7"`},
		{desc: "integer equals float spelling", field: "n", want: `4`, body: `{"n": 4.0}`},
		{desc: "exponent spelling", field: "n", want: `100`, body: `{"n": 1e2}`},
		{desc: "number is not a string", field: "n", want: `4`, body: `{"n": "4"}`, wantErr: `field "n" is "4", want 4`},
		{desc: "large integers stay exact", field: "id", want: `9007199254740993`, body: `{"id": 9007199254740992}`, wantErr: `field "id" is 9007199254740992, want 9007199254740993`},
		{desc: "huge exponent does not hang", field: "n", want: `1`, body: `{"n": 1e999999999999}`, wantErr: `field "n" is 1e999999999999, want 1`},
		{desc: "object key order ignored", field: "m", want: `{"a": 1, "b": [true, null]}`, body: `{"m": {"b": [true, null], "a": 1.0}}`},
		{desc: "object extra key", field: "m", want: `{"a": 1}`, body: `{"m": {"a": 1, "b": 2}}`, wantErr: `field "m" is {"a":1,"b":2}, want {"a": 1}`},
		{desc: "array order matters", field: "xs", want: `[1, 2]`, body: `{"xs": [2, 1]}`, wantErr: `field "xs" is [2,1], want [1, 2]`},
		{desc: "null equals null", field: "err", want: `null`, body: `{"err": null}`},
		{desc: "any value when none expected", field: "outputs", body: `{"outputs": [[0.1, 0.9]]}`},
		{desc: "whitespace around body", field: "ok", want: `true`, body: "\n  {\"ok\": true}\r\n"},
		{desc: "empty body", field: "ok", body: ``, wantErr: `answer 200 but body is not JSON (starts ""), want an object with field "ok"`},
		{desc: "trailing garbage", field: "ok", body: `{"ok": true} extra`, wantErr: `answer 200 but body is not JSON (invalid character 'e' after top-level value; starts "{\"ok\": true} extra")`},
		{desc: "long value shortened", field: "s", want: `"x"`, body: `{"s": "` + strings.Repeat("y", 100) + `"}`, wantErr: `field "s" is "` + strings.Repeat("y", 63) + `..., want "x"`},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			spec := testSpec(func(s *Spec) { s.ExpectJSONField, s.ExpectJSONValue = test.field, test.want })

			err := checkAnswer(spec, 200, []byte(test.body), false)

			if test.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrWrongAnswer)
			assert.Contains(t, err.Error(), test.wantErr)
		})
	}
}

func TestCheckAnswer_TruncatedBodyFailsOnlyWhenChecked(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		desc    string
		edit    func(*Spec)
		wantErr bool
	}{
		{desc: "status only", wantErr: false},
		{desc: "JSON field", edit: func(s *Spec) { s.ExpectJSONField = "x" }, wantErr: true},
		{desc: "body regexp", edit: func(s *Spec) { s.ExpectBody = regexp.MustCompile("x") }, wantErr: true},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			err := checkAnswer(testSpec(test.edit), 200, []byte(`{"x": 1}`), true)
			if test.wantErr {
				require.ErrorContains(t, err, "too large to check")
				return
			}
			require.NoError(t, err)
		})
	}
}

// fuzzSpecs are the kinds of expectation an answer is checked against.
var fuzzSpecs = []*Spec{
	testSpec(nil),
	testSpec(func(s *Spec) { s.ExpectJSONField = "model_version" }),
	testSpec(func(s *Spec) { s.ExpectJSONField, s.ExpectJSONValue = "model_version", `"v2.7"` }),
	testSpec(func(s *Spec) { s.ExpectJSONField, s.ExpectJSONValue = "outputs", `[[0.1, 0.9]]` }),
	testSpec(func(s *Spec) { s.ExpectJSONField, s.ExpectJSONValue = "n", `4` }),
	testSpec(func(s *Spec) { s.ExpectBody = regexp.MustCompile(`"model_version":\s*"v2\.\d+"`) }),
}

// FuzzCheckAnswer feeds the answer checker what an upstream may send: any
// status and any bytes. It must never panic, must only fail with
// ErrWrongAnswer, and must not pass a JSON expectation with a non-JSON body.
func FuzzCheckAnswer(f *testing.F) {
	f.Add(200, []byte(`{"model_version": "v2.7", "outputs": [[0.1, 0.9]], "n": 4.0}`))
	f.Add(200, []byte(`{"model_version": "v2.6"}`))
	f.Add(503, []byte("<html>loading</html>"))
	f.Add(200, []byte(`[{"model_version": "v2.7"}]`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		for i, spec := range fuzzSpecs {
			for _, truncated := range []bool{false, true} {
				err := checkAnswer(spec, status, body, truncated)
				if err != nil {
					if !errors.Is(err, ErrWrongAnswer) {
						t.Fatalf("spec %d: error %q does not match ErrWrongAnswer", i, err)
					}
					if err.Error() == "" {
						t.Fatalf("spec %d: empty error", i)
					}
					continue
				}
				if status != spec.ExpectStatus {
					t.Fatalf("spec %d: status %d passed, want %d", i, status, spec.ExpectStatus)
				}
				if spec.ExpectJSONField != "" && !json.Valid(body) {
					t.Fatalf("spec %d: non-JSON body %q passed a JSON check", i, body)
				}
			}
		}
	})
}
