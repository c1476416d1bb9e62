package warmup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestWarm_PassesAfterConsecutiveGoodAnswers(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		desc     string
		requests int
	}{
		{desc: "one request", requests: 1},
		{desc: "default three", requests: 3},
		{desc: "five", requests: 5},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			m := healthyModel(t)
			spec := testSpec(func(s *Spec) {
				s.Requests = test.requests
				s.ExpectJSONField = "model_version"
				s.ExpectJSONValue = `"v2.7"`
			})
			var progress progressLog

			res, err := newWarmer(t).Warm(context.Background(), Backend{Addr: m.addr()}, spec, progress.record)

			require.NoError(t, err)
			assert.Equal(t, test.requests, res.Requests)
			assert.Equal(t, test.requests, int(m.calls.Load()))
			require.Len(t, res.Latencies, test.requests)
			assert.Equal(t, res.Latencies[0], res.Cold)
			assert.Equal(t, res.Latencies[test.requests-1], res.Warm)
			for _, lat := range res.Latencies {
				assert.Positive(t, lat)
			}
			var want [][2]int
			for i := 1; i <= test.requests; i++ {
				want = append(want, [2]int{i, test.requests})
			}
			assert.Equal(t, want, progress.get())
		})
	}
}

// Not parallel: fast answers must stay under the 50ms target, so it runs
// alone.
func TestWarm_SlowColdStartWarmsOnlyAfterFastStreak(t *testing.T) {
	m := startModel(t, func(call int, w http.ResponseWriter, r *http.Request) {
		if call <= 3 {
			hold(r, 150*time.Millisecond) // kernels loading
		}
		answerVersion(w, "v2.7")
	})
	spec := testSpec(func(s *Spec) { s.LatencyTarget = 50 * time.Millisecond })
	var progress progressLog

	res, err := newWarmer(t).Warm(context.Background(), Backend{Addr: m.addr()}, spec, progress.record)

	require.NoError(t, err)
	assert.Equal(t, 6, res.Requests)
	require.Len(t, res.Latencies, 6)
	assert.GreaterOrEqual(t, res.Cold, 150*time.Millisecond)
	assert.Less(t, res.Warm, 50*time.Millisecond)
	assert.Equal(t, [][2]int{{1, 3}, {2, 3}, {3, 3}}, progress.get(), "slow answers are not passes")
}

func TestWarm_FailingAnswerResetsStreak(t *testing.T) {
	t.Parallel()
	m := startModel(t, func(call int, w http.ResponseWriter, _ *http.Request) {
		if call == 3 {
			answerVersion(w, "v2.6") // a worker with stale weights
			return
		}
		answerVersion(w, "v2.7")
	})
	spec := testSpec(func(s *Spec) {
		s.ExpectJSONField = "model_version"
		s.ExpectJSONValue = `"v2.7"`
	})
	var progress progressLog

	res, err := newWarmer(t).Warm(context.Background(), Backend{Addr: m.addr()}, spec, progress.record)

	require.NoError(t, err)
	assert.Equal(t, 6, res.Requests)
	assert.Equal(t, [][2]int{{1, 3}, {2, 3}, {1, 3}, {2, 3}, {3, 3}}, progress.get())
}

