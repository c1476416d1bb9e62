//go:build k8s

package fleete2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/admin"
	"github.com/switchyard/switchyard/fleet"
	"github.com/switchyard/switchyard/modelsim"
	"github.com/switchyard/switchyard/test/k8s"
	"go.uber.org/goleak"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// The namespace and names of deploy/k8s, whose Role the gateways run
// under: they authenticate as its service account.
const (
	namespace  = "ml"
	intentName = "switchyard-fleet"
)

var (
	cluster  *k8s.Cluster
	adminCS  kubernetes.Interface
	gwUser   = k8s.ServiceAccount(namespace, "switchyard")
	binPath  string
	repoRoot string
)

func TestMain(m *testing.M) {
	code, err := setup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "test/fleet:", err)
		if errors.Is(err, k8s.ErrNoBinaries) && os.Getenv("CI") != "true" {
			fmt.Println("SKIP: the real-API-server tests need kube-apiserver and etcd; run make k8s-bin")
			os.Exit(0)
		}
		os.Exit(1)
	}
	os.Exit(code(m))
}

// setup starts the API server, builds the gateway and applies deploy/k8s;
// it returns what runs the tests and tears it all down.
func setup() (func(*testing.M) int, error) {
	wd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	repoRoot = filepath.Dir(filepath.Dir(wd))
	dir, err := os.MkdirTemp("", "switchyard-fleet-")
	if err != nil {
		return nil, err
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	binPath = filepath.Join(dir, "switchyard")
	build := exec.Command(goTool, "build", "-o", binPath, "./cmd/switchyard")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building switchyard: %w\n%s", err, out)
	}
	cluster, err = k8s.Start(gwUser)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if adminCS, err = cluster.Client(); err == nil {
		err = applyManifests(context.Background(), false)
	}
	if err != nil {
		cluster.Close()
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return func(m *testing.M) int {
		defer os.RemoveAll(dir)
		code := m.Run()
		cluster.Close()
		if code == 0 {
			// Every gateway process and load goroutine is stopped by its
			// test; client-go keeps the HTTP/2 connections of its shared
			// transport open.
			if err := goleak.Find(goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
				goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
				goleak.IgnoreAnyFunction("golang.org/x/net/http2.(*ClientConn).readLoop")); err != nil {
				fmt.Fprintln(os.Stderr, "goleak:", err)
				return 1
			}
		}
		return code
	}, nil
}

// resetFleet empties the intent and removes every replica's Lease, so a
// test starts with a fleet that has never run.
func resetFleet(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	cm, err := adminCS.CoreV1().ConfigMaps(namespace).Get(ctx, intentName, metav1.GetOptions{})
	require.NoError(t, err)
	cm.Data = nil
	_, err = adminCS.CoreV1().ConfigMaps(namespace).Update(ctx, cm, metav1.UpdateOptions{})
	require.NoError(t, err)
	require.NoError(t, adminCS.CoordinationV1().Leases(namespace).DeleteCollection(ctx, metav1.DeleteOptions{},
		metav1.ListOptions{LabelSelector: fleet.LabelFleet + "=" + intentName}))
}

// intent reads the intent ConfigMap's data.
func intent(t *testing.T) map[string]string {
	t.Helper()
	cm, err := adminCS.CoreV1().ConfigMaps(namespace).Get(context.Background(), intentName, metav1.GetOptions{})
	require.NoError(t, err)
	return cm.Data
}

// pools are the simulated model servers both colors run on: two each,
// shared by every gateway.
type pools struct {
	blue, green []*modelsim.Server
}

func startPools(t *testing.T) *pools {
	t.Helper()
	p := &pools{}
	for i := range 2 {
		for _, c := range []struct {
			color, version string
			dst            *[]*modelsim.Server
		}{{"blue", "v1", &p.blue}, {"green", "v2", &p.green}} {
			s, err := modelsim.Start("127.0.0.1:0", modelsim.Options{Color: c.color, Version: c.version})
			require.NoError(t, err, "model server %s-%d", c.color, i)
			t.Cleanup(func() { _ = s.Close() })
			*c.dst = append(*c.dst, s)
		}
	}
	return p
}

func addrs(ss []*modelsim.Server) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.Addr())
	}
	return out
}

// gateway is one switchyard process in the fleet.
type gateway struct {
	name                 string
	traffic, admin       string
	cfgPath, logPath     string
	blueAddrs, greenAddr []string
	cmd                  *exec.Cmd
	exited               chan struct{}
}

