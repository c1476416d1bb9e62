package proxy

import (
	"bufio"
	"bytes"
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// chunkedExchange reads raw as an upstream chunked body.
func chunkedExchange(raw []byte) *exchange {
	return &exchange{mode: bodyChunked, conn: &upstreamConn{br: bufio.NewReaderSize(bytes.NewReader(raw), 16)}}
}

func TestExchange_DecodesChunkedBodies(t *testing.T) {
	testCases := []struct {
		desc    string
		raw     string
		want    string
		wantErr bool
	}{
		{desc: "two chunks", raw: "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", want: "hello world"},
		{desc: "extensions and trailers are dropped", raw: "5;name=x\r\nhello\r\n0\r\nX-Trailer: 1\r\n\r\n", want: "hello"},
		{desc: "upper-case hex", raw: "A\r\n0123456789\r\n0\r\n\r\n", want: "0123456789"},
		{desc: "cut off mid-chunk", raw: "a\r\nhel", want: "hel", wantErr: true},
		{desc: "chunk longer than its size", raw: "2\r\nhello\r\n0\r\n\r\n", want: "he", wantErr: true},
		{desc: "size that is not hex", raw: "zz\r\nhello\r\n", wantErr: true},
		{desc: "size too long to be real", raw: "ffffffffffffffffff\r\n", wantErr: true},
		{desc: "no end chunk", raw: "5\r\nhello\r\n", want: "hello", wantErr: true},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			got, err := io.ReadAll(chunkedExchange([]byte(test.raw)))
			if test.wantErr {
				require.Error(t, err)
			} else {
				require.NoError(t, err)
			}
			assert.Equal(t, test.want, string(got))
		})
	}
}

// FuzzChunkedBody feeds arbitrary upstream bytes to the chunked decoder: it
// must never panic, never return more bytes than it was given, and a body
// it accepts must round-trip through a well-formed re-encoding.
func FuzzChunkedBody(f *testing.F) {
	f.Add([]byte("5\r\nhello\r\n0\r\n\r\n"))
	f.Add([]byte("1;a=b\r\nx\r\n0\r\nT: v\r\n\r\n"))
	f.Add([]byte("7fffffffffffffff\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := io.ReadAll(chunkedExchange(raw))
		if len(got) > len(raw) {
			t.Fatalf("decoded %d bytes from %d", len(got), len(raw))
		}
		if err != nil {
			return
		}
		var enc bytes.Buffer
		if len(got) > 0 {
			enc.WriteString(strconvHex(len(got)) + "\r\n")
			enc.Write(got)
			enc.WriteString("\r\n")
		}
		enc.WriteString("0\r\n\r\n")
		again, err := io.ReadAll(chunkedExchange(enc.Bytes()))
		require.NoError(t, err)
		require.Equal(t, got, again)
	})
}

func strconvHex(n int) string {
	const digits = "0123456789abcdef"
	if n == 0 {
		return "0"
	}
	var b []byte
	for ; n > 0; n >>= 4 {
		b = append([]byte{digits[n&0xf]}, b...)
	}
	return string(b)
}