func TestWarm_GivesUpAfterMaxRequestsOnWrongAnswer(t *testing.T) {
	t.Parallel()
	big := `{"model_version": "v2.7", "pad": "` + strings.Repeat("x", 2<<20) + `"}`
	testCases := []struct {
		desc      string
		handle    func(w http.ResponseWriter)
		edit      func(*Spec)
		wantLast  string // what follows "last " in the error
		wantCalls int    // 0: one per request
	}{
		{
			desc:     "wrong model version names field and both values",
			handle:   func(w http.ResponseWriter) { answerVersion(w, "v2.6") },
			edit:     func(s *Spec) { s.ExpectJSONField, s.ExpectJSONValue = "model_version", `"v2.7"` },
			wantLast: `answer 200 but field "model_version" is "v2.6", want "v2.7"`,
		},
		{
			desc:     "wrong number",
			handle:   func(w http.ResponseWriter) { _, _ = io.WriteString(w, `{"outputs": 3.5}`) },
			edit:     func(s *Spec) { s.ExpectJSONField, s.ExpectJSONValue = "outputs", `4` },
			wantLast: `answer 200 but field "outputs" is 3.5, want 4`,
		},
		{
			desc:     "missing field",
			handle:   func(w http.ResponseWriter) { _, _ = io.WriteString(w, `{"outputs": [1]}`) },
			edit:     func(s *Spec) { s.ExpectJSONField = "model_version" },
			wantLast: `answer 200 but field "model_version" is missing (body starts "{\"outputs\": [1]}")`,
		},
		{
			desc:     "garbage body with a JSON expectation",
			handle:   func(w http.ResponseWriter) { _, _ = io.WriteString(w, "<html>oops</html>") },
			edit:     func(s *Spec) { s.ExpectJSONField = "model_version" },
			wantLast: `answer 200 but body is not JSON (starts "<html>oops</html>"), want an object with field "model_version"`,
		},
		{
			desc:     "JSON array instead of object",
			handle:   func(w http.ResponseWriter) { _, _ = io.WriteString(w, `[1, 2]`) },
			edit:     func(s *Spec) { s.ExpectJSONField = "model_version" },
			wantLast: `answer 200 but body is JSON "[1, 2]", not an object with field "model_version"`,
		},
		{
			desc:     "body regexp mismatch",
			handle:   func(w http.ResponseWriter) { _, _ = io.WriteString(w, `{"error": "model not loaded"}`) },
			edit:     func(s *Spec) { s.ExpectBody = regexp.MustCompile(`"outputs":\s*\[`) },
			wantLast: `answer 200 but body does not match expect_body "\"outputs\":\\s*\\[" (body starts "{\"error\": \"model not loaded\"}")`,
		},
		{
			desc:     "wrong status",
			handle:   func(w http.ResponseWriter) { http.Error(w, "CUDA out of memory", http.StatusInternalServerError) },
			wantLast: `answer 500, want status 200 (body starts "CUDA out of memory\n")`,
		},
		{
			desc: "redirect is an answer, not followed",
			handle: func(w http.ResponseWriter) {
				w.Header().Set("Location", "/elsewhere")
				w.WriteHeader(http.StatusFound)
			},
			wantLast: `answer 302, want status 200 (body starts "")`,
		},
		{
			desc:      "503 that outlasts the retries",
			handle:    func(w http.ResponseWriter) { http.Error(w, "loading", http.StatusServiceUnavailable) },
			wantLast:  `answer 503, want status 200 (body starts "loading\n")`,
			wantCalls: 3 * (retryMax + 1),
		},
		{
			desc:     "answer too large to check",
			handle:   func(w http.ResponseWriter) { _, _ = io.WriteString(w, big) },
			edit:     func(s *Spec) { s.ExpectJSONField = "model_version" },
			wantLast: `answer 200 but body is over 1048576 bytes, too large to check; use a smaller warmup input`,
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			m := startModel(t, func(_ int, w http.ResponseWriter, _ *http.Request) { test.handle(w) })
			spec := testSpec(func(s *Spec) {
				s.Requests, s.MaxRequests = 2, 3
				if test.edit != nil {
					test.edit(s)
				}
			})
			var progress progressLog

			res, err := newWarmer(t).Warm(context.Background(), Backend{Addr: m.addr()}, spec, progress.record)

			require.EqualError(t, err, fmt.Sprintf("warmup: %s: gave up after 3 requests: last %s", m.addr(), test.wantLast))
			require.ErrorIs(t, err, ErrGaveUp)
			require.ErrorIs(t, err, ErrWrongAnswer)
			assert.Equal(t, 3, res.Requests)
			assert.Len(t, res.Latencies, 3)
			assert.Empty(t, progress.get())
			wantCalls := test.wantCalls
			if wantCalls == 0 {
				wantCalls = 3
			}
			assert.Equal(t, wantCalls, int(m.calls.Load()))
		})
	}
}

func TestWarm_ConnectionRefusedGivesUpWithoutAnswers(t *testing.T) {
	t.Parallel()
	addr := closedAddr(t)
	spec := testSpec(func(s *Spec) { s.Requests, s.MaxRequests = 1, 2 })

	res, err := newWarmer(t).Warm(context.Background(), Backend{Addr: addr}, spec, nil)

	require.ErrorIs(t, err, ErrGaveUp)
	require.NotErrorIs(t, err, ErrWrongAnswer)
	assert.Contains(t, err.Error(), fmt.Sprintf("warmup: %s: gave up after 2 requests: last request failed after 3 attempt(s): ", addr))
	assert.Contains(t, err.Error(), "connection refused")
	assert.Equal(t, 2, res.Requests)
	assert.Empty(t, res.Latencies)
}

