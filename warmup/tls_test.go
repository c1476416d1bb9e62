package warmup

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/internal/certtest"
	"github.com/switchyard/switchyard/proto/inference/inferencetest"
	"github.com/switchyard/switchyard/proxy"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// A backend of a pool with tls enabled is warmed over TLS with the
// config the proxy dials it with (proxy.NewUpstreamTLS).

// upstreamTLS builds a pool's backend TLS config trusting ca, as the
// proxy builds it; with clientCert it carries a client certificate.
func upstreamTLS(t *testing.T, ca *certtest.CA, clientCert bool) *tls.Config {
	t.Helper()
	caFile, certFile, keyFile := ca.Files(t, "switchyard")
	u := config.UpstreamTLS{Enabled: true, CAFile: caFile, ServerName: certtest.BackendName}
	if clientCert {
		u.CertFile, u.KeyFile = certFile, keyFile
	}
	conf, err := proxy.NewUpstreamTLS(u, zap.NewNop())
	require.NoError(t, err)
	return conf
}

// tlsBackend is a model server over TLS: gRPC (KServe v2) or HTTPS, the
// latter HTTP/1.1 only or HTTP/2 as well.
type tlsBackend struct {
	addr string
	spec *Spec
	// protos are the protocols the HTTPS server saw requests in.
	mu     sync.Mutex
	protos map[string]int
}

func (b *tlsBackend) seen() map[string]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.protos
}

// startTLSBackend runs a backend speaking proto ("grpc", "http1" or
// "h2") over TLS with a certificate ca signed; with clientAuth it demands
// a client certificate.
func startTLSBackend(t *testing.T, ca *certtest.CA, proto string, clientAuth bool) *tlsBackend {
	t.Helper()
	conf := ca.ServerConfig(t, "backend", clientAuth)
	if proto == "grpc" {
		s := inferencetest.Start(t, "mlp", "v2.7", grpc.Creds(credentials.NewTLS(conf)))
		return &tlsBackend{addr: s.Addr, spec: grpcSpec(t, func(w *config.Warmup) { w.ExpectJSONField, w.ExpectJSONValue = "model_version", `"v2.7"` })}
	}
	b := &tlsBackend{protos: map[string]int{}}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.protos[r.Proto]++
		b.mu.Unlock()
		answerVersion(w, "v2.7")
	}))
	srv.EnableHTTP2 = proto == "h2"
	srv.TLS = conf
	srv.StartTLS()
	t.Cleanup(srv.Close)
	b.addr = srv.Listener.Addr().String()
	b.spec = testSpec(func(s *Spec) {
		s.Requests, s.MaxRequests, s.ExpectJSONField, s.ExpectJSONValue = 2, 3, "model_version", `"v2.7"`
	})
	return b
}

func TestWarm_TLSBackendIsWarmedWithThePoolsTLSOnly(t *testing.T) {
	t.Parallel()
	ca := certtest.NewCA(t)
	testCases := []struct {
		desc  string
		proto string
		// tls is whether Warm gets the pool's TLS config.
		tls       bool
		wantProto string
	}{
		{desc: "kserve-grpc with the pool's TLS", proto: "grpc", tls: true},
		{desc: "kserve-grpc in cleartext", proto: "grpc"},
		{desc: "HTTPS, HTTP/1.1 only, with the pool's TLS", proto: "http1", tls: true, wantProto: "HTTP/1.1"},
		{desc: "HTTPS with HTTP/2, with the pool's TLS", proto: "h2", tls: true, wantProto: "HTTP/2.0"},
		{desc: "HTTPS in cleartext", proto: "http1"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			b := startTLSBackend(t, ca, test.proto, false)
			target := Backend{Addr: b.addr}
			if test.tls {
				target.TLS = upstreamTLS(t, ca, false)
			}

			res, err := newWarmer(t).Warm(context.Background(), target, b.spec, nil)

			if !test.tls {
				require.ErrorIs(t, err, ErrGaveUp, "a TLS backend warmed in cleartext")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, b.spec.Requests, res.Requests)
			if test.wantProto != "" {
				assert.Equal(t, map[string]int{test.wantProto: b.spec.Requests}, b.seen())
			}
		})
	}
}

// A backend that demands a client certificate refuses warmup without one;
// a call with a config that has one (a reload added cert_file and
// key_file) dials anew, on the same Warmer, and is warmed.
func TestWarm_NewTLSConfigRedialsTheBackend(t *testing.T) {
	t.Parallel()
	ca := certtest.NewCA(t)
	for _, proto := range []string{"grpc", "http1", "h2"} {
		t.Run(proto, func(t *testing.T) {
			t.Parallel()
			b := startTLSBackend(t, ca, proto, true)
			w := newWarmer(t)

			_, err := w.Warm(context.Background(), Backend{Addr: b.addr, TLS: upstreamTLS(t, ca, false)}, b.spec, nil)
			require.ErrorIs(t, err, ErrGaveUp, "warmed without the client certificate the backend demands")
			assert.NotErrorIs(t, err, ErrWrongAnswer, "the backend answered without a client certificate")

			res, err := w.Warm(context.Background(), Backend{Addr: b.addr, TLS: upstreamTLS(t, ca, true)}, b.spec, nil)
			require.NoError(t, err)
			assert.Equal(t, b.spec.Requests, res.Requests)
			_, err = w.Ping(context.Background(), Backend{Addr: b.addr, TLS: upstreamTLS(t, ca, false)}, b.spec)
			require.Error(t, err, "a ping with the old config reused the new connection")
		})
	}
}
