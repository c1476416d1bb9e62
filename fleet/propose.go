package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proxy"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ErrUnavailable is returned for a change that could not be written
// because the API server cannot be reached. Routing did not change.
var ErrUnavailable = errors.New("fleet: the Kubernetes API cannot be reached")

// RefusedError is a switch the fleet did not agree to: one replica found
// the target not ready, or did not answer in time. Nothing changed
// anywhere. It unwraps to the replica's *proxy.RefusedError, so callers
// that know a local refusal handle it alike.
type RefusedError struct {
	// Replica is the replica that refused or did not answer.
	Replica string
	// Refused says why, per backend when the gate refused.
	Refused *proxy.RefusedError
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("fleet: switch to %s refused by replica %s: %s", e.Refused.Color, e.Replica,
		strings.TrimPrefix(e.Refused.Error(), "proxy: "))
}

// Unwrap returns the replica's refusal.
func (e *RefusedError) Unwrap() error { return e.Refused }

// change is one write of the intent asked on this replica.
type change struct {
	trigger string
	// ifGen, when non-zero, applies the change only at that generation.
	ifGen uint64
	force bool
	// plan works out, from the current intent, the routing to commit. A
	// result is returned as is (a no-op) when it is not nil.
	plan func(cur *Intent) (Routing, *proxy.SwitchResult, error)
	// fileSum and file, when file is set, record the config file content
	// that asked for this change.
	fileSum string
	file    *Routing
	reason  string
}

// outcome is what a change did.
type outcome struct {
	res    proxy.SwitchResult
	intent *Intent
}

// do writes ch: a switch is prepared on every live replica and committed
// only when all agree; a traffic change is committed at once. Both are
// written with the resourceVersion they were based on.
func (f *Fleet) do(ctx context.Context, ch change) (outcome, error) {
	f.proposeMu.Lock()
	defer f.proposeMu.Unlock()
	cur, err := f.fetch(ctx)
	if err != nil {
		return outcome{}, err
	}
	if ch.ifGen != 0 && ch.ifGen != cur.Generation {
		return outcome{intent: cur}, fmt.Errorf("%w: the fleet is at generation %d, not %d", proxy.ErrStaleGeneration, cur.Generation, ch.ifGen)
	}
	next, noop, err := ch.plan(cur)
	if noop != nil || err != nil {
		if noop != nil {
			noop.Generation = cur.Generation
		}
		return f.result(noop, cur), err
	}
	now := f.now()
	switching := next.Active != cur.Active
	snap := f.router.Snapshot()
	res := proxy.SwitchResult{From: cur.Active, To: next.Active, Version: snap.Pool(next.Active).Version, Generation: cur.Generation}
	if next.Equal(cur.Routing()) {
		res.NoOp = true
		if ch.file != nil && !(cur.File.seen(ch.fileSum) && cur.File.Routing.Equal(*ch.file)) {
			// Only the record of the config file changes: no generation.
			rec := cur.clone()
			rec.File.Routing = *ch.file
			rec.File.remember(ch.fileSum)
			if cm, err := f.update(ctx, rec); err == nil {
				f.observe(cm)
			} else {
				return outcome{res: res, intent: cur}, err
			}
		}
		return outcome{res: res, intent: cur}, nil
	}
	if p := cur.pendingAt(now); p != nil {
		return outcome{intent: cur}, &RefusedError{Replica: f.replica, Refused: &proxy.RefusedError{Color: next.Active,
			Reason: fmt.Sprintf("another switch, to %s, asked on replica %s at %s, is being prepared; retry in a moment",
				p.To, p.By, p.At.Format(time.RFC3339Nano))}}
	}
	forced := false
	if switching {
		if err := f.router.CheckSwitch(next.Active); err != nil {
			var refused *proxy.RefusedError
			if !ch.force || !errors.As(err, &refused) {
				return outcome{intent: cur}, wrapRefused(f.replica, next.Active, err)
			}
			forced = true
		}
		if !ch.force {
			if cur, err = f.prepare(ctx, cur, next.Active, ch.trigger); err != nil {
				return outcome{intent: cur}, err
			}
		}
	}

	commit := cur.clone()
	commit.Generation++
	commit.setRouting(next)
	commit.Trigger, commit.Forced, commit.By, commit.At, commit.Reason = ch.trigger, forced, f.replica, now, ch.reason
	commit.Pending = nil
	if switching {
		commit.addHistory(Record{From: cur.Active, To: next.Active, Version: res.Version, Trigger: ch.trigger, Forced: forced,
			By: f.replica, At: now, Generation: commit.Generation})
	}
	if ch.file != nil {
		commit.File.Routing = *ch.file
		commit.File.remember(ch.fileSum)
	}
	// At is when the commit is written: convergence is measured from it.
	commit.At = f.now()
	if switching {
		commit.History[len(commit.History)-1].At = commit.At
	}
	done, err := f.update(ctx, commit)
	if err != nil {
		return outcome{intent: cur}, err
	}
	f.observe(done)
	res.Generation, res.Forced = done.Generation, forced
	res.NoOp = !switching
	f.log.Info("fleet intent committed", zap.Uint64("generation", done.Generation), zap.String("env", string(done.Active)),
		zap.String("from", string(cur.Active)), zap.Float64("canary_percent", done.Canary), zap.String("trigger", ch.trigger),
		zap.Bool("forced", forced), zap.Duration("took", f.now().Sub(now)))
	return outcome{res: res, intent: done}, nil
}

