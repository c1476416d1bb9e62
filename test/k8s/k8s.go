// Package k8s runs a real etcd and kube-apiserver on loopback for the
// tests that need the Kubernetes API (build tag k8s): free ports, a
// temporary directory, the API server's own self-signed serving
// certificate, a generated service-account key and static bearer tokens.
// The binaries are built once by test/k8sbin/build.sh (make k8s-bin) into
// a cache outside the repository.
package k8s

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// BinVersion names the cache directory of the binaries: kube-apiserver
// and etcd versions, as test/k8sbin/build.sh writes them.
const BinVersion = "v1.36.3-etcd3.6.13"

// ErrNoBinaries is returned by Start when the binaries are not built.
var ErrNoBinaries = errors.New("k8s: kube-apiserver or etcd not built")

// BinDir is where the binaries are: $SWITCHYARD_K8S_BIN, else
// $HOME/.cache/switchyard/k8s/BinVersion.
func BinDir() string {
	if d := os.Getenv("SWITCHYARD_K8S_BIN"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = os.TempDir()
	}
	return filepath.Join(home, ".cache", "switchyard", "k8s", BinVersion)
}

// User is a static bearer token the API server accepts.
type User struct {
	Token, Name string
	Groups      []string
}

// Admin is the user every Cluster knows: it is in system:masters.
var Admin = User{Token: "admin-" + randomHex(16), Name: "admin", Groups: []string{"system:masters"}}

// ServiceAccount returns the user a pod of service account name in ns
// authenticates as, with a static token, so RBAC bindings to that service
// account apply to it.
func ServiceAccount(ns, name string) User {
	return User{Token: "sa-" + randomHex(16), Name: "system:serviceaccount:" + ns + ":" + name,
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}}
}

// Cluster is a running etcd and kube-apiserver.
type Cluster struct {
	// URL is the API server, https://127.0.0.1:PORT.
	URL string

	dir     string
	bin     string
	etcd    *process
	api     *process
	apiArgs []string
	starts  int
}

