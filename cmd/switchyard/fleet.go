package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/switchyard/switchyard/fleet"
)

// defaultFleetWait is how long --wait waits, in fleet mode, for every
// live replica to serve a switch before naming the laggards.
const defaultFleetWait = 30 * time.Second

// renderFleet prints the fleet part of the status: the intent and each
// replica with the generation it serves.
func renderFleet(w io.Writer, f *fleet.Status, now time.Time) {
	if f == nil {
		return
	}
	agree := "every live replica serves it"
	if !f.Agree {
		agree = "NOT every live replica serves it yet"
	}
	fmt.Fprintf(w, "\nfleet: configmap %s/%s, generation %d, %s\n", f.Namespace, f.ConfigMap, f.Generation, agree)
	if in := f.Intent; in != nil {
		fmt.Fprintf(w, "  intent: %s by %s on %s %s", in.Active, in.Trigger, in.By, ago(now, in.At))
		if in.Canary > 0 {
			fmt.Fprintf(w, ", canary %s%% to %s", oneDecimal(in.Canary), in.Active.Other())
		}
		fmt.Fprintln(w)
	}
	if p := f.Pending; p != nil {
		fmt.Fprintf(w, "  being prepared: switch to %s asked on %s %s\n", p.To, p.By, ago(now, p.At))
	}
	if f.Stale {
		fmt.Fprintf(w, "  this replica (%s) cannot reach the Kubernetes API (last contact %.1fs ago): it serves what it last saw\n",
			f.Replica, f.APIContactAgeSeconds)
	}
	if f.LastError != "" {
		fmt.Fprintf(w, "  last error: %s\n", indent(f.LastError, "    "))
	}
	if f.FilePending != "" {
		fmt.Fprintf(w, "  config file edit pending %s\n", f.FilePending)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  REPLICA\tGENERATION\tACTIVE\tSTATE\tHEARTBEAT\tPOOLS")
	for _, r := range f.Replicas {
		id := r.ID
		if r.Self {
			id += " (this)"
		}
		fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t%.1fs ago\t%s\n", id, r.Generation, r.Active, r.State, r.HeartbeatAgeSeconds, r.Pools)
	}
	_ = tw.Flush()
}

// waitFleet waits, in fleet mode, until every live replica serves
// generation gen or later; it returns at once outside fleet mode. After
// c.fleetWait it fails naming the replicas that lag.
func (c *cli) waitFleet(ctx context.Context, cl *client, gen uint64) error {
	deadline := c.now().Add(c.fleetWait)
	tick := time.NewTicker(c.poll)
	defer tick.Stop()
	for {
		st, _, err := cl.status(ctx)
		if err != nil {
			return err
		}
		if st.Fleet == nil {
			return nil
		}
		var behind []string
		live := 0
		for _, r := range st.Fleet.Replicas {
			if !r.Live {
				continue
			}
			live++
			if r.Generation < gen {
				behind = append(behind, fmt.Sprintf("%s (at generation %d, heartbeat %.1fs ago)", r.ID, r.Generation, r.HeartbeatAgeSeconds))
			}
		}
		if len(behind) == 0 {
			fmt.Fprintf(c.stdout, "all %d live replicas serve generation %d\n", live, gen)
			return nil
		}
		if !c.now().Before(deadline) {
			return &cliError{code: exitRefused,
				msg: fmt.Sprintf("after %s, %d of %d live replicas do not serve generation %d: %s", c.fleetWait, len(behind), live, gen,
					strings.Join(behind, ", ")),
				hint: "the switch is committed and they follow it once they see it; check their logs and switchyard status"}
		}
		select {
		case <-ctx.Done():
			return &cliError{code: exitRefused, msg: fmt.Sprintf("stopped waiting; the switch is committed, still behind: %s", strings.Join(behind, ", "))}
		case <-tick.C:
		}
	}
}