// result turns a no-op from a plan into an outcome.
func (f *Fleet) result(noop *proxy.SwitchResult, cur *Intent) outcome {
	if noop == nil {
		return outcome{intent: cur}
	}
	return outcome{res: *noop, intent: cur}
}

// wrapRefused names this replica in a refusal of its own gate.
func wrapRefused(replica string, to config.Color, err error) error {
	var refused *proxy.RefusedError
	if errors.As(err, &refused) {
		return &RefusedError{Replica: replica, Refused: refused}
	}
	return &RefusedError{Replica: replica, Refused: &proxy.RefusedError{Color: to, Reason: err.Error()}}
}

// prepare writes a pending switch to to on top of cur and waits until
// every live replica answered it. It returns the intent with the pending
// switch (whose resourceVersion the commit needs), or a refusal after
// taking the pending switch back out.
func (f *Fleet) prepare(ctx context.Context, cur *Intent, to config.Color, trigger string) (*Intent, error) {
	now := f.now()
	// Who must agree is read from the API server, not the informer: a
	// watch that has not caught up yet must not hide a live replica.
	members, err := f.listMembers(ctx)
	if err != nil {
		return cur, err
	}
	var peers []member
	for _, m := range members {
		if m.replica != f.replica && f.live(m, now) {
			peers = append(peers, m)
		}
	}
	if len(peers) == 0 {
		return cur, nil // alone: this replica's own gate was the fleet's
	}
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	p := &Pending{ID: hex.EncodeToString(id), To: to, Trigger: trigger, By: f.replica, At: now,
		Deadline: now.Add(f.cfg.PrepareTimeout.D() + 2*f.cfg.Heartbeat.D())}
	withPending := cur.clone()
	withPending.Pending = p
	prepared, err := f.update(ctx, withPending)
	if err != nil {
		return cur, err
	}
	f.observe(prepared)
	if err := f.awaitAcks(ctx, p, peers); err != nil {
		abort := prepared.clone()
		abort.Pending = nil
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), apiTimeout)
		defer cancel()
		if done, uerr := f.update(actx, abort); uerr == nil {
			f.observe(done)
		} else {
			f.log.Warn("taking back a refused prepare failed; it expires on its own", zap.Time("deadline", p.Deadline), zap.Error(uerr))
		}
		return prepared, err
	}
	return prepared, nil
}

// awaitAcks waits until each of peers answered prepare p in its Lease:
// nil when all found the target ready, the first refusal otherwise, or a
// refusal naming those that did not answer within prepare_timeout. Answers
// arrive through the Lease informer; every ackPoll the Leases are also
// listed, so a watch that is reconnecting delays no switch.
func (f *Fleet) awaitAcks(ctx context.Context, p *Pending, peers []member) error {
	timer := time.NewTimer(f.cfg.PrepareTimeout.D())
	defer timer.Stop()
	poll := time.NewTicker(ackPoll)
	defer poll.Stop()
	var listed map[string]member
	for {
		ms, changed := f.memberView()
		for name, m := range listed {
			if cur, ok := ms[name]; !ok || cur.ack == nil || cur.ack.ID != p.ID {
				ms[name] = m
			}
		}
		var missing []string
		for _, peer := range peers {
			m, ok := ms[peer.name]
			if !ok || m.ack == nil || m.ack.ID != p.ID {
				missing = append(missing, peer.replica)
				continue
			}
			if !m.ack.OK {
				r := m.ack.Refused
				if r == nil {
					r = &proxy.RefusedError{Color: p.To, Reason: m.ack.Error}
				}
				return &RefusedError{Replica: m.replica, Refused: r}
			}
		}
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-changed:
		case <-poll.C:
			if l, err := f.listMembers(ctx); err == nil {
				listed = l
			}
		case <-ctx.Done():
			return fmt.Errorf("%w: waiting for replicas %s to check %s: %w", ErrUnavailable, strings.Join(missing, ", "), p.To, ctx.Err())
		case <-timer.C:
			now := f.now()
			var ages []string
			for _, name := range missing {
				for _, m := range ms {
					if m.replica == name {
						ages = append(ages, fmt.Sprintf("%s (heartbeat %s ago)", name, now.Sub(m.renewed).Round(time.Millisecond)))
					}
				}
			}
			return &RefusedError{Replica: missing[0], Refused: &proxy.RefusedError{Color: p.To,
				Reason: fmt.Sprintf("replica %s did not check the target within fleet.prepare_timeout %s; nothing changed anywhere",
					strings.Join(ages, ", "), f.cfg.PrepareTimeout.D())}}
		}
	}
}