// gatewayYAML is a fleet member's config: fast probes, no warmup, no
// automatic rollback (the tests drive every switch).
func (g *gateway) yaml(active string) string {
	quote := func(as []string) string { return "[" + strings.Join(as, ", ") + "]" }
	return fmt.Sprintf(`listen: %s
admin: {listen: %s}
active: %s
log: {level: info}
health: {interval: 100ms, timeout: 100ms, healthy_threshold: 1, unhealthy_threshold: 1}
warmup: {enabled: false}
outlier: {consecutive_failures: -1}
pools:
  blue: {version: v1, backends: %s}
  green: {version: v2, backends: %s}
switch: {drain_timeout: 5s}
analysis: {auto_rollback: false}
fleet:
  kubernetes: {namespace: %s, name: %s, kubeconfig: %s}
  replica: %s
  heartbeat: 200ms
  member_timeout: 2s
  prepare_timeout: 3s
  stale_timeout: 3s
  start_timeout: 30s
`, g.traffic, g.admin, active, quote(g.blueAddrs), quote(g.greenAddr), namespace, intentName,
		filepath.Join(filepath.Dir(g.cfgPath), "kubeconfig"), g.name)
}

// newGateway prepares gateway name over p (green reached through
// greenAddrs when given) and starts it with its file saying active.
func newGateway(t *testing.T, name string, p *pools, active string, greenAddrs ...string) *gateway {
	t.Helper()
	dir := t.TempDir()
	g := &gateway{name: name, traffic: freeAddr(t), admin: freeAddr(t), cfgPath: filepath.Join(dir, "switchyard.yaml"),
		blueAddrs: addrs(p.blue), greenAddr: addrs(p.green)}
	if len(greenAddrs) > 0 {
		g.greenAddr = greenAddrs
	}
	require.NoError(t, cluster.WriteKubeconfig(filepath.Join(dir, "kubeconfig"), gwUser))
	require.NoError(t, os.WriteFile(g.cfgPath, []byte(g.yaml(active)), 0o644))
	g.start(t)
	t.Cleanup(func() {
		g.kill()
		if t.Failed() {
			g.dumpLog(t)
		}
	})
	return g
}

// start runs the process and waits until its admin API answers.
func (g *gateway) start(t *testing.T) {
	t.Helper()
	g.logPath = filepath.Join(filepath.Dir(g.cfgPath), fmt.Sprintf("%s-%d.log", g.name, time.Now().UnixNano()))
	f, err := os.Create(g.logPath)
	require.NoError(t, err)
	g.cmd = exec.Command(binPath, "serve", "--config", g.cfgPath)
	g.cmd.Stdout, g.cmd.Stderr = f, f
	g.cmd.Env = append(os.Environ(), "POD_NAME=", "POD_NAMESPACE=")
	g.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	require.NoError(t, g.cmd.Start())
	_ = f.Close()
	g.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) {
		_ = cmd.Wait()
		close(exited)
	}(g.cmd, g.exited)
	eventually(t, 40*time.Second, g.name+" answers /healthz", func() (bool, string) {
		select {
		case <-g.exited:
			t.Fatalf("%s exited while starting:\n%s", g.name, tail(g.logPath))
		default:
		}
		code, body := g.get("/healthz")
		return code == http.StatusOK, body
	})
}

// kill stops the process at once (SIGKILL) and waits for it.
func (g *gateway) kill() {
	if g.cmd == nil || g.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-g.cmd.Process.Pid, syscall.SIGKILL)
	<-g.exited
}

func (g *gateway) dumpLog(t *testing.T) {
	t.Helper()
	t.Logf("---- end of %s's log ----\n%s", g.name, tail(g.logPath))
}

var adminClient = &http.Client{Timeout: 15 * time.Second}

// get GETs path on the admin API.
func (g *gateway) get(path string) (int, string) {
	resp, err := adminClient.Get("http://" + g.admin + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// call sends method path with body and headers to the admin API.
func (g *gateway) call(t *testing.T, method, path, body string, header map[string]string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+g.admin+path, strings.NewReader(body))
	require.NoError(t, err)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := adminClient.Do(req)
	require.NoError(t, err, "%s %s on %s", method, path, g.name)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.Unmarshal(b, &out), "%s %s on %s: %s", method, path, g.name, b)
	return resp.StatusCode, out
}

// status reads GET /admin/status.
func (g *gateway) status() (*admin.Status, error) {
	code, body := g.get("/admin/status")
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET /admin/status on %s: %d %s", g.name, code, body)
	}
	var st admin.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		return nil, err
	}
	if st.Fleet == nil {
		return nil, fmt.Errorf("%s: no fleet in the status", g.name)
	}
	return &st, nil
}

// self is the replica's own entry in its fleet status.
func self(st *admin.Status) fleet.Replica {
	for _, r := range st.Fleet.Replicas {
		if r.Self {
			return r
		}
	}
	return fleet.Replica{}
}

