// Package analysis compares the two colors on the traffic the gateway
// sees and acts on it: during a canary or shadow phase it decides whether
// the candidate may be promoted, and after a switch it rolls back by
// itself when the new color keeps breaking a threshold while the old one
// is still ready.
//
// The rule, in full in docs/analysis.md: absolute thresholds (error ratio,
// max_p99, status differences) are judged on the candidate's own traffic;
// the relative one (max_p99_ratio) only over the seconds in which both
// colors had traffic (proxy.Paired), so a load change on the machine
// weighs on both sides alike. After a full switch the previous color has
// no traffic, so only the absolute thresholds can roll back, and only once
// broken on every evaluation for analysis.breach_for.
package analysis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proxy"
	"go.uber.org/zap"
)

// Phases of a release, as Verdict reports them.
const (
	PhaseIdle    = "idle"    // nothing to compare
	PhaseCanary  = "canary"  // a share of live traffic goes to the candidate
	PhaseShadow  = "shadow"  // copies of live traffic go to the candidate
	PhaseObserve = "observe" // the window after a switch
)

// Triggers of the switches this package makes.
const (
	TriggerPromote     = "promote"
	TriggerAutoPromote = "auto-promote"
)

// Verdict is one comparison of the candidate with the baseline.
type Verdict struct {
	Phase     string       `json:"phase"`
	Candidate config.Color `json:"candidate,omitempty"`
	Baseline  config.Color `json:"baseline,omitempty"`
	// Since is when the phase began.
	Since time.Time `json:"since,omitzero"`
	// CandidateStats is every request of the candidate in the window: the
	// absolute thresholds are judged on it.
	CandidateStats proxy.Window `json:"candidate_stats"`
	// BaselineStats is the baseline's requests in the seconds of the
	// window in which the candidate had traffic too, the only ones
	// max_p99_ratio compares. It is empty after a full switch, when the
	// previous color gets no traffic.
	BaselineStats proxy.Window `json:"baseline_stats"`
	// Enough is false until the candidate has min_requests.
	Enough bool `json:"enough"`
	// Pass is true when enough was seen and no threshold is broken.
	Pass bool `json:"pass"`
	// Reasons lists each broken threshold, or why there is no verdict.
	Reasons []string `json:"reasons,omitempty"`
	// Notes lists the thresholds that could not be judged, and why.
	Notes []string `json:"notes,omitempty"`
	// BreachSince is, in the observe phase, the first evaluation of the
	// current run of failed verdicts: the gateway rolls back at the first
	// evaluation breach_for after it. Zero when the last verdict passed.
	BreachSince time.Time `json:"breach_since,omitzero"`

	// generation is the switch observed, in the observe phase.
	generation uint64
}

// minP99Samples is the fewest requests a P99 is judged on.
const minP99Samples = 200

// Evaluate checks cand against base with the thresholds of a. cand and
// base must cover the same seconds, as proxy.Paired returns them: the
// relative threshold compares them. shadow compares mirrored answers,
// whose status may also differ from the live answer.
func Evaluate(a config.Analysis, cand, base proxy.Window, shadow bool) Verdict {
	return evaluate(a, cand, cand, base, shadow)
}

