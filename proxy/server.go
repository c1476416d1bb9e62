package proxy

import (
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/switchyard/switchyard/config"
	"github.com/valyala/fasthttp"
)

// ClientLimits bound what one client connection may cost the gateway. A
// client that sends slowly, reads slowly or not at all, or sends an
// oversized head loses its own connection, not anyone else's slot.
type ClientLimits struct {
	// HeaderTimeout bounds the request head from its first byte.
	HeaderTimeout time.Duration
	// ReadTimeout bounds a body larger than MaxHeaderBytes once the head
	// arrived; a smaller one is read within HeaderTimeout.
	ReadTimeout time.Duration
	// WriteTimeout bounds each wait for the client to take more of the
	// answer: a small answer as a whole, each piece of a streamed one.
	WriteTimeout time.Duration
	// IdleTimeout closes a keep-alive connection with no request.
	IdleTimeout time.Duration
	// MaxHeaderBytes caps the request line and headers together.
	MaxHeaderBytes int
}

// clientLimits reads the limits from cfg.
func clientLimits(cfg *config.Config) ClientLimits {
	c := cfg.Proxy.Client
	return ClientLimits{
		HeaderTimeout:  c.HeaderTimeout.D(),
		ReadTimeout:    c.ReadTimeout.D(),
		WriteTimeout:   c.WriteTimeout.D(),
		IdleTimeout:    c.IdleTimeout.D(),
		MaxHeaderBytes: c.MaxHeaderBytes,
	}
}

// NewServer returns the traffic listener's fasthttp server around h.
// maxBody is the hard cap on request bodies; the snapshot's limit, which a
// reload may lower, is checked per request.
func NewServer(h *Handler, maxBody int) *fasthttp.Server { return newServer(h, maxBody, false) }

// newServer is NewServer; a lean server gives an idle connection's
// buffers back (see leanAfter).
func newServer(h *Handler, maxBody int, lean bool) *fasthttp.Server {
	lim := h.client
	bodyConf := fasthttp.RequestConfig{ReadTimeout: lim.ReadTimeout}
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
		ReadBufferSize:               lim.MaxHeaderBytes,
		// fasthttp's ReadTimeout runs from a request's first byte to the
		// end of its head (a slowloris sends a head forever); once the
		// head is in, the body gets its own budget.
		ReadTimeout: lim.HeaderTimeout,
		HeaderReceived: func(hdr *fasthttp.RequestHeader) fasthttp.RequestConfig {
			// A body that fits the head's buffer (most inference requests)
			// is read under the head's deadline; moving a deadline costs a
			// timer update per request, so only larger bodies get theirs.
			if n := hdr.ContentLength(); n >= 0 && n <= lim.MaxHeaderBytes {
				return fasthttp.RequestConfig{}
			}
			return bodyConf
		},
		WriteTimeout:    lim.WriteTimeout,
		IdleTimeout:     lim.IdleTimeout,
		CloseOnShutdown: true,
		// See leanAfter.
		ReduceMemoryUsage: lean,
	}
}

// debugLogger adapts zap to fasthttp's Logger at debug level.
type debugLogger struct{ log *zap.Logger }

func (l debugLogger) Printf(format string, args ...any) {
	if ce := l.log.Check(zap.DebugLevel, "connection error"); ce != nil {
		ce.Write(zap.String("detail", fmt.Sprintf(format, args...)))
	}
}
