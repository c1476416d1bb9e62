package health

import (
	"context"
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

// prober runs one probe of any kind: the kind's own check, then, on a
// healthy backend with metrics_path set, a scrape of its metrics.
type prober struct {
	http  *httpGetter
	grpc  *grpcConns
	kinds map[string]kind
}

func buildProber(get *httpGetter) *prober {
	conns := newGRPCConns()
	return &prober{http: get, grpc: conns, kinds: builtinKinds(get, conns)}
}

// probe checks the backend at ep the way h.Kind says and returns what it
// learned.
func (p *prober) probe(ctx context.Context, ep endpoint, h *config.Health) (Report, error) {
	k, ok := p.kinds[h.Kind]
	if !ok {
		// config validation refuses unknown kinds; this only guards a
		// Target built without it.
		return Report{}, fmt.Errorf("health: probe kind %q is not built in", h.Kind)
	}
	r, err := k.probe(ctx, ep, h)
	if err != nil {
		return r, err
	}
	if h.MetricsPath != "" {
		status, body, err := p.http.get(ctx, ep, h.MetricsPath)
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

// close drops the probe connections kept between intervals that are the
// prober's; each endpoint closes its own.
func (p *prober) close() {
	p.grpc.close()
}

// httpGetter sends the GETs of the HTTP probe kinds and of metrics
// scrapes, on connections that outlive each probe: in cleartext the
// endpoint's probeConn, over TLS the endpoint's net/http client, which
// speaks HTTP/2 where the server offers it.
type httpGetter struct{}

// getOK GETs path and wants a 2xx answer whose body passes check (when
// check is not nil).
func (g *httpGetter) getOK(ctx context.Context, ep endpoint, path string, check func([]byte) error) error {
	status, body, err := g.get(ctx, ep, path)
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

// get GETs path and returns the status and at most maxProbeBody of the
// body, whatever the status: over https with the endpoint's TLS config
// when it has one, else over http. The body is valid until the
// endpoint's next request; a caller keeps copies of what it needs.
func (g *httpGetter) get(ctx context.Context, ep endpoint, path string) (int, []byte, error) {
	switch {
	case ep.tls != nil:
		return getTLS(ctx, ep, path)
	case ep.conn != nil:
		return ep.conn.get(ctx, path)
	}
	// An endpoint without a kept connection (a test's): one for this GET.
	pc := newProbeConn(ctx, ep.addr)
	defer pc.close()
	return pc.get(ctx, path)
}

// getTLS GETs path over https with the endpoint's client.
func getTLS(ctx context.Context, ep endpoint, path string) (int, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+ep.addr+path, nil)
	if err != nil {
		return 0, nil, fmt.Errorf("probe request for %s%s: %w", ep.addr, path, err)
	}
	req.Header.Set("User-Agent", "switchyard-probe")
	resp, err := ep.http.Do(req)
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

// simplify drops net/http's `Get "https://...": ` prefix, which repeats
// the address the status already shows.
func simplify(err error) error {
	if ue, ok := err.(*url.Error); ok {
		msg := ue.Err.Error()
		if strings.Contains(msg, "context deadline exceeded") || strings.Contains(msg, "Client.Timeout") {
			return errTimedOut
		}
		return ue.Err
	}
	return err
}
