package health

import (
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/internal/certtest"
	"github.com/switchyard/switchyard/proto/inference/inferencetest"
	"github.com/switchyard/switchyard/warmup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// Backends of a pool with tls enabled are probed and warmed over TLS
// with the pool's CA, server name and client certificate, the config the
// proxy dials them with.

// poolTLS is a pool's tls section trusting ca, with the backends' name;
// with clientCert, it also names a client certificate ca signed.
func poolTLS(t *testing.T, ca *certtest.CA, clientCert bool) config.UpstreamTLS {
	t.Helper()
	caFile, certFile, keyFile := ca.Files(t, "switchyard")
	u := config.UpstreamTLS{Enabled: true, CAFile: caFile, ServerName: certtest.BackendName}
	if clientCert {
		u.CertFile, u.KeyFile = certFile, keyFile
	}
	return u
}

// startTLSInference runs a KServe v2 gRPC server over TLS with a
// certificate ca signed; with clientAuth it demands a client certificate.
func startTLSInference(t *testing.T, ca *certtest.CA, clientAuth bool) *inferencetest.Server {
	t.Helper()
	return inferencetest.Start(t, "mlp", "v2.7", grpc.Creds(credentials.NewTLS(ca.ServerConfig(t, "backend", clientAuth))))
}

// tlsModel is an HTTPS model server answering the json probe and warmup
// requests.
type tlsModel struct {
	*httptest.Server
	predictions atomic.Int64
}

// startTLSModel runs a tlsModel with conf's certificate and client
// authentication, or with httptest.NewTLSServer's own certificate when
// conf is nil.
func startTLSModel(t *testing.T, conf *tls.Config) *tlsModel {
	t.Helper()
	m := &tlsModel{}
	answer := routes(map[string]route{
		"/health":  {http.StatusOK, `{"status": "ok", "model_loaded": true}`},
		"/predict": {http.StatusOK, `{"outputs": [0.9]}`},
	})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/predict" {
			m.predictions.Add(1)
		}
		answer(w, r)
	})
	if conf == nil {
		m.Server = httptest.NewTLSServer(h)
	} else {
		m.Server = httptest.NewUnstartedServer(h)
		m.TLS = conf
		m.StartTLS()
	}
	t.Cleanup(m.Close)
	return m
}

// addr is the server's host:port, as backends are addressed.
func (m *tlsModel) addr() string { return m.Listener.Addr().String() }

// kserveGRPCWarmup is a ModelInfer warmup of model mlp at v2.7.
func kserveGRPCWarmup(t *testing.T) *warmup.Spec {
	t.Helper()
	return testWarmup(t, func(w *config.Warmup) {
		w.Kind, w.Model, w.Path = config.WarmupKServeGRPC, "mlp", ""
		w.Body = `{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]}`
		w.ExpectJSONField, w.ExpectJSONValue = "model_version", `"v2.7"`
	})
}

// watchOne makes c watch one blue backend at addr with these settings and
// returns it.
func watchOne(t *testing.T, c *Checker, addr string, kind string, spec *warmup.Spec, u config.UpstreamTLS) Target {
	t.Helper()
	tgt := Target{Backend: newRegistry(t).Get(addr), Color: config.Blue, Version: "v2.7",
		Health: testHealth(kind, func(h *config.Health) { h.Model = "mlp" }), Warmup: spec, TLS: u}
	c.Sync([]Target{tgt})
	return tgt
}

// requireNotHealthy waits for addr's first failed probe and checks its
// error, and that the backend got no warmup.
func requireNotHealthy(t *testing.T, c *Checker, tgt Target, wantErr string) {
	t.Helper()
	addr := tgt.Backend.Addr()
	eventually(t, func() bool { return stateOf(t, c, addr).LastError != "" }, "never probed, or probes pass",
		func() string { return fmt.Sprintf("%+v", stateOf(t, c, addr)) })
	st := stateOf(t, c, addr)
	assert.False(t, st.Healthy)
	assert.False(t, tgt.Backend.Ready())
	assert.Contains(t, st.LastError, wantErr)
}

// Regression test for the gap left by issue 16: a gRPC backend served
// over TLS never became healthy nor warm, since kserve-grpc probes and
// warmup dialed it in cleartext whatever the pool's tls said.
func TestChecker_TLSGRPCBackendIsHealthyAndWarmWithThePoolsTLS(t *testing.T) {
	t.Parallel()
	ca := certtest.NewCA(t)
	testCases := []struct {
		desc string
		tls  func(t *testing.T) config.UpstreamTLS
		// wantErr is empty when the backend must become ready.
		wantErr string
	}{
		{desc: "with the pool's tls", tls: func(t *testing.T) config.UpstreamTLS { return poolTLS(t, ca, false) }},
		{desc: "in cleartext", tls: func(*testing.T) config.UpstreamTLS { return config.UpstreamTLS{} },
			wantErr: "ServerReady: Unavailable"},
		{desc: "trusting another CA", tls: func(t *testing.T) config.UpstreamTLS { return poolTLS(t, certtest.NewCA(t), false) },
			wantErr: "x509: certificate signed by unknown authority"},
		{desc: "with a ca_file that no longer loads", tls: func(t *testing.T) config.UpstreamTLS {
			return config.UpstreamTLS{Enabled: true, CAFile: filepath.Join(t.TempDir(), "gone.crt")}
		}, wantErr: "pools.blue.tls: proxy: tls: reading ca_file"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			s := startTLSInference(t, ca, false)
			c := newChecker(t, newWarmer(t), nil)
			tgt := watchOne(t, c, s.Addr, config.ProbeKServeGRPC, kserveGRPCWarmup(t), test.tls(t))

			if test.wantErr != "" {
				requireNotHealthy(t, c, tgt, test.wantErr)
				assert.Zero(t, s.Infers.Load(), "warmup sent to a backend that is not healthy")
				return
			}
			eventually(t, tgt.Backend.Ready, "never ready", func() string { return c.Explain(tgt.Backend) })
			st := stateOf(t, c, s.Addr)
			assert.True(t, st.Healthy)
			assert.True(t, st.Warm)
			assert.Equal(t, "v2.7", st.Report.Version, "ModelMetadata answered over TLS")
			assert.Equal(t, int64(3), s.Infers.Load(), "warmed by three ModelInfer calls over TLS")
		})
	}
}

