package config

import (
	"errors"
	"testing"

	"go.yaml.in/yaml/v3"
)

// FuzzConfigParse feeds Parse arbitrary bytes. It must never panic, must
// reject with Errors wrapping ErrInvalid, and whatever it accepts must have
// every pointer its users dereference set, be deterministic and survive a
// round trip: the accepted config, written back as YAML (every value,
// zeros included, written explicitly), parses again to the same config.
//
// The seed corpus is in testdata/fuzz/FuzzConfigParse.
func FuzzConfigParse(f *testing.F) {
	f.Add([]byte(minimal))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err != nil {
			if cfg != nil {
				t.Fatalf("Parse returned a config and an error: %v", err)
			}
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 || !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse error %T %q is not a non-empty Errors wrapping ErrInvalid", err, err)
			}
			return
		}

		for _, c := range []Color{Blue, Green} {
			if p := cfg.Pools.Get(c); p.Health == nil || p.Warmup == nil || p.Warmup.Enabled == nil {
				t.Fatalf("accepted config has pools.%s without its resolved health or warmup", c)
			}
		}
		if cfg.Analysis.MaxP99Ratio == nil || cfg.Analysis.AutoRollback == nil {
			t.Fatalf("accepted config has a nil analysis pointer")
		}

		again, err := Parse(data)
		if err != nil {
			t.Fatalf("second Parse of accepted input failed: %v", err)
		}
		first := marshal(t, cfg)
		if second := marshal(t, again); first != second {
			t.Fatalf("Parse is not deterministic:\n%s\n---\n%s", first, second)
		}

		round, err := Parse([]byte(first))
		if err != nil {
			t.Fatalf("the accepted config, written back, is rejected: %v\ninput:\n%q\nwritten back:\n%s", err, data, first)
		}
		if back := marshal(t, round); back != first {
			t.Fatalf("round trip changed the config:\n%s\n---\n%s", first, back)
		}
	})
}

func marshal(t *testing.T, cfg *Config) string {
	t.Helper()
	out, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatalf("marshalling an accepted config: %v", err)
	}
	return string(out)
}
