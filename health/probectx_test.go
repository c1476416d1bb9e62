package health

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestProbeContext_EndsAtItsDeadlineLikeWithDeadline(t *testing.T) {
	t.Parallel()
	ctx, release := withProbeDeadline(context.Background(), time.Now().Add(20*time.Millisecond))
	defer release()

	d, ok := ctx.Deadline()
	assert.True(t, ok)
	assert.WithinDuration(t, time.Now().Add(20*time.Millisecond), d, 20*time.Millisecond)
	assert.NoError(t, ctx.Err())
	select {
	case <-ctx.Done():
	case <-time.After(waitFor):
		require.FailNow(t, "Done never closed")
	}
	assert.ErrorIs(t, ctx.Err(), context.DeadlineExceeded)
}

func TestProbeContext_PastDeadlineIsAnErrorBeforeDoneIsAskedFor(t *testing.T) {
	t.Parallel()
	ctx, release := withProbeDeadline(context.Background(), time.Now().Add(-time.Second))
	defer release()

	assert.ErrorIs(t, ctx.Err(), context.DeadlineExceeded)
	<-ctx.Done()
}

func TestProbeContext_EndsWithItsParent(t *testing.T) {
	t.Parallel()
	parent, cancel := context.WithCancel(context.Background())
	type key struct{}
	parent = context.WithValue(parent, key{}, "v")
	ctx, release := withProbeDeadline(parent, time.Now().Add(time.Hour))
	defer release()

	assert.Equal(t, "v", ctx.Value(key{}))
	cancel()
	assert.ErrorIs(t, ctx.Err(), context.Canceled, "before Done is asked for")
	<-ctx.Done()
	assert.ErrorIs(t, ctx.Err(), context.Canceled)
	assert.Equal(t, "v", ctx.Value(key{}))
}

// A context derived from a probe's (net/http's, gRPC's) must follow it
// as one derived from WithDeadline's does: through the context package's
// own registration, not a goroutine watching it.
func TestProbeContext_DerivedContextsNeedNoGoroutine(t *testing.T) {
	// Not parallel: it counts goroutines.
	parent, cancel := context.WithCancel(context.Background())
	ctx, release := withProbeDeadline(parent, time.Now().Add(time.Hour))
	defer release()
	before := runtime.NumGoroutine()

	var derived []context.Context
	for range 50 {
		d, stop := context.WithCancel(ctx)
		defer stop()
		derived = append(derived, d)
	}

	assert.Less(t, runtime.NumGoroutine(), before+10, "goroutines watching the probe's context")
	cancel()
	for _, d := range derived {
		<-d.Done()
	}
}

func TestProbeContext_ReleaseStopsItsTimer(t *testing.T) {
	t.Parallel()
	ctx, release := withProbeDeadline(context.Background(), time.Now().Add(time.Hour))
	done := ctx.Done()

	release()

	<-done
	assert.ErrorIs(t, ctx.Err(), context.Canceled)
	release() // twice is harmless
}