// ackPoll is how often a prepare lists the Leases besides watching them.
const ackPoll = 250 * time.Millisecond

// listMembers lists the fleet's Leases from the API server.
func (f *Fleet) listMembers(ctx context.Context) (map[string]member, error) {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	list, err := f.cs.CoordinationV1().Leases(f.ns).List(ctx, metav1.ListOptions{LabelSelector: LabelFleet + "=" + f.name})
	if err != nil {
		return nil, fmt.Errorf("%w: listing the fleet's Leases: %w; nothing was changed", ErrUnavailable, err)
	}
	f.touch()
	out := make(map[string]member, len(list.Items))
	for i := range list.Items {
		if m, ok := decodeMember(&list.Items[i]); ok {
			out[m.name] = m
		}
	}
	return out, nil
}

// fetch reads the intent from the API server, not the informer's copy, so
// that a change is based on the latest committed state.
func (f *Fleet) fetch(ctx context.Context) (*Intent, error) {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	cm, err := f.cs.CoreV1().ConfigMaps(f.ns).Get(ctx, f.name, metav1.GetOptions{})
	if err != nil {
		return nil, f.apiError("reading", err)
	}
	f.touch()
	in, err := decodeIntent(cm)
	if err != nil {
		return nil, err
	}
	if in == nil {
		return nil, fmt.Errorf("%w: configmap %s/%s holds no intent (was it emptied by hand?); restart a replica to write one from its config", ErrBadIntent, f.ns, f.name)
	}
	return in, nil
}

// update writes in on top of the object it was read from, with that
// object's resourceVersion: a conflict means another writer moved first.
func (f *Fleet) update(ctx context.Context, in *Intent) (*Intent, error) {
	ctx, cancel := context.WithTimeout(ctx, apiTimeout)
	defer cancel()
	cm, err := f.cs.CoreV1().ConfigMaps(f.ns).Update(ctx, encodeIntent(in.obj, in), metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		return nil, fmt.Errorf("%w: another replica changed the fleet intent first; nothing was changed by this call", proxy.ErrStaleGeneration)
	}
	if err != nil {
		return nil, f.apiError("writing", err)
	}
	f.touch()
	out, err := decodeIntent(cm)
	if err != nil || out == nil {
		return nil, fmt.Errorf("%w: reading back what was written: %w", ErrBadIntent, err)
	}
	return out, nil
}

// apiError wraps a failed call: forbidden and not-found name the fix,
// anything else is ErrUnavailable.
func (f *Fleet) apiError(what string, err error) error {
	obj := fmt.Sprintf("configmap %s/%s", f.ns, f.name)
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Errorf("fleet: %s %s is forbidden: %w; the replica's Role needs get, list, watch and update on it (deploy/k8s/fleet.yaml)", what, obj, err)
	case apierrors.IsNotFound(err):
		return fmt.Errorf("%w: %s was deleted: %w; re-create it (kubectl apply -f deploy/k8s/fleet.yaml): replicas serve the last committed intent meanwhile", ErrUnavailable, obj, err)
	}
	return fmt.Errorf("%w: %s %s: %w; nothing was changed, every replica keeps serving generation %d", ErrUnavailable, what, obj, err, f.Generation())
}

// fetchOrCreate reads the intent, creating it from file's routing when
// the object is missing or empty.
func (f *Fleet) fetchOrCreate(ctx context.Context, file *config.Config, sum string) (*Intent, error) {
	cms := f.cs.CoreV1().ConfigMaps(f.ns)
	cm, err := cms.Get(ctx, f.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		cm, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: f.ns, Name: f.name,
			Labels: map[string]string{"app.kubernetes.io/managed-by": "switchyard"}}}, metav1.CreateOptions{})
		switch {
		case apierrors.IsAlreadyExists(err):
			return nil, err // created by another replica: read it again
		case apierrors.IsForbidden(err):
			return nil, fmt.Errorf("fleet: configmap %s/%s does not exist and this replica may not create it: %w; apply deploy/k8s/fleet.yaml", f.ns, f.name, err)
		}
	}
	if err != nil {
		return nil, err
	}
	f.touch()
	in, err := decodeIntent(cm)
	if err != nil || in != nil {
		return in, err
	}
	r := fileRouting(file)
	first := &Intent{Generation: 1, Trigger: proxy.TriggerFile, By: f.replica, At: f.now(),
		Reason: "first replica of the fleet: routing from its config file", obj: cm}
	first.setRouting(r)
	first.File.Routing = r
	first.File.remember(sum)
	out, err := f.update(ctx, first)
	if errors.Is(err, proxy.ErrStaleGeneration) {
		return nil, err // another replica wrote it first: read again
	}
	if err == nil {
		f.log.Info("fleet intent created from this replica's config file", zap.String("configmap", f.ns+"/"+f.name),
			zap.String("env", string(r.Active)))
	}
	return out, err
}
