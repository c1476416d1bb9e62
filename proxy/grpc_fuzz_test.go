package proxy

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// FuzzParseGRPCTimeout feeds client grpc-timeout values: never a panic,
// never a negative deadline (99999999H overflowed one before it was
// clamped), and a value it accepts is 1-8 digits and a unit.
func FuzzParseGRPCTimeout(f *testing.F) {
	for _, s := range []string{"1S", "100m", "99999999n", "5H", "", "S", "-1S", "123456789S", "1x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		d, ok := parseGRPCTimeout(v)
		if !ok {
			return
		}
		if d < 0 || len(v) < 2 || len(v) > 9 {
			t.Fatalf("accepted %q as %s", v, d)
		}
	})
}

// FuzzGRPCMessages feeds an answer body in two pieces: the count of
// messages never depends on where the body was cut.
func FuzzGRPCMessages(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 2, 'h', 'i'}, 3)
	f.Add([]byte{0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 'x'}, 6)
	f.Fuzz(func(t *testing.T, body []byte, cut int) {
		var whole, split grpcMessages
		whole.feed(body)
		if cut < 0 || cut > len(body) {
			cut = len(body) / 2
		}
		split.feed(body[:cut])
		split.feed(body[cut:])
		if whole != split {
			t.Fatalf("cut at %d: %+v vs %+v", cut, split, whole)
		}
	})
}

func TestParseGRPCTimeout_ReadsEveryUnitAndClampsOverflow(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"1H", time.Hour, true}, {"2M", 2 * time.Minute, true}, {"3S", 3 * time.Second, true},
		{"4m", 4 * time.Millisecond, true}, {"5u", 5 * time.Microsecond, true}, {"6n", 6, true},
		{"99999999H", time.Duration(math.MaxInt64), true},
		{"123456789S", 0, false}, {"1x", 0, false}, {"S", 0, false}, {"-1S", 0, false},
	}
	for _, test := range testCases {
		t.Run(test.in, func(t *testing.T) {
			t.Parallel()
			d, ok := parseGRPCTimeout(test.in)
			assert.Equal(t, test.ok, ok)
			assert.Equal(t, test.want, d)
		})
	}
}
