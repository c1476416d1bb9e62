package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"
	"time"
)

// Target names.
const (
	targetDirect     = "direct"
	targetSwitchyard = "switchyard"
	targetNginx      = "nginx"
	targetHAProxy    = "haproxy"
	targetCaddy      = "caddy"
)

// peers are the proxies Switchyard is compared with.
var peers = []string{targetNginx, targetHAProxy, targetCaddy}

func isPeer(name string) bool {
	for _, p := range peers {
		if p == name {
			return true
		}
	}
	return false
}

// target is something the load generators send to: the upstream itself
// (direct) or a proxy process in front of it.
type target struct {
	name  string
	addr  string
	admin string // Switchyard's admin listener
	proc  *proc  // nil for direct
}

// predictPath and predictBody are the request every generator sends: a
// small inference call, as BenchmarkProxy sends.
const predictPath = "/predict"

var predictBody = []byte(`{"inputs":[[0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]]}`)

// checkPredict sends one request through addr and wants a 200 from the
// upstream of color want.
func checkPredict(addr, want string) error {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Post("http://"+addr+predictPath, "application/json", bytes.NewReader(predictBody))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: %s", predictPath, resp.Status)
	}
	if got := resp.Header.Get(HeaderUpstreamColor); got != want {
		return fmt.Errorf("POST %s: answered by %q, want %q", predictPath, got, want)
	}
	return nil
}

// switchyardConfig is the gateway's config: probes of kind http on the
// stand-ins (every 2 s unless -health-interval), no warmup, warn-level
// logs, every other setting default.
var switchyardConfig = template.Must(template.New("switchyard").Parse(`listen: {{.Listen}}
admin: {listen: {{.Admin}}}
active: blue
log: {format: json, level: warn}
health: {kind: http, path: /health{{if .Interval}}, interval: {{.Interval}}{{end}}}
pools:
  blue:
    version: blue
    backends: [{{.Blue}}]
  green:
    version: green
    backends: [{{.Green}}]
`))

// startSwitchyard runs the gateway with l's workers (GOMAXPROCS), pinned
// as l says, over the given backends and waits until every backend of
// both pools is ready. interval, when not empty, is health.interval.
func (h *harness) startSwitchyard(l layout, name string, blue, green []string, interval string) (*target, error) {
	return h.startSwitchyardWith(l, name, blue, green, interval, "")
}

// startSwitchyardWith is startSwitchyard with extra top-level YAML
// appended to the config.
func (h *harness) startSwitchyardWith(l layout, name string, blue, green []string, interval, extra string) (*target, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	adminPort, err := freePort()
	if err != nil {
		return nil, err
	}
	t := &target{name: targetSwitchyard, addr: "127.0.0.1:" + strconv.Itoa(port), admin: "127.0.0.1:" + strconv.Itoa(adminPort)}
	var cfg bytes.Buffer
	if err := switchyardConfig.Execute(&cfg, map[string]string{"Listen": t.addr, "Admin": t.admin,
		"Blue": strings.Join(blue, ", "), "Green": strings.Join(green, ", "), "Interval": interval}); err != nil {
		return nil, err
	}
	if n := h.opts.maxConnsPerBackend; n > 0 {
		fmt.Fprintf(&cfg, "proxy: {max_conns_per_backend: %d}\n", n)
	}
	cfg.WriteString(extra)
	path := filepath.Join(h.dir, name+".yaml")
	if err := os.WriteFile(path, cfg.Bytes(), 0o644); err != nil {
		return nil, err
	}
	p, err := startProc(name, h.dir, []string{"GOMAXPROCS=" + strconv.Itoa(l.workers)}, nil, h.sybin, "serve", "--config", path)
	if err != nil {
		return nil, err
	}
	h.procs = append(h.procs, p)
	t.proc = p
	if err := pinProxy(l, p); err != nil {
		h.stopProc(p)
		return nil, err
	}
	err = waitFor(h.ctx, p, 60*time.Second, name+" ready", func() error {
		st, err := switchyardStatus(t.admin)
		if err != nil {
			return err
		}
		for color, want := range map[string]int{"blue": len(blue), "green": len(green)} {
			if got := st.Pools[color].ReadyBackends; got != want {
				return fmt.Errorf("%s: %d of %d backends ready", color, got, want)
			}
		}
		return checkPredict(t.addr, "blue")
	})
	if err != nil {
		h.stopProc(p)
		return nil, err
	}
	return t, nil
}

// sbStatus is the part of GET /admin/status the harness reads.
type sbStatus struct {
	Active string `json:"active"`
	Pools  map[string]struct {
		ReadyBackends int `json:"ready_backends"`
		Backends      []struct {
			OpenConns int64 `json:"open_conns"`
		} `json:"backends"`
	} `json:"pools"`
}

func switchyardStatus(admin string) (*sbStatus, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + admin + "/admin/status")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /admin/status: %s", resp.Status)
	}
	var st sbStatus
	return &st, json.NewDecoder(resp.Body).Decode(&st)
}

