package health

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
)

// countingServer is a fake model server that counts the connections it
// accepted and announces each one it closed.
type countingServer struct {
	*fake
	dials  atomic.Int32
	closed chan struct{}
}

// startCountingServer serves h on a loopback port until the test ends;
// edit may change the server before it starts.
func startCountingServer(t *testing.T, h http.HandlerFunc, edit func(*http.Server)) *countingServer {
	t.Helper()
	s := &countingServer{fake: &fake{hits: map[string]int{}}, closed: make(chan struct{}, 100)}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.hits[r.URL.Path]++
		s.mu.Unlock()
		h(w, r)
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			s.dials.Add(1)
		case http.StateClosed:
			select {
			case s.closed <- struct{}{}:
			default:
			}
		}
	}
	if edit != nil {
		edit(s.Config)
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// keptEndpoint returns a cleartext endpoint with a kept connection,
// closed when the test ends.
func keptEndpoint(t *testing.T, addr string) endpoint {
	t.Helper()
	ep := newEndpoint(context.Background(), addr, nil)
	t.Cleanup(ep.close)
	return ep
}

// getWithin GETs path on ep within a few seconds.
func getWithin(t *testing.T, ep endpoint, path string) (int, []byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return (&httpGetter{}).get(ctx, ep, path)
}

func TestChecker_ProbesOfABackendShareOneConnection(t *testing.T) {
	t.Parallel()
	s := startCountingServer(t, func(w http.ResponseWriter, r *http.Request) { reply(w, 200, `{"status":"ok"}`) }, nil)
	c := newChecker(t, nil, nil)
	b := newRegistry(t).Get(s.addr())
	c.Sync([]Target{{Backend: b, Color: config.Blue, Health: testHealth(config.ProbeJSON, nil)}})

	eventually(t, func() bool { return s.count("/health") >= 10 }, "fewer than 10 probes")

	assert.Equal(t, int32(1), s.dials.Load(), "connections dialed for %d probes", s.count("/health"))
	assert.True(t, b.Ready())
}

// Regression test for probes that would fail at every interval against a
// server whose keep-alive timeout is shorter than the probe interval
// (gunicorn keeps 2s, the default interval): a GET that meets a kept
// connection the server closed is sent again on a new one.
func TestProbeConn_ServerThatClosedTheKeptConnectionIsAskedOnANewOne(t *testing.T) {
	t.Parallel()
	s := startCountingServer(t, func(w http.ResponseWriter, r *http.Request) { reply(w, 200, `{"status":"ok"}`) },
		func(srv *http.Server) { srv.IdleTimeout = time.Millisecond })
	ep := keptEndpoint(t, s.addr())

	for i := range 5 {
		status, _, err := getWithin(t, ep, "/health")
		require.NoError(t, err, "GET %d", i)
		assert.Equal(t, 200, status)
		select {
		case <-s.closed: // the server closed the kept connection
		case <-time.After(waitFor):
			require.FailNow(t, "the server kept the connection")
		}
	}
	assert.Equal(t, int32(5), s.dials.Load())
}

func TestProbeConn_AnswerThatClosesIsReadAndTheNextGETDials(t *testing.T) {
	t.Parallel()
	s := startCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		reply(w, 200, `{"status":"ok"}`)
	}, nil)
	ep := keptEndpoint(t, s.addr())

	for range 3 {
		status, body, err := getWithin(t, ep, "/health")
		require.NoError(t, err)
		assert.Equal(t, 200, status)
		assert.JSONEq(t, `{"status":"ok"}`, string(body))
	}
	assert.Equal(t, int32(3), s.dials.Load())
}

func TestProbeConn_SendsTheRequestTargetAndHostAsNetHTTP(t *testing.T) {
	t.Parallel()
	type seen struct{ target, host, agent string }
	got := make(chan seen, 1)
	s := startCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.RequestURI, r.Host, r.UserAgent()}
		w.WriteHeader(http.StatusNoContent)
	}, nil)
	ep := keptEndpoint(t, s.addr())

	status, _, err := getWithin(t, ep, "/v2/models/my%20model/ready?verbose=1")

	require.NoError(t, err)
	assert.Equal(t, http.StatusNoContent, status)
	assert.Equal(t, seen{"/v2/models/my%20model/ready?verbose=1", s.addr(), "switchyard-probe"}, <-got)
}

func TestProbeConn_PathThatIsNoURLIsAnErrorWithoutADial(t *testing.T) {
	t.Parallel()
	s := startCountingServer(t, func(w http.ResponseWriter, r *http.Request) {}, nil)
	ep := keptEndpoint(t, s.addr())

	_, _, err := getWithin(t, ep, "/health\r\nX-Injected: 1")

	require.Error(t, err)
	assert.Contains(t, err.Error(), "probe request for "+s.addr())
	assert.Zero(t, s.dials.Load())
}

func TestProbeConn_EndOfItsGoroutineInterruptsAProbeInFlight(t *testing.T) {
	t.Parallel()
	asked := make(chan struct{}, 1)
	release := make(chan struct{})
	s := startCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		asked <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}, nil)
	t.Cleanup(func() { close(release) }) // runs before the server closes
	life, end := context.WithCancel(context.Background())
	ep := newEndpoint(life, s.addr(), nil)
	t.Cleanup(ep.close)

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(life, time.Hour)
		defer cancel()
		_, _, err := ep.conn.get(ctx, "/health")
		done <- err
	}()
	<-asked
	end()

	select {
	case err := <-done:
		require.Error(t, err)
	case <-time.After(waitFor):
		require.FailNow(t, "the probe outlived its goroutine's context")
	}
}

