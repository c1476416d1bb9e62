package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// cliUsage lists the operator subcommands, for main's usage text.
const cliUsage = `
Operator commands, through the admin API:
  switchyard status [--json] [--watch [--interval 2s]]
  switchyard switch blue|green|toggle [--force] [--wait [--wait-timeout 30s]] [--if-match GEN]
  switchyard rollback [--force] [--wait]
  switchyard traffic COLOR=PERCENT       canary split, e.g. green=5; green=0 ends it
  switchyard mirror COLOR PERCENT | off   copy a share of requests to the standby color
  switchyard promote [--wait]            switch only if the canary analysis passes
  switchyard warmup blue|green           run warmup again on a pool
  switchyard reload                      re-read the config file now
` + commonFlagsUsage

const commonFlagsUsage = `
Flags of every operator command:
  --admin URL         admin API (default $SWITCHYARD_ADMIN, else http://127.0.0.1:9901)
  --token-file FILE   file holding the bearer token of admin.token_file
  --token TOKEN       the token itself (visible to ps; prefer the file or $SWITCHYARD_TOKEN)
  --timeout 10s       limit for each request to the admin API
  --verbose           log retries on stderr
Exit status: 0 done (a no-op included), 1 refused or a failed check, 2 usage or connection error.
`

// cli runs the operator subcommands. Its fields are what tests replace.
type cli struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time
	// poll is how often --wait reads the drain's progress.
	poll time.Duration
	// fleetWait is how long --wait waits, in fleet mode, for every live
	// replica to serve a switch (--wait-timeout).
	fleetWait time.Duration
	// retryWait is the first pause before a retry; it doubles each time,
	// up to 8 times as long.
	retryWait time.Duration
}

// runCLI runs the operator subcommand cmd with args. ok is false when cmd
// is not one of them, so main can try its own.
func runCLI(cmd string, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	c := &cli{stdout: stdout, stderr: stderr, getenv: os.Getenv, now: time.Now,
		poll: 250 * time.Millisecond, retryWait: 100 * time.Millisecond, fleetWait: defaultFleetWait}
	run := c.command(cmd)
	if run == nil {
		return 0, false
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, args), true
}

// command returns the subcommand called name, nil if there is none. The
// subcommand prints what went wrong and returns the exit status.
func (c *cli) command(name string) func(context.Context, []string) int {
	var run func(context.Context, []string) error
	switch name {
	case "status":
		run = c.status
	case "switch":
		run = c.doSwitch
	case "rollback":
		run = c.rollback
	case "traffic":
		run = c.traffic
	case "mirror":
		run = c.mirror
	case "promote":
		run = c.promote
	case "warmup":
		run = c.warmup
	case "reload":
		run = c.reload
	default:
		return nil
	}
	return func(ctx context.Context, args []string) int { return c.exit(run(ctx, args)) }
}

// start parses a subcommand's args into f, checks the positional ones
// with check (nil: none allowed), and connects to the admin API: how
// every operator command begins. Nothing is sent before the flags and
// arguments are known to be good.
func (c *cli) start(f *cmdFlags, args []string, check func(pos []string) error) (*client, []string, error) {
	pos, err := f.parse(args)
	if err != nil {
		return nil, nil, err
	}
	if check == nil {
		check = f.noArgs
	}
	if err := check(pos); err != nil {
		return nil, nil, err
	}
	cl, err := c.connect(f)
	if err != nil {
		return nil, nil, err
	}
	return cl, pos, nil
}

// cmdFlags are a subcommand's flag set and the flags every subcommand has.
type cmdFlags struct {
	*flag.FlagSet
	name, synopsis string
	admin          string
	token          string
	tokenFile      string
	timeout        time.Duration
	verbose        bool
}

func (c *cli) flags(name, synopsis string) *cmdFlags {
	f := &cmdFlags{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), name: name, synopsis: synopsis}
	// Errors and help are printed by exit, in our words.
	f.SetOutput(io.Discard)
	f.Usage = func() {}
	admin := c.getenv("SWITCHYARD_ADMIN")
	if admin == "" {
		admin = defaultAdmin
	}
	f.StringVar(&f.admin, "admin", admin, "admin API URL")
	f.StringVar(&f.token, "token", "", "bearer token")
	f.StringVar(&f.tokenFile, "token-file", "", "file holding the bearer token")
	f.DurationVar(&f.timeout, "timeout", 10*time.Second, "limit for each request")
	f.BoolVar(&f.verbose, "verbose", false, "log retries on stderr")
	return f
}

// parse parses flags and positional arguments in any order ("switch green
// --wait" as well as "switch --wait green"; everything after "--" is
// positional) and returns the positional ones. The error is a
// *usageError: help was asked for, or the flags are wrong.
func (f *cmdFlags) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := f.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, &usageError{flags: f, help: true}
			}
			return nil, f.usageError("%v", err)
		}
		rest := f.Args()
		if len(rest) == 0 {
			break
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if f.timeout <= 0 {
		return nil, f.usageError("--timeout must be positive, got %s", f.timeout)
	}
	return pos, nil
}

// noArgs is the check of a subcommand that takes no positional argument.
func (f *cmdFlags) noArgs(pos []string) error {
	if len(pos) > 0 {
		return f.usageError("unexpected argument %q", pos[0])
	}
	return nil
}

// usageError returns a usage error of f's subcommand.
func (f *cmdFlags) usageError(format string, args ...any) error {
	return &usageError{flags: f, msg: fmt.Sprintf(format, args...)}
}

// usageError is a command line a subcommand cannot run (exit 2), or a
// request for its help (exit 0).
type usageError struct {
	flags *cmdFlags
	msg   string
	help  bool
}

func (e *usageError) Error() string { return e.msg }

// exit prints err, if any, and returns the exit status it maps to.
func (c *cli) exit(err error) int {
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue) && ue.help:
		fmt.Fprintf(c.stdout, "Usage:\n  %s\n%s", ue.flags.synopsis, commonFlagsUsage)
		return exitOK
	case errors.As(err, &ue):
		f := ue.flags
		fmt.Fprintf(c.stderr, "switchyard %s: %s\nUsage: %s  (switchyard %s -h for the flags)\n", f.name, ue.msg, f.synopsis, f.name)
		return exitUsage
	}
	return c.fail(err)
}

// fail prints err on stderr and returns its exit status.
func (c *cli) fail(err error) int {
	var ce *cliError
	if !errors.As(err, &ce) {
		ce = &cliError{code: exitUsage, msg: err.Error()}
	}
	fmt.Fprintln(c.stderr, "switchyard: "+ce.msg)
	for _, l := range ce.detail {
		fmt.Fprintln(c.stderr, "  "+l)
	}
	if ce.hint != "" {
		fmt.Fprintln(c.stderr, ce.hint)
	}
	return ce.code
}
