package proxy

import (
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/valyala/fasthttp"
)

// NewServer returns the traffic listener's fasthttp server around h.
// maxBody is the hard cap on request bodies; the snapshot's limit, which a
// reload may lower, is checked per request.
func NewServer(h *Handler, maxBody int) *fasthttp.Server {
	return &fasthttp.Server{
		// Connection-level errors (a client sending junk, a body over the
		// limit) already got their answer; keep them out of stderr.
		Logger:                       debugLogger{h.log},
		Handler:                      h.ServeHTTP,
		ErrorHandler:                 h.ErrorHandler,
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

// debugLogger adapts zap to fasthttp's Logger at debug level.
type debugLogger struct{ log *zap.Logger }

func (l debugLogger) Printf(format string, args ...any) {
	if ce := l.log.Check(zap.DebugLevel, "connection error"); ce != nil {
		ce.Write(zap.String("detail", fmt.Sprintf(format, args...)))
	}
}
