// Package logs builds Switchyard's zap logger: JSON by default, sampled
// for chatty lines, never sampled for the lines an operator needs to
// reconstruct a release (switch, drain, health, warmup, config).
package logs

import (
	"fmt"
	"io"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// protected names the loggers whose lines are never sampled away (the
// access log has its own configured rate). A
// component's logger is Named after it, e.g. log.Named("health").
var protected = []string{"switch", "drain", "health", "warmup", "config", "admin", "access"}

// Options configure New.
type Options struct {
	// Format is json or console.
	Format string
	// Level is debug, info, warn or error.
	Level string
	// Sample keeps the first Initial lines per message each second, then
	// every Thereafter-th; zero values keep zap's production defaults.
	Initial, Thereafter int
}

// New returns a logger writing to w.
func New(opts Options, w io.Writer) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(opts.Level)
	if err != nil {
		return nil, fmt.Errorf("log.level: %w", err)
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	switch opts.Format {
	case "console":
		encCfg.EncodeLevel = zapcore.CapitalColorLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	case "json", "":
		enc = zapcore.NewJSONEncoder(encCfg)
	default:
		return nil, fmt.Errorf("log.format: %q is not json or console", opts.Format)
	}
	raw := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), level)
	initial, thereafter := opts.Initial, opts.Thereafter
	if initial == 0 {
		initial = 100
	}
	if thereafter == 0 {
		thereafter = 100
	}
	sampled := zapcore.NewSamplerWithOptions(raw, time.Second, initial, thereafter)
	return zap.New(&selectiveCore{raw: raw, sampled: sampled}), nil
}

// selectiveCore samples every logger except the protected ones.
type selectiveCore struct {
	raw, sampled zapcore.Core
}

func (c *selectiveCore) Enabled(l zapcore.Level) bool { return c.raw.Enabled(l) }

func (c *selectiveCore) With(fields []zapcore.Field) zapcore.Core {
	return &selectiveCore{raw: c.raw.With(fields), sampled: c.sampled.With(fields)}
}

func (c *selectiveCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if isProtected(ent.LoggerName) {
		return c.raw.Check(ent, ce)
	}
	return c.sampled.Check(ent, ce)
}

func (c *selectiveCore) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	return c.raw.Write(ent, fields)
}

// Sync flushes the output. Sync on a terminal or a pipe fails with EINVAL
// on Linux; callers at shutdown use SyncQuietly.
func (c *selectiveCore) Sync() error { return c.raw.Sync() }

func isProtected(name string) bool {
	first, _, _ := strings.Cut(name, ".")
	for _, p := range protected {
		if first == p {
			return true
		}
	}
	return false
}

// SyncQuietly flushes log, ignoring the error: a failing Sync on stdout
// must never turn a clean shutdown into a failure.
func SyncQuietly(log *zap.Logger) { _ = log.Sync() }
