package fleet

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proxy"
	"go.uber.org/zap"
)

// In fleet mode an edit of `active` or `traffic` in the config file is one
// fleet change, applied once however many replicas see the file and
// whenever they see it:
//
//   - a replica queues the file's routing when it differs from what its
//     file said before (and once at start);
//   - it is dropped when the intent records that content (by sha256) as
//     applied, or records the same routing as the file's last applied
//     one: another replica saw the edit first;
//   - it is recorded without moving traffic when an operator switched
//     since the replica saw the edit: the later, explicit intent wins, as
//     with the state file;
//   - else it is written like an admin change, a switch gated on every
//     replica; a refused one is retried every fileRetry until the target
//     is ready.
//
// Routing itself always comes from the intent: a reload keeps the fleet's
// color and split, whatever the file says.

// fileRetry is how often a config edit the gate refused is tried again.
const fileRetry = 500 * time.Millisecond

// fileState is the config file edit waiting to be written.
type fileState struct {
	kick chan struct{}

	mu sync.Mutex
	// last is the file's routing as last queued; nil before the first.
	last *Routing
	job  *fileJob
	// reapply asks the follower to re-publish the intent's routing after
	// a reload.
	reapply bool
	// pending says why the queued edit is not applied yet.
	pending string
}

// fileJob is one config file edit to write.
type fileJob struct {
	routing Routing
	sum     string
	// since is the fleet generation when the edit was seen: an operator's
	// switch after it wins.
	since uint64
}

// FromFile is the config reloader's hook in fleet mode, called with each
// new config before it is applied (sum is the file's sha256): it queues
// an edit of the file's routing as a fleet change, and sets cfg's active
// color and traffic section to the fleet's, so the reload keeps them.
func (f *Fleet) FromFile(cfg *config.Config, sum string) {
	f.queueFile(fileRouting(cfg), sum)
	if in := f.intent.Load(); in != nil {
		setConfigRouting(cfg, in.Routing())
	}
	f.file.mu.Lock()
	f.file.reapply = true
	f.file.mu.Unlock()
	f.kickFile()
}

// queueFile queues r as an edit when it differs from what the file said
// before.
func (f *Fleet) queueFile(r Routing, sum string) {
	f.file.mu.Lock()
	defer f.file.mu.Unlock()
	if f.file.last != nil && f.file.last.Equal(r) {
		return
	}
	f.file.last = &r
	f.file.job = &fileJob{routing: r, sum: sum, since: f.Generation()}
	f.file.pending = ""
	f.kickFile()
}

func (f *Fleet) kickFile() {
	select {
	case f.file.kick <- struct{}{}:
	default:
	}
}

// followFile writes queued config edits until Close.
func (f *Fleet) followFile() {
	defer f.wg.Done()
	retry := time.NewTicker(fileRetry)
	defer retry.Stop()
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-f.file.kick:
		case <-retry.C:
		}
		f.file.mu.Lock()
		job, reapply := f.file.job, f.file.reapply
		f.file.reapply = false
		f.file.mu.Unlock()
		if reapply {
			f.reapply()
		}
		if job == nil {
			continue
		}
		done, why := f.applyFile(job)
		f.file.mu.Lock()
		if f.file.job == job {
			if done {
				f.file.job, f.file.pending = nil, ""
			} else {
				f.file.pending = why
			}
		}
		f.file.mu.Unlock()
	}
}

// applyFile writes one config edit; done is false while it must be tried
// again, with why.
func (f *Fleet) applyFile(job *fileJob) (done bool, why string) {
	ctx, cancel := context.WithTimeout(f.ctx, f.cfg.PrepareTimeout.D()+3*apiTimeout)
	defer cancel()
	var superseded *Record
	_, err := f.do(ctx, change{trigger: proxy.TriggerFile, fileSum: job.sum, file: &job.routing,
		reason: fmt.Sprintf("config file edit (sha256 %.12s) seen by replica %s", job.sum, f.replica),
		plan: func(cur *Intent) (Routing, *proxy.SwitchResult, error) {
			if cur.File.seen(job.sum) || cur.File.Routing.Equal(job.routing) {
				return Routing{}, &proxy.SwitchResult{NoOp: true, From: cur.Active, To: cur.Active}, nil
			}
			for i := len(cur.History) - 1; i >= 0; i-- {
				if h := cur.History[i]; h.Generation > job.since && h.Trigger != proxy.TriggerFile {
					superseded = &h
					return cur.Routing(), nil, nil // record the file, move nothing
				}
			}
			return job.routing, nil, nil
		}})
	var refused *proxy.RefusedError
	switch {
	case err == nil:
		if superseded != nil {
			f.log.Info("config file edit not applied: an operator switched the fleet since it was seen",
				zap.String("env", string(job.routing.Active)), zap.String("switch_trigger", superseded.Trigger),
				zap.Uint64("switch_generation", superseded.Generation))
		}
		return true, ""
	case errors.As(err, &refused):
		f.file.mu.Lock()
		first := f.file.pending == ""
		f.file.mu.Unlock()
		if first {
			f.log.Warn("config switch waits until the target pool is ready on every replica", zap.String("env", string(job.routing.Active)), zap.Error(err))
		}
		return false, fmt.Sprintf("to %s: %v", job.routing.Active, err)
	case errors.Is(err, proxy.ErrStaleGeneration), errors.Is(err, ErrUnavailable):
		return false, fmt.Sprintf("to %s: %v", job.routing.Active, err)
	default:
		f.log.Error("config file edit not applied", zap.String("env", string(job.routing.Active)), zap.Error(err))
		return true, ""
	}
}

// FilePending says why the last config file edit is not applied yet;
// empty when none waits.
func (f *Fleet) FilePending() string {
	f.file.mu.Lock()
	defer f.file.mu.Unlock()
	return f.file.pending
}

// fileRouting is the routing a config asks for.
func fileRouting(cfg *config.Config) Routing {
	t := cfg.Traffic
	r := Routing{Active: cfg.Active, Canary: float64(t.Weight(cfg.Active.Other())), StickyHeader: t.StickyHeader}
	if m := t.Mirror; m.Percent > 0 && m.To == cfg.Active.Other() {
		r.Mirror = &proxy.MirrorSetting{To: m.To, Percent: m.Percent}
	}
	return r
}

// setConfigRouting writes r into cfg's active color and traffic section.
// The config's canary is a whole percent: the exact share is re-applied
// from the intent right after the reload.
func setConfigRouting(cfg *config.Config, r Routing) {
	cfg.Active = r.Active
	t := &cfg.Traffic
	t.Blue, t.Green = 0, 0
	canary := int(math.Round(r.Canary))
	if r.Active == config.Blue {
		t.Green = canary
	} else {
		t.Blue = canary
	}
	t.StickyHeader = r.StickyHeader
	t.Mirror.To, t.Mirror.Percent = "", 0
	if r.Mirror != nil {
		t.Mirror.To, t.Mirror.Percent = r.Mirror.To, r.Mirror.Percent
	}
}
