package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// idleSettle is how long the connections stay idle before the resident
// set is read.
const idleSettle = 2 * time.Second

// IdleConns is the memory a proxy needs to hold many idle keep-alive
// client connections, each used once.
type IdleConns struct {
	Conns       int         `json:"client_conns"`
	IdleSeconds float64     `json:"idle_s"`
	Points      []IdlePoint `json:"points"`
	Skipped     string      `json:"skipped,omitempty"`
}

// IdlePoint is one proxy of the idle-connections measurement.
type IdlePoint struct {
	Name    string `json:"name"`
	Workers int    `json:"workers"`
	CPUs    string `json:"cpus,omitempty"`
	// Opened counts connections that got their answer and were held.
	Opened int `json:"opened"`
	Failed int `json:"failed"`
	// BaseRSSMiB is the process group's resident set (VmRSS summed) once
	// ready, before any client connection; RSSMiB with all of them open
	// and idle.
	BaseRSSMiB float64 `json:"rss_before_mib"`
	RSSMiB     float64 `json:"rss_mib"`
	FirstErr   string  `json:"first_error,omitempty"`
}

// idleConns starts a fresh Switchyard and a fresh nginx with l's workers
// and pinning, opens -idle-conns connections to each, sends one request
// on every one, leaves them idle for idleSettle and reads the group's
// resident set.
func (h *harness) idleConns(blue, green *upstream, l layout) error {
	n := h.opts.idleConns
	res := &IdleConns{Conns: n, IdleSeconds: idleSettle.Seconds()}
	h.res.Idle = res
	if why := connLimit(n); why != "" {
		res.Skipped = why
		h.note("%d idle client connections skipped: %s", n, why)
		return nil
	}
	leave, err := h.enter(l, blue, green)
	if err != nil {
		return err
	}
	defer leave()
	for _, name := range []string{targetSwitchyard, targetNginx} {
		var t *target
		var err error
		switch name {
		case targetSwitchyard:
			t, err = h.startSwitchyard(l, "switchyard-idle", blue.addrs[:1], green.addrs[:1], h.opts.healthInterval)
		default:
			if _, lerr := exec.LookPath(peerBinary[name]); lerr != nil {
				continue
			}
			t, err = h.startPeer(l, name, blue.addrs[0])
		}
		if err != nil {
			return fmt.Errorf("starting %s: %w", name, err)
		}
		p := IdlePoint{Name: name, Workers: l.workers}
		if u, err := groupUsage(t.proc.pgid); err == nil {
			p.BaseRSSMiB = float64(u.RSSKiB) / 1024
		}
		conns, failed, firstErr := openIdle(h.ctx, t.addr, n)
		p.Opened, p.Failed, p.FirstErr = len(conns), failed, firstErr
		sleep(h.ctx, idleSettle)
		if u, err := groupUsage(t.proc.pgid); err == nil {
			p.RSSMiB = float64(u.RSSKiB) / 1024
		}
		p.CPUs = groupCPUs(t.proc.pgid)
		for _, c := range conns {
			_ = c.Close()
		}
		h.stopProc(t.proc)
		res.Points = append(res.Points, p)
		h.logf("idle %-10s %d of %d connections held (%d failed): RSS %.1f MiB (%.1f MiB before)", name, p.Opened, n, p.Failed, p.RSSMiB, p.BaseRSSMiB)
		if p.Failed > 0 {
			h.note("%s: %d of %d idle connections failed (first: %s)", name, p.Failed, n, p.FirstErr)
		}
	}
	return nil
}

// idleRequest is the benchmark's request, written by hand: one small
// write per connection, no client library.
func idleRequest(addr string) []byte {
	return fmt.Appendf(nil, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		predictPath, addr, len(predictBody), predictBody)
}

// openIdle opens n connections to addr, 256 at a time, sends the request
// on each and reads its answer, and returns the connections that got a
// 200, left open.
func openIdle(ctx context.Context, addr string, n int) (conns []net.Conn, failed int, firstErr string) {
	req := idleRequest(addr)
	var (
		mu    sync.Mutex
		next  atomic.Int64
		fails atomic.Int64
		first atomic.Pointer[string]
		wg    sync.WaitGroup
	)
	conns = make([]net.Conn, 0, n)
	d := net.Dialer{Timeout: 10 * time.Second}
	for range min(n, 256) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(n) && ctx.Err() == nil {
				c, err := useOnce(ctx, &d, addr, req)
				if err != nil {
					fails.Add(1)
					msg := err.Error()
					first.CompareAndSwap(nil, &msg)
					continue
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if p := first.Load(); p != nil {
		firstErr = *p
	}
	return conns, int(fails.Load()), firstErr
}

// useOnce dials addr, sends req and reads a 200 answer, and returns the
// connection, idle and open.
func useOnce(ctx context.Context, d *net.Dialer, addr string, req []byte) (net.Conn, error) {
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(req); err != nil {
		_ = c.Close()
		return nil, err
	}
	status, err := readResponse(bufio.NewReaderSize(c, 2048))
	if err == nil && status != 200 {
		err = fmt.Errorf("status %d", status)
	}
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

// errResponse is returned for an answer readResponse cannot read.
var errResponse = errors.New("bench: malformed response")

// readResponse reads one HTTP/1.1 response with a Content-Length body
// (what every proxy here sends for the benchmark's request) and returns
// its status code.
func readResponse(br *bufio.Reader) (int, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	f := bytes.Fields(line)
	if len(f) < 2 || !bytes.HasPrefix(f[0], []byte("HTTP/1.")) {
		return 0, fmt.Errorf("%w: status line %q", errResponse, line)
	}
	status, err := strconv.Atoi(string(f[1]))
	if err != nil {
		return 0, fmt.Errorf("%w: status line %q", errResponse, line)
	}
	length := -1
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, fmt.Errorf("%w: header line %q", errResponse, line)
		}
		switch {
		case bytes.EqualFold(bytes.TrimSpace(k), []byte("Content-Length")):
			if length, err = strconv.Atoi(string(bytes.TrimSpace(v))); err != nil || length < 0 {
				return 0, fmt.Errorf("%w: Content-Length %q", errResponse, v)
			}
		case bytes.EqualFold(bytes.TrimSpace(k), []byte("Transfer-Encoding")):
			return 0, fmt.Errorf("%w: Transfer-Encoding %q (only Content-Length bodies are read)", errResponse, bytes.TrimSpace(v))
		}
	}
	if length < 0 {
		return 0, fmt.Errorf("%w: no Content-Length", errResponse)
	}
	if _, err := br.Discard(length); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, err
	}
	return status, nil
}