func TestChecker_CloseDoesNotWaitForAHangingProbesTimeout(t *testing.T) {
	t.Parallel()
	asked := make(chan struct{}, 1)
	release := make(chan struct{})
	s := startCountingServer(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case asked <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}, nil)
	t.Cleanup(func() { close(release) })
	c := New(testLogger(t), nil, func() config.Color { return config.Blue })
	c.Sync([]Target{{Backend: newRegistry(t).Get(s.addr()), Color: config.Blue,
		Health: testHealth(config.ProbeHTTP, func(h *config.Health) { h.Timeout = config.Duration(time.Hour) })}})
	<-asked

	start := time.Now()
	c.Close()

	assert.Less(t, time.Since(start), waitFor, "Close waited for the probe's timeout")
}

func TestRespReader_ReadsAnswersAsNetHTTPWould(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("x", maxProbeBody)
	testCases := []struct {
		desc     string
		answer   string
		status   int
		body     string
		keep     bool
		wantErr  string
		noAnswer bool
		// whole is a case only for reading the whole answer at once.
		whole bool
	}{
		{desc: "content-length", answer: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", status: 200, body: "ok", keep: true},
		{desc: "bare line ends", answer: "HTTP/1.1 503 Busy\nContent-Length: 4\n\nbusy", status: 503, body: "busy", keep: true},
		{desc: "no reason phrase", answer: "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", status: 200, keep: true},
		{desc: "chunks, extensions and trailers",
			answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;a=b\r\nok\r\n1\r\n!\r\n0\r\nX-Trailer: 1\r\n\r\n",
			status: 200, body: "ok!", keep: true},
		{desc: "chunks win over a length, and close", answer: "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
			status: 200, body: "ok"},
		{desc: "HTTP/1.0 body to the close", answer: "HTTP/1.0 200 OK\r\n\r\nto the end", status: 200, body: "to the end"},
		{desc: "HTTP/1.0 keep-alive", answer: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
			status: 200, body: "ok", keep: true},
		{desc: "Connection: close", answer: "HTTP/1.1 200 OK\r\nConnection: Upgrade, close\r\nContent-Length: 2\r\n\r\nok",
			status: 200, body: "ok"},
		{desc: "informational answers first", answer: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
			status: 200, body: "ok", keep: true},
		{desc: "204 has no body", answer: "HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", status: 204, keep: true},
		{desc: "a second answer unasked for, read with the first", answer: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n",
			status: 200, body: "ok", whole: true},
		{desc: "a body past the limit is cut", answer: "HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(big)+3) + "\r\n\r\n" + big + "yyy",
			status: 200, body: big},
		{desc: "chunks past the limit are cut", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
			strings.ToUpper(strconv.FormatInt(int64(len(big)-1), 16)) + "\r\n" + big[1:] + "\r\n3\r\nyyy\r\n0\r\n\r\n", status: 200, body: big[1:] + "y"},
		{desc: "nothing", answer: "", noAnswer: true},
		{desc: "not HTTP", answer: "SSH-2.0-OpenSSH_9.6\r\n", wantErr: `malformed HTTP status line "SSH-2.0-OpenSSH_9.6"`},
		{desc: "conflicting lengths", answer: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nok", wantErr: "conflicting Content-Length"},
		{desc: "bad length", answer: "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", wantErr: `bad Content-Length "-1"`},
		{desc: "gzip coding", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", wantErr: "unsupported Transfer-Encoding"},
		{desc: "header line without colon", answer: "HTTP/1.1 200 OK\r\nbroken\r\n\r\n", wantErr: "malformed HTTP header line"},
		{desc: "head too large", answer: "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", maxProbeHead) + "\r\n\r\n", wantErr: "response head too large"},
		{desc: "body cut short", answer: "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nok", wantErr: "reading body: unexpected EOF"},
		{desc: "head cut short", answer: "HTTP/1.1 200 OK\r\nContent-Le", wantErr: "unexpected EOF"},
		{desc: "bad chunk", answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", wantErr: `malformed chunk size "zz"`},
		{desc: "switching protocols", answer: "HTTP/1.1 101 Switching Protocols\r\n\r\n", wantErr: "101 Switching Protocols"},
	}
	for _, test := range testCases {
		for _, chunk := range []int{0, 1, 7} {
			if test.whole && chunk != 0 {
				continue
			}
			rr := respReader{src: &chunkReader{b: []byte(test.answer), n: chunk}, buf: make([]byte, 16)}

			status, body, keep, err := rr.readResponse()

			switch {
			case test.noAnswer:
				assert.ErrorIs(t, err, errNoAnswer, test.desc)
			case test.wantErr != "":
				if assert.Error(t, err, test.desc) {
					assert.Contains(t, err.Error(), test.wantErr, test.desc)
				}
			default:
				if assert.NoError(t, err, "%s, read %d bytes at a time", test.desc, chunk) {
					assert.Equal(t, test.status, status, test.desc)
					assert.True(t, bytes.Equal([]byte(test.body), body), "%s: body of %d bytes, want %d", test.desc, len(body), len(test.body))
					assert.Equal(t, test.keep, keep, "%s: keep", test.desc)
				}
			}
		}
	}
}

func TestRespReader_ReadsAnswerAfterAnswerFromOneConnection(t *testing.T) {
	t.Parallel()
	one := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	pr, pw := io.Pipe()
	rr := respReader{src: pr}
	go func() {
		for range 3 {
			_, _ = io.WriteString(pw, one)
		}
		_ = pw.Close()
	}()

	for i := range 3 {
		status, body, keep, err := rr.readResponse()
		require.NoError(t, err, "answer %d", i)
		assert.Equal(t, 200, status)
		assert.Equal(t, "ok", string(body))
		assert.True(t, keep)
	}
	_, _, _, err := rr.readResponse()
	assert.ErrorIs(t, err, errNoAnswer)
}
