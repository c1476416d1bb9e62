package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// HeaderUpstreamColor is set by the upstream stand-in on every answer, so
// the switch test sees which pool really served a request, independently
// of the gateway's own X-Switchyard-Color.
const HeaderUpstreamColor = "X-Upstream-Color"

// upstreamStats is what GET /__stats of the stand-in reports.
type upstreamStats struct {
	// Conns counts accepted connections: how well a proxy reuses them.
	Conns    int64 `json:"conns"`
	Requests int64 `json:"requests"`
	Probes   int64 `json:"probes"`
}

// upstreamMain is the stand-in for an inference server, run as a child
// process ("bench upstream ...") so the load generator's garbage
// collection never pauses it. It prints its listen addresses as one JSON
// line on stdout, then serves until SIGTERM (or its parent dies: the
// harness starts it with Pdeathsig).
func upstreamMain(args []string) int {
	fs := flag.NewFlagSet("upstream", flag.ContinueOnError)
	color := fs.String("color", "blue", "color to answer as")
	n := fs.Int("n", 1, "listeners (one per backend)")
	service := fs.Duration("service-time", 0, "time spent on each request")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	var st struct{ conns, requests, probes atomic.Int64 }
	reply := []byte(`{"outputs":[[0.1,0.2,0.3,0.4]],"model_version":"` + *color + `"}`)
	handler := func(ctx *fasthttp.RequestCtx) {
		switch string(ctx.Path()) {
		case "/health":
			st.probes.Add(1)
			ctx.SetBodyString("ok")
		case "/__stats":
			b, _ := json.Marshal(upstreamStats{Conns: st.conns.Load(), Requests: st.requests.Load(), Probes: st.probes.Load()})
			ctx.SetContentType("application/json")
			ctx.SetBody(b)
		default:
			st.requests.Add(1)
			if *service > 0 {
				time.Sleep(*service)
			}
			ctx.Response.Header.Set(HeaderUpstreamColor, *color)
			ctx.SetContentType("application/json")
			ctx.SetBody(reply)
		}
	}
	addrs := make([]string, 0, *n)
	servers := make([]*fasthttp.Server, 0, *n)
	for range *n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, "upstream: listen:", err)
			return 1
		}
		srv := &fasthttp.Server{
			Handler:               handler,
			Name:                  "upstream",
			NoDefaultServerHeader: true,
			NoDefaultDate:         true,
			ConnState: func(_ net.Conn, s fasthttp.ConnState) {
				if s == fasthttp.StateNew {
					st.conns.Add(1)
				}
			},
		}
		go func() { _ = srv.Serve(ln) }()
		addrs = append(addrs, ln.Addr().String())
		servers = append(servers, srv)
	}
	line, _ := json.Marshal(addrs)
	fmt.Println(string(line))
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
	for _, s := range servers {
		_ = s.Shutdown()
	}
	return 0
}

// upstream is a running stand-in process.
type upstream struct {
	color string
	addrs []string
	proc  *proc
}

// startUpstreams starts one stand-in per color with n listeners each.
func (h *harness) startUpstreams(n int) (blue, green *upstream, err error) {
	blue, err = h.startUpstream("blue", n)
	if err != nil {
		return nil, nil, err
	}
	green, err = h.startUpstream("green", n)
	if err != nil {
		h.stopProc(blue.proc)
		return nil, nil, err
	}
	return blue, green, nil
}

func (h *harness) startUpstream(color string, n int) (*upstream, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	name := "upstream-" + color + "-" + strconv.Itoa(n)
	p, err := startProc(name, h.dir, nil, pw, self, "upstream", "-color", color, "-n", strconv.Itoa(n),
		"-service-time", h.opts.serviceTime.String())
	_ = pw.Close()
	if err != nil {
		_ = pr.Close()
		return nil, err
	}
	h.procs = append(h.procs, p)
	lines := make(chan string, 1)
	go func() {
		defer pr.Close()
		br := bufio.NewReader(pr)
		line, _ := br.ReadString('\n')
		lines <- line
		_, _ = io.Copy(io.Discard, br)
	}()
	var addrs []string
	select {
	case line := <-lines:
		if err := json.Unmarshal([]byte(line), &addrs); err != nil || len(addrs) != n {
			return nil, fmt.Errorf("upstream %s: bad address line %q: %v\n%s", color, line, err, p.tail())
		}
	case <-time.After(30 * time.Second):
		return nil, fmt.Errorf("upstream %s did not report its addresses in 30s\n%s", color, p.tail())
	}
	h.logf("upstream %s: %d listener(s) from %s", color, n, addrs[0])
	return &upstream{color: color, addrs: addrs, proc: p}, nil
}

// stats reads the stand-in's counters.
func (u *upstream) stats() (upstreamStats, error) {
	var s upstreamStats
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + u.addrs[0] + "/__stats")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, errors.New("upstream stats: " + resp.Status)
	}
	return s, json.NewDecoder(resp.Body).Decode(&s)
}
