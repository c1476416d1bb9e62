package proxy

// roundRobin takes the pool's backends in turn, skipping those not
// usable: predictable, for backends of equal capacity and tests.
type roundRobin struct{}

var _ Selector = roundRobin{}

// Select implements Selector.
func (roundRobin) Select(p *Pool, skip *Backend, now int64) *Backend {
	n := len(p.Backends)
	if n == 0 {
		return nil
	}
	start := int(p.rr.Add(1) % uint64(n))
	for i := range n {
		b := p.Backends[(start+i)%n]
		if b != skip && b.usable(now, p.MaxConcurrency) {
			return b
		}
	}
	return nil
}
