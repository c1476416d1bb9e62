package proxy

import (
	"sort"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
)

// Config validation and the registry must agree on the names, or a
// policy would be accepted and then silently replaced by the default.
func TestSelectors_MatchConfig(t *testing.T) {
	var names []string
	for name := range selectors() {
		names = append(names, name)
		_, err := config.Parse([]byte("pools:\n  blue: {version: v1, backends: [127.0.0.1:1], balance: " + name + "}\n" +
			"  green: {version: v2, backends: [127.0.0.1:2]}\n"))
		assert.NoError(t, err, "config refuses the registered policy %q", name)
	}
	sort.Strings(names)
	want := append([]string(nil), config.BalancePolicies()...)
	sort.Strings(want)
	assert.Equal(t, want, names)
}

func selectorPool(t *testing.T, sel Selector, n int) *Pool {
	t.Helper()
	p := &Pool{selector: sel}
	for i := range n {
		b := &Backend{addr: string(rune('a' + i))}
		b.ready.Store(true)
		p.Backends = append(p.Backends, b)
	}
	return p
}

func TestSelectors_PickOnlyUsableBackendsOtherThanSkip(t *testing.T) {
	for name, sel := range selectors() {
		t.Run(name, func(t *testing.T) {
			p := selectorPool(t, sel, 3)
			p.Backends[0].ready.Store(false)
			for range 50 {
				b := p.pick(p.Backends[1], 1)
				require.NotNil(t, b)
				assert.Equal(t, p.Backends[2], b)
			}
			p.Backends[2].ready.Store(false)
			assert.Nil(t, p.pick(p.Backends[1], 1))
			assert.Nil(t, selectorPool(t, sel, 0).pick(nil, 1))
		})
	}
}

func TestSelectors_EachPolicyPrefersWhatItScores(t *testing.T) {
	testCases := []struct {
		desc string
		sel  Selector
		prep func(p *Pool)
		want func(t *testing.T, p *Pool, picks map[*Backend]int)
	}{
		{desc: "least_inflight avoids the busy backend", sel: leastInflight{},
			prep: func(p *Pool) { p.Backends[0].inflight.Store(5) },
			want: func(t *testing.T, p *Pool, picks map[*Backend]int) { assert.Zero(t, picks[p.Backends[0]]) }},
		{desc: "round_robin takes turns", sel: roundRobin{},
			prep: func(p *Pool) { p.Backends[0].inflight.Store(5) },
			want: func(t *testing.T, p *Pool, picks map[*Backend]int) {
				for _, b := range p.Backends {
					assert.Equal(t, 10, picks[b])
				}
			}},
		{desc: "gpu avoids the backend reporting a deep queue", sel: gpuScore{},
			prep: func(p *Pool) { p.Backends[1].score.Store(50) },
			want: func(t *testing.T, p *Pool, picks map[*Backend]int) { assert.Zero(t, picks[p.Backends[1]]) }},
	}
	for _, test := range testCases {
		t.Run(test.desc, func(t *testing.T) {
			p := selectorPool(t, test.sel, 3)
			test.prep(p)
			picks := map[*Backend]int{}
			for range 30 {
				picks[p.pick(nil, 1)]++
			}
			test.want(t, p, picks)
		})
	}
}
