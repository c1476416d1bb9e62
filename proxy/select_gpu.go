package proxy

// gpuScore is power of two choices scored by in-flight requests plus the
// load each backend reports: queue depth and KV-cache pressure from its
// probes' metrics and from ORCA reports on live answers (vLLM, Triton).
type gpuScore struct{}

var (
	_ Selector      = gpuScore{}
	_ loadReporting = gpuScore{}
)

// Select implements Selector.
func (gpuScore) Select(p *Pool, skip *Backend, now int64) *Backend {
	if len(p.Backends) == 0 {
		return nil
	}
	if b := pickTwo(p, skip, now, true); b != nil {
		return b
	}
	return pickLeast(p, skip, now, true)
}

func (gpuScore) wantsLoadReports() {}
