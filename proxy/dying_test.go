package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A backend killed between writing its headers and its body (gunicorn
// sends them in two writes) used to leave the client with EOF: the
// headers were already on their way. Small answers are now read whole
// first, so the client never sees half of one.
func TestDyingBackend_SmallAnswerCutMidBodyNeverReachesClientHalfSent(t *testing.T) {
	testCases := []struct {
		desc       string
		method     string
		extra      string
		wantStatus int
		wantLive   int64
	}{
		{desc: "GET goes to the live backend", method: http.MethodGet, wantStatus: http.StatusOK, wantLive: 1},
		{desc: "POST gets a clean 502: the backend may have run it", method: http.MethodPost, wantStatus: http.StatusBadGateway},
		{desc: "POST goes to the live backend with retry_non_idempotent", method: http.MethodPost,
			extra: "    retry_non_idempotent: true\n", wantStatus: http.StatusOK, wantLive: 1},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			var dying atomic.Int64
			half := rawBackend(t, func(c net.Conn) {
				if _, err := readRawRequest(bufio.NewReader(c)); err != nil {
					return
				}
				dying.Add(1)
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 40\r\n\r\n{\"outputs\":")
			})
			live, _, liveCalls := recordingServer(t)
			cfg := testConfig(t, []string{half, hostPort(live)}, []string{"10.0.0.2:5000"}, "")
			cfg.Pools.Blue.Balance = "round_robin"
			cfg.Pools.Blue.RetryNonIdempotent = strings.Contains(test.extra, "true")
			gw := startGateway(t, cfg)
			client := newClient(t)

			// Round robin: one of the first two requests lands on the dying
			// backend; judge that one.
			for i := 0; i < 2 && dying.Load() == 0; i++ {
				before := liveCalls.Load()
				req, err := http.NewRequest(test.method, gw.URL+"/predict", strings.NewReader(`{"inputs":[1]}`))
				require.NoError(t, err)
				resp, err := client.Do(req)
				require.NoError(t, err, "the client must get an answer, not a cut connection")
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				require.NoError(t, err, "the answer's body must be whole")
				if dying.Load() == 0 {
					continue
				}
				assert.Equal(t, test.wantStatus, resp.StatusCode, string(body))
				assert.Equal(t, test.wantLive, liveCalls.Load()-before)
				if test.wantStatus == http.StatusBadGateway {
					assert.Equal(t, "bad_gateway", errorCode(t, body))
				}
			}
			require.EqualValues(t, 1, dying.Load())
		})
	}
}

// A backend stopped gracefully closes its keep-alive connections. When
// that close crosses a request already written into one, the request got
// EOF before any answer; it used to be a 502 for a POST. A backend that
// now refuses connections cannot have run it, so it goes to another one.
func TestDyingBackend_StoppedBackendNeverCostsAPost(t *testing.T) {
	testCases := []struct {
		desc       string
		stop       bool // close the listener too, as a stopped process does
		wantStatus int
	}{
		{desc: "stopped backend: the POST is served by the other one", stop: true, wantStatus: http.StatusOK},
		{desc: "live backend that dropped the connection: the POST is not replayed", stop: false, wantStatus: http.StatusBadGateway},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			var (
				wg        sync.WaitGroup
				secondHit atomic.Int64
				once      sync.Once
			)
			closeLn := func() { once.Do(func() { _ = ln.Close() }) }
			t.Cleanup(func() { closeLn(); wg.Wait() })
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					wg.Add(1)
					go func() {
						defer wg.Done()
						defer c.Close()
						br := bufio.NewReader(c)
						if _, err := readRawRequest(br); err != nil {
							return
						}
						_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
						// The next request on this kept-alive connection
						// arrives as the server stops.
						if _, err := readRawRequest(br); err != nil {
							return
						}
						secondHit.Add(1)
						if test.stop {
							closeLn()
						}
					}()
				}
			}()
			live, _, liveCalls := recordingServer(t)
			cfg := testConfig(t, []string{ln.Addr().String(), hostPort(live)}, []string{"10.0.0.2:5000"}, "")
			cfg.Pools.Blue.Balance = "round_robin"
			gw := startGateway(t, cfg)
			client := newClient(t)
			post := func() (int, string) {
				resp, err := client.Post(gw.URL+"/predict", "application/json", strings.NewReader(`{"inputs":[1]}`))
				require.NoError(t, err)
				defer resp.Body.Close()
				body, err := io.ReadAll(resp.Body)
				require.NoError(t, err)
				return resp.StatusCode, string(body)
			}

			// Round robin alternates, starting with the second backend:
			// requests 2 and 4 go to the stopping one, 2 on a new
			// connection, 4 on the same one reused.
			for i := 0; i < 3; i++ {
				status, body := post()
				require.Equal(t, http.StatusOK, status, body)
			}
			liveBefore := liveCalls.Load()
			status, body := post()
			require.EqualValues(t, 1, secondHit.Load(), "the request did not reach the reused connection")
			assert.Equal(t, test.wantStatus, status, body)
			if test.wantStatus == http.StatusOK {
				assert.Equal(t, int64(1), liveCalls.Load()-liveBefore, "the live backend did not serve the retried POST")
			}
		})
	}
}
