package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/internal/certtest"
	"github.com/switchyard/switchyard/proto/inference"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
)

// servedCN handshakes with addr and returns the certificate's name.
func servedCN(t testing.TB, addr string, ca *certtest.CA) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "gateway.test"})
	require.NoError(t, err)
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// One TLS port serves gRPC (ALPN h2, grpc-go), HTTP/2 (curl --http2) and
// HTTP/1.1 (a client that offers only http/1.1, which fasthttp serves).
func TestTLS_ALPNServesHTTP2AndHTTP1OnOnePort(t *testing.T) {
	t.Parallel()
	ca := certtest.NewCA(t)
	dir := t.TempDir()
	cert, key := ca.Issue(t, "gateway-1")
	certtest.WriteFiles(t, dir, map[string][]byte{"tls.crt": cert, "tls.key": key, "ca.crt": ca.PEM})
	tlsConf, err := NewListenerTLS(config.ListenerTLS{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"), MinVersion: "1.2"}, zap.NewNop())
	require.NoError(t, err)

	t.Run("grpc-go over TLS", func(t *testing.T) {
		t.Parallel()
		b := startGRPCBackend(t, "blue")
		gw := startTrafficGateway(t, grpcConfig(t, "grpc", []string{b.addr}, nil, "", ""), tlsConf)
		cc := grpcConn(t, gw.Addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "gateway.test"})
		color, _, err := infer(context.Background(), inference.NewGRPCInferenceServiceClient(cc))
		require.NoError(t, err)
		assert.Equal(t, "blue", color)
	})
	t.Run("HTTP/1.1 and HTTP/2 clients to http1 backends", func(t *testing.T) {
		t.Parallel()
		web := colorServer(t, "blue")
		gw := startTrafficGateway(t, testConfig(t, []string{hostPort(web)}, nil, ""), tlsConf)
		for _, proto := range []string{"HTTP/1.1", "HTTP/2.0"} {
			var protos http.Protocols
			protos.SetHTTP1(proto == "HTTP/1.1")
			protos.SetHTTP2(proto == "HTTP/2.0")
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "gateway.test"}, Protocols: &protos}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr}).Post("https://"+gw.Addr+"/predict", "application/json", strings.NewReader(`{}`))
			require.NoError(t, err)
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			assert.Equal(t, proto, resp.Proto)
			assert.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
			assert.Equal(t, `{"backend":"blue"}`, string(body))
			assert.Equal(t, "blue", resp.Header.Get(HeaderColor))
		}
		out := curl(t, "--http2", "--cacert", filepath.Join(dir, "ca.crt"), "--resolve", "gateway.test:"+portOf(gw.Addr)+":127.0.0.1",
			"https://gateway.test:"+portOf(gw.Addr)+"/predict", "-d", "{}")
		assert.Contains(t, out, "HTTP/2 200")
		assert.Contains(t, out, `{"backend":"blue"}`)
	})
}

// curl runs the real curl with -sS -i and returns its output.
func curl(t testing.TB, args ...string) string {
	t.Helper()
	bin, err := exec.LookPath("curl")
	require.NoError(t, err, "curl is needed (Debian package curl; make deps installs it)")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, append([]string{"-sS", "-i", "--max-time", "10"}, args...)...).CombinedOutput()
	require.NoError(t, err, "curl %v: %s", args, out)
	return string(out)
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// cert-manager renews a Secret and the kubelet swaps the mounted files in
// through its ..data symlink: the next handshake after the check interval
// serves the new certificate, without a restart. A rotation that does not
// load keeps the last good certificate.
func TestTLS_RotatedCertificateIsServedWithoutRestart(t *testing.T) {
	t.Parallel()
	ca := certtest.NewCA(t)
	dir := t.TempDir()
	// The kubelet's layout: tls.crt -> ..data/tls.crt, ..data -> ..v1.
	swap := func(version string, cert, key []byte) {
		t.Helper()
		require.NoError(t, os.Mkdir(filepath.Join(dir, version), 0o700))
		certtest.WriteFiles(t, filepath.Join(dir, version), map[string][]byte{"tls.crt": cert, "tls.key": key})
		tmp := filepath.Join(dir, "..data_tmp")
		require.NoError(t, os.Symlink(version, tmp))
		require.NoError(t, os.Rename(tmp, filepath.Join(dir, "..data")))
	}
	cert1, key1 := ca.Issue(t, "gateway-1")
	swap("..v1", cert1, key1)
	for _, name := range []string{"tls.crt", "tls.key"} {
		require.NoError(t, os.Symlink(filepath.Join("..data", name), filepath.Join(dir, name)))
	}

	r, err := NewCertReloader(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), zaptest.NewLogger(t))
	require.NoError(t, err)
	var mu sync.Mutex
	clock := time.Now()
	r.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	tick := func() { mu.Lock(); clock = clock.Add(certCheckEvery); mu.Unlock() }
	web := colorServer(t, "blue")
	gw := startTrafficGateway(t, testConfig(t, []string{hostPort(web)}, nil, ""),
		&tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}, GetCertificate: r.GetCertificate})
	require.Equal(t, "gateway-1", servedCN(t, gw.Addr, ca))

	cert2, key2 := ca.Issue(t, "gateway-2")
	swap("..v2", cert2, key2)
	assert.Equal(t, "gateway-1", servedCN(t, gw.Addr, ca), "files are looked at once per check interval")
	tick()
	assert.Equal(t, "gateway-2", servedCN(t, gw.Addr, ca), "the rotated certificate is served without a restart")

	// A broken rotation: a certificate whose key does not match.
	cert3, _ := ca.Issue(t, "gateway-3")
	swap("..v3", cert3, key2)
	tick()
	assert.Equal(t, "gateway-2", servedCN(t, gw.Addr, ca), "a rotation that does not load keeps the last good certificate")
	cert4, key4 := ca.Issue(t, "gateway-4")
	swap("..v4", cert4, key4)
	tick()
	assert.Equal(t, "gateway-4", servedCN(t, gw.Addr, ca), "the next good rotation is picked up")
}

