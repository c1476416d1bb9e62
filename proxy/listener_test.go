package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestIsH2_DecidesOnTheFirstBytesThatDiffer(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		desc        string
		in          string
		h2, decided bool
	}{
		{"the preface", h2Preface, true, true},
		{"its first four bytes", "PRI ", true, true},
		{"POST", "POST /predict HTTP/1.1\r\n", false, true},
		{"PUT differs at the second byte", "PU", false, true},
		{"GET at once", "G", false, true},
		{"P alone cannot tell", "P", false, false},
		{"PRI without its space cannot tell", "PRI", false, false},
		{"nothing cannot tell", "", false, false},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			h2, decided := isH2([]byte(test.in))
			assert.Equal(t, test.h2, h2)
			assert.Equal(t, test.decided, decided)
		})
	}
}

// A connection whose first read is too short to tell is read further and
// its bytes replayed: nothing is lost for the stack that gets it.
func TestSniff_ReplaysBytesItHadToRead(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		desc   string
		chunks []string
		h2     bool
	}{
		{"HTTP/1.1 in single bytes", []string{"P", "O", "ST / HTTP/1.1\r\n\r\n"}, false},
		{"the HTTP/2 preface in pieces", []string{"P", "RI * HTTP/2.0\r\n\r\nSM\r\n\r\n"}, true},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			client, server := net.Pipe() // not a socket: sniff must read
			defer client.Close()
			go func() {
				for _, c := range test.chunks {
					if _, err := client.Write([]byte(c)); err != nil {
						return
					}
				}
			}()
			c, h2, err := sniff(server)
			require.NoError(t, err)
			assert.Equal(t, test.h2, h2)
			want := strings.Join(test.chunks, "")
			got := make([]byte, len(want))
			_, err = io.ReadFull(c, got)
			require.NoError(t, err)
			assert.Equal(t, want, string(got))
			_ = c.Close()
		})
	}
}

// On a socket, an HTTP/1.1 connection is told apart by peeking: fasthttp
// gets the *net.TCPConn itself, so its path is the one it always was.
func TestSniff_HandsHTTP1SocketsOverUntouched(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer client.Close()
	server, err := ln.Accept()
	require.NoError(t, err)
	defer server.Close()
	_, err = client.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	require.NoError(t, err)
	c, h2, err := sniff(server)
	require.NoError(t, err)
	assert.False(t, h2)
	assert.Same(t, server, c, "the connection itself, not a wrapper")
	line, err := bufio.NewReader(c).ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "GET / HTTP/1.1\r\n", line, "peeking consumed nothing")
}

// One cleartext port answers HTTP/1.1 (fasthttp), HTTP/2 with prior
// knowledge from Go and from curl, and a request whose first bytes came
// one by one.
func TestListener_OneCleartextPortServesHTTP1AndH2C(t *testing.T) {
	t.Parallel()
	web := colorServer(t, "blue")
	gw := startTrafficGateway(t, testConfig(t, []string{hostPort(web)}, nil, ""), nil)

	for _, proto := range []string{"HTTP/1.1", "HTTP/2.0"} {
		var protos http.Protocols
		protos.SetHTTP1(proto == "HTTP/1.1")
		protos.SetUnencryptedHTTP2(proto == "HTTP/2.0")
		tr := &http.Transport{Protocols: &protos}
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Post("http://"+gw.Addr+"/predict", "application/json", strings.NewReader(`{}`))
		require.NoError(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
		assert.Equal(t, proto, resp.Proto)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, `{"backend":"blue"}`, string(body))
		assert.Equal(t, "blue", resp.Header.Get(HeaderColor))
		assert.Equal(t, "v1", resp.Header.Get(HeaderVersion))
	}

	out := curl(t, "--http2-prior-knowledge", "http://"+gw.Addr+"/predict", "-d", "{}")
	assert.Contains(t, out, "HTTP/2 200")
	assert.Contains(t, strings.ToLower(out), "x-switchyard-color: blue")

	c, err := net.Dial("tcp", gw.Addr)
	require.NoError(t, err)
	defer c.Close()
	for _, part := range []string{"P", "OST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"} {
		_, err := c.Write([]byte(part))
		require.NoError(t, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, `{"backend":"blue"}`, string(body))
}

// A request body over max_request_body_bytes is refused on the HTTP/2
// side too.
func TestH2_BodyOverTheLimitIsRefused(t *testing.T) {
	t.Parallel()
	web := colorServer(t, "blue")
	gw := startTrafficGateway(t, testConfig(t, []string{hostPort(web)}, nil, "proxy: {max_request_body_bytes: 8}\n"), nil)
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protos}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Post("http://"+gw.Addr+"/predict", "application/json", strings.NewReader(`{"inputs": [1, 2, 3]}`))
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	assert.Contains(t, string(body), "body_too_large")
}
