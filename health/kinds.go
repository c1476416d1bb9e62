package health

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/switchyard/switchyard/config"
)

// maxProbeBody bounds what a probe reads, so a broken server cannot
// exhaust the gateway's memory.
const maxProbeBody = 1 << 20

// prober runs one probe of any kind.
type prober struct {
	client *http.Client
}

// probe checks addr the way h.Kind says and returns what it learned.
func (p *prober) probe(ctx context.Context, addr string, h *config.Health) (Report, error) {
	var r Report
	var err error
	switch h.Kind {
	case config.ProbeJSON:
		var body []byte
		var status int
		status, body, err = p.get(ctx, addr, h.Path)
		if err != nil {
			return r, err
		}
		r, err = ParseJSONHealth(body)
		if status/100 != 2 {
			if err != nil {
				return r, fmt.Errorf("GET %s: status %d: %w", h.Path, status, err)
			}
			return r, fmt.Errorf("GET %s: status %d", h.Path, status)
		}
		if err != nil {
			return r, fmt.Errorf("GET %s: %w", h.Path, err)
		}
	case config.ProbeTorchServe:
		err = p.expectStatus(ctx, addr, h.Path, func(body []byte) error {
			var ping struct {
				Status string `json:"status"`
			}
			if json.Unmarshal(body, &ping) != nil || ping.Status != "Healthy" {
				return fmt.Errorf(`want {"status": "Healthy"}, got %q`, prefix(body))
			}
			return nil
		})
	case config.ProbeKServe, config.ProbeTriton:
		err = p.expectStatus(ctx, addr, h.Path, nil)
		if err == nil && h.Model != "" {
			err = p.expectStatus(ctx, addr, "/v2/models/"+url.PathEscape(h.Model)+"/ready", nil)
		}
	default: // http, vllm
		err = p.expectStatus(ctx, addr, h.Path, nil)
	}
	if err != nil {
		return r, err
	}
	if h.MetricsPath != "" {
		status, body, err := p.get(ctx, addr, h.MetricsPath)
		if err != nil {
			return r, nil // metrics are extra: a failed scrape does not make a backend unhealthy
		}
		if status/100 == 2 {
			if m, err := ParseMetrics(body); err == nil {
				r.merge(m)
			}
		}
	}
	return r, nil
}

func (p *prober) expectStatus(ctx context.Context, addr, path string, check func([]byte) error) error {
	status, body, err := p.get(ctx, addr, path)
	if err != nil {
		return err
	}
	if status/100 != 2 {
		return fmt.Errorf("GET %s: status %d", path, status)
	}
	if check != nil {
		if err := check(body); err != nil {
			return fmt.Errorf("GET %s: %w", path, err)
		}
	}
	return nil
}

func (p *prober) get(ctx context.Context, addr, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return 0, nil, fmt.Errorf("probe request for %s%s: %w", addr, path, err)
	}
	req.Header.Set("User-Agent", "switchyard-probe")
	resp, err := p.client.Do(req)
	if err != nil {
		return 0, nil, simplify(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxProbeBody))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("GET %s: reading body: %w", path, simplify(err))
	}
	return resp.StatusCode, body, nil
}

// simplify drops net/http's `Get "http://...": ` prefix, which repeats the
// address the status already shows.
func simplify(err error) error {
	if ue, ok := err.(*url.Error); ok {
		msg := ue.Err.Error()
		if strings.Contains(msg, "context deadline exceeded") || strings.Contains(msg, "Client.Timeout") {
			return fmt.Errorf("probe timed out")
		}
		return ue.Err
	}
	return err
}
