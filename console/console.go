// Package console serves Switchyard's operator web console: one page,
// embedded in the binary and working offline, that shows both pools side
// by side, the traffic split, drains, the release analysis with per-color
// charts and the switch history, and drives the admin API (switch,
// rollback, canary, mirror, promote, warmup) from a browser.
//
// The page itself holds no data, so it is served without the admin token;
// it asks for the token once, keeps it in the tab's sessionStorage and
// sends it as a bearer header with every call to GET /admin/status, GET
// /admin/console and the actions. The token never appears in a URL.
package console

import (
	"net/http"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proxy"
)

const (
	// Path is where the page and its assets are served.
	Path = "/ui/"
	// DataPath is the endpoint with what the page shows beyond GET
	// /admin/status: per-color time series, per-backend ejections and the
	// analysis thresholds. It needs the admin token.
	DataPath = "/admin/console"
)

// Mux is where Mount registers the console: the admin server, whose
// Handle requires the admin token and whose HandlePublic does not.
type Mux interface {
	Handle(pattern string, h http.Handler)
	HandlePublic(pattern string, h http.Handler)
}

// Router is the routing state the data endpoint reads.
type Router interface {
	Snapshot() *proxy.Snapshot
	Config() *config.Config
	Stats(config.Color) *proxy.Stats
	ShadowStats(config.Color) *proxy.Stats
}

var _ Router = (*proxy.Router)(nil)

// Mount serves the console on m: the page at Path, a redirect to it from
// /, and the data endpoint at DataPath behind the admin token.
func Mount(m Mux, r Router) {
	m.HandlePublic("GET /{$}", http.RedirectHandler(Path, http.StatusFound))
	m.HandlePublic("GET "+Path, Assets())
	m.Handle("GET "+DataPath, NewData(r, nil))
}