// waitReady waits until every gateway's /readyz answers 200 and each sees
// all of them live.
func waitReady(t *testing.T, gws ...*gateway) {
	t.Helper()
	for _, g := range gws {
		eventually(t, 30*time.Second, g.name+" is ready and sees the fleet", func() (bool, string) {
			if code, body := g.get("/readyz"); code != http.StatusOK {
				return false, body
			}
			st, err := g.status()
			if err != nil {
				return false, err.Error()
			}
			live := 0
			for _, r := range st.Fleet.Replicas {
				if r.Live {
					live++
				}
			}
			return live == len(gws), fmt.Sprintf("%d of %d live: %+v", live, len(gws), st.Fleet.Replicas)
		})
	}
}

// waitServing waits until g serves generation gen or later and returns
// its status then.
func waitServing(t *testing.T, g *gateway, gen uint64) *admin.Status {
	t.Helper()
	var st *admin.Status
	eventually(t, 20*time.Second, fmt.Sprintf("%s serves generation %d", g.name, gen), func() (bool, string) {
		var err error
		if st, err = g.status(); err != nil {
			return false, err.Error()
		}
		r := self(st)
		return r.Generation >= gen, fmt.Sprintf("at %d", r.Generation)
	})
	return st
}

// eventually polls cond every 5ms until it holds, failing the test with
// its last explanation after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last: %s", what, timeout, detail)
		}
		<-tick.C
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}

func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > 24<<10 {
		b = b[len(b)-24<<10:]
	}
	return string(b)
}

// forwarder relays TCP connections to a backend; Block makes it refuse
// them, as a network fault between one gateway and one backend would.
type forwarder struct {
	addr, target string
	mu           sync.Mutex
	ln           net.Listener
	conns        map[net.Conn]bool
	wg           sync.WaitGroup
}

func newForwarder(t *testing.T, target string) *forwarder {
	t.Helper()
	f := &forwarder{target: target, conns: map[net.Conn]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f.addr = ln.Addr().String()
	f.serve(ln)
	t.Cleanup(func() {
		f.Block()
		f.wg.Wait()
	})
	return f
}

func (f *forwarder) serve(ln net.Listener) {
	f.mu.Lock()
	f.ln = ln
	f.mu.Unlock()
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", f.target)
			if err != nil {
				_ = c.Close()
				continue
			}
			f.mu.Lock()
			f.conns[c], f.conns[up] = true, true
			f.mu.Unlock()
			f.wg.Add(2)
			pipe := func(dst, src net.Conn) {
				defer f.wg.Done()
				_, _ = io.Copy(dst, src)
				_ = dst.Close()
				_ = src.Close()
			}
			go pipe(up, c)
			go pipe(c, up)
		}
	}()
}

// Block closes the listener and every relayed connection: new connections
// are refused.
func (f *forwarder) Block() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ln != nil {
		_ = f.ln.Close()
		f.ln = nil
	}
	for c := range f.conns {
		_ = c.Close()
	}
	clear(f.conns)
}

// Unblock listens again on the same address.
func (f *forwarder) Unblock(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", f.addr)
	require.NoError(t, err)
	f.serve(ln)
}

// load sends predictions to the gateways from workers goroutines, worker
// i to gateway i mod len, each at most rate per second, and records every
// answer.
type load struct {
	gws     []*gateway
	stop    chan struct{}
	wg      sync.WaitGroup
	results [][]sample
}

// sample is one request: which gateway, when it was sent, what came back.
type sample struct {
	gw     int
	sent   time.Time
	status int
	color  string
	err    string
	// took is until the whole answer was read.
	took time.Duration
}

func startLoad(t *testing.T, gws []*gateway, workers int, rate float64) *load {
	t.Helper()
	l := &load{gws: gws, stop: make(chan struct{}), results: make([][]sample, workers)}
	tr := &http.Transport{MaxIdleConnsPerHost: workers, IdleConnTimeout: 30 * time.Second}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	body := []byte(`{"inputs": [[1, 2, 3, 4]]}`)
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			gi := w % len(gws)
			tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
			defer tick.Stop()
			for {
				select {
				case <-l.stop:
					return
				case <-tick.C:
				}
				s := sample{gw: gi, sent: time.Now()}
				resp, err := client.Post("http://"+gws[gi].traffic+"/predict", "application/json", bytes.NewReader(body))
				if err != nil {
					s.err = err.Error()
				} else {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					s.status, s.color = resp.StatusCode, resp.Header.Get("X-Switchyard-Color")
				}
				s.took = time.Since(s.sent)
				l.results[w] = append(l.results[w], s)
			}
		}()
	}
	t.Cleanup(func() {
		l.Stop()
		tr.CloseIdleConnections()
	})
	return l
}

// Stop ends the load and returns every sample, in no order.
func (l *load) Stop() []sample {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
	var out []sample
	for _, r := range l.results {
		out = append(out, r...)
	}
	return out
}

// failures returns the samples that did not get a 200.
func failures(ss []sample) []sample {
	var out []sample
	for _, s := range ss {
		if s.err != "" || s.status != http.StatusOK {
			out = append(out, s)
		}
	}
	return out
}
