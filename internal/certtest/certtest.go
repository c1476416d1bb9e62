// Package certtest issues throwaway certificates for tests, as
// net/http/httptest runs throwaway servers: a CA made in memory, and
// certificates it signs for servers and clients on loopback.
package certtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Names every issued certificate carries, with the IP 127.0.0.1.
const (
	GatewayName = "gateway.test"
	BackendName = "backend.test"
)

// CA signs certificates valid for a day.
type CA struct {
	// Cert is the CA's own certificate.
	Cert *x509.Certificate
	// PEM is Cert in PEM, as a ca_file holds it.
	PEM []byte
	key *ecdsa.PrivateKey
}

// NewCA makes a CA.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "switchyard test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return &CA{Cert: cert, key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// Issue returns a PEM certificate and key named cn (its common name),
// valid for GatewayName, BackendName and 127.0.0.1, as a server and as a
// client alike.
func (ca *CA) Issue(t testing.TB, cn string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{GatewayName, BackendName}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	require.NoError(t, err)
	kder, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// KeyPair issues a certificate named cn and returns it loaded, for a
// server's or client's tls.Config.
func (ca *CA) KeyPair(t testing.TB, cn string) tls.Certificate {
	t.Helper()
	pair, err := tls.X509KeyPair(ca.Issue(t, cn))
	require.NoError(t, err)
	return pair
}

// Pool is a pool holding the CA alone, for RootCAs or ClientCAs.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// ServerConfig is a server's TLS config with a certificate named cn. With
// clientAuth, clients must present a certificate this CA signed.
func (ca *CA) ServerConfig(t testing.TB, cn string, clientAuth bool) *tls.Config {
	t.Helper()
	c := &tls.Config{Certificates: []tls.Certificate{ca.KeyPair(t, cn)}}
	if clientAuth {
		c.ClientCAs, c.ClientAuth = ca.Pool(), tls.RequireAndVerifyClientCert
	}
	return c
}

// WriteFiles writes name → content under dir (mode 0600).
func WriteFiles(t testing.TB, dir string, files map[string][]byte) {
	t.Helper()
	for name, data := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o600))
	}
}

// Files writes the CA and a certificate named cn with its key into a new
// temporary directory and returns their paths, as a config names them.
func (ca *CA) Files(t testing.TB, cn string) (caFile, certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	cert, key := ca.Issue(t, cn)
	WriteFiles(t, dir, map[string][]byte{"ca.crt": ca.PEM, "tls.crt": cert, "tls.key": key})
	return filepath.Join(dir, "ca.crt"), filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
}
