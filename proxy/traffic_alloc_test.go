//go:build !race

package proxy

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"github.com/valyala/fasthttp"
)

// The race detector allocates on its own, so this runs without -race.
func TestCanary_DecisionDoesNotAllocate(t *testing.T) {
	testCases := []struct {
		desc   string
		sticky string
	}{
		{desc: "at random"},
		{desc: "by sticky header", sticky: "X-User-ID"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			rig := newInmemRig(t, nil)
			defer rig.stop()
			_, err := rig.router.SetTraffic(TrafficRequest{Color: config.Green, Percent: percent(50), StickyHeader: header(test.sticky)})
			require.NoError(t, err)
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			body := []byte(`{"inputs":[[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]]}`)
			keys := make([][]byte, 64)
			for i := range keys {
				keys[i] = []byte("user-" + strconv.Itoa(i))
			}
			var i int
			var colors [2]int
			do := func() {
				req.SetRequestURI("http://gateway/predict")
				req.Header.SetMethod(fasthttp.MethodPost)
				req.Header.SetBytesV("X-User-ID", keys[i%len(keys)])
				i++
				req.SetBody(body)
				rig.do(t, req, resp)
				colors[colorIndex(config.Color(resp.Header.Peek(HeaderColor)))]++
			}
			for range 200 { // warm the pools of both colors
				do()
			}
			assert.Zero(t, testing.AllocsPerRun(1000, do))
			assert.Positive(t, colors[0], "no request went to blue")
			assert.Positive(t, colors[1], "no request went to green")
		})
	}
}