// evaluate judges the absolute thresholds on cand, everything the
// candidate answered in the window, and max_p99_ratio on pairedCand and
// pairedBase, the two colors' requests in the seconds both had traffic
// in.
func evaluate(a config.Analysis, cand, pairedCand, pairedBase proxy.Window, shadow bool) Verdict {
	v := Verdict{CandidateStats: cand, BaselineStats: pairedBase}
	if cand.Requests < uint64(a.MinRequests) {
		v.Reasons = []string{fmt.Sprintf("not enough requests yet: %d of min_requests %d", cand.Requests, a.MinRequests)}
		return v
	}
	v.Enough = true
	if r := cand.ErrorRatio(); r > a.MaxErrorRatio {
		v.Reasons = append(v.Reasons, fmt.Sprintf("error ratio %.3f is above max_error_ratio %.3f (%d of %d)", r, a.MaxErrorRatio, cand.Errors, cand.Requests))
	}
	// A P99 from fewer samples is the slowest one or two requests: noise.
	if a.MaxP99 > 0 && cand.Requests >= minP99Samples && cand.P99 > a.MaxP99.D() {
		v.Reasons = append(v.Reasons, fmt.Sprintf("P99 %s is above max_p99 %s", roundLatency(cand.P99), a.MaxP99.D()))
	}
	if maxRatio := *a.MaxP99Ratio; maxRatio > 0 {
		// A relative check needs enough of both colors, measured in the
		// same seconds.
		switch {
		case pairedCand.Requests < minP99Samples || pairedBase.Requests < minP99Samples:
			if cand.Requests >= minP99Samples {
				v.Notes = append(v.Notes, fmt.Sprintf("max_p99_ratio not judged: the seconds both colors had traffic in hold %d candidate and %d baseline requests, %d a side needed",
					pairedCand.Requests, pairedBase.Requests, minP99Samples))
			}
		case pairedCand.P99 > a.P99Floor.D() && pairedBase.P99 > 0:
			if ratio := float64(pairedCand.P99) / float64(pairedBase.P99); ratio > maxRatio {
				v.Reasons = append(v.Reasons, fmt.Sprintf("P99 %s is %.2fx the baseline's %s in the same seconds, above max_p99_ratio %.2f",
					roundLatency(pairedCand.P99), ratio, roundLatency(pairedBase.P99), maxRatio))
			}
		}
	}
	if shadow {
		if r := cand.DiffRatio(); r > a.MaxStatusDiffRatio {
			v.Reasons = append(v.Reasons, fmt.Sprintf("%.3f of mirrored answers differ in status from the live ones, above max_status_diff_ratio %.3f", r, a.MaxStatusDiffRatio))
		}
	}
	v.Pass = len(v.Reasons) == 0
	return v
}

// Router is what the controller reads and switches.
type Router interface {
	Snapshot() *proxy.Snapshot
	Config() *config.Config
	History() []proxy.SwitchRecord
	Stats(config.Color) *proxy.Stats
	ShadowStats(config.Color) *proxy.Stats
	Switch(proxy.SwitchRequest) (proxy.SwitchResult, error)
}

// Controller runs the analysis every second and acts on it.
type Controller struct {
	router Router
	log    *zap.Logger
	now    func() time.Time

	mu          sync.Mutex
	phase       string
	phaseSince  time.Time
	phaseGen    uint64 // generation whose traffic plan started the phase
	last        Verdict
	lastAction  string
	handledFrom uint64 // switch generation already rolled back or judged
	refusedFor  uint64 // switch generation whose refused rollback was logged
	// breachSince is the first evaluation of the current run of failed
	// verdicts on switch breachGen; zero when the last verdict passed.
	breachSince time.Time
	breachGen   uint64
}

// New returns a controller; start it with Run.
func New(r Router, log *zap.Logger) *Controller {
	return &Controller{router: r, log: log, now: time.Now, phase: PhaseIdle}
}

// Interval is how often the controller evaluates.
const Interval = time.Second

// Run evaluates every Interval until ctx is cancelled.
func (c *Controller) Run(ctx context.Context) {
	t := time.NewTicker(Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.Tick()
		}
	}
}

// Status is the analysis part of GET /admin/status.
type Status struct {
	Verdict    Verdict `json:"verdict"`
	LastAction string  `json:"last_action,omitempty"`
}

// Status returns the latest verdict and action.
func (c *Controller) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Status{Verdict: c.last, LastAction: c.lastAction}
}

