package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
	"github.com/valyala/fasthttp"
)

// openResult is one open-loop run.
type openResult struct {
	Sent, OK, Errors int
	// Lat holds the latency of every successful request.
	Lat      []time.Duration
	Elapsed  time.Duration
	FirstErr string
}

// openLoader is an open-loop, fixed-rate generator: vegeta used as a
// library. Its HTTP transport outlives each attack, so connections made
// during the warm-up are the ones the measured attack uses.
type openLoader struct {
	tr     *http.Transport
	client *http.Client
}

func newOpenLoader() *openLoader {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &openLoader{tr: tr, client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

func (o *openLoader) close() { o.tr.CloseIdleConnections() }

// attack sends rate requests per second to addr for dur and calls each
// (when non-nil) with every result. A new vegeta.Attacker per attack is
// needed: an Attacker stops itself at the end of Attack.
func (o *openLoader) attack(ctx context.Context, addr string, rate int, dur time.Duration, each func(*vegeta.Result)) openResult {
	atk := vegeta.NewAttacker(vegeta.Client(o.client), vegeta.Workers(16), vegeta.MaxBody(4096))
	tgt := vegeta.NewStaticTargeter(vegeta.Target{Method: http.MethodPost, URL: "http://" + addr + predictPath,
		Body: predictBody, Header: http.Header{"Content-Type": []string{"application/json"}}})
	stop := context.AfterFunc(ctx, func() { atk.Stop() })
	defer stop()
	res := openResult{Lat: make([]time.Duration, 0, int(float64(rate)*dur.Seconds())+16)}
	began := time.Now()
	for r := range atk.Attack(tgt, vegeta.Rate{Freq: rate, Per: time.Second}, dur, "bench") {
		res.Sent++
		if r.Error == "" && r.Code == http.StatusOK {
			res.OK++
			res.Lat = append(res.Lat, r.Latency)
		} else {
			res.Errors++
			if res.FirstErr == "" {
				res.FirstErr = fmt.Sprintf("code %d: %s", r.Code, r.Error)
			}
		}
		if each != nil {
			each(r)
		}
	}
	res.Elapsed = time.Since(began)
	return res
}

// connResult is one run of the per-connection generator.
type connResult struct {
	// Requests counts successes completed inside the measured window.
	Requests int64
	Errors   int64
	Elapsed  time.Duration
	Lat      []time.Duration
	// Late counts paced requests sent more than 1 ms after their slot
	// because the connection was still busy.
	Late int64
	// RampErrors counts connections that could not get a first answer.
	RampErrors int64
	FirstErr   string
}

// connLoad drives conns connections, each its own fasthttp.HostClient
// with MaxConns 1 so the connection count is exact. With rate 0 every
// connection sends back to back (closed loop, for peak throughput); with
// rate > 0 the connections share that rate, each sending on its own
// schedule (open loop over many connections, which vegeta cannot hold).
type connLoad struct {
	addr  string
	conns int
	rate  float64
	warm  time.Duration
	dur   time.Duration
	// window is called when the measured window opens (true) and closes
	// (false), to sample CPU at the same instants.
	window func(open bool)
}

const (
	phaseWarm = iota
	phaseMeasure
	phaseStop
)

func (l connLoad) run(ctx context.Context) connResult {
	var res connResult
	clients := make([]*fasthttp.HostClient, l.conns)
	for i := range clients {
		clients[i] = &fasthttp.HostClient{Addr: l.addr, MaxConns: 1, ReadTimeout: 30 * time.Second,
			WriteTimeout: 30 * time.Second, MaxIdleConnDuration: 10 * time.Minute, NoDefaultUserAgentHeader: true}
	}
	defer func() {
		for _, c := range clients {
			c.CloseIdleConnections()
		}
	}()
	uri := "http://" + l.addr + predictPath
	newReq := func() *fasthttp.Request {
		req := fasthttp.AcquireRequest()
		req.SetRequestURI(uri)
		req.Header.SetMethod(fasthttp.MethodPost)
		req.Header.SetContentType("application/json")
		req.SetBody(predictBody)
		return req
	}

	// Ramp: open every connection with a first request, a few hundred at
	// a time so the listen backlog never overflows into SYN retries.
	var rampErr atomic.Int64
	var firstErr atomic.Pointer[string]
	sem := make(chan struct{}, 256)
	var ramp sync.WaitGroup
	for _, c := range clients {
		ramp.Add(1)
		sem <- struct{}{}
		go func() {
			defer ramp.Done()
			defer func() { <-sem }()
			req, resp := newReq(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			for try := 0; ; try++ {
				err := c.Do(req, resp)
				if err == nil && resp.StatusCode() == fasthttp.StatusOK {
					return
				}
				if try == 2 {
					rampErr.Add(1)
					msg := fmt.Sprintf("ramp: %v (status %d)", err, resp.StatusCode())
					firstErr.CompareAndSwap(nil, &msg)
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		}()
	}
	ramp.Wait()
	res.RampErrors = rampErr.Load()

	var phase atomic.Int32
	stopCh := make(chan struct{})
	type workerOut struct {
		n, errs, late int64
		lat           []time.Duration
	}
	outs := make([]workerOut, l.conns)
	var wg sync.WaitGroup
	start := time.Now()
	var interval time.Duration
	if l.rate > 0 {
		interval = time.Duration(float64(l.conns) / l.rate * float64(time.Second))
	}
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out := &outs[i]
			req, resp := newReq(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			next := start
			if l.rate > 0 {
				next = start.Add(time.Duration(float64(i) / l.rate * float64(time.Second)))
			}
			for phase.Load() != phaseStop {
				var t0 time.Time
				if l.rate > 0 {
					if d := time.Until(next); d > 0 {
						t := time.NewTimer(d)
						select {
						case <-stopCh:
							t.Stop()
							return
						case <-t.C:
						}
					}
					t0 = time.Now()
					if t0.Sub(next) > time.Millisecond && phase.Load() == phaseMeasure {
						out.late++
					}
					next = next.Add(interval)
					if now := time.Now(); next.Before(now) {
						next = now.Add(interval)
					}
				} else {
					t0 = time.Now()
				}
				if phase.Load() == phaseStop {
					return
				}
				err := c.Do(req, resp)
				took := time.Since(t0)
				if phase.Load() != phaseMeasure {
					continue
				}
				if err != nil || resp.StatusCode() != fasthttp.StatusOK {
					out.errs++
					if err == nil {
						err = fmt.Errorf("status %d", resp.StatusCode())
					}
					msg := err.Error()
					firstErr.CompareAndSwap(nil, &msg)
					continue
				}
				out.n++
				out.lat = append(out.lat, took)
			}
		}()
	}
	sleep(ctx, l.warm)
	if l.window != nil {
		l.window(true)
	}
	phase.Store(phaseMeasure)
	t0 := time.Now()
	sleep(ctx, l.dur)
	phase.Store(phaseStop)
	close(stopCh)
	res.Elapsed = time.Since(t0)
	if l.window != nil {
		l.window(false)
	}
	wg.Wait()
	for _, o := range outs {
		res.Requests += o.n
		res.Errors += o.errs
		res.Late += o.late
		res.Lat = append(res.Lat, o.lat...)
	}
	if p := firstErr.Load(); p != nil {
		res.FirstErr = *p
	}
	return res
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
