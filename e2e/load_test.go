//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The load: loadWorkers goroutines, each sending POST /predict through the
// gateway once per loadPace (or as fast as answers come when they are
// slower), so at most loadWorkers/loadPace = 400 requests a second.
const (
	loadWorkers = 4
	loadPace    = 10 * time.Millisecond
	// loadMaxRun stops a load nobody stopped.
	loadMaxRun = 3 * time.Minute
)

// answer is one request of the load, as the client saw it.
type answer struct {
	start, end time.Time
	err        error
	status     int
	// color and version are the X-Switchyard-Color and -Version headers.
	color, version string
	body           prediction
	// raw is the body when it is not a prediction.
	raw string
}

// prediction is the model server's 200 answer.
type prediction struct {
	Outputs      [][]float64 `json:"outputs"`
	ModelVersion string      `json:"model_version"`
	Color        string      `json:"color"`
}

func (a answer) latency() time.Duration { return a.end.Sub(a.start) }

// predict sends predictBody to url and records what came back.
func predict(client *http.Client, url string) answer {
	a := answer{start: time.Now()}
	resp, err := client.Post(url, "application/json", strings.NewReader(predictBody))
	if err != nil {
		a.end, a.err = time.Now(), err
		return a
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	a.end, a.err, a.status = time.Now(), err, resp.StatusCode
	a.color, a.version = resp.Header.Get("X-Switchyard-Color"), resp.Header.Get("X-Switchyard-Version")
	if a.status != http.StatusOK || json.Unmarshal(data, &a.body) != nil {
		a.raw = strings.TrimSpace(string(data))
	}
	return a
}

// load sends requests through the gateway until stopped.
type load struct {
	client   *http.Client
	url      string
	stopc    chan struct{}
	stopOnce sync.Once
	wg       sync.WaitGroup

	mu      sync.Mutex
	answers []answer
}

// startLoad starts the workers; the test's cleanup stops them.
func startLoad(t *testing.T, client *http.Client, traffic string) *load {
	t.Helper()
	l := &load{client: client, url: "http://" + traffic + "/predict", stopc: make(chan struct{})}
	until := time.Now().Add(loadMaxRun)
	for range loadWorkers {
		l.wg.Add(1)
		go l.work(until)
	}
	t.Cleanup(func() { l.stop() })
	return l
}

func (l *load) work(until time.Time) {
	defer l.wg.Done()
	tick := time.NewTicker(loadPace)
	defer tick.Stop()
	for time.Now().Before(until) {
		select {
		case <-l.stopc:
			return
		case <-tick.C:
		}
		a := predict(l.client, l.url)
		l.mu.Lock()
		l.answers = append(l.answers, a)
		l.mu.Unlock()
	}
}

// stop ends the load, lets the requests in flight finish, and returns
// every answer.
func (l *load) stop() []answer {
	l.stopOnce.Do(func() { close(l.stopc) })
	l.wg.Wait()
	return l.snapshot()
}

func (l *load) snapshot() []answer {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]answer(nil), l.answers...)
}

// waitFor waits until at least n answers match.
func (l *load) waitFor(t *testing.T, timeout time.Duration, what string, n int, match func(answer) bool) {
	t.Helper()
	eventually(t, timeout, 20*time.Millisecond, what, func() (bool, string) {
		got := count(l.snapshot(), match)
		return got >= n, fmt.Sprintf("%d of %d", got, n)
	})
}

func count(as []answer, match func(answer) bool) int {
	n := 0
	for _, a := range as {
		if match(a) {
			n++
		}
	}
	return n
}

func filter(as []answer, match func(answer) bool) []answer {
	var out []answer
	for _, a := range as {
		if match(a) {
			out = append(out, a)
		}
	}
	return out
}

// startedAfter and endedBefore select answers by when they happened.
func startedAfter(at time.Time) func(answer) bool {
	return func(a answer) bool { return a.start.After(at) }
}
func endedBefore(at time.Time) func(answer) bool {
	return func(a answer) bool { return a.end.Before(at) }
}

func fromColor(color string) func(answer) bool {
	return func(a answer) bool { return a.err == nil && a.status == http.StatusOK && a.body.Color == color }
}

// expected holds each color's outputs for predictBody, read from the model
// servers directly.
type expected map[string][][]float64

// reference asks a model server directly for its outputs.
func (e expected) reference(t *testing.T, client *http.Client, m *modelServer) {
	t.Helper()
	a := predict(client, "http://"+m.addr+"/predict")
	require.NoError(t, a.err, "POST /predict to %s", m.name)
	require.Equal(t, http.StatusOK, a.status, "POST /predict to %s: %s", m.name, a.raw)
	require.Equal(t, m.color, a.body.Color)
	require.Equal(t, m.version, a.body.ModelVersion)
	require.Len(t, a.body.Outputs, 1)
	require.Len(t, a.body.Outputs[0], 4)
	e[m.color] = a.body.Outputs
}

// problem says what is wrong with an answer, or "" when it is a correct
// prediction labelled with the color and version that computed it.
func (e expected) problem(a answer) string {
	switch {
	case a.err != nil:
		return "request failed: " + a.err.Error()
	case a.status != http.StatusOK:
		return fmt.Sprintf("status %d (X-Switchyard-Color %q): %s", a.status, a.color, a.raw)
	case a.raw != "":
		return "the body is not a prediction: " + a.raw
	case a.color != a.body.Color:
		return fmt.Sprintf("X-Switchyard-Color is %q but %q answered", a.color, a.body.Color)
	case a.version != a.body.ModelVersion:
		return fmt.Sprintf("X-Switchyard-Version is %q but %s answered", a.version, a.body.ModelVersion)
	}
	want, ok := e[a.body.Color]
	if !ok {
		return fmt.Sprintf("answered by color %q, which has no reference", a.body.Color)
	}
	if !sameOutputs(a.body.Outputs, want) {
		return fmt.Sprintf("%s answered %v; its model gives %v", a.body.Color, a.body.Outputs, want)
	}
	return ""
}

// requireAllGood fails the test if any answer is not a correct prediction.
func (e expected) requireAllGood(t *testing.T, what string, as []answer) {
	t.Helper()
	var bad []string
	for _, a := range as {
		if p := e.problem(a); p != "" {
			bad = append(bad, fmt.Sprintf("%s (+%s): %s", a.start.Format("15:04:05.000"), a.latency().Round(time.Millisecond), p))
		}
	}
	if len(bad) > 0 {
		t.Fatalf("%s: %d of %d requests failed; first ones:\n%s", what, len(bad), len(as), strings.Join(bad[:min(len(bad), 10)], "\n"))
	}
}

func sameOutputs(a, b [][]float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if len(a[i]) != len(b[i]) {
			return false
		}
		for j := range a[i] {
			if math.Abs(a[i][j]-b[i][j]) > 1e-6 {
				return false
			}
		}
	}
	return true
}