// Tick evaluates once and acts: auto-rollback in the observe window once
// a breach has lasted breach_for, auto-promote at the end of a clean
// canary or shadow window.
func (c *Controller) Tick() {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	a := c.router.Config().Analysis
	v := c.evaluateLocked(now, a)
	c.trackBreachLocked(now, &v)
	c.last = v
	switch v.Phase {
	case PhaseObserve:
		if !v.BreachSince.IsZero() && breachLasted(now, v.BreachSince) >= a.BreachFor.D() && *a.AutoRollback {
			c.rollbackLocked(v)
		}
	case PhaseCanary, PhaseShadow:
		if a.AutoPromote && v.Pass && now.Sub(v.Since) >= a.Window.D() {
			res, err := c.router.Switch(proxy.SwitchRequest{To: v.Candidate, Trigger: TriggerAutoPromote})
			if err != nil {
				c.log.Warn("auto-promote refused", zap.String("env", string(v.Candidate)), zap.Error(err))
				return
			}
			c.lastAction = fmt.Sprintf("auto-promoted %s at %s after a clean %s window", v.Candidate, now.Format(time.RFC3339), v.Phase)
			c.log.Info("auto-promoted: the candidate passed its window", zap.String("env", string(v.Candidate)),
				zap.String("version", res.Version), zap.String("phase", v.Phase), zap.Uint64("requests", v.CandidateStats.Requests))
		}
	}
}

// breachLasted is how long a breach first seen at since has lasted at now,
// in whole evaluation intervals: evaluations run on a ticker, and one that
// fires a few milliseconds earlier after the breach than at its start must
// not cost a whole second more.
func breachLasted(now, since time.Time) time.Duration {
	return now.Sub(since).Round(Interval)
}

// trackBreachLocked follows the run of failed verdicts in the observe
// phase: it starts at the first failed one, goes on while each evaluation
// fails, and ends at one that passes or has too few requests, or with the
// observed switch.
func (c *Controller) trackBreachLocked(now time.Time, v *Verdict) {
	if v.Phase != PhaseObserve || !v.Enough || v.Pass {
		c.breachSince = time.Time{}
		return
	}
	if c.breachSince.IsZero() || c.breachGen != v.generation {
		c.breachSince, c.breachGen = now, v.generation
	}
	v.BreachSince = c.breachSince
}

// evaluateLocked works out the phase and compares its two colors.
func (c *Controller) evaluateLocked(now time.Time, a config.Analysis) Verdict {
	snap := c.router.Snapshot()
	t := snap.Traffic()
	standby := snap.Active.Other()
	window := a.Window.D()

	// Observe: the window after the last switch that was not itself a
	// rollback.
	if h := c.router.History(); len(h) > 0 && a.Observe > 0 {
		rec := h[len(h)-1]
		if rec.To == snap.Active && now.Sub(rec.At) < a.Observe.D() && !isRollback(rec.Trigger) && rec.Generation != c.handledFrom {
			from := later(rec.At, now.Add(-window))
			cand := c.router.Stats(rec.To).Summary(from, now)
			// The previous color is compared only in the seconds after
			// the switch's own (in that one it served the requests from
			// before the switch) in which both colors had traffic: a
			// canary of it, or the end of its drain. After a plain switch
			// there are none, and only the absolute thresholds count.
			pairFrom := later(from, time.Unix(rec.At.Unix()+1, 0))
			pc, pb := proxy.Paired(c.router.Stats(rec.To), c.router.Stats(rec.From), pairFrom, now)
			v := evaluate(a, cand, pc, pb, false)
			v.Phase, v.Candidate, v.Baseline, v.Since, v.generation = PhaseObserve, rec.To, rec.From, rec.At, rec.Generation
			if c.breachGen == rec.Generation {
				v.BreachSince = c.breachSince
			}
			return v
		}
	}

	phase := PhaseIdle
	switch {
	case t.Weights[standby] > 0:
		phase = PhaseCanary
	case t.Mirror != nil:
		phase = PhaseShadow
	}
	if phase != c.phase {
		c.phase, c.phaseSince = phase, now
	}
	if phase == PhaseIdle {
		return Verdict{Phase: PhaseIdle}
	}
	from := later(c.phaseSince, now.Add(-window))
	cand := c.router.Stats(standby)
	if phase == PhaseShadow {
		cand = c.router.ShadowStats(standby)
	}
	pc, pb := proxy.Paired(cand, c.router.Stats(snap.Active), from, now)
	v := evaluate(a, cand.Summary(from, now), pc, pb, phase == PhaseShadow)
	v.Phase, v.Candidate, v.Baseline, v.Since = phase, standby, snap.Active, c.phaseSince
	return v
}

