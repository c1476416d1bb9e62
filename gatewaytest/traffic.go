package gatewaytest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proxy"
)

// Predict sends PredictBody to POST /predict through the traffic listener
// and returns the color that answered, per the X-Switchyard-Color header,
// after checking that the model's own answer names the same color. Any
// status but 200 is an error. It does not fail the test, so it can run on
// a goroutine of its own.
func (g *Gateway) Predict() (string, error) {
	resp, err := g.Client.Post(g.Traffic+"/predict", "application/json", strings.NewReader(PredictBody))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	color := resp.Header.Get(proxy.HeaderColor)
	if resp.StatusCode != http.StatusOK {
		return color, fmt.Errorf("status %d from %s: %s", resp.StatusCode, color, body)
	}
	var out struct {
		Color string `json:"color"`
	}
	if err := json.Unmarshal(body, &out); err != nil {
		return color, fmt.Errorf("decoding %q: %w", body, err)
	}
	if out.Color != color {
		return color, fmt.Errorf("header says %s but %s answered", color, out.Color)
	}
	return color, nil
}

// RequireColor sends one prediction and requires that want answered it.
func (g *Gateway) RequireColor(t testing.TB, want config.Color) {
	t.Helper()
	got, err := g.Predict()
	require.NoError(t, err)
	require.Equal(t, string(want), got, "traffic went to the wrong color")
}

// Load is continuous inference traffic through the gateway: clients that
// send predictions back to back until Stop.
type Load struct {
	stop chan struct{}
	wg   sync.WaitGroup

	mu       sync.Mutex
	byColor  map[string]int
	failures []string
	// flaps are predictions answered by blue after the same client already
	// got an answer from green.
	flaps int
}

// StartLoad runs n clients until Stop is called or the test ends.
func (g *Gateway) StartLoad(t testing.TB, n int) *Load {
	l := &Load{stop: make(chan struct{}), byColor: map[string]int{}}
	for range n {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			sawGreen := false
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				color, err := g.Predict()
				l.mu.Lock()
				switch {
				case err != nil:
					l.failures = append(l.failures, err.Error())
				case color == string(config.Green):
					sawGreen = true
					l.byColor[color]++
				default:
					if sawGreen {
						l.flaps++
					}
					l.byColor[color]++
				}
				l.mu.Unlock()
			}
		}()
	}
	t.Cleanup(l.Stop)
	return l
}

// Count is how many predictions color answered so far.
func (l *Load) Count(color config.Color) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.byColor[string(color)]
}

// Failed lists the predictions that failed so far, as their errors say.
func (l *Load) Failed() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.failures...)
}

// Flaps is how many predictions blue answered for a client that green had
// already answered: a switch to green that did not hold.
func (l *Load) Flaps() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.flaps
}

// Stop stops the clients and waits for them. Calling it again does
// nothing.
func (l *Load) Stop() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}
