package proxy

import (
	"time"

	"go.uber.org/zap"
)

// outlierPolicy is passive health: backends that fail live traffic are
// ejected for a cooldown that doubles on repeat, as Envoy's outlier
// detection does. The active probe brings them back once it has passed.
type outlierPolicy struct {
	consecutive int32 // 0 disables
	base        time.Duration
	maxPercent  int
}

// maxEjectionShift caps the doubling: base << 5 is 32 times the base.
const maxEjectionShift = 5

// recordSuccess clears b's failure streak. It writes only when there is a
// streak, so the common case does not bounce a cache line between cores.
func (p *Pool) recordSuccess(b *Backend) {
	if b.passive.Load() != 0 {
		b.passive.Store(0)
		b.capWarned.Store(false)
	}
}

// recordFailure counts a connect error, timeout or 5xx from b and ejects
// it once the streak reaches the threshold, unless that would eject more
// than the allowed share of the pool.
func (p *Pool) recordFailure(b *Backend, now time.Time, log *zap.Logger) {
	if p.outlier.consecutive <= 0 || b.passive.Add(1) < p.outlier.consecutive {
		return
	}
	b.passive.Store(0)
	nowNano := now.UnixNano()
	ejected := 0
	for _, o := range p.Backends {
		if until := o.ejectedUntil.Load(); until != 0 && nowNano < until {
			ejected++
		}
	}
	if (ejected+1)*100 > len(p.Backends)*p.outlier.maxPercent {
		// Say it once per backend until it recovers, not per streak.
		if b.capWarned.Swap(true) {
			return
		}
		log.Warn("backend failing but not ejected: max_ejection_percent reached",
			zap.String("env", string(p.Color)), zap.String("version", p.Version), zap.String("backend", b.addr),
			zap.Int("ejected", ejected), zap.Int("backends", len(p.Backends)))
		return
	}
	n := b.ejections.Add(1)
	cooldown := p.outlier.base << min(n-1, maxEjectionShift)
	b.Eject(now.Add(cooldown))
	log.Warn("backend ejected by passive health",
		zap.String("env", string(p.Color)), zap.String("version", p.Version), zap.String("backend", b.addr),
		zap.Int32("consecutive_failures", p.outlier.consecutive), zap.Duration("cooldown", cooldown), zap.Uint32("ejections", n))
}
