package gateway

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proxy"
	"github.com/switchyard/switchyard/warmup"
	"github.com/switchyard/switchyard/watch"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

// Generous deadlines: the suite runs with -race on small CI machines.
const (
	waitFor = 15 * time.Second
	tick    = 20 * time.Millisecond
)

// unreadableConfig is a valid config whose backends are never dialled:
// these tests only load, reject and re-apply files.
const unreadableConfig = `active: blue
pools:
  blue: {version: v1, backends: [127.0.0.1:1]}
  green: {version: v2, backends: [127.0.0.1:2]}
`

// breakage makes the config file at path exist but be unreadable.
type breakage struct {
	desc string
	// wantErr is a fragment of the error config.last_error must show.
	wantErr string
	// asRoot is false when root reads the file anyway.
	asRoot  bool
	breakIt func(t *testing.T, path string)
}

func breakages() []breakage {
	return []breakage{
		{
			desc: "a directory", wantErr: "is a directory", asRoot: true,
			breakIt: func(t *testing.T, path string) {
				require.NoError(t, os.Remove(path))
				require.NoError(t, os.Mkdir(path, 0o755))
			},
		},
		{
			desc: "a symlink loop", wantErr: "too many levels of symbolic links", asRoot: true,
			breakIt: func(t *testing.T, path string) {
				// A link named like the config file that points at its own
				// name, swapped in as an editor saves.
				tmp := filepath.Join(filepath.Dir(path), ".loop.tmp")
				require.NoError(t, os.Symlink(filepath.Base(path), tmp))
				require.NoError(t, os.Rename(tmp, path))
			},
		},
		{
			desc: "a 100 MB file", wantErr: "over the 4 MiB limit", asRoot: true,
			breakIt: func(t *testing.T, path string) {
				// Sparse: it takes no disk, and must not be read either.
				tmp := filepath.Join(filepath.Dir(path), ".big.tmp")
				require.NoError(t, os.WriteFile(tmp, []byte(unreadableConfig), 0o644))
				require.NoError(t, os.Truncate(tmp, 100<<20))
				require.NoError(t, os.Rename(tmp, path))
			},
		},
		{
			desc: "permission denied", wantErr: "permission denied", asRoot: false,
			breakIt: func(t *testing.T, path string) {
				require.NoError(t, os.Chmod(path, 0))
			},
		},
	}
}

// repair puts the running content back at path, whatever breakIt left
// there.
func repair(t *testing.T, path string) {
	t.Helper()
	require.NoError(t, os.RemoveAll(path))
	// Renamed into place, so the watcher never reads it half written.
	tmp := path + ".repair"
	require.NoError(t, os.WriteFile(tmp, []byte(unreadableConfig), 0o644))
	require.NoError(t, os.Rename(tmp, path))
}

// newBareReloader is a reloader over a real router, without listeners,
// probes or warmup: what the tests below exercise is only what it records.
func newBareReloader(t *testing.T) (*reloader, string) {
	t.Helper()
	return newBareReloaderOf(t, unreadableConfig)
}

// newBareReloaderOf is newBareReloader started with the config content.
func newBareReloaderOf(t *testing.T, content string) (*reloader, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "switchyard.yaml")
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
	cfg, data, err := config.Load(path)
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	backends := proxy.NewRegistry(proxy.RegistryOptions{})
	t.Cleanup(backends.CloseIdle)
	log := zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel))
	router := proxy.NewRouter(cfg, proxy.Options{Registry: backends, Metrics: proxy.NewMetrics(reg), Log: log})
	t.Cleanup(router.Close)
	return newReloader(path, data, cfg, cfg.Active, router, routerOnly{router}, log, reg), path
}

// routerOnly is a reload target that publishes to the router and nothing
// else: no health checker, admin token or state file.
type routerOnly struct{ router *proxy.Router }

func (r routerOnly) prepare(cfg *config.Config) (*[2]*warmup.Spec, error) {
	specs, err := compileWarmups(cfg)
	return &specs, err
}

func (r routerOnly) publish(cfg *config.Config, _ *[2]*warmup.Spec, _ string) { r.router.Apply(cfg) }

func reloadCount(t *testing.T, r *reloader, result string) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, r.reloads.WithLabelValues(result).Write(&m))
	return m.GetCounter().GetValue()
}

func skipIfRootReadsIt(t *testing.T, b breakage) {
	t.Helper()
	if !b.asRoot && os.Geteuid() == 0 {
		t.Skip("root reads the file whatever its permissions")
	}
}

// Regression test for issue 11: POST /admin/reload of a file that exists
// but cannot be read must be recorded exactly as a broken config is, and
// reading the running content again must clear the error.
func TestReload_UnreadableFileIsRecordedLikeAnInvalidOne(t *testing.T) {
	for _, test := range breakages() {
		t.Run(test.desc, func(t *testing.T) {
			skipIfRootReadsIt(t, test)
			t.Parallel()
			r, path := newBareReloader(t)
			before := r.ConfigStatus()
			test.breakIt(t, path)

			err := r.Reload("admin")

			require.Error(t, err)
			assert.Contains(t, err.Error(), path)
			st := r.ConfigStatus()
			assert.Contains(t, st.LastError, test.wantErr)
			assert.NotNil(t, st.LastErrorAt)
			assert.Equal(t, before.Generation, st.Generation, "nothing was applied")
			assert.Equal(t, before.SHA256, st.SHA256)
			assert.Equal(t, 1.0, reloadCount(t, r, "error"))
			assert.Equal(t, config.Blue, r.router.Snapshot().Active)

			repair(t, path)
			require.NoError(t, r.Reload("admin"))

			st = r.ConfigStatus()
			assert.Empty(t, st.LastError, "the running content is back, yet the error stays")
			assert.Nil(t, st.LastErrorAt)
			assert.Equal(t, 1.0, reloadCount(t, r, "unchanged"))
		})
	}
}

// Regression test for issue 11: the watcher only logged a file it could
// not read, so config.last_error and the error counter never showed it;
// and since it then saw no new content when the file was repaired, a stale
// error would have stayed.
func TestFileWatch_UnreadableFileIsRecordedAndItsRepairClearsTheError(t *testing.T) {
	for _, test := range breakages() {
		t.Run(test.desc, func(t *testing.T) {
			skipIfRootReadsIt(t, test)
			t.Parallel()
			r, path := newBareReloader(t)
			w, err := watch.New(path, []byte(unreadableConfig), 20*time.Millisecond, zaptest.NewLogger(t, zaptest.Level(zap.ErrorLevel)))
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.run(ctx, w)
			}()
			t.Cleanup(func() {
				cancel()
				wg.Wait()
			})

			test.breakIt(t, path)

			require.Eventually(t, func() bool {
				return r.ConfigStatus().LastError != ""
			}, waitFor, tick, "the unreadable file is never recorded")
			st := r.ConfigStatus()
			assert.Contains(t, st.LastError, test.wantErr)
			assert.Equal(t, 1, st.Generation)
			assert.Equal(t, 1.0, reloadCount(t, r, "error"))

			repair(t, path)

			require.Eventually(t, func() bool {
				return r.ConfigStatus().LastError == ""
			}, waitFor, tick, "the repaired file never clears the error")
			assert.Equal(t, 1, r.ConfigStatus().Generation, "the same content is not applied again")
			assert.Equal(t, 1.0, reloadCount(t, r, "unchanged"))
		})
	}
}
