package proxy

import (
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"github.com/valyala/fasthttp"
)

func percent(p float64) *float64 { return &p }

func header(name string) *string { return &name }

// sendColors sends n requests through the rig from workers goroutines,
// each with the headers hdr returns for its index, and counts the color
// that answered per X-Switchyard-Color.
func sendColors(t *testing.T, rig *inmemRig, n, workers int, hdr func(i int) map[string]string) map[config.Color]int {
	t.Helper()
	var (
		mu     sync.Mutex
		counts = map[config.Color]int{}
		failed []string
		wg     sync.WaitGroup
	)
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			for i := range next {
				req.Reset()
				req.SetRequestURI("http://gateway/predict")
				req.Header.SetMethod(fasthttp.MethodPost)
				req.SetBodyString(`{"inputs":[[1,2,3,4]]}`)
				if hdr != nil {
					for k, v := range hdr(i) {
						req.Header.Set(k, v)
					}
				}
				err := rig.client.Do(req, resp)
				mu.Lock()
				switch {
				case err != nil:
					failed = append(failed, err.Error())
				case resp.StatusCode() != fasthttp.StatusOK:
					failed = append(failed, fmt.Sprintf("status %d: %s", resp.StatusCode(), resp.Body()))
				default:
					counts[config.Color(resp.Header.Peek(HeaderColor))]++
				}
				mu.Unlock()
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	require.Empty(t, failed, "requests failed")
	return counts
}

func TestCanary_SendsItsShareToTheStandby(t *testing.T) {
	testCases := []struct {
		desc    string
		percent float64
		sticky  string
	}{
		{desc: "5 percent at random", percent: 5},
		{desc: "5 percent by sticky header", percent: 5, sticky: "X-User-ID"},
		{desc: "50 percent at random", percent: 50},
		{desc: "100 percent", percent: 100},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			rig := newInmemRig(t, nil)
			t.Cleanup(rig.stop)
			_, err := rig.router.SetTraffic(TrafficRequest{Color: config.Green, Percent: percent(test.percent), StickyHeader: header(test.sticky)})
			require.NoError(t, err)
			const n = 20000

			counts := sendColors(t, rig, n, 4, func(i int) map[string]string {
				return map[string]string{"X-User-ID": fmt.Sprintf("user-%d", i)}
			})

			assert.Equal(t, n, counts[config.Blue]+counts[config.Green])
			share := 100 * float64(counts[config.Green]) / n
			assert.InDelta(t, test.percent, share, 1, "green got %d of %d", counts[config.Green], n)
		})
	}
}

func TestCanary_StickyKeyAlwaysGetsTheSameColor(t *testing.T) {
	rig := newInmemRig(t, nil)
	t.Cleanup(rig.stop)
	_, err := rig.router.SetTraffic(TrafficRequest{Color: config.Green, Percent: percent(30), StickyHeader: header("X-User-ID")})
	require.NoError(t, err)
	const keys, repeats = 1000, 5

	var mu sync.Mutex
	seen := map[string]map[config.Color]int{}
	record := func(key string, c config.Color) {
		mu.Lock()
		defer mu.Unlock()
		if seen[key] == nil {
			seen[key] = map[config.Color]int{}
		}
		seen[key][c]++
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			// Each worker sends every repeat of its keys, interleaved
			// with the other workers' keys.
			for r := range repeats {
				for k := w; k < keys; k += 4 {
					key := fmt.Sprintf("user-%d", (k+r*7)%keys)
					req.Reset()
					req.SetRequestURI("http://gateway/predict")
					req.Header.Set("X-User-ID", key)
					if err := rig.client.Do(req, resp); err != nil || resp.StatusCode() != fasthttp.StatusOK {
						record(key, "failed")
						continue
					}
					record(key, config.Color(resp.Header.Peek(HeaderColor)))
				}
			}
		}()
	}
	wg.Wait()

	require.Len(t, seen, keys)
	onGreen := 0
	for key, colors := range seen {
		require.Len(t, colors, 1, "key %s got %v", key, colors)
		for c, n := range colors {
			require.Equal(t, repeats, n, "key %s", key)
			require.Contains(t, []config.Color{config.Blue, config.Green}, c)
			if c == config.Green {
				onGreen++
			}
		}
	}
	assert.InDelta(t, 300, onGreen, 50, "%d of %d keys on green", onGreen, keys)
}

