package proxy

import (
	"time"
)

// queuePoll is how often a queued request looks for a free backend even
// without a wake-up: requests finishing under another snapshot signal
// that snapshot's pool, not ours.
const queuePoll = 10 * time.Millisecond

// wait queues for a backend under max_concurrency. It returns nil when the
// queue is full or the wait timed out. Only overloaded requests get here,
// so its timer allocation is off the common path.
func (p *Pool) wait(now time.Time) *Backend {
	if p.waiting.Add(1) > p.maxQueue {
		p.waiting.Add(-1)
		return nil
	}
	defer p.waiting.Add(-1)
	deadline := now.Add(p.queueTimeout)
	t := time.NewTimer(queuePoll)
	defer t.Stop()
	for {
		select {
		case <-p.wake:
		case <-t.C:
			t.Reset(queuePoll)
		}
		now := time.Now()
		if b := p.pick(nil, now.UnixNano()); b != nil {
			return b
		}
		if !now.Before(deadline) {
			return nil
		}
	}
}

// release wakes one queued request after a request on p finished.
func (p *Pool) release() {
	if p.maxQueue > 0 && p.waiting.Load() > 0 {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}
