package proxy

// leastInflight sends each request to the backend with the fewest
// requests in flight through this gateway: the default, and right for
// GPUs, whose latency grows with the batch they hold. Above p2cThreshold
// backends it samples two instead of scanning all.
type leastInflight struct{}

var _ Selector = leastInflight{}

// Select implements Selector.
func (leastInflight) Select(p *Pool, skip *Backend, now int64) *Backend {
	if len(p.Backends) == 0 {
		return nil
	}
	if len(p.Backends) > p2cThreshold {
		if b := pickTwo(p, skip, now, false); b != nil {
			return b
		}
	}
	return pickLeast(p, skip, now, false)
}
