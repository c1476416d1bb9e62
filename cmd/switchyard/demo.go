package main

import (
	"flag"
	"fmt"
	"io"
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
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	var addrs []string
	for _, b := range []modelsim.Options{
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
		addrs = append(addrs, s.Addr())
	}
	cfg, err := config.Parse(fmt.Appendf(nil, demoConfig, *listen, *adminListen, addrs[0], addrs[1], addrs[2], addrs[3]))
	if err != nil {
		fmt.Fprintln(stderr, "demo config:", err)
		return exitUsage
	}
	return runGateway(gateway.Options{Config: cfg, Version: buildVersion(), ShutdownTimeout: 5 * time.Second,
		Started: func(traffic, adm string) {
			fmt.Fprintf(stdout, `
Switchyard demo: blue v2.6 is live, green v2.7 is standing by (its first requests are slow, like a cold GPU).
Try, in another terminal:

  curl -s -X POST http://%[1]s/predict -H 'Content-Type: application/json' -d '{"inputs": [[1, 2, 3, 4]]}' -i
  curl -s -X POST http://%[2]s/admin/switch -d '{"to": "green"}'
  curl -s http://%[2]s/admin/status

Ctrl-C stops it.

`, traffic, adm)
		}}, stderr)
}
