package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/switchyard/switchyard/admin"
	"github.com/switchyard/switchyard/config"
)

// warmup runs warmup again on every backend of a pool: POST
// /admin/warmup.
func (c *cli) warmup(ctx context.Context, args []string) error {
	f := c.flags("warmup", "switchyard warmup blue|green")
	cl, pos, err := c.start(f, args, func(pos []string) error {
		if len(pos) != 1 {
			return f.usageError("want one color: blue or green")
		}
		if !config.Color(pos[0]).Valid() {
			return f.usageError("unknown color %q (want blue or green)", pos[0])
		}
		return nil
	})
	if err != nil {
		return err
	}
	defer cl.close()
	color := pos[0]
	if _, err := cl.do(ctx, call{method: http.MethodPost, path: "/admin/warmup", body: map[string]string{"color": color}, idempotent: true}, nil); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "warming %s again; follow it with: switchyard status --watch\n", color)
	return nil
}

// reload makes the gateway re-read its config file: POST /admin/reload.
func (c *cli) reload(ctx context.Context, args []string) error {
	f := c.flags("reload", "switchyard reload")
	cl, _, err := c.start(f, args, nil)
	if err != nil {
		return err
	}
	defer cl.close()
	var answer struct {
		Config *admin.ConfigStatus `json:"config"`
	}
	if _, err := cl.do(ctx, call{method: http.MethodPost, path: "/admin/reload", idempotent: true}, &answer); err != nil {
		var ce *cliError
		if errors.As(err, &ce) && ce.apiCode == "reload_failed" {
			ce.msg = "the config was rejected; the running one stays in force: " + ce.msg
			ce.hint = "fix the file (switchyard validate --config FILE) and reload again"
		}
		return err
	}
	fmt.Fprintln(c.stdout, describeReload(answer.Config))
	return nil
}
