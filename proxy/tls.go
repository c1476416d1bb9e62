package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/switchyard/switchyard/config"
	"go.uber.org/zap"
)

// certCheckEvery bounds how often a handshake looks at the certificate
// files: a stat of two files at most once a second costs nothing, and a
// rotation is served within a second of landing.
const certCheckEvery = time.Second

// CertReloader serves a certificate from files and re-reads them when they
// change, so that a rotated certificate (cert-manager renewing a Secret,
// which the kubelet swaps in through its ..data symlink) is served from
// the next handshake without a restart. A rotation that does not load (a
// key that does not match, a file caught half-written) keeps the last good
// certificate and is logged once; the next change is tried again.
type CertReloader struct {
	certFile, keyFile string
	log               *zap.Logger
	now               func() time.Time

	mu        sync.Mutex
	cert      *tls.Certificate
	stamp     fileStamp
	checked   time.Time
	lastError string
}

// fileStamp identifies the contents of the two files without reading them.
type fileStamp [2]struct {
	ino, size int64
	mtime     time.Time
}

// NewCertReloader loads the pair once; an error here stops the start.
func NewCertReloader(certFile, keyFile string, log *zap.Logger) (*CertReloader, error) {
	r := &CertReloader{certFile: certFile, keyFile: keyFile, log: log, now: time.Now}
	st, err := r.statFiles()
	if err != nil {
		return nil, fmt.Errorf("proxy: tls: %w", err)
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("proxy: tls: loading %s and %s: %w", certFile, keyFile, err)
	}
	r.cert, r.stamp, r.checked = &cert, st, r.now()
	return r, nil
}

// GetCertificate is tls.Config.GetCertificate (and GetClientCertificate's
// core): the current certificate, re-read first if the files changed.
func (r *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.current(), nil
}

// getClientCertificate is tls.Config.GetClientCertificate for mutual TLS
// to backends.
func (r *CertReloader) getClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return r.current(), nil
}

func (r *CertReloader) current() *tls.Certificate {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if now.Sub(r.checked) < certCheckEvery {
		return r.cert
	}
	r.checked = now
	st, err := r.statFiles()
	if err != nil {
		r.fail(err)
		return r.cert
	}
	if st == r.stamp {
		return r.cert
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		// Half of a rotation, or a broken one: keep serving the old
		// certificate, and look again at the next change.
		r.fail(err)
		return r.cert
	}
	r.cert, r.stamp, r.lastError = &cert, st, ""
	fields := []zap.Field{zap.String("cert_file", r.certFile)}
	if leaf, err := x509.ParseCertificate(cert.Certificate[0]); err == nil {
		fields = append(fields, zap.String("subject", leaf.Subject.String()), zap.Time("not_after", leaf.NotAfter))
	}
	r.log.Info("TLS certificate reloaded", fields...)
	return r.cert
}

func (r *CertReloader) fail(err error) {
	if msg := err.Error(); msg != r.lastError {
		r.lastError = msg
		r.log.Warn("TLS certificate files changed but do not load; serving the previous certificate",
			zap.String("cert_file", r.certFile), zap.String("key_file", r.keyFile), zap.Error(err))
	}
}

func (r *CertReloader) statFiles() (fileStamp, error) {
	var st fileStamp
	for i, name := range [2]string{r.certFile, r.keyFile} {
		fi, err := os.Stat(name) // follows the kubelet's symlinks
		if err != nil {
			return st, err
		}
		st[i].size, st[i].mtime = fi.Size(), fi.ModTime()
		if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
			st[i].ino = int64(sys.Ino)
		}
	}
	return st, nil
}

// NewListenerTLS returns the traffic listener's TLS config: TLS 1.2 or
// later as cfg says, ALPN h2 then http/1.1, the certificate from a
// CertReloader, and Go's default cipher suites (AEAD with forward secrecy
// only for TLS 1.2). It returns nil, nil when TLS is off.
func NewListenerTLS(cfg config.ListenerTLS, log *zap.Logger) (*tls.Config, error) {
	if !cfg.On() {
		return nil, nil
	}
	r, err := NewCertReloader(cfg.CertFile, cfg.KeyFile, log)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:     tlsVersion(cfg.MinVersion),
		NextProtos:     []string{"h2", "http/1.1"},
		GetCertificate: r.GetCertificate,
	}, nil
}

func tlsVersion(v string) uint16 {
	if v == config.TLS13 {
		return tls.VersionTLS13
	}
	return tls.VersionTLS12
}

// errNoCAs is returned for a ca_file without a certificate.
var errNoCAs = errors.New("proxy: tls: ca_file holds no PEM certificate")

// NewUpstreamTLS builds the client TLS config for a pool's backends
// (pools.*.tls), or returns nil, nil when the pool dials in cleartext: TLS
// 1.2 or later, the pool's CAs (the system roots without ca_file), its
// server name, and the client certificate from a CertReloader for mutual
// TLS. It is the one builder of that config: the HTTP/2 transports, the
// health probes and the warmup all dial the backends with what it
// returns. NextProtos is "h2", what the proxy needs; a caller that also
// speaks HTTP/1.1 sets its own on a Clone.
func NewUpstreamTLS(u config.UpstreamTLS, log *zap.Logger) (*tls.Config, error) {
	if !u.Enabled {
		return nil, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: u.ServerName, NextProtos: []string{"h2"}}
	if u.CAFile != "" {
		pem, err := os.ReadFile(u.CAFile)
		if err != nil {
			return nil, fmt.Errorf("proxy: tls: reading ca_file: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%w: %s", errNoCAs, u.CAFile)
		}
	}
	if u.CertFile != "" {
		r, err := NewCertReloader(u.CertFile, u.KeyFile, log)
		if err != nil {
			return nil, err
		}
		c.GetClientCertificate = r.getClientCertificate
	}
	return c, nil
}
