//go:build !race

package proxy

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/valyala/fasthttp"
)

// The race detector allocates on its own, so this runs without -race.
func TestProxy_HotPathDoesNotAllocate(t *testing.T) {
	rig := newInmemRig(t, nil)
	defer rig.stop()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	body := []byte(`{"inputs":[[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]]}`)
	do := func() {
		req.SetRequestURI("http://gateway/predict")
		req.Header.SetMethod(fasthttp.MethodPost)
		req.SetBody(body)
		rig.do(t, req, resp)
	}
	for range 100 { // warm the pools
		do()
	}
	assert.Zero(t, testing.AllocsPerRun(1000, do))
}
