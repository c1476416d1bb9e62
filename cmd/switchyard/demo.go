package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/gateway"
	"github.com/switchyard/switchyard/modelsim"
)

// demoConfig is the embedded config of `switchyard demo`; backends are
// filled in with the simulated servers' addresses.
const demoConfig = `
listen: %s
admin: {listen: %s}
active: blue
log: {format: console, level: info}
health: {interval: 500ms, timeout: 400ms, healthy_threshold: 1}
warmup:
  path: /predict
  body: '{"inputs": [[1, 2, 3, 4]]}'
  headers: {Content-Type: application/json}
  requests: 3
pools:
  blue:  {version: v2.6, backends: [%s, %s]}
  green: {version: v2.7, backends: [%s, %s]}
switch: {drain_timeout: 30s}
`

func demo(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "traffic listener")
	adminListen := fs.String("admin", "127.0.0.1:9901", "admin listener")
	load := fs.Int("load", 20, "requests per second the demo sends itself, so the console's charts move; 0 sends none")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *load < 0 || *load > 1000 {
		fmt.Fprintf(stderr, "switchyard demo: --load %d: want 0 to 1000 requests per second\n", *load)
		return exitUsage
	}
	var addrs []string
	for i, b := range []modelsim.Options{
		{Color: "blue", Version: "v2.6", Latency: 5 * time.Millisecond},
		{Color: "blue", Version: "v2.6", Latency: 5 * time.Millisecond},
		// Green's first requests are slow, like a cold GPU loading kernels.
		{Color: "green", Version: "v2.7", Latency: 5 * time.Millisecond, ColdRequests: 3, ColdDelay: 800 * time.Millisecond},
		{Color: "green", Version: "v2.7", Latency: 5 * time.Millisecond, ColdRequests: 3, ColdDelay: 800 * time.Millisecond},
	} {
		s, err := modelsim.Start("127.0.0.1:0", b)
		if err != nil {
			fmt.Fprintln(stderr, err)
			return exitUsage
		}
		defer s.Close()
		s.SetHealthFields(demoGPU[i])
		addrs = append(addrs, s.Addr())
	}
	cfg, err := config.Parse(fmt.Appendf(nil, demoConfig, *listen, *adminListen, addrs[0], addrs[1], addrs[2], addrs[3]))
	if err != nil {
		fmt.Fprintln(stderr, "demo config:", err)
		return exitUsage
	}
	loadCtx, stopLoad := context.WithCancel(context.Background())
	var loadWG sync.WaitGroup
	defer func() {
		stopLoad()
		loadWG.Wait()
	}()
	return runGateway(gateway.Options{Config: cfg, Version: buildVersion(), ShutdownTimeout: 5 * time.Second,
		Started: func(traffic, adm string) {
			fmt.Fprintf(stdout, `
Switchyard demo: blue v2.6 is live, green v2.7 is standing by (its first requests are slow, like a cold GPU).

  Open the console:  http://%[2]s/ui/

Switch to green there, or in another terminal:

  curl -s -X POST http://%[1]s/predict -H 'Content-Type: application/json' -d '{"inputs": [[1, 2, 3, 4]]}' -i
  curl -s -X POST http://%[2]s/admin/switch -d '{"to": "green"}'
  curl -s http://%[2]s/admin/status

%[3]sCtrl-C stops it.

`, traffic, adm, demoLoadLine(*load))
			if *load > 0 {
				loadWG.Add(1)
				go func() {
					defer loadWG.Done()
					demoLoad(loadCtx, "http://"+traffic+"/predict", *load)
				}()
			}
		}}, stderr)
}

// demoGPU are the GPU signals each simulated server reports, in the order
// the servers start, so the console has something to draw.
var demoGPU = []map[string]any{
	{"cuda_available": true, "device": "cuda:0 (simulated)", "gpu_memory_used_bytes": 14.2 * (1 << 30), "gpu_memory_total_bytes": 24.0 * (1 << 30), "gpu_utilization": 0.55, "kv_cache_usage": 0.38},
	{"cuda_available": true, "device": "cuda:1 (simulated)", "gpu_memory_used_bytes": 13.9 * (1 << 30), "gpu_memory_total_bytes": 24.0 * (1 << 30), "gpu_utilization": 0.51, "kv_cache_usage": 0.35},
	{"cuda_available": true, "device": "cuda:2 (simulated)", "gpu_memory_used_bytes": 15.3 * (1 << 30), "gpu_memory_total_bytes": 24.0 * (1 << 30), "gpu_utilization": 0.04, "kv_cache_usage": 0.02},
	{"cuda_available": true, "device": "cuda:3 (simulated)", "gpu_memory_used_bytes": 15.1 * (1 << 30), "gpu_memory_total_bytes": 24.0 * (1 << 30), "gpu_utilization": 0.03, "kv_cache_usage": 0.02},
}

func demoLoadLine(rps int) string {
	if rps <= 0 {
		return ""
	}
	return fmt.Sprintf("The demo sends itself %d requests/s so the console's charts move (--load 0 stops that).\n", rps)
}

// demoLoad sends rps predictions per second to url until ctx is
// cancelled, at most 64 at a time; answers are read and dropped.
func demoLoad(ctx context.Context, url string, rps int) {
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	tick := time.NewTicker(time.Second / time.Duration(rps))
	defer tick.Stop()
	slots := make(chan struct{}, 64)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		select {
		case slots <- struct{}{}:
		default:
			continue // the backends are slower than the load: skip a beat
		}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(`{"inputs": [[1, 2, 3, 4]]}`))
			if err != nil {
				return
			}
			req.Header.Set("Content-Type", "application/json")
			if resp, err := client.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
			}
		}()
	}
}
