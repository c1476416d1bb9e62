package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
)

// Answers of the two backends of a fault test when they behave.
const (
	healthyBody = `{"backend":"healthy"}`
	faultyBody  = `{"backend":"faulty"}`
	// strayAnswer is a complete answer nobody asked for; a client that
	// receives "stray" got bytes that were not its answer.
	strayAnswer = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray"
)

// afterFault is what a faulty backend does once it wrote its fault.
type afterFault int

const (
	keepServing afterFault = iota // answer later requests on the connection
	closeConn                     // close the connection
	hang                          // read on, never answer, until closed
)

// faultyBackend is a raw backend whose first request gets a broken answer
// and every later one a clean faultyBody.
type faultyBackend struct {
	addr  string
	calls atomic.Int64
	// reused is set if a request was read on the connection that carried
	// the fault, after it.
	reused atomic.Bool
}

func newFaultyBackend(t *testing.T, answer string, after afterFault) *faultyBackend {
	t.Helper()
	fb := &faultyBackend{}
	clean := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(faultyBody)) + "\r\n\r\n" + faultyBody
	fb.addr = rawBackend(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		faulted := false
		for {
			if _, err := readRawRequest(br); err != nil {
				return
			}
			if faulted {
				fb.reused.Store(true)
			}
			if fb.calls.Add(1) > 1 {
				if _, err := io.WriteString(c, clean); err != nil {
					return
				}
				continue
			}
			faulted = true
			if _, err := io.WriteString(c, answer); err != nil {
				return
			}
			switch after {
			case closeConn:
				return
			case hang:
				_, _ = io.Copy(io.Discard, br) // until the gateway closes
				return
			}
		}
	})
	return fb
}

// outcome is what the client of the faulty exchange must get.
type outcome int

const (
	// refused: nothing usable came back. A GET is retried on the healthy
	// backend; a POST, which may have run, gets 502 bad_gateway.
	refused outcome = iota
	// served: the answer is usable as it is; both methods get wantBody.
	served
	// servedOrRefused: either is correct (RFC 9112 allows both).
	servedOrRefused
	// timedOut: 504 upstream_timeout for both methods, never retried.
	timedOut
	// cutOff: the headers went out before the fault; the client gets a
	// 200 whose body ends in an error, never a body that looks whole.
	cutOff
)