func TestWarm_RetriesTransientFailures(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		desc  string
		first func(w http.ResponseWriter)
	}{
		{desc: "503", first: func(w http.ResponseWriter) { http.Error(w, "loading", http.StatusServiceUnavailable) }},
		{desc: "502", first: func(w http.ResponseWriter) { http.Error(w, "bad gateway", http.StatusBadGateway) }},
		{desc: "504", first: func(w http.ResponseWriter) { http.Error(w, "timeout", http.StatusGatewayTimeout) }},
		{desc: "connection dropped", first: func(w http.ResponseWriter) {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = conn.Close()
			}
		}},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			m := startModel(t, func(call int, w http.ResponseWriter, _ *http.Request) {
				if call == 1 {
					test.first(w)
					return
				}
				answerVersion(w, "v2.7")
			})
			spec := testSpec(func(s *Spec) { s.Requests = 1 })

			res, err := newWarmer(t).Warm(context.Background(), Backend{Addr: m.addr()}, spec, nil)

			require.NoError(t, err)
			assert.Equal(t, 1, res.Requests, "a retry is part of one request")
			assert.Equal(t, 2, int(m.calls.Load()))
		})
	}
}

// Not parallel: it compares latencies, so it runs alone.
func TestWarm_LatencyExcludesRetriedAttempt(t *testing.T) {
	const slow = 300 * time.Millisecond
	m := startModel(t, func(call int, w http.ResponseWriter, r *http.Request) {
		if call == 1 {
			hold(r, slow)
			http.Error(w, "loading", http.StatusServiceUnavailable)
			return
		}
		answerVersion(w, "v2.7")
	})
	spec := testSpec(func(s *Spec) { s.Requests = 1 })

	res, err := newWarmer(t).Warm(context.Background(), Backend{Addr: m.addr()}, spec, nil)

	require.NoError(t, err)
	assert.Equal(t, 2, int(m.calls.Load()))
	assert.Less(t, res.Cold, slow, "the latency is the answering attempt's, without the 503 and the backoff")
}

func TestWarm_DoesNotRetryOtherFailures(t *testing.T) {
	t.Parallel()
	m := startModel(t, func(call int, w http.ResponseWriter, _ *http.Request) {
		if call == 1 {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		answerVersion(w, "v2.7")
	})
	spec := testSpec(func(s *Spec) { s.Requests, s.MaxRequests = 1, 2 })

	res, err := newWarmer(t).Warm(context.Background(), Backend{Addr: m.addr()}, spec, nil)

	require.NoError(t, err)
	assert.Equal(t, 2, res.Requests, "the 500 was a failed request of its own")
	assert.Equal(t, 2, int(m.calls.Load()))
}

func TestWarm_TimedOutRequestCountsAsFailure(t *testing.T) {
	t.Parallel()
	m := startModel(t, func(call int, w http.ResponseWriter, r *http.Request) {
		if call == 1 {
			hang(r) // until the client gives up
			return
		}
		answerVersion(w, "v2.7")
	})
	spec := testSpec(func(s *Spec) { s.Requests, s.Timeout = 2, 250*time.Millisecond })

	res, err := newWarmer(t).Warm(context.Background(), Backend{Addr: m.addr()}, spec, nil)

	require.NoError(t, err)
	assert.Equal(t, 3, res.Requests)
	assert.Len(t, res.Latencies, 2, "the timed-out request has no answer")
	assert.Equal(t, 3, int(m.calls.Load()), "a timeout is not retried")
}

func TestWarm_StopsPromptlyWhenCancelled(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{}, 1)
	m := startModel(t, func(_ int, _ http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		hang(r) // a GPU that never answers
	})
	w := newWarmer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type outcome struct {
		res Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := w.Warm(ctx, Backend{Addr: m.addr()}, testSpec(nil), nil)
		done <- outcome{res, err}
	}()

	<-entered
	cancel()

	select {
	case got := <-done:
		require.ErrorIs(t, got.err, context.Canceled)
		require.NotErrorIs(t, got.err, ErrGaveUp)
		assert.Equal(t, fmt.Sprintf("warmup: %s: stopped after 0 requests: context canceled", m.addr()), got.err.Error())
		assert.Equal(t, 0, got.res.Requests)
	case <-time.After(2 * time.Second):
		t.Fatal("Warm did not return within 2s of cancellation")
	}
}

