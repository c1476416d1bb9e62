// Command switchyard is a GPU-aware blue/green gateway for inference
// servers. Run "switchyard help" for the subcommands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/gateway"
	"github.com/switchyard/switchyard/logs"
	"go.uber.org/zap"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// Exit codes scripts can rely on.
const (
	exitOK      = 0
	exitRefused = 1 // the request was understood and refused, or a check failed
	exitUsage   = 2 // bad flags, unreadable files, unreachable admin API
)

const usage = `switchyard: blue/green gateway for GPU inference servers

Usage:
  switchyard serve --config FILE [--log-format json|console]
  switchyard demo                 run two simulated backends per color and the gateway
  switchyard validate --config FILE
  switchyard version
` + cliUsage

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "serve":
		return serve(args[1:], stderr)
	case "demo":
		return demo(args[1:], stdout, stderr)
	case "validate":
		return validate(args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "switchyard", buildVersion())
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		if code, ok := runCLI(args[0], args[1:], stdout, stderr); ok {
			return code
		}
		fmt.Fprintf(stderr, "switchyard: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
}

func buildVersion() string {
	if version != "dev" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}

func serve(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "config file (YAML)")
	logFormat := fs.String("log-format", "", "json or console; overrides log.format")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *path == "" {
		fmt.Fprintln(stderr, "switchyard serve: --config FILE is required (or try: switchyard demo)")
		return exitUsage
	}
	cfg, data, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	if *logFormat != "" {
		cfg.Log.Format = *logFormat
	}
	return runGateway(gateway.Options{Config: cfg, ConfigPath: *path, ConfigData: data, Version: buildVersion()}, stderr)
}

// runGateway runs one gateway with the config's logger until SIGINT or
// SIGTERM; serve and demo differ only in the options.
func runGateway(opts gateway.Options, stderr io.Writer) int {
	log, err := logs.New(logs.Options{Format: opts.Config.Log.Format, Level: opts.Config.Log.Level}, os.Stdout)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return exitUsage
	}
	defer logs.SyncQuietly(log)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	opts.Log = log
	if err := gateway.Run(ctx, opts); err != nil {
		log.Error("gateway failed", zap.Error(err))
		return exitRefused
	}
	return exitOK
}

func validate(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "config file (YAML)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if *path == "" {
		fmt.Fprintln(stderr, "switchyard validate: --config FILE is required")
		return exitUsage
	}
	cfg, _, err := config.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, err)
		if errors.Is(err, config.ErrInvalid) {
			return exitRefused
		}
		return exitUsage
	}
	fmt.Fprintf(stdout, "%s: ok (active %s, blue %s with %d backends, green %s with %d backends)\n", *path, cfg.Active,
		cfg.Pools.Blue.Version, len(cfg.Pools.Blue.Backends), cfg.Pools.Green.Version, len(cfg.Pools.Green.Backends))
	return exitOK
}
