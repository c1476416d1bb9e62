package health

import (
	"context"
	"crypto/tls"
	"net/http"
	"time"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proxy"
	"go.uber.org/zap"
)

// endpoint is how probes reach one backend: its address and either the
// kept connection of its cleartext HTTP probes or, when its pool dials it
// with TLS (pools.*.tls), the client config and an HTTP client of the
// backend's own that uses it. A monitor builds its backend's endpoint,
// and builds it anew when the pool's TLS config changes; the gRPC
// connection follows the config (grpcConns.get).
type endpoint struct {
	addr string
	// tls is nil in cleartext.
	tls *tls.Config
	// http sends the HTTP kinds' GETs over TLS; nil in cleartext.
	http *http.Client
	// conn sends the HTTP kinds' GETs in cleartext; nil over TLS, and in
	// an endpoint built without newEndpoint, whose GETs each dial.
	conn *probeConn
}

// newEndpoint returns addr's endpoint for conf (nil: cleartext), used by
// the goroutine whose context is life: its end interrupts a probe in
// flight.
func newEndpoint(life context.Context, addr string, conf *tls.Config) endpoint {
	ep := endpoint{addr: addr, tls: conf}
	if conf != nil {
		ep.http = &http.Client{Transport: probeTransport(conf), CheckRedirect: noRedirect}
	} else {
		ep.conn = newProbeConn(life, addr)
	}
	return ep
}

// close closes the endpoint's own connections.
func (ep endpoint) close() {
	if ep.http != nil {
		ep.http.CloseIdleConnections()
	}
	if ep.conn != nil {
		ep.conn.close()
	}
}

// probeTransport is the transport of the HTTP probes over TLS with conf:
// HTTP/2 or HTTP/1.1, as the server chooses by ALPN.
func probeTransport(conf *tls.Config) *http.Transport {
	tr := &http.Transport{
		MaxIdleConnsPerHost: 1,
		// Keep probe connections across intervals: a new connection per
		// probe costs more than the probe (1,000 backends at 2 s would be
		// 500 dials a second). A server that closes sooner (gunicorn
		// keeps 2 s) is noticed by net/http, which re-dials; a GET that
		// meets a connection closed in between is retried by net/http.
		IdleConnTimeout:   90 * time.Second,
		DisableKeepAlives: false,
	}
	// The proxy's config offers only h2, which its TLS transports speak;
	// a model server's REST port may speak HTTP/1.1 only.
	tr.TLSClientConfig = conf.Clone()
	tr.TLSClientConfig.NextProtos = []string{"h2", "http/1.1"}
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetHTTP2(true)
	tr.Protocols = &protos
	return tr
}

// upstreamTLS is a pool's backend TLS config as proxy.NewUpstreamTLS
// built it, or the error that kept it from loading.
type upstreamTLS struct {
	conf *tls.Config
	err  error
}

// resolveTLS fills in each target's TLS config from its pool's settings,
// building each distinct setting once with proxy.NewUpstreamTLS, the
// proxy's own builder, and keeping those built by the last Sync (a
// setting that did not load is tried again): a config that stays the
// same keeps its pointer, and with it the backends' probe and warmup
// connections. It returns the configs now in use. The caller holds c.mu.
func (c *Checker) resolveTLS(targets []Target) map[config.UpstreamTLS]upstreamTLS {
	built := make(map[config.UpstreamTLS]upstreamTLS, 2)
	for i := range targets {
		t := &targets[i]
		if !t.TLS.Enabled {
			continue
		}
		u, ok := built[t.TLS]
		if !ok {
			u, ok = c.upstreams[t.TLS]
			if !ok || u.err != nil {
				u.conf, u.err = proxy.NewUpstreamTLS(t.TLS, c.log.Named("tls"))
				if u.err != nil {
					c.log.Error("backend TLS settings do not load; probes and warmup of the pool fail until they do",
						zap.String("env", string(t.Color)), zap.Error(u.err))
				}
			}
			built[t.TLS] = u
		}
		t.tls, t.tlsErr = u.conf, u.err
	}
	return built
}
