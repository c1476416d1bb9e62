package health

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// probeContext is the context of one probe: its monitor's, with the
// probe's deadline. It is context.WithDeadline made lazy: the timer that
// closes Done at the deadline is only set up when something asks for
// Done, as gRPC, net/http and a dial do. A cleartext HTTP probe only
// reads the deadline, which it gives its connection, so it costs no
// timer and one small allocation, where WithDeadline's timer, its
// allocations and its registration with the parent were nearly a tenth
// of such a probe's CPU.
type probeContext struct {
	parent   context.Context
	deadline time.Time

	once sync.Once
	// made is context.WithDeadline(parent, deadline) once Done was asked
	// for; nil until then.
	made atomic.Pointer[madeContext]
}

// madeContext is a context made, and its cancel.
type madeContext struct {
	ctx    context.Context
	cancel context.CancelFunc
}

var _ context.Context = (*probeContext)(nil)

// withProbeDeadline returns parent with deadline, and what releases it,
// to call when the probe ends.
func withProbeDeadline(parent context.Context, deadline time.Time) (*probeContext, func()) {
	c := &probeContext{parent: parent, deadline: deadline}
	return c, c.release
}

func (c *probeContext) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *probeContext) Done() <-chan struct{} { return c.real().Done() }

func (c *probeContext) Err() error {
	if m := c.made.Load(); m != nil {
		return m.ctx.Err()
	}
	if err := c.parent.Err(); err != nil {
		return err
	}
	if !time.Now().Before(c.deadline) {
		return context.DeadlineExceeded
	}
	return nil
}

// Value answers from the real context once there is one, so that a
// context derived from c finds its cancellation (the context package
// looks for it through Value after calling Done) rather than watching c
// from a goroutine of its own.
func (c *probeContext) Value(key any) any {
	if m := c.made.Load(); m != nil {
		return m.ctx.Value(key)
	}
	return c.parent.Value(key)
}

// real returns the context c stands for, making it on first use.
func (c *probeContext) real() context.Context {
	c.once.Do(func() {
		ctx, cancel := context.WithDeadline(c.parent, c.deadline)
		c.made.Store(&madeContext{ctx: ctx, cancel: cancel})
	})
	return c.made.Load().ctx
}

// release stops the timer, if one was set up. (A context made after,
// which nothing should ask for, ends at the deadline.)
func (c *probeContext) release() {
	if m := c.made.Load(); m != nil {
		m.cancel()
	}
}
