package gatewaytest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/admin"
	"github.com/switchyard/switchyard/config"
)

// Status is GET /admin/status: the document, typed, and its ETag.
type Status struct {
	admin.Status
	ETag string `json:"-"`
}

// ReadStatus reads GET /admin/status. It does not fail the test, so it
// can run inside a poll.
func (g *Gateway) ReadStatus() (Status, error) {
	resp, err := g.adminDo(http.MethodGet, "/admin/status", "", nil)
	if err != nil {
		return Status{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Status{}, fmt.Errorf("GET /admin/status: %s", resp.Status)
	}
	var st Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return Status{}, fmt.Errorf("decoding GET /admin/status: %w", err)
	}
	st.ETag = resp.Header.Get("ETag")
	return st, nil
}

// Status reads GET /admin/status and fails the test if it cannot.
func (g *Gateway) Status(t testing.TB) Status {
	t.Helper()
	st, err := g.ReadStatus()
	require.NoError(t, err)
	return st
}

// WaitStatus waits until GET /admin/status satisfies cond, then returns the
// status read once more. One status answer reads the routing state before
// the config object, so the answer that first shows a new config
// generation may still show the routing state from before that config was
// applied; the next answer shows both. what says what is awaited when the
// test gives up.
func (g *Gateway) WaitStatus(t testing.TB, what string, cond func(Status) bool) Status {
	t.Helper()
	var last Status
	var lastErr error
	ok := assert.Eventually(t, func() bool {
		last, lastErr = g.ReadStatus()
		return lastErr == nil && cond(last)
	}, WaitFor, Tick, what)
	if !ok {
		require.FailNow(t, "gave up waiting", "%s; last status error %v, active %s, generation %d, config %+v, pools %+v",
			what, lastErr, last.Active, last.Generation, last.Config, last.Pools)
	}
	return g.Status(t)
}

// WaitReady waits until every backend of each of colors is ready: healthy
// and warm.
func (g *Gateway) WaitReady(t testing.TB, colors ...config.Color) {
	t.Helper()
	g.WaitStatus(t, fmt.Sprintf("%v ready", colors), func(st Status) bool {
		for _, c := range colors {
			p := st.Pools[string(c)]
			if len(p.Backends) == 0 || p.ReadyBackends != len(p.Backends) {
				return false
			}
		}
		return true
	})
}

// Switch switches traffic through POST /admin/switch and requires 200.
func (g *Gateway) Switch(t testing.TB, to config.Color) {
	t.Helper()
	resp, body := g.Post(t, "/admin/switch", `{"to": "`+string(to)+`"}`, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, "POST /admin/switch: %s", body)
}

// Post sends a JSON POST to the admin API, with header added, and returns
// the answer with its body read.
func (g *Gateway) Post(t testing.TB, path, body string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	return g.call(t, http.MethodPost, path, body, header)
}

// Put sends a JSON PUT to the admin API, with header added, and returns the
// answer with its body read.
func (g *Gateway) Put(t testing.TB, path, body string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	return g.call(t, http.MethodPut, path, body, header)
}

func (g *Gateway) call(t testing.TB, method, path, body string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	resp, err := g.adminDo(method, path, body, header)
	require.NoError(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, data
}

// Metrics reads GET /metrics. It does not fail the test.
func (g *Gateway) Metrics() ([]byte, error) {
	resp, err := g.adminDo(http.MethodGet, "/metrics", "", nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// Metric returns the value of one sample of GET /metrics, written as the
// exposition format writes it, e.g.
// `switchyard_config_reloads_total{result="ok"}`. It does not fail the
// test.
func (g *Gateway) Metric(sample string) (float64, error) {
	body, err := g.Metrics()
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), sample+" "); ok {
			return strconv.ParseFloat(v, 64)
		}
	}
	return 0, fmt.Errorf("no sample %s in GET /metrics", sample)
}

// adminDo sends a request to the admin listener with the token set by
// SetToken.
func (g *Gateway) adminDo(method, path, body string, header http.Header) (*http.Response, error) {
	req, err := http.NewRequest(method, g.Admin+path, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	if method != http.MethodGet {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok := g.token.Load(); tok != nil && *tok != "" {
		req.Header.Set("Authorization", "Bearer "+*tok)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	return g.Client.Do(req)
}
