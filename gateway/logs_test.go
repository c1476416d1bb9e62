package gateway_test

import (
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/gatewaytest"
	"github.com/switchyard/switchyard/logs"
)

// countLines returns how many JSON lines logger wrote to out.
func countLines(out *gatewaytest.LogBuffer, logger string) int {
	n := 0
	for _, l := range strings.Split(out.String(), "\n") {
		var m struct {
			Logger string `json:"logger"`
		}
		if json.Unmarshal([]byte(l), &m) == nil && m.Logger == logger {
			n++
		}
	}
	return n
}

// Regression test (issue 11): the README says the access log follows only
// log.access.sample, but the gateway names its logger proxy.access and the
// logger sampled every name but the protected first ones, "proxy" not
// among them: with sample 1, 109 of 1000 requests in a second were logged.
// Here the sampler keeps one line a second per message, so any access line
// it sees is lost.
func TestAccessLog_SampleOneLogsEveryRequest(t *testing.T) {
	const requests = 1000
	b := startBackends(t, 0)
	path := gatewaytest.NewConfigFile(t, strings.Replace(b.config(fileConfig{Active: "blue"}),
		"log: {format: console, level: info}", "log: {format: json, level: info, access: {enabled: true, sample: 1}}", 1))
	var out gatewaytest.LogBuffer
	log, err := logs.New(logs.Options{Format: "json", Level: "info", Initial: 1, Thereafter: 1 << 30}, &out)
	require.NoError(t, err)
	g := gatewaytest.Start(t, gatewaytest.Options{Path: path, Log: log})
	g.WaitReady(t, config.Blue)

	var wg sync.WaitGroup
	errs := make(chan error, requests)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range requests / 8 {
				if _, err := g.Predict(); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}

	// A line is written when its exchange is finished, which may be just
	// after the client has the whole answer.
	assert.Eventually(t, func() bool { return countLines(&out, "proxy.access") >= requests }, gatewaytest.WaitFor, gatewaytest.Tick,
		"access lines were sampled away: %d of %d", countLines(&out, "proxy.access"), requests)
	g.Stop()
	assert.Equal(t, requests, countLines(&out, "proxy.access"))
}