func TestWarm_CancelledBeforeStartSendsNothing(t *testing.T) {
	t.Parallel()
	m := healthyModel(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	res, err := newWarmer(t).Warm(ctx, Backend{Addr: m.addr()}, testSpec(nil), nil)

	require.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 0, res.Requests)
	assert.Equal(t, 0, int(m.calls.Load()))
}

func TestWarm_SendsCompiledRequest(t *testing.T) {
	t.Parallel()
	type seen struct {
		method, path, contentType, apiKey, userAgent, host, body string
		contentLength                                            int64
		chunked                                                  bool
	}
	testCases := []struct {
		desc string
		cfg  config.Warmup
		want seen
	}{
		{
			desc: "JSON body gets a content type",
			cfg:  config.Warmup{Path: "/predict", Body: `{"inputs": [[1, 2]]}`, Headers: map[string]string{"X-Api-Key": "k1"}},
			want: seen{method: "POST", path: "/predict", contentType: "application/json", apiKey: "k1", userAgent: "switchyard-warmup", body: `{"inputs": [[1, 2]]}`, contentLength: 20},
		},
		{
			desc: "no body is sent without chunking",
			cfg:  config.Warmup{Method: "GET", Path: "/v1/models", Headers: map[string]string{"Host": "model.internal", "User-Agent": "probe/1"}},
			want: seen{method: "GET", path: "/v1/models", userAgent: "probe/1", host: "model.internal"},
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			got := make(chan seen, 1)
			m := startModel(t, func(_ int, w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				s := seen{
					method: r.Method, path: r.URL.Path, contentType: r.Header.Get("Content-Type"),
					apiKey: r.Header.Get("X-Api-Key"), userAgent: r.UserAgent(), body: string(b),
					contentLength: r.ContentLength, chunked: len(r.TransferEncoding) > 0,
				}
				if !strings.HasPrefix(r.Host, "127.0.0.1:") {
					s.host = r.Host // only an override is of interest
				}
				got <- s
				answerVersion(w, "v2.7")
			})
			spec, err := Compile(&test.cfg)
			require.NoError(t, err)
			spec.Requests = 1

			_, err = newWarmer(t).Warm(context.Background(), Backend{Addr: m.addr()}, spec, nil)

			require.NoError(t, err)
			assert.Equal(t, test.want, <-got)
		})
	}
}

func TestWarm_LargeAnswerWithoutBodyChecksPasses(t *testing.T) {
	t.Parallel()
	m := startModel(t, func(_ int, w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, strings.Repeat("x", 3<<20))
	})
	spec := testSpec(func(s *Spec) { s.Requests = 1 })

	_, err := newWarmer(t).Warm(context.Background(), Backend{Addr: m.addr()}, spec, nil)

	require.NoError(t, err)
}

func TestWarm_RejectsUnusableSpecWithoutSending(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		desc    string
		spec    *Spec
		wantErr string
	}{
		{desc: "nil spec", spec: nil, wantErr: "warmup: no spec (warmup is off)"},
		{desc: "zero requests", spec: testSpec(func(s *Spec) { s.Requests = 0 }), wantErr: "warmup: requests must be at least 1, got 0"},
		{desc: "max below requests", spec: testSpec(func(s *Spec) { s.MaxRequests = 2 }), wantErr: "warmup: max_requests 2 is below requests 3; raise max_requests"},
		{desc: "relative path", spec: testSpec(func(s *Spec) { s.Path = "predict" }), wantErr: `warmup: path "predict" must start with /`},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			m := healthyModel(t)

			_, err := newWarmer(t).Warm(context.Background(), Backend{Addr: m.addr()}, test.spec, nil)

			require.ErrorContains(t, err, test.wantErr)
			assert.Equal(t, 0, int(m.calls.Load()))
		})
	}
}

