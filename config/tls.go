package config

import (
	"crypto/tls"
	"crypto/x509"
	"os"
)

// Upstream protocols: what a pool's backends speak.
const (
	// ProtocolHTTP1 backends take HTTP/1.1. HTTP/2 clients' requests are
	// forwarded to them over HTTP/1.1; gRPC calls are refused.
	ProtocolHTTP1 = "http1"
	// ProtocolH2C backends take HTTP/2 with prior knowledge (cleartext, or
	// TLS with ALPN h2 when the pool's tls is enabled): any HTTP/2 request,
	// gRPC included.
	ProtocolH2C = "h2c"
	// ProtocolGRPC backends serve gRPC over HTTP/2 (Triton's 8001,
	// TorchServe's 7070, KServe's gRPC port). The gateway refuses HTTP/2
	// requests that are not gRPC with 415 instead of forwarding them.
	ProtocolGRPC = "grpc"
)

// TLS versions min_version accepts.
const (
	TLS12 = "1.2"
	TLS13 = "1.3"
)

// ListenerTLS serves the traffic listener over TLS. With TLS, HTTP/2 is
// negotiated by ALPN (h2, then http/1.1); without it, HTTP/2 is accepted
// in cleartext with prior knowledge (h2c), as gRPC clients send it.
type ListenerTLS struct {
	// CertFile is the PEM certificate chain (leaf first). Default "": the
	// listener is plain TCP. Set both CertFile and KeyFile, or neither.
	// Turning TLS on or off, or naming other files, needs a restart (a
	// reload reports it in restart_needed); new contents of the files
	// (cert-manager's rotation through the kubelet's symlink swap
	// included) are served from the next handshake, without restart.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key of CertFile. Default "".
	KeyFile string `yaml:"key_file"`
	// MinVersion is the lowest TLS version accepted: "1.2" (default) or
	// "1.3". Changing it needs a restart.
	MinVersion string `yaml:"min_version"`
}

// On reports whether the traffic listener serves TLS.
func (t *ListenerTLS) On() bool { return t.CertFile != "" || t.KeyFile != "" }

// UpstreamTLS is TLS from the gateway to a pool's backends. It needs an
// HTTP/2 protocol (h2c or grpc): HTTP/2 is then negotiated by ALPN. The
// health probes and the warmup dial the backends with the same settings
// (gRPC over TLS; https for the HTTP kinds, HTTP/2 or HTTP/1.1 by ALPN).
// A reload that changes them takes effect on new connections: the proxy,
// the probes and the warmup dial the pool's backends anew.
type UpstreamTLS struct {
	// Enabled dials the backends with TLS. Default false: cleartext.
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM bundle of the CAs that may sign the backends'
	// certificates. Default "": the system roots.
	CAFile string `yaml:"ca_file"`
	// ServerName is the name the backends' certificates must carry and
	// the SNI sent. Default "": the backend's host.
	ServerName string `yaml:"server_name"`
	// CertFile and KeyFile are the gateway's client certificate and key
	// (PEM) for mutual TLS. Default "": no client certificate. Set both
	// or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// validateTLS checks the traffic listener's TLS section and each pool's
// protocol and upstream TLS, reading the certificate files so that a file
// that will not load fails the config, not the first handshake.
func (c *Config) validateTLS(p *problems) {
	t := &c.TLS
	switch t.MinVersion {
	case TLS12, TLS13:
	default:
		p.add("tls.min_version", "%q is not a TLS version this gateway accepts (want \"1.2\" or \"1.3\")", t.MinVersion)
	}
	if t.On() {
		checkKeyPair(p, "tls", t.CertFile, t.KeyFile, true)
	}
	protocols := map[Color]string{}
	for _, color := range []Color{Blue, Green} {
		pool := c.Pools.Get(color)
		path := "pools." + string(color)
		switch pool.Protocol {
		case ProtocolHTTP1, ProtocolH2C, ProtocolGRPC:
			protocols[color] = pool.Protocol
		default:
			p.add(path+".protocol", "%q is not http1, h2c or grpc", pool.Protocol)
		}
		u := &pool.TLS
		if !u.Enabled {
			if u.CAFile != "" || u.ServerName != "" || u.CertFile != "" || u.KeyFile != "" {
				p.add(path+".tls.enabled", "is false but other tls fields are set; set enabled: true to dial the backends with TLS")
			}
			continue
		}
		if pool.Protocol == ProtocolHTTP1 {
			p.add(path+".tls.enabled", "TLS to backends needs protocol h2c or grpc (HTTP/2 by ALPN); http1 backends are dialed in cleartext")
		}
		if u.CAFile != "" {
			pem, err := os.ReadFile(u.CAFile)
			switch {
			case err != nil:
				p.add(path+".tls.ca_file", "%v; point at a PEM bundle of the backends' CAs", err)
			case !x509.NewCertPool().AppendCertsFromPEM(pem):
				p.add(path+".tls.ca_file", "%q holds no PEM certificate", u.CAFile)
			}
		}
		if u.CertFile != "" || u.KeyFile != "" {
			checkKeyPair(p, path+".tls", u.CertFile, u.KeyFile, false)
		}
	}
	if a, b := protocols[Blue], protocols[Green]; a != "" && b != "" && a != b {
		p.add("pools.green.protocol", "%q differs from pools.blue.protocol %q; both colors must speak the same protocol, or a switch would change what clients can send", b, a)
	}
}

// checkKeyPair reports a certificate and key that are not both set or do
// not load as a pair.
func checkKeyPair(p *problems, path, cert, key string, serving bool) {
	switch {
	case cert == "":
		p.add(path+".cert_file", "missing; key_file is set, so set the certificate file too")
	case key == "":
		p.add(path+".key_file", "missing; cert_file is set, so set the private key file too")
	default:
		if _, err := tls.LoadX509KeyPair(cert, key); err != nil {
			what := "the client certificate"
			if serving {
				what = "the listener's certificate"
			}
			p.add(path+".cert_file", "%s does not load: %v; point cert_file and key_file at a PEM certificate and its key", what, err)
		}
	}
}
