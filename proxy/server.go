package proxy

import (
	"time"

	"github.com/valyala/fasthttp"
)

// NewServer returns the traffic listener's fasthttp server around h.
// maxBody is the hard cap on request bodies; the snapshot's limit, which a
// reload may lower, is checked per request.
func NewServer(h *Handler, maxBody int) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:                      h.ServeHTTP,
		ErrorHandler:                 ErrorHandler,
		Name:                         "switchyard",
		MaxRequestBodySize:           maxBody,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		DisablePreParseMultipartForm: true,
		// Client keep-alive: long enough for load balancers in front of
		// us, which reuse connections for minutes.
		IdleTimeout: 90 * time.Second,
		// Headers and body of a request must arrive in reasonable time;
		// the response may take as long as inference does.
		ReadTimeout:     60 * time.Second,
		CloseOnShutdown: true,
	}
}