// An HTTPS model server (httptest.NewTLSServer's own certificate) passes
// the json probe, and takes the HTTP warmup, when the pool's ca_file
// holds that certificate.
func TestChecker_HTTPSBackendPassesTheJSONProbeWithThePoolsCA(t *testing.T) {
	t.Parallel()
	testCases := []struct {
		desc string
		// trust says whether the pool's ca_file holds the server's
		// certificate; tls whether the pool's tls is enabled.
		trust, tls bool
		wantErr    string
	}{
		{desc: "with the pool's CA", trust: true, tls: true},
		{desc: "with the system roots", tls: true, wantErr: "x509: certificate signed by unknown authority"},
		{desc: "in cleartext", wantErr: "GET /health: status 400"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			m := startTLSModel(t, nil)
			u := config.UpstreamTLS{Enabled: test.tls}
			if test.trust {
				dir := t.TempDir()
				certtest.WriteFiles(t, dir, map[string][]byte{"ca.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: m.Certificate().Raw})})
				u.CAFile = filepath.Join(dir, "ca.crt")
			}
			c := newChecker(t, newWarmer(t), nil)
			tgt := watchOne(t, c, m.addr(), config.ProbeJSON, testWarmup(t, nil), u)

			if test.wantErr != "" {
				requireNotHealthy(t, c, tgt, test.wantErr)
				assert.Zero(t, m.predictions.Load(), "warmup sent to a backend that is not healthy")
				return
			}
			eventually(t, tgt.Backend.Ready, "never ready", func() string { return c.Explain(tgt.Backend) })
			assert.Equal(t, ptr(true), stateOf(t, c, m.addr()).Report.ModelLoaded)
			assert.Equal(t, int64(3), m.predictions.Load(), "warmed over https")
		})
	}
}

// A backend that demands a client certificate (mutual TLS) is healthy and
// warm only when the pool's tls names cert_file and key_file, for gRPC and
// HTTP probes alike.
func TestChecker_MutualTLSBackendIsHealthyOnlyWithTheClientCertificate(t *testing.T) {
	t.Parallel()
	ca := certtest.NewCA(t)
	testCases := []struct {
		desc       string
		kind       string
		clientCert bool
		wantErr    string
	}{
		{desc: "kserve-grpc with the client certificate", kind: config.ProbeKServeGRPC, clientCert: true},
		{desc: "kserve-grpc without a client certificate", kind: config.ProbeKServeGRPC, wantErr: "ServerReady: Unavailable"},
		{desc: "json with the client certificate", kind: config.ProbeJSON, clientCert: true},
		{desc: "json without a client certificate", kind: config.ProbeJSON, wantErr: "certificate required"},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			var addr string
			var spec *warmup.Spec
			var warmed func() int64
			if test.kind == config.ProbeKServeGRPC {
				s := startTLSInference(t, ca, true)
				addr, spec, warmed = s.Addr, kserveGRPCWarmup(t), s.Infers.Load
			} else {
				m := startTLSModel(t, ca.ServerConfig(t, "backend", true))
				addr, spec, warmed = m.addr(), testWarmup(t, nil), m.predictions.Load
			}
			c := newChecker(t, newWarmer(t), nil)
			tgt := watchOne(t, c, addr, test.kind, spec, poolTLS(t, ca, test.clientCert))

			if test.wantErr != "" {
				requireNotHealthy(t, c, tgt, test.wantErr)
				assert.Zero(t, warmed(), "warmup sent to a backend that is not healthy")
				return
			}
			eventually(t, tgt.Backend.Ready, "never ready", func() string { return c.Explain(tgt.Backend) })
			assert.True(t, stateOf(t, c, addr).Warm)
			assert.Equal(t, int64(3), warmed(), "warmed by three requests over mutual TLS")
		})
	}
}

// A reload that changes a pool's tls (here: adds the client certificate
// the backend demands) re-creates the probe and warmup connections: the
// backend, refused until then, becomes ready without a restart.
func TestChecker_ChangedPoolTLSRedialsTheBackend(t *testing.T) {
	t.Parallel()
	ca := certtest.NewCA(t)
	s := startTLSInference(t, ca, true)
	c := newChecker(t, newWarmer(t), nil)
	tgt := watchOne(t, c, s.Addr, config.ProbeKServeGRPC, kserveGRPCWarmup(t), poolTLS(t, ca, false))
	requireNotHealthy(t, c, tgt, "Unavailable")

	tgt.TLS = poolTLS(t, ca, true)
	c.Sync([]Target{tgt})

	eventually(t, tgt.Backend.Ready, "never ready with the new tls", func() string { return c.Explain(tgt.Backend) })
	assert.Equal(t, int64(3), s.Infers.Load())
}
