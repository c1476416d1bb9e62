package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proxy"
)

// Bounds of the data endpoint's query, in seconds.
const (
	// DefaultWindow is how far back the series go unless ?window= says.
	DefaultWindow = 300
	// MaxWindow is the history proxy.Stats keeps.
	MaxWindow = 600
	// DefaultStep is the width of one point unless ?step= says.
	DefaultStep = 2
	// MaxStep is the widest point.
	MaxStep = 60
)

// Data is the body of GET /admin/console: what the page shows beyond GET
// /admin/status.
type Data struct {
	// Now is the gateway's clock, so charts do not depend on the browser's.
	Now time.Time `json:"now"`
	// Series are the live requests of each color over the window.
	Series Series `json:"series"`
	// Shadow are the mirrored requests, only for a color that received
	// copies in the window.
	Shadow map[config.Color]ColorSeries `json:"shadow,omitempty"`
	// Backends adds what GET /admin/status does not carry, by address.
	Backends map[string]BackendExtra `json:"backends"`
	// Thresholds are the analysis settings the verdict is judged against.
	Thresholds Thresholds `json:"thresholds"`
}

// Series is a per-color record split into points of Step seconds, aligned
// on multiples of Step. The last point covers only the seconds that have
// ended, so it never shows a half-counted second as a drop.
type Series struct {
	Step int `json:"step_s"`
	// Start holds each point's first second, in Unix seconds.
	Start []int64 `json:"start"`
	// Seconds holds how many seconds each point covers: Step, except for
	// the last.
	Seconds []int                        `json:"seconds"`
	Colors  map[config.Color]ColorSeries `json:"colors"`
}

// ColorSeries is one color's points, index for index with Series.Start.
// A ratio or latency is null for a point without requests.
type ColorSeries struct {
	Version    string     `json:"version"`
	Requests   []uint64   `json:"requests"`
	RPS        []float64  `json:"rps"`
	ErrorRatio []*float64 `json:"error_ratio"`
	P50        []*float64 `json:"p50_ms"`
	P99        []*float64 `json:"p99_ms"`
}

// BackendExtra is what the console shows of a backend beyond GET
// /admin/status.
type BackendExtra struct {
	// Ejections counts passive-health ejections since the backend was
	// first seen.
	Ejections uint32 `json:"ejections"`
}

// Thresholds are config.Analysis in the units the page shows.
type Thresholds struct {
	WindowSeconds      float64 `json:"window_s"`
	MinRequests        int     `json:"min_requests"`
	MaxErrorRatio      float64 `json:"max_error_ratio"`
	MaxP99Ratio        float64 `json:"max_p99_ratio"` // 0: off
	MaxP99Ms           float64 `json:"max_p99_ms"`    // 0: off
	P99FloorMs         float64 `json:"p99_floor_ms"`
	MaxStatusDiffRatio float64 `json:"max_status_diff_ratio"`
	ObserveSeconds     float64 `json:"observe_s"`
	AutoRollback       bool    `json:"auto_rollback"`
	AutoPromote        bool    `json:"auto_promote"`
}

// DataHandler serves GET /admin/console.
type DataHandler struct {
	router Router
	now    func() time.Time
}

// NewData returns the data endpoint reading r; now is the clock, time.Now
// when nil.
func NewData(r Router, now func() time.Time) *DataHandler {
	if now == nil {
		now = time.Now
	}
	return &DataHandler{router: r, now: now}
}

// ServeHTTP implements http.Handler. Query: window and step in seconds.
func (d *DataHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	window, err := seconds(r.URL.Query().Get("window"), DefaultWindow, MaxWindow)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "window: "+err.Error())
		return
	}
	step, err := seconds(r.URL.Query().Get("step"), DefaultStep, MaxStep)
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", "step: "+err.Error())
		return
	}
	now := d.now()
	snap := d.router.Snapshot()
	out := Data{Now: now, Backends: map[string]BackendExtra{}, Thresholds: thresholds(d.router.Config().Analysis)}
	out.Series = Series{Step: step, Colors: map[config.Color]ColorSeries{}}
	// The second under way is not over: the last point ends before it.
	last := now.Unix() - 1
	for lo := floorTo(last-int64(window)+1, int64(step)); lo <= last; lo += int64(step) {
		hi := min(lo+int64(step)-1, last)
		out.Series.Start = append(out.Series.Start, lo)
		out.Series.Seconds = append(out.Series.Seconds, int(hi-lo+1))
	}
	for _, c := range []config.Color{config.Blue, config.Green} {
		version := snap.Pool(c).Version
		out.Series.Colors[c] = series(d.router.Stats(c), version, out.Series.Start, out.Series.Seconds)
		if sh := series(d.router.ShadowStats(c), version, out.Series.Start, out.Series.Seconds); sh.total() > 0 {
			if out.Shadow == nil {
				out.Shadow = map[config.Color]ColorSeries{}
			}
			out.Shadow[c] = sh
		}
		for _, b := range snap.Pool(c).Backends {
			out.Backends[b.Addr()] = BackendExtra{Ejections: b.Ejections()}
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
}

func series(st *proxy.Stats, version string, starts []int64, secs []int) ColorSeries {
	cs := ColorSeries{Version: version, Requests: make([]uint64, len(starts)), RPS: make([]float64, len(starts)),
		ErrorRatio: make([]*float64, len(starts)), P50: make([]*float64, len(starts)), P99: make([]*float64, len(starts))}
	for i, lo := range starts {
		win := st.Summary(time.Unix(lo, 0), time.Unix(lo+int64(secs[i])-1, 0))
		cs.Requests[i] = win.Requests
		cs.RPS[i] = float64(win.Requests) / float64(secs[i])
		if win.Requests == 0 {
			continue
		}
		cs.ErrorRatio[i] = new(win.ErrorRatio())
		cs.P50[i] = new(ms(win.Quantile(0.5)))
		cs.P99[i] = new(ms(win.P99))
	}
	return cs
}

func (cs ColorSeries) total() uint64 {
	var n uint64
	for _, r := range cs.Requests {
		n += r
	}
	return n
}

func thresholds(a config.Analysis) Thresholds {
	t := Thresholds{
		WindowSeconds: a.Window.D().Seconds(), MinRequests: a.MinRequests, MaxErrorRatio: a.MaxErrorRatio,
		MaxP99Ms: ms(a.MaxP99.D()), P99FloorMs: ms(a.P99Floor.D()), MaxStatusDiffRatio: a.MaxStatusDiffRatio,
		ObserveSeconds: a.Observe.D().Seconds(), AutoPromote: a.AutoPromote,
	}
	if a.MaxP99Ratio != nil {
		t.MaxP99Ratio = *a.MaxP99Ratio
	}
	if a.AutoRollback != nil {
		t.AutoRollback = *a.AutoRollback
	}
	return t
}

// seconds parses a query value of whole seconds from 1 to upper; empty
// gives def.
func seconds(v string, def, upper int) (int, error) {
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > upper {
		return 0, fmt.Errorf("%q is not a whole number of seconds from 1 to %d", v, upper)
	}
	return n, nil
}

// floorTo rounds v down to a multiple of step, negative values included.
func floorTo(v, step int64) int64 {
	r := v % step
	if r < 0 {
		r += step
	}
	return v - r
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]string{"error": code, "message": msg})
}