func TestTLS_MinVersionRefusesOlderClients(t *testing.T) {
	t.Parallel()
	ca := certtest.NewCA(t)
	dir := t.TempDir()
	cert, key := ca.Issue(t, "gateway-1")
	certtest.WriteFiles(t, dir, map[string][]byte{"tls.crt": cert, "tls.key": key})
	tlsConf, err := NewListenerTLS(config.ListenerTLS{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"), MinVersion: "1.3"}, zap.NewNop())
	require.NoError(t, err)
	gw := startTrafficGateway(t, testConfig(t, []string{hostPort(colorServer(t, "blue"))}, nil, ""), tlsConf)
	_, err = tls.Dial("tcp", gw.Addr, &tls.Config{RootCAs: ca.Pool(), ServerName: "gateway.test", MaxVersion: tls.VersionTLS12})
	require.Error(t, err, "a TLS 1.2 client is refused with min_version 1.3")
	assert.Equal(t, "gateway-1", servedCN(t, gw.Addr, ca))
}

// TLS to a gRPC backend that demands a client certificate (mutual TLS):
// the pool's tls section names the CA, the server name and the gateway's
// certificate; without the certificate the backend refuses and the client
// gets UNAVAILABLE.
func TestTLS_MutualTLSToGRPCBackends(t *testing.T) {
	t.Parallel()
	ca := certtest.NewCA(t)
	dir := t.TempDir()
	srvCert, srvKey := ca.Issue(t, "backend")
	cliCert, cliKey := ca.Issue(t, "switchyard")
	certtest.WriteFiles(t, dir, map[string][]byte{"ca.crt": ca.PEM, "client.crt": cliCert, "client.key": cliKey})
	pair, err := tls.X509KeyPair(srvCert, srvKey)
	require.NoError(t, err)
	b := startGRPCBackend(t, "blue", grpc.Creds(credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{pair}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert})))

	testCases := []struct {
		desc string
		tls  string
		want codes.Code
	}{
		{"with the client certificate", "tls: {enabled: true, ca_file: " + filepath.Join(dir, "ca.crt") + ", server_name: backend.test, cert_file: " +
			filepath.Join(dir, "client.crt") + ", key_file: " + filepath.Join(dir, "client.key") + "}", codes.OK},
		{"without a client certificate", "tls: {enabled: true, ca_file: " + filepath.Join(dir, "ca.crt") + ", server_name: backend.test}", codes.Unavailable},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			t.Parallel()
			gw := startTrafficGateway(t, grpcConfig(t, "grpc", []string{b.addr}, nil, ", "+test.tls, ""), nil)
			color, _, err := infer(context.Background(), inference.NewGRPCInferenceServiceClient(grpcConn(t, gw.Addr, nil)))
			if test.want == codes.OK {
				require.NoError(t, err)
				assert.Equal(t, "blue", color)
				return
			}
			requireCode(t, err, test.want)
		})
	}
}