func TestWarm_OneWarmerServesConcurrentBackends(t *testing.T) {
	t.Parallel()
	w := newWarmer(t)
	spec := testSpec(func(s *Spec) { s.ExpectJSONField, s.ExpectJSONValue = "model_version", `"v2.7"` })
	models := []*model{healthyModel(t), healthyModel(t), healthyModel(t), healthyModel(t)}
	errs := make([]error, len(models))
	var wg sync.WaitGroup
	for i, m := range models {
		wg.Go(func() { _, errs[i] = w.Warm(context.Background(), Backend{Addr: m.addr()}, spec, nil) })
	}
	wg.Wait()
	for i, m := range models {
		require.NoError(t, errs[i])
		assert.Equal(t, 3, int(m.calls.Load()))
	}
}

func TestNew_RoutesRetryLogsToZapAtDebug(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.DebugLevel)
	w := New(zap.New(core))
	t.Cleanup(w.Close)
	m := startModel(t, func(call int, rw http.ResponseWriter, _ *http.Request) {
		if call == 1 {
			http.Error(rw, "loading", http.StatusServiceUnavailable)
			return
		}
		answerVersion(rw, "v2.7")
	})

	_, err := w.Warm(context.Background(), Backend{Addr: m.addr()}, testSpec(func(s *Spec) { s.Requests = 1 }), nil)

	require.NoError(t, err)
	retries := logs.FilterMessage("retrying request").All()
	require.Len(t, retries, 1)
	assert.Equal(t, zap.DebugLevel, retries[0].Level)
	assert.Equal(t, "retryablehttp", retries[0].ContextMap()["client"])
	for _, e := range logs.All() {
		assert.Equal(t, zap.DebugLevel, e.Level, "unexpected %s log %q", e.Level, e.Message)
	}
}

func TestPing_ChecksLikeWarm(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		desc      string
		handle    func(w http.ResponseWriter, r *http.Request)
		addr      string // overrides the model's
		edit      func(*Spec)
		wantErr   string // "" passes
		wantWrong bool   // error matches ErrWrongAnswer
		answered  bool   // a latency comes back
	}{
		{
			desc:     "good answer",
			handle:   func(w http.ResponseWriter, _ *http.Request) { answerVersion(w, "v2.7") },
			answered: true,
		},
		{
			desc:      "wrong model version",
			handle:    func(w http.ResponseWriter, _ *http.Request) { answerVersion(w, "v2.6") },
			wantErr:   `answer 200 but field "model_version" is "v2.6", want "v2.7"`,
			wantWrong: true,
			answered:  true,
		},
		{
			desc:      "wrong status",
			handle:    func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "gone", http.StatusNotFound) },
			wantErr:   `answer 404, want status 200 (body starts "gone\n")`,
			wantWrong: true,
			answered:  true,
		},
		{
			desc: "slower than the latency target",
			handle: func(w http.ResponseWriter, r *http.Request) {
				hold(r, 60*time.Millisecond)
				answerVersion(w, "v2.7")
			},
			edit:      func(s *Spec) { s.LatencyTarget = 20 * time.Millisecond },
			wantErr:   "want under latency_target 20ms",
			wantWrong: true,
			answered:  true,
		},
		{
			desc:    "nothing listening",
			addr:    closedAddr(t),
			wantErr: "request failed after 3 attempt(s)",
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			addr := test.addr
			if addr == "" {
				addr = startModel(t, func(_ int, w http.ResponseWriter, r *http.Request) { test.handle(w, r) }).addr()
			}
			spec := testSpec(func(s *Spec) {
				s.ExpectJSONField, s.ExpectJSONValue = "model_version", `"v2.7"`
				if test.edit != nil {
					test.edit(s)
				}
			})

			lat, err := newWarmer(t).Ping(context.Background(), Backend{Addr: addr}, spec)

			if test.answered {
				assert.Positive(t, lat)
			} else {
				assert.Zero(t, lat)
			}
			if test.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, "warmup: ping "+addr+": ")
			require.ErrorContains(t, err, test.wantErr)
			assert.Equal(t, test.wantWrong, errors.Is(err, ErrWrongAnswer))
		})
	}
}

func TestPing_StopsWhenCancelled(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{}, 1)
	m := startModel(t, func(_ int, _ http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		hang(r)
	})
	w := newWarmer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := w.Ping(ctx, Backend{Addr: m.addr()}, testSpec(nil))
		done <- err
	}()

	<-entered
	cancel()

	select {
	case err := <-done:
		require.ErrorIs(t, err, context.Canceled)
	case <-time.After(2 * time.Second):
		t.Fatal("Ping did not return within 2s of cancellation")
	}
}
