package proxy

import (
	"bufio"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/valyala/fasthttp"
)

func TestCheckHeaderNames_SeesRewrittenHeadersInAnyCase(t *testing.T) {
	testCases := []struct {
		desc    string
		headers string
		want    headerSeen
	}{
		{desc: "none of them", headers: "Content-Type: application/json\r\nAccept: */*\r\n", want: 0},
		{desc: "hop-by-hop, lower case", headers: "te: trailers\r\n", want: seenHop},
		{desc: "hop-by-hop, odd case", headers: "KEEP-alive: 5\r\n", want: seenHop},
		{desc: "connection", headers: "Connection: close\r\n", want: seenHop},
		{desc: "expect", headers: "Expect: 100-continue\r\n", want: seenHop},
		{desc: "proxy-authorization", headers: "Proxy-Authorization: Basic eA==\r\n", want: seenHop},
		{desc: "forwarding headers and the request id",
			headers: "x-forwarded-for: 10.0.0.1\r\nX-FORWARDED-PROTO: https\r\nx-request-id: abc\r\n",
			want:    seenForwardedFor | seenForwardedProto | seenRequestID},
		{desc: "loop header", headers: HeaderLoop + ": 0123\r\n", want: seenLoop},
		{desc: "a name one letter off is not the header", headers: "X-Forwarded-Fox: x\r\nTf: x\r\n", want: 0},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			var req fasthttp.Request
			require.NoError(t, req.Header.Read(bufioReader("GET / HTTP/1.1\r\nHost: x\r\n"+tc.headers+"\r\n")))
			names, seen := checkHeaderNames(&req.Header)
			assert.Equal(t, namesOK, names)
			assert.Equal(t, tc.want, seen)
		})
	}
}

func TestEqualFoldASCII_FoldsLettersOnly(t *testing.T) {
	assert.True(t, equalFoldASCII([]byte("X-Request-ID"), "x-request-id"))
	assert.False(t, equalFoldASCII([]byte("X\x0dRequest-Id"), "x-request-id"), "'-' and '\\r' differ in bit 0x20 alone")
	assert.False(t, equalFoldASCII([]byte("X-Request-I"), "x-request-id"))
	assert.False(t, equalFoldASCII([]byte("[]"), "{}"), "'[' and '{' differ in bit 0x20 alone")
}

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }
