package admin

import (
	"net/http"
	"time"

	"go.uber.org/zap"
)

// Limits bound the admin listener's connections, so that a client, with
// or without a token, cannot hold one open by sending slowly or not at
// all. A zero field takes its default.
type Limits struct {
	// ReadHeader bounds reading a request's headers, and how long a new
	// connection may wait before sending one. Default 5s.
	ReadHeader time.Duration
	// Read bounds reading a whole request, body included. Admin bodies are
	// at most 64 KiB of JSON. Default 10s.
	Read time.Duration
	// Write bounds the time from the end of a request's headers to the
	// end of its answer, /metrics included. Default 30s.
	Write time.Duration
	// Idle bounds how long a keep-alive connection waits for its next
	// request. Default 30s.
	Idle time.Duration
	// MaxHeaderBytes caps a request's headers; larger ones get 431.
	// Default 16 KiB.
	MaxHeaderBytes int
}

// Default admin listener limits; see Limits.
const (
	DefaultReadHeaderTimeout = 5 * time.Second
	DefaultReadTimeout       = 10 * time.Second
	DefaultWriteTimeout      = 30 * time.Second
	DefaultIdleTimeout       = 30 * time.Second
	DefaultMaxHeaderBytes    = 16 << 10
)

// NewHTTPServer returns the http.Server for the admin listener: h behind
// the limits l, errors logged to log.
func NewHTTPServer(h http.Handler, l Limits, log *zap.Logger) *http.Server {
	or := func(v, d time.Duration) time.Duration {
		if v <= 0 {
			return d
		}
		return v
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: or(l.ReadHeader, DefaultReadHeaderTimeout),
		ReadTimeout:       or(l.Read, DefaultReadTimeout),
		WriteTimeout:      or(l.Write, DefaultWriteTimeout),
		IdleTimeout:       or(l.Idle, DefaultIdleTimeout),
		MaxHeaderBytes:    l.MaxHeaderBytes,
		ErrorLog:          zap.NewStdLog(log),
	}
}