func TestCanary_RequestsWithoutTheStickyHeaderAreSplitAtRandom(t *testing.T) {
	rig := newInmemRig(t, nil)
	t.Cleanup(rig.stop)
	_, err := rig.router.SetTraffic(TrafficRequest{Color: config.Green, Percent: percent(30), StickyHeader: header("X-User-ID")})
	require.NoError(t, err)

	counts := sendColors(t, rig, 4000, 4, nil)

	assert.InDelta(t, 1200, counts[config.Green], 200, "%v", counts)
}

func TestCanary_Ends(t *testing.T) {
	testCases := []struct {
		desc string
		end  func(t *testing.T, r *Router)
		// want is the color every request gets afterwards.
		want config.Color
	}{
		{
			desc: "setting 0",
			end: func(t *testing.T, r *Router) {
				_, err := r.SetTraffic(TrafficRequest{Color: config.Green, Percent: percent(0)})
				require.NoError(t, err)
			},
			want: config.Blue,
		},
		{
			desc: "a switch to the candidate",
			end: func(t *testing.T, r *Router) {
				_, err := r.Switch(SwitchRequest{To: config.Green, Trigger: TriggerAdmin})
				require.NoError(t, err)
			},
			want: config.Green,
		},
		{
			desc: "a toggle",
			end: func(t *testing.T, r *Router) {
				_, err := r.Switch(SwitchRequest{Toggle: true, Trigger: TriggerAdmin})
				require.NoError(t, err)
			},
			want: config.Green,
		},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			rig := newInmemRig(t, nil)
			t.Cleanup(rig.stop)
			_, err := rig.router.SetTraffic(TrafficRequest{Color: config.Green, Percent: percent(30),
				SetMirror: true, Mirror: &MirrorSetting{To: config.Green, Percent: 10}})
			require.NoError(t, err)
			counts := sendColors(t, rig, 500, 2, nil)
			require.Positive(t, counts[config.Green], "the canary never started")

			test.end(t, rig.router)

			tr := rig.router.Snapshot().Traffic()
			assert.Equal(t, map[config.Color]float64{test.want: 100, test.want.Other(): 0}, tr.Weights)
			if test.want != config.Blue {
				assert.Nil(t, tr.Mirror, "a switch left the mirror on")
			}
			counts = sendColors(t, rig, 1000, 2, nil)
			assert.Equal(t, map[config.Color]int{test.want: 1000}, counts)
		})
	}
}

func TestCanary_ToAStandbyWithoutReadyBackendStaysOnTheActivePool(t *testing.T) {
	rig := newInmemRig(t, nil)
	t.Cleanup(rig.stop)
	green, ok := rig.router.Registry().Lookup("10.0.0.2:5000")
	require.True(t, ok)
	green.SetReady(false)
	_, err := rig.router.SetTraffic(TrafficRequest{Color: config.Green, Percent: percent(50)})
	require.NoError(t, err)

	// sendColors fails the test on any failed request.
	counts := sendColors(t, rig, 2000, 4, nil)

	assert.Equal(t, map[config.Color]int{config.Blue: 2000}, counts)
	assert.Zero(t, green.Requests())
	assert.Equal(t, float64(50), rig.router.Snapshot().Traffic().Weights[config.Green], "the configured share changed")
}

func TestSetTraffic_Refusals(t *testing.T) {
	testCases := []struct {
		desc    string
		req     TrafficRequest
		wantErr string
	}{
		{desc: "canary to the active color", req: TrafficRequest{Color: config.Blue, Percent: percent(5)}, wantErr: "blue is active"},
		{desc: "canary above 100", req: TrafficRequest{Color: config.Green, Percent: percent(100.5)}, wantErr: "not within 0-100"},
		{desc: "negative canary", req: TrafficRequest{Color: config.Green, Percent: percent(-0.5)}, wantErr: "not within 0-100"},
		{desc: "mirror to the active color", req: TrafficRequest{SetMirror: true, Mirror: &MirrorSetting{To: config.Blue, Percent: 5}}, wantErr: "only the standby"},
		{desc: "mirror above 100", req: TrafficRequest{SetMirror: true, Mirror: &MirrorSetting{To: config.Green, Percent: 101}}, wantErr: "not within 0-100"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			r := newTestRouter(t, testConfig(t, blueAddrs, greenAddrs, ""), nil)
			before := r.Snapshot()

			_, err := r.SetTraffic(test.req)

			require.Error(t, err)
			assert.Contains(t, err.Error(), test.wantErr)
			assert.Same(t, before, r.Snapshot(), "a refused change published a snapshot")
		})
	}
}