// Start starts etcd and the API server, which knows Admin and users, and
// returns once the API server is ready. Close stops both.
func Start(users ...User) (*Cluster, error) {
	bin := BinDir()
	for _, b := range []string{"etcd", "apiserver"} {
		if fi, err := os.Stat(filepath.Join(bin, b)); err != nil || fi.Mode()&0o111 == 0 {
			return nil, fmt.Errorf("%w: no %s in %s; run make k8s-bin (test/k8sbin/build.sh)", ErrNoBinaries, b, bin)
		}
	}
	dir, err := os.MkdirTemp("", "switchyard-k8s-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir, bin: bin}
	if err := c.start(users); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func (c *Cluster) start(users []User) error {
	clientPort, peerPort, apiPort := freePort(), freePort(), freePort()
	etcdURL := "http://127.0.0.1:" + clientPort
	var err error
	c.etcd, err = startProcess(filepath.Join(c.dir, "etcd.log"), filepath.Join(c.bin, "etcd"),
		"--name=default", "--data-dir="+filepath.Join(c.dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls=http://127.0.0.1:"+peerPort, "--initial-advertise-peer-urls=http://127.0.0.1:"+peerPort,
		"--initial-cluster=default=http://127.0.0.1:"+peerPort, "--unsafe-no-fsync", "--log-level=warn")
	if err != nil {
		return err
	}
	if err := waitHTTP(etcdURL+"/health", "", 30*time.Second, c.etcd); err != nil {
		return fmt.Errorf("k8s: etcd did not become healthy: %w\n%s", err, c.etcd.tail())
	}

	var tokens bytes.Buffer
	for _, u := range append([]User{Admin}, users...) {
		fmt.Fprintf(&tokens, "%s,%s,%s,\"%s\"\n", u.Token, u.Name, u.Name, strings.Join(u.Groups, ","))
	}
	tokenFile := filepath.Join(c.dir, "tokens.csv")
	if err := os.WriteFile(tokenFile, tokens.Bytes(), 0o600); err != nil {
		return err
	}
	keyFile := filepath.Join(c.dir, "sa.key")
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		return err
	}
	c.URL = "https://127.0.0.1:" + apiPort
	c.apiArgs = []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port=" + apiPort,
		"--cert-dir=" + filepath.Join(c.dir, "certs"),
		"--token-auth-file=" + tokenFile,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + keyFile, "--service-account-signing-key-file=" + keyFile,
		"--service-cluster-ip-range=10.96.0.0/16",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
	}
	return c.StartAPIServer()
}

// StartAPIServer starts the API server again after StopAPIServer, on the
// same port with the same etcd, and returns once it is ready.
func (c *Cluster) StartAPIServer() error {
	c.starts++
	var err error
	c.api, err = startProcess(filepath.Join(c.dir, fmt.Sprintf("apiserver-%d.log", c.starts)), filepath.Join(c.bin, "apiserver"), c.apiArgs...)
	if err != nil {
		return err
	}
	if err := waitHTTP(c.URL+"/readyz", Admin.Token, 60*time.Second, c.api); err != nil {
		return fmt.Errorf("k8s: kube-apiserver did not become ready: %w\n%s", err, c.api.tail())
	}
	return nil
}

// StopAPIServer stops the API server; etcd keeps the data.
func (c *Cluster) StopAPIServer() {
	if c.api != nil {
		c.api.stop()
		c.api = nil
	}
}

// Close stops the API server and etcd and removes their files.
func (c *Cluster) Close() {
	c.StopAPIServer()
	if c.etcd != nil {
		c.etcd.stop()
	}
	_ = os.RemoveAll(c.dir)
}

// Logs returns the end of the API server's log, for a failing test.
func (c *Cluster) Logs() string {
	if c.api == nil {
		return "(the API server is stopped)"
	}
	return c.api.tail()
}

// RESTConfig is a client config for the API server as user u. The
// serving certificate is the API server's self-signed one, so it is not
// verified: everything runs on loopback.
func (c *Cluster) RESTConfig(u User) *rest.Config {
	return &rest.Config{Host: c.URL, BearerToken: u.Token, TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		QPS: 200, Burst: 400, Timeout: 10 * time.Second}
}

// Client is a clientset as Admin.
func (c *Cluster) Client() (kubernetes.Interface, error) {
	return kubernetes.NewForConfig(c.RESTConfig(Admin))
}

// WriteKubeconfig writes a kubeconfig for user u to path, for a process
// under test (fleet.kubernetes.kubeconfig).
func (c *Cluster) WriteKubeconfig(path string, u User) error {
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: %q, insecure-skip-tls-verify: true}
users:
- name: %q
  user: {token: %q}
contexts:
- name: test
  context: {cluster: test, user: %q}
current-context: test
`, c.URL, u.Name, u.Token, u.Name)
	return os.WriteFile(path, []byte(kc), 0o600)
}

// process is a child process in its own process group, killed with the
// test process (Pdeathsig) if it dies first.
type process struct {
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
}

func startProcess(logPath, bin string, args ...string) (*process, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("k8s: starting %s: %w", bin, err)
	}
	p := &process{cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// stop sends SIGTERM, then SIGKILL after 10 s, and waits for the exit.
func (p *process) stop() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.exited:
		return
	case <-time.After(10 * time.Second):
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.exited
}

func (p *process) alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// tail returns the last 8 KiB of the process's log.
func (p *process) tail() string {
	f, err := os.Open(p.log)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > 8<<10 {
		_, _ = f.Seek(-8<<10, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// waitHTTP polls url until it answers 200, p exits or timeout passes.
func waitHTTP(url, token string, timeout time.Duration, p *process) error {
	hc := &http.Client{Timeout: time.Second, Transport: insecureTransport()}
	defer hc.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last := errors.New("no answer yet")
	for {
		if !p.alive() {
			return fmt.Errorf("the process exited: %w", last)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(body))
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %w)", ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// insecureTransport trusts the API server's self-signed certificate.
func insecureTransport() *http.Transport {
	return &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // loopback test server
}

func freePort() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("k8s: no free port: %v", err))
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