func (c *Controller) rollbackLocked(v Verdict) {
	res, err := c.router.Switch(proxy.SwitchRequest{To: v.Baseline, Trigger: proxy.TriggerAutoRollback})
	if err != nil {
		// The old color is not ready: rolling back would make things
		// worse. Say so once per switch and leave it to a human.
		if gen := c.currentSwitchGen(); c.refusedFor != gen {
			c.refusedFor = gen
			c.log.Error("new color breaks its thresholds but the previous one is not ready; not rolling back",
				zap.String("env", string(v.Candidate)), zap.Strings("reasons", v.Reasons), zap.Error(err))
			c.lastAction = "auto-rollback refused: " + err.Error()
		}
		return
	}
	c.handledFrom = res.Generation
	c.breachSince = time.Time{}
	now := c.now()
	c.lastAction = fmt.Sprintf("auto-rolled back %s -> %s at %s after %s of breach: %v", v.Candidate, v.Baseline,
		now.Format(time.RFC3339), breachLasted(now, v.BreachSince), v.Reasons)
	c.log.Warn("auto-rollback: the new color broke its thresholds", zap.String("env", string(v.Baseline)),
		zap.String("version", res.Version), zap.String("from", string(v.Candidate)), zap.Strings("reasons", v.Reasons),
		zap.Time("breach_since", v.BreachSince), zap.Uint64("requests", v.CandidateStats.Requests), zap.Uint64("errors", v.CandidateStats.Errors))
}

func (c *Controller) currentSwitchGen() uint64 {
	if h := c.router.History(); len(h) > 0 {
		return h[len(h)-1].Generation
	}
	return 0
}

// ErrNothingToPromote is returned by Promote without a canary or shadow
// phase.
var ErrNothingToPromote = errors.New("analysis: no canary or shadow traffic to judge; start one with PUT /admin/traffic")

// RefusedError is a promotion the analysis did not allow.
type RefusedError struct{ Verdict Verdict }

func (e *RefusedError) Error() string {
	return fmt.Sprintf("analysis: promotion of %s refused: %s", e.Verdict.Candidate, strings.Join(e.Verdict.Reasons, "; "))
}

// Promote switches to the candidate only if the analysis passes.
func (c *Controller) Promote() (proxy.SwitchResult, Verdict, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := c.evaluateLocked(c.now(), c.router.Config().Analysis)
	c.last = v
	switch {
	case v.Phase == PhaseIdle || v.Phase == PhaseObserve:
		return proxy.SwitchResult{}, v, ErrNothingToPromote
	case !v.Pass:
		return proxy.SwitchResult{}, v, &RefusedError{Verdict: v}
	}
	res, err := c.router.Switch(proxy.SwitchRequest{To: v.Candidate, Trigger: TriggerPromote})
	if err == nil {
		c.lastAction = fmt.Sprintf("promoted %s at %s", v.Candidate, c.now().Format(time.RFC3339))
	}
	return res, v, err
}

func isRollback(trigger string) bool {
	return trigger == proxy.TriggerRollback || trigger == proxy.TriggerAutoRollback
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// roundLatency keeps the digits a reader of a reason needs: 41.4ms, not
// 41.358703ms.
func roundLatency(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond)
	default:
		return d.Round(time.Microsecond)
	}
}
