package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proxy"
)

// doSwitch moves traffic to a color: POST /admin/switch.
func (c *cli) doSwitch(ctx context.Context, args []string) error {
	f := c.flags("switch", "switchyard switch blue|green|toggle [--force] [--wait [--wait-timeout 30s]] [--if-match GEN]")
	force := f.Bool("force", false, "switch even if the target is not ready")
	wait := f.Bool("wait", false, "wait until every live replica serves the switch (fleet mode) and the old color has drained")
	f.DurationVar(&c.fleetWait, "wait-timeout", c.fleetWait, "with --wait in fleet mode: name the replicas still behind after this long")
	ifMatch := f.String("if-match", "", "switch only if the routing generation is still GEN")
	var to string
	header := http.Header{}
	cl, _, err := c.start(f, args, func(pos []string) error {
		if len(pos) != 1 {
			return f.usageError("want one color: blue, green or toggle")
		}
		to = pos[0]
		if to != "toggle" && !config.Color(to).Valid() {
			return f.usageError("unknown color %q (want blue, green or toggle)", to)
		}
		if *ifMatch != "" {
			gen, err := strconv.ParseUint(strings.Trim(strings.TrimPrefix(*ifMatch, "W/"), `"`), 10, 64)
			if err != nil || gen == 0 {
				return f.usageError("--if-match %q is not a generation (want the number switchyard status shows)", *ifMatch)
			}
			header.Set("If-Match", `"`+strconv.FormatUint(gen, 10)+`"`)
		}
		return nil
	})
	if err != nil {
		return err
	}
	defer cl.close()
	body := map[string]any{"to": to}
	if *force {
		body["force"] = true
	}
	const path = "/admin/switch"
	var res proxy.SwitchResult
	// A second toggle undoes the first; a switch to a color is a no-op
	// the second time, unless If-Match turns it into a refusal.
	idempotent := to != "toggle" && *ifMatch == ""
	if _, err := cl.do(ctx, call{method: http.MethodPost, path: path, body: body, header: header, idempotent: idempotent}, &res); err != nil {
		var ce *cliError
		if errors.As(err, &ce) && ce.apiCode == "refused" {
			ce.hint = "wait until the backends are ready (switchyard status --watch), fix them, or pass --force"
		}
		return err
	}
	return c.switched(ctx, cl, path, res, "switched", *wait)
}

// rollback switches back to the previous color: POST /admin/rollback.
func (c *cli) rollback(ctx context.Context, args []string) error {
	f := c.flags("rollback", "switchyard rollback [--force] [--wait [--wait-timeout 30s]]")
	force := f.Bool("force", false, "roll back even if the old color is not ready")
	wait := f.Bool("wait", false, "wait until every live replica serves the rollback (fleet mode) and the color rolled back from has drained")
	f.DurationVar(&c.fleetWait, "wait-timeout", c.fleetWait, "with --wait in fleet mode: name the replicas still behind after this long")
	cl, _, err := c.start(f, args, nil)
	if err != nil {
		return err
	}
	defer cl.close()
	var body any
	if *force {
		body = map[string]bool{"force": true}
	}
	const path = "/admin/rollback"
	var res proxy.SwitchResult
	if _, err := cl.do(ctx, call{method: http.MethodPost, path: path, body: body}, &res); err != nil {
		var ce *cliError
		if errors.As(err, &ce) && ce.apiCode == "refused" {
			ce.hint = "the color to roll back to is not ready; fix it (switchyard status) or pass --force"
		}
		return err
	}
	return c.switched(ctx, cl, path, res, "rolled back", *wait)
}

// switched prints a switch result, then the extra lines, and, with wait,
// follows the drain of the color traffic left.
func (c *cli) switched(ctx context.Context, cl *client, path string, res proxy.SwitchResult, verb string, wait bool, extra ...string) error {
	if !res.To.Valid() {
		return cl.malformed(http.MethodPost, path, fmt.Errorf("to is %q", res.To))
	}
	fmt.Fprintln(c.stdout, describeSwitch(verb, &res))
	for _, l := range extra {
		fmt.Fprintln(c.stdout, l)
	}
	if !wait || res.NoOp {
		return nil
	}
	if err := c.waitFleet(ctx, cl, res.Generation); err != nil {
		return err
	}
	if res.Drain == nil {
		return nil
	}
	return c.waitDrain(ctx, cl, *res.Drain)
}