// Issue 11: each misbehaving backend sits in a pool beside a healthy one.
// The client of the broken exchange gets a clean answer, the gateway keeps
// serving, the broken connection is not reused, and no bytes of one
// answer reach another client.
func TestProxy_UpstreamFaultsGetCleanAnswers(t *testing.T) {
	testCases := []struct {
		desc   string
		answer string // what the faulty backend writes for the first request
		after  afterFault
		extra  string // config appended to the test config
		want   outcome
		// wantBody is the body the client gets when the answer is served.
		wantBody string
		// mayReuse: the connection carried a valid exchange and may be
		// kept; otherwise it must never carry another request.
		mayReuse bool
	}{
		{
			desc:   "malformed status line",
			answer: "HTTP/1.1 two-hundred OK\r\nContent-Length: 2\r\n\r\nok",
			want:   refused,
		},
		{
			desc:   "status line that is not HTTP",
			answer: "SSH-2.0-OpenSSH_9.6\r\n\r\n",
			after:  closeConn,
			want:   refused,
		},
		{
			desc: "Content-Length and Transfer-Encoding",
			// Framed by Content-Length, the smuggled answer would be the
			// body's tail; as chunked it is bytes past the answer.
			answer:   "HTTP/1.1 200 OK\r\nContent-Length: 16\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
			want:     servedOrRefused,
			wantBody: "hello",
		},
		{
			desc:     "Transfer-Encoding before Content-Length",
			answer:   "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
			want:     servedOrRefused,
			wantBody: "hello",
		},
		{
			desc:   "two different Content-Length lines",
			answer: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\nhello",
			want:   refused,
		},
		{
			desc:   "Content-Length listing two values",
			answer: "HTTP/1.1 200 OK\r\nContent-Length: 2, 5\r\n\r\nhello",
			want:   refused,
		},
		{
			desc: "100 Continue and 103 Early Hints before the answer",
			answer: "HTTP/1.1 100 Continue\r\n\r\n" +
				"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n" +
				"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal",
			want:     served,
			wantBody: "final",
			mayReuse: true,
		},
		{
			desc:   "response headers over 8 KiB",
			answer: "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", 9<<10) + "\r\nContent-Length: 2\r\n\r\nok",
			want:   refused,
		},
		{
			desc:     "a whole answer after a complete body",
			answer:   "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + strayAnswer,
			want:     served,
			wantBody: "ok",
		},
		{
			desc:     "a whole answer after a complete chunked body",
			answer:   "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n" + strayAnswer,
			want:     served,
			wantBody: "ok",
		},
		{
			desc:     "a whole answer after a complete streamed body",
			answer:   "HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n" + strings.Repeat("x", 10000) + strayAnswer,
			want:     served,
			wantBody: strings.Repeat("x", 10000),
		},
		{
			desc:  "connection closed after the request, no answer",
			after: closeConn,
			want:  refused,
		},
		{
			desc:  "no answer at all",
			after: hang,
			extra: "proxy: {timeouts: {response_header: 1s}}\n",
			want:  timedOut,
		},
		{
			desc:   "100 Continue, then nothing",
			answer: "HTTP/1.1 100 Continue\r\n\r\n",
			after:  hang,
			extra:  "proxy: {timeouts: {response_header: 1s}}\n",
			want:   timedOut,
		},
		{
			desc:   "status line, then nothing",
			answer: "HTTP/1.1 200 OK\r\n",
			after:  hang,
			extra:  "proxy: {timeouts: {response_header: 1s}}\n",
			want:   timedOut,
		},
		{
			// Nothing was sent to the client yet: the gateway can still
			// refuse the answer.
			desc:   "bad size of the first chunk, sent with the headers",
			answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
			want:   refused,
		},
		{
			desc:   "bad chunk size after a good chunk",
			answer: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n",
			want:   cutOff,
		},
	}
	for _, test := range testCases {
		for _, method := range []string{http.MethodGet, http.MethodPost} {
			t.Run(test.desc+"/"+method, func(t *testing.T) {
				t.Parallel()
				healthy := colorServer(t, "healthy")
				faulty := newFaultyBackend(t, test.answer, test.after)
				cfg := testConfig(t, []string{hostPort(healthy), faulty.addr}, nil, test.extra)
				// Round robin starts at the second backend: the first
				// request meets the fault, a retry goes to the healthy one.
				cfg.Pools.Blue.Balance = config.BalanceRoundRobin
				gw := startGateway(t, cfg)
				client := newClient(t)
				do := func() (*http.Response, string, error) {
					req, err := http.NewRequest(method, gw.URL+"/predict", strings.NewReader(`{"inputs":[1]}`))
					require.NoError(t, err)
					resp, err := client.Do(req)
					require.NoError(t, err)
					body, err := io.ReadAll(resp.Body)
					resp.Body.Close()
					return resp, string(body), err
				}

				resp, body, err := do()
				require.EqualValues(t, 1, faulty.calls.Load(), "the first request did not meet the fault")
				want := test.want
				if want == servedOrRefused {
					want = served
					if resp.StatusCode != http.StatusOK || body != test.wantBody {
						want = refused
					}
				}
				switch want {
				case refused:
					require.NoError(t, err)
					if method == http.MethodGet {
						assert.Equal(t, http.StatusOK, resp.StatusCode, body)
						assert.Equal(t, healthyBody, body, "a GET that got nothing usable goes to the healthy backend")
					} else {
						assert.Equal(t, http.StatusBadGateway, resp.StatusCode, body)
						assert.Equal(t, "bad_gateway", errorCode(t, []byte(body)))
					}
				case served:
					require.NoError(t, err)
					assert.Equal(t, http.StatusOK, resp.StatusCode, body)
					assert.Equal(t, test.wantBody, body)
					assert.Empty(t, resp.Header.Get("Link"), "an interim answer's header reached the client")
				case timedOut:
					require.NoError(t, err)
					assert.Equal(t, http.StatusGatewayTimeout, resp.StatusCode, body)
					assert.Equal(t, "upstream_timeout", errorCode(t, []byte(body)))
				case cutOff:
					assert.Equal(t, http.StatusOK, resp.StatusCode)
					assert.Error(t, err, "a broken body reached the client as a whole one: %q", body)
				}
				// A request is sent once, and again only when it is a GET
				// that got nothing usable.
				retried := want == refused && method == http.MethodGet
				hb, ok := gw.Router.Registry().Lookup(hostPort(healthy))
				require.True(t, ok)
				fb, ok := gw.Router.Registry().Lookup(faulty.addr)
				require.True(t, ok)
				assert.EqualValues(t, 1, fb.Requests())
				if retried {
					assert.EqualValues(t, 1, hb.Requests())
				} else {
					assert.Zero(t, hb.Requests(), "the request was sent again")
				}

				// The gateway keeps serving both backends, and every client
				// gets its own answer, whole.
				for range 4 {
					resp, body, err := do()
					require.NoError(t, err)
					assert.Equal(t, http.StatusOK, resp.StatusCode, body)
					assert.Contains(t, []string{healthyBody, faultyBody}, body, "a client got bytes that were not its answer")
				}
				assert.Greater(t, faulty.calls.Load(), int64(1), "no later request reached the faulty backend")
				if !test.mayReuse {
					assert.False(t, faulty.reused.Load(), "the connection that carried the fault was used again")
				}
				assert.Zero(t, gw.Router.Snapshot().Pool("blue").Inflight())
			})
		}
	}
}
