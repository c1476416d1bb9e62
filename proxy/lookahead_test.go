package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// scriptConn is a net.Conn whose reads return the given pieces, one a
// read, as a socket would return what had arrived.
type scriptConn struct {
	net.Conn
	pieces [][]byte
	reads  int
}

func (c *scriptConn) Read(p []byte) (int, error) {
	c.reads++
	if len(c.pieces) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.pieces[0])
	if c.pieces[0] = c.pieces[0][n:]; len(c.pieces[0]) == 0 {
		c.pieces = c.pieces[1:]
	}
	return n, nil
}

func TestLookaheadConn_ServesWhatArrivedFromOneRead(t *testing.T) {
	big := bytes.Repeat([]byte("x"), lookaheadSize+100)
	testCases := []struct {
		desc   string
		pieces [][]byte
		// sizes are the reads the caller makes, in order.
		sizes     []int
		want      string
		wantReads int // reads of the socket
	}{
		{desc: "one byte, then the rest of what arrived, from one socket read", pieces: [][]byte{[]byte("GET / HTTP/1.1\r\n\r\n")},
			sizes: []int{1, 8192}, want: "GET / HTTP/1.1\r\n\r\n", wantReads: 1},
		{desc: "a caller reading in small pieces still reads the socket once", pieces: [][]byte{[]byte("abcdefgh")},
			sizes: []int{1, 3, 2, 2}, want: "abcdefgh", wantReads: 1},
		{desc: "what arrives later is read once the buffer is drained", pieces: [][]byte{[]byte("ab"), []byte("cd")},
			sizes: []int{1, 10, 10}, want: "abcd", wantReads: 2},
		{desc: "a read as large as the buffer goes straight to the socket", pieces: [][]byte{big},
			sizes: []int{len(big)}, want: string(big), wantReads: 1},
		{desc: "more than the buffer holds comes in two socket reads", pieces: [][]byte{big},
			sizes: []int{1, len(big), len(big)}, want: string(big), wantReads: 2},
	}
	for _, tc := range testCases {
		t.Run(tc.desc, func(t *testing.T) {
			sc := &scriptConn{pieces: tc.pieces}
			c := newLookaheadConn(sc)
			var got []byte
			for _, n := range tc.sizes {
				p := make([]byte, n)
				m, err := c.Read(p)
				require.NoError(t, err)
				got = append(got, p[:m]...)
			}
			assert.Equal(t, tc.want, string(got))
			assert.Equal(t, tc.wantReads, sc.reads)
			assert.Nil(t, c.buf, "a drained buffer goes back to the pool")
			_, err := c.Read(make([]byte, 1))
			assert.ErrorIs(t, err, io.EOF)
		})
	}
}

// hashServer answers each request with the length and SHA-256 of its body.
func hashServer(t *testing.T) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		sum := sha256.Sum256(b)
		_, _ = io.WriteString(w, strconv.Itoa(len(b))+" "+hex.EncodeToString(sum[:]))
	}))
	t.Cleanup(s.Close)
	return s
}

// Past leanAfter open connections, new ones go to the lean server, whose
// idle connections hold no buffers. Both must carry the same requests.
func TestTrafficServer_LeanAndMainServersCarryTheSameRequests(t *testing.T) {
	backend := hashServer(t)
	for _, tc := range []struct {
		desc      string
		leanAfter int64
		lean      bool
	}{
		{desc: "main server", leanAfter: 1 << 30},
		{desc: "lean server", leanAfter: 0, lean: true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			gw := startTrafficGateway(t, testConfig(t, []string{hostPort(backend)}, nil, ""), nil,
				func(s *TrafficServer) { s.leanAfter = tc.leanAfter })
			c, err := net.Dial("tcp", gw.Addr)
			require.NoError(t, err)
			defer c.Close()
			br := bufio.NewReader(c)
			// Keep-alive requests of every size around the lookahead
			// buffer, then two sent back to back in one write.
			var bodies []string
			for _, n := range []int{0, 10, lookaheadSize - 200, lookaheadSize, 3 * lookaheadSize, 100 << 10} {
				bodies = append(bodies, strings.Repeat("b", n))
			}
			req := func(body string) string {
				return "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
			}
			for _, body := range bodies {
				_, err := io.WriteString(c, req(body))
				require.NoError(t, err)
				assertHashAnswer(t, br, body)
			}
			_, err = io.WriteString(c, req("first")+req("second"))
			require.NoError(t, err)
			assertHashAnswer(t, br, "first")
			assertHashAnswer(t, br, "second")
			assert.EqualValues(t, 1, gw.Server.http1.Load(), "open HTTP/1.1 connections")
			served, idle := gw.Server.fast, gw.Server.lean
			if tc.lean {
				served, idle = idle, served
			}
			assert.EqualValues(t, 1, served.GetOpenConnectionsCount(), "connections on the server the count picks")
			assert.EqualValues(t, 0, idle.GetOpenConnectionsCount(), "connections on the other server")
			require.NoError(t, c.Close())
			require.Eventually(t, func() bool { return gw.Server.http1.Load() == 0 }, 5*time.Second, 5*time.Millisecond,
				"a closed connection is counted out")
		})
	}
}

func assertHashAnswer(t *testing.T, br *bufio.Reader, body string) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	got, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	resp.Body.Close()
	sum := sha256.Sum256([]byte(body))
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, strconv.Itoa(len(body))+" "+hex.EncodeToString(sum[:]), string(got))
}
