package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/switchyard/switchyard/analysis"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proxy"
)

// traffic sets the canary split or the sticky header: PUT /admin/traffic.
func (c *cli) traffic(ctx context.Context, args []string) error {
	f := c.flags("traffic", "switchyard traffic COLOR=PERCENT [--sticky-header NAME]  (e.g. green=5; green=0 ends the canary)")
	sticky := f.String("sticky-header", "", `request header whose hash keeps a user on one color; "" for none`)
	body := map[string]any{}
	cl, _, err := c.start(f, args, func(pos []string) error {
		f.Visit(func(fl *flag.Flag) {
			if fl.Name == "sticky-header" {
				body["sticky_header"] = *sticky
			}
		})
		switch {
		case len(pos) > 1:
			return f.usageError("give one color's share, e.g. green=5; the active color takes the rest")
		case len(pos) == 0 && len(body) == 0:
			return f.usageError("want COLOR=PERCENT, e.g. green=5")
		case len(pos) == 1:
			color, pct, found := strings.Cut(pos[0], "=")
			if !found {
				return f.usageError("%q is not COLOR=PERCENT (e.g. green=5)", pos[0])
			}
			if !config.Color(color).Valid() {
				return f.usageError("unknown color %q in %q (want blue or green)", color, pos[0])
			}
			n, err := strconv.ParseFloat(strings.TrimSuffix(pct, "%"), 64)
			if err != nil || !(n >= 0 && n <= 100) {
				return f.usageError("%q: the percent must be a number from 0 to 100", pos[0])
			}
			body[color] = n
		}
		return nil
	})
	if err != nil {
		return err
	}
	defer cl.close()
	return c.putTraffic(ctx, cl, body)
}

// mirror starts or stops shadow traffic: PUT /admin/traffic.
func (c *cli) mirror(ctx context.Context, args []string) error {
	f := c.flags("mirror", "switchyard mirror COLOR PERCENT | switchyard mirror off")
	var mirror any // nil: off
	cl, _, err := c.start(f, args, func(pos []string) error {
		switch {
		case len(pos) == 1 && pos[0] == "off":
		case len(pos) == 2:
			if !config.Color(pos[0]).Valid() {
				return f.usageError("unknown color %q (want blue or green)", pos[0])
			}
			pct, err := strconv.ParseFloat(strings.TrimSuffix(pos[1], "%"), 64)
			if err != nil || pct <= 0 || pct > 100 {
				return f.usageError("percent %q must be a number above 0 and at most 100 (switchyard mirror off stops mirroring)", pos[1])
			}
			mirror = map[string]any{"to": pos[0], "percent": pct}
		default:
			return f.usageError("want COLOR PERCENT (e.g. green 1) or off")
		}
		return nil
	})
	if err != nil {
		return err
	}
	defer cl.close()
	return c.putTraffic(ctx, cl, map[string]any{"mirror": mirror})
}

// putTraffic sends PUT /admin/traffic and prints the split it answers.
func (c *cli) putTraffic(ctx context.Context, cl *client, body any) error {
	var tr proxy.Traffic
	if _, err := cl.do(ctx, call{method: http.MethodPut, path: "/admin/traffic", body: body, idempotent: true}, &tr); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, describeTraffic(&tr))
	return nil
}

// promote switches to the candidate only if the release analysis passes:
// POST /admin/promote.
func (c *cli) promote(ctx context.Context, args []string) error {
	f := c.flags("promote", "switchyard promote [--wait]")
	wait := f.Bool("wait", false, "wait until the old color has drained")
	cl, _, err := c.start(f, args, nil)
	if err != nil {
		return err
	}
	defer cl.close()
	const path = "/admin/promote"
	// The answer is {"switch": <switch result>, "verdict": {...}}; a bare
	// switch result is read too.
	var answer struct {
		Switch  json.RawMessage   `json:"switch"`
		Verdict *analysis.Verdict `json:"verdict"`
	}
	raw, err := cl.do(ctx, call{method: http.MethodPost, path: path}, &answer)
	if err != nil {
		var ce *cliError
		if errors.As(err, &ce) && ce.code == exitRefused {
			ce.msg = "not promoted: " + ce.msg
		}
		return err
	}
	if len(answer.Switch) > 0 && string(answer.Switch) != "null" {
		raw = answer.Switch
	}
	var res proxy.SwitchResult
	if err := json.Unmarshal(raw, &res); err != nil {
		return cl.malformed(http.MethodPost, path, err)
	}
	var verdict []string
	if answer.Verdict != nil {
		verdict = describeVerdict(answer.Verdict)
	}
	return c.switched(ctx, cl, path, res, "promoted", *wait, verdict...)
}
