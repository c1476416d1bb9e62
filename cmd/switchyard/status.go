package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// status prints GET /admin/status as a table or as JSON, once or, with
// --watch, until interrupted.
func (c *cli) status(ctx context.Context, args []string) error {
	f := c.flags("status", "switchyard status [--json] [--watch [--interval 2s]]")
	asJSON := f.Bool("json", false, "print the raw JSON")
	watch := f.Bool("watch", false, "refresh until interrupted")
	interval := f.Duration("interval", 2*time.Second, "refresh period of --watch")
	// Not in the usage: stop --watch after this many refreshes (tests).
	count := f.Int("count", 0, "")
	cl, _, err := c.start(f, args, func(pos []string) error {
		if err := f.noArgs(pos); err != nil {
			return err
		}
		if *interval <= 0 {
			return f.usageError("--interval must be positive, got %s", *interval)
		}
		return nil
	})
	if err != nil {
		return err
	}
	defer cl.close()
	if !*watch {
		st, raw, err := cl.status(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return c.printJSON(raw, true)
		}
		renderStatus(c.stdout, st, c.now())
		return nil
	}

	tick := time.NewTicker(*interval)
	defer tick.Stop()
	for n := 1; ; n++ {
		st, raw, err := cl.status(ctx)
		var ce *cliError
		switch {
		case ctx.Err() != nil:
			return nil // interrupted: the normal end of --watch
		case errors.As(err, &ce) && ce.status != 0 && ce.status < 500:
			return err // a wrong token or URL does not heal by waiting
		case *asJSON && err == nil:
			if err := c.printJSON(raw, false); err != nil {
				c.fail(err)
			}
		case *asJSON:
			c.fail(err)
		default:
			fmt.Fprintf(c.stdout, "\x1b[H\x1b[2J%s  every %s, Ctrl-C to stop  %s\n\n", cl.base, *interval, c.now().Format("15:04:05"))
			if err != nil {
				fmt.Fprintf(c.stdout, "%v\n", err)
			} else {
				renderStatus(c.stdout, st, c.now())
			}
		}
		if *count > 0 && n >= *count {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// printJSON prints an admin API answer, indented or on one line.
func (c *cli) printJSON(raw []byte, pretty bool) error {
	var buf bytes.Buffer
	var err error
	if pretty {
		err = json.Indent(&buf, raw, "", "  ")
	} else {
		err = json.Compact(&buf, raw)
	}
	if err != nil {
		return fmt.Errorf("the admin API answered with invalid JSON: %w", err)
	}
	buf.WriteByte('\n')
	_, _ = c.stdout.Write(buf.Bytes())
	return nil
}