// nginxConfig: an upstream block with keepalive, HTTP/1.1 and an empty
// Connection header toward it, as nginx's documentation prescribes for
// upstream keep-alive. Everything lives in the run's temp directory.
var nginxConfig = template.Must(template.New("nginx").Parse(`daemon off;
master_process on;
worker_processes {{.Workers}};
worker_rlimit_nofile {{.NoFile}};
pid {{.Dir}}/nginx.pid;
error_log {{.Dir}}/error.log warn;
events { worker_connections 16384; }
http {
    access_log off;
    client_body_temp_path {{.Dir}}/client_body;
    proxy_temp_path {{.Dir}}/proxy;
    fastcgi_temp_path {{.Dir}}/fastcgi;
    uwsgi_temp_path {{.Dir}}/uwsgi;
    scgi_temp_path {{.Dir}}/scgi;
    keepalive_timeout 90s;
    keepalive_requests 1000000;
    upstream backend {
        server {{.Upstream}};
        keepalive 256;
        keepalive_requests 1000000;
        keepalive_timeout 60s;
    }
    server {
        listen {{.Listen}};
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
`))

// haproxyConfig: HTTP mode with keep-alive on both sides and connection
// reuse across clients (http-reuse always), nbthread like the others.
var haproxyConfig = template.Must(template.New("haproxy").Parse(`global
    nbthread {{.Workers}}
    maxconn {{.MaxConn}}

defaults
    mode http
    option http-keep-alive
    http-reuse always
    maxconn {{.MaxConn}}
    timeout connect 2s
    timeout client 90s
    timeout server 60s
    timeout http-keep-alive 90s

frontend fe
    bind {{.Listen}}
    default_backend be

backend be
    server up1 {{.Upstream}}
`))

// caddyConfig: reverse_proxy with the admin endpoint off (its autosave
// lands in XDG_CONFIG_HOME, the temp directory), no automatic
// HTTPS, and an idle pool as large as the others'.
var caddyConfig = template.Must(template.New("caddy").Parse(`{
	admin off
	auto_https off
	log {
		level WARN
	}
}

http://{{.Listen}} {
	reverse_proxy {{.Upstream}} {
		transport http {
			keepalive 90s
			keepalive_idle_conns 256
			keepalive_idle_conns_per_host 256
		}
	}
}
`))

// peerBinary is the executable of each peer proxy.
var peerBinary = map[string]string{targetNginx: "nginx", targetHAProxy: "haproxy", targetCaddy: "caddy"}

// startPeer runs nginx, HAProxy or Caddy in its own directory on a free
// loopback port in front of upstream, with l's workers, pinned as l says.
func (h *harness) startPeer(l layout, name, upstream string) (*target, error) {
	bin, err := exec.LookPath(peerBinary[name])
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(h.dir, fmt.Sprintf("%s-w%d", name, l.workers))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	// nginx workers drop root to nobody; let them reach their temp paths.
	_ = os.Chmod(h.dir, 0o755)
	t := &target{name: name, addr: "127.0.0.1:" + strconv.Itoa(port)}
	// HAProxy refuses to start when 2 x maxconn exceeds RLIMIT_NOFILE.
	maxConn := 100000
	if n := int(h.res.Settings.NoFile); n > 0 {
		maxConn = min(maxConn, (n-512)/2)
	}
	vars := map[string]any{"Dir": dir, "Workers": l.workers, "Listen": t.addr, "Upstream": upstream, "MaxConn": maxConn,
		"NoFile": max(1024, int(h.res.Settings.NoFile))}
	var tmpl *template.Template
	var argv []string
	var env []string
	switch name {
	case targetNginx:
		tmpl = nginxConfig
		argv = []string{bin, "-p", dir + "/", "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log")}
	case targetHAProxy:
		tmpl = haproxyConfig
		argv = []string{bin, "-db", "-f", filepath.Join(dir, "haproxy.cfg")}
	case targetCaddy:
		tmpl = caddyConfig
		argv = []string{bin, "run", "--config", filepath.Join(dir, "Caddyfile"), "--adapter", "caddyfile"}
		env = []string{"HOME=" + dir, "XDG_DATA_HOME=" + filepath.Join(dir, "data"), "XDG_CONFIG_HOME=" + filepath.Join(dir, "config"),
			"GOMAXPROCS=" + strconv.Itoa(l.workers)}
	}
	var cfg bytes.Buffer
	if err := tmpl.Execute(&cfg, vars); err != nil {
		return nil, err
	}
	cfgPath := map[string]string{targetNginx: "nginx.conf", targetHAProxy: "haproxy.cfg", targetCaddy: "Caddyfile"}[name]
	if err := os.WriteFile(filepath.Join(dir, cfgPath), cfg.Bytes(), 0o644); err != nil {
		return nil, err
	}
	p, err := startProc(name, dir, env, nil, argv...)
	if err != nil {
		return nil, err
	}
	h.procs = append(h.procs, p)
	t.proc = p
	if err := pinProxy(l, p); err != nil {
		h.stopProc(p)
		return nil, err
	}
	if err := waitFor(h.ctx, p, 30*time.Second, name+" ready", func() error { return checkPredict(t.addr, "blue") }); err != nil {
		h.stopProc(p)
		return nil, err
	}
	return t, nil
}
