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

// protected names the loggers whose lines are never sampled away, by the
// full names the gateway gives them (gateway.Run names each component's
// logger after it, e.g. log.Named("health")): the switch logger (switches,
// drains, automatic rollback and promotion), health, warmup, config
// (reloads, the watcher, durable state), admin, and the access log
// (proxy.access), which follows only log.access.sample. A logger named
// under a protected one ("health.probe") is protected too. The other
// loggers (proxy, mirror, the unnamed root) are sampled.
var protected = []string{"switch", "health", "warmup", "config", "admin", "proxy.access"}

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

// isProtected reports whether the logger called name, or one it was named
// under, is protected. Zap joins names with dots.
func isProtected(name string) bool {
	for _, p := range protected {
		if name == p || len(name) > len(p) && name[len(p)] == '.' && strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// SyncQuietly flushes log, ignoring the error: a failing Sync on stdout
// must never turn a clean shutdown into a failure.
func SyncQuietly(log *zap.Logger) { _ = log.Sync() }