// waitDrain polls the status until the drain that started with d ends.
func (c *cli) waitDrain(ctx context.Context, cl *client, d proxy.DrainStatus) error {
	// On a terminal the progress line is rewritten in place; elsewhere
	// (a CI log) a line is printed when the count changes, or every 5s.
	live := isTerminal(c.stdout)
	printed := false
	lastInflight := int64(-1)
	var lastAt time.Time
	progress := func(d proxy.DrainStatus) {
		line := fmt.Sprintf("draining %s: %d in flight, %.1fs", d.Color, d.Inflight, d.Seconds)
		switch {
		case live:
			fmt.Fprint(c.stdout, "\r\x1b[K"+line)
		case d.Inflight != lastInflight || c.now().Sub(lastAt) >= 5*time.Second:
			fmt.Fprintln(c.stdout, line)
			lastInflight, lastAt = d.Inflight, c.now()
		}
		printed = true
	}
	end := func() {
		if live && printed {
			fmt.Fprintln(c.stdout)
		}
	}
	tick := time.NewTicker(c.poll)
	defer tick.Stop()
	for {
		st, _, err := cl.status(ctx)
		if err != nil {
			end()
			if ctx.Err() != nil {
				return &cliError{code: exitRefused, msg: fmt.Sprintf("stopped waiting; the switch is done and %s keeps draining in the gateway (switchyard status)", d.Color)}
			}
			var ce *cliError
			if errors.As(err, &ce) {
				ce.msg = fmt.Sprintf("the switch is done, but waiting for %s to drain failed: %s", d.Color, ce.msg)
			}
			return err
		}
		cur, found := findDrain(st.Drains, d)
		switch {
		case !found:
			end()
			return &cliError{code: exitRefused, msg: fmt.Sprintf("the gateway no longer reports the drain of %s (restarted?); see switchyard status", d.Color)}
		case !cur.Started.Equal(d.Started):
			end()
			fmt.Fprintf(c.stdout, "the drain of %s was replaced by a later switch; see switchyard status\n", d.Color)
			return nil
		case cur.State == proxy.DrainRunning:
			progress(cur)
		case cur.State == proxy.DrainDone:
			end()
			fmt.Fprintf(c.stdout, "%s (%s) drained in %.1fs; %s finished\n", cur.Color, cur.Version, cur.Seconds, plural(cur.AtSwap, "request"))
			return nil
		case cur.State == proxy.DrainCancelled:
			end()
			fmt.Fprintf(c.stdout, "the drain of %s was cancelled after %.1fs: %s is live again\n", cur.Color, cur.Seconds, cur.Color)
			return nil
		case cur.State == proxy.DrainTimedOut:
			end()
			return &cliError{code: exitRefused,
				msg: fmt.Sprintf("the drain of %s (%s) timed out after %.1fs; %s still running on %s", cur.Color, cur.Version, cur.Seconds,
					plural(cur.Straggler, "request"), cur.Color),
				hint: "stragglers are not killed: they finish or fail on their own; raise switch.drain_timeout if they are legitimate"}
		default:
			end()
			return &cliError{code: exitRefused, msg: fmt.Sprintf("the drain of %s is in a state switchyard does not know: %q; see switchyard status", cur.Color, cur.State)}
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

// findDrain finds the drain of d's color; a different start time means a
// later switch drained that color again.
func findDrain(drains []proxy.DrainStatus, d proxy.DrainStatus) (proxy.DrainStatus, bool) {
	for _, cur := range drains {
		if cur.Color == d.Color {
			return cur, true
		}
	}
	return proxy.DrainStatus{}, false
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
