package proxy

import (
	"bytes"

	"github.com/valyala/fasthttp"
)

// HeaderLoop carries the IDs of the Switchyard processes a request passed
// through. A request that comes back to a process already on its list was
// routed to the gateway itself (a backend address pointing at its own
// listener, or two gateways pointing at each other) and is refused with
// 508 instead of circling until a header limit stops it.
const HeaderLoop = "X-Switchyard-Loop"

var headerLoopKey = []byte(HeaderLoop)

// Answers the gateway gives a client itself, before any backend is asked.
var (
	bodyBadHeader    = []byte(`{"error":"bad_request","message":"a request header name is not a valid HTTP token (RFC 9110 section 5.1)"}`)
	bodyBadTarget    = []byte(`{"error":"bad_request","message":"the request target is neither a path nor an absolute http(s) URL"}`)
	bodyNoHost       = []byte(`{"error":"bad_request","message":"an HTTP/1.1 request needs a Host header"}`)
	bodyConnect      = []byte(`{"error":"method_not_allowed","message":"CONNECT is not proxied: Switchyard is a gateway, not a forward proxy"}`)
	bodyLoop         = []byte(`{"error":"loop_detected","message":"the request came back to the gateway that sent it: a backend address points at a Switchyard listener"}`)
	bodyHeadTooLarge = []byte(`{"error":"header_too_large","message":"the request head exceeds proxy.client.max_header_bytes"}`)
	bodyURITooLong   = []byte(`{"error":"uri_too_long","message":"the request line exceeds proxy.client.max_header_bytes"}`)
)

// allowedMethods answers OPTIONS * for the server as a whole.
const allowedMethods = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"

// clientErrorKind names why the gateway answered a client itself; the
// values of switchyard_client_errors_total's reason label.
const (
	clientBadRequest = iota
	clientBodyTooLarge
	clientHeadTooLarge
	clientTimeout
	clientMethod
	clientLoop
	clientErrKinds
)

var clientErrNames = [clientErrKinds]string{"bad_request", "body_too_large", "header_too_large", "timeout", "method", "loop"}

// screen checks a request before any backend sees it and normalises what
// RFC 9112 lets a server normalise. It answers the client itself and
// returns false for what must not be forwarded; those answers are the
// client's errors and never count against a backend.
//
// It also returns which of the headers the gateway rewrites the request
// carries, for prepareRequest and markLoop.
func (h *Handler) screen(ctx *fasthttp.RequestCtx, p *Pool) (headerSeen, bool) {
	hdr := &ctx.Request.Header
	switch {
	case hdr.IsConnect():
		h.refuse(ctx, p, clientMethod, fasthttp.StatusMethodNotAllowed, bodyConnect)
		ctx.Response.Header.Set("Allow", allowedMethods)
		return 0, false
	case hdr.IsOptions() && string(hdr.RequestURI()) == "*":
		// A question about the gateway, not about a model.
		setPoolHeaders(ctx, p)
		ctx.Response.Header.Set("Allow", allowedMethods)
		ctx.Response.SetStatusCode(fasthttp.StatusOK)
		return 0, false
	}
	names, seen := checkHeaderNames(hdr)
	if seen&seenLoop != 0 && bytes.Contains(hdr.PeekBytes(headerLoopKey), h.loopID) {
		h.refuse(ctx, p, clientLoop, fasthttp.StatusLoopDetected, bodyLoop)
		return 0, false
	}
	if uri := hdr.RequestURI(); len(uri) == 0 || uri[0] != '/' {
		if !normaliseTarget(&ctx.Request) {
			h.refuse(ctx, p, clientBadRequest, fasthttp.StatusBadRequest, bodyBadTarget)
			return 0, false
		}
	}
	if len(hdr.Host()) == 0 && hdr.IsHTTP11() {
		h.refuse(ctx, p, clientBadRequest, fasthttp.StatusBadRequest, bodyNoHost)
		return 0, false
	}
	switch names {
	case namesInvalid:
		h.refuse(ctx, p, clientBadRequest, fasthttp.StatusBadRequest, bodyBadHeader)
		return 0, false
	case namesUnderscore:
		dropUnderscoreHeaders(hdr)
	}
	return seen, true
}

// refuse answers a client error and counts it apart from backend errors.
func (h *Handler) refuse(ctx *fasthttp.RequestCtx, p *Pool, kind, status int, body []byte) {
	h.router.metrics.clientErrors[kind].Inc()
	writeError(ctx, p, status, body)
	ctx.SetConnectionClose()
}

// markLoop adds this gateway's ID to the loop header.
func (h *Handler) markLoop(hdr *fasthttp.RequestHeader, scratch []byte, seen headerSeen) []byte {
	var prior []byte
	if seen&seenLoop != 0 {
		prior = hdr.PeekBytes(headerLoopKey)
	}
	if len(prior) == 0 {
		hdr.SetCanonical(headerLoopKey, h.loopID)
		return scratch
	}
	scratch = append(scratch[:0], prior...)
	scratch = append(scratch, ", "...)
	scratch = append(scratch, h.loopID...)
	hdr.SetCanonical(headerLoopKey, scratch)
	return scratch
}

// normaliseTarget turns an absolute-form target (http://host/path) into
// origin form with Host taken from it, as RFC 9112 section 3.2.2 asks of a
// server. Userinfo is dropped, never turned into credentials. It reports
// false for any other form (authority or asterisk form outside CONNECT
// and OPTIONS, or garbage).
func normaliseTarget(req *fasthttp.Request) bool {
	uri := req.Header.RequestURI()
	var rest []byte
	switch {
	case hasPrefixFold(uri, "http://"):
		rest = uri[len("http://"):]
	case hasPrefixFold(uri, "https://"):
		rest = uri[len("https://"):]
	default:
		return false
	}
	end := bytes.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, path := rest[:end], rest[end:]
	if at := bytes.LastIndexByte(authority, '@'); at >= 0 {
		authority = authority[at+1:]
	}
	if len(authority) == 0 {
		return false
	}
	if i := bytes.IndexByte(path, '#'); i >= 0 {
		path = path[:i]
	}
	// Both point into the header's buffer: copy before rewriting it.
	var buf [512]byte
	target := append(buf[:0], authority...)
	mark := len(target)
	if len(path) == 0 || path[0] != '/' {
		target = append(target, '/')
	}
	target = append(target, path...)
	req.Header.SetHostBytes(target[:mark])
	req.SetRequestURIBytes(target[mark:])
	req.UseHostHeader = true
	return true
}

func hasPrefixFold(b []byte, prefix string) bool {
	return len(b) >= len(prefix) && bytes.EqualFold(b[:len(prefix)], []byte(prefix))
}

// Results of checkHeaderNames.
const (
	namesOK = iota
	namesUnderscore
	namesInvalid
)

// checkHeaderNames rejects names that are not RFC 9110 tokens (a space, a
// control byte, a separator) and flags names with underscores, which
// nginx and CGI-style servers fold into dashes: X_Forwarded_For must not
// reach a backend that reads it as X-Forwarded-For. It reads the names as
// they came on the wire, before fasthttp normalised them.
//
// The same pass notes which of the headers the gateway rewrites are there
// (seen), so that prepareRequest and markLoop touch only those: most
// requests carry none, and each Del or Peek of fasthttp is a pass of its
// own over every header.
func checkHeaderNames(hdr *fasthttp.RequestHeader) (result int, seen headerSeen) {
	result = namesOK
	raw := hdr.RawHeaders()
	for len(raw) > 0 {
		line := raw
		if i := bytes.IndexByte(raw, '\n'); i >= 0 {
			line, raw = raw[:i], raw[i+1:]
		} else {
			raw = nil
		}
		if len(line) == 0 || line[0] == ' ' || line[0] == '\t' || line[0] == '\r' {
			continue // obs-fold continuation (joined by fasthttp) or the end
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return namesInvalid, seen
		}
		for _, c := range line[:colon] {
			if c == '_' {
				result = namesUnderscore
			} else if !isTokenByte(c) {
				return namesInvalid, seen
			}
		}
		seen |= classifyHeader(line[:colon])
	}
	return result, seen
}

// equalFoldASCII reports whether b and s are equal, ASCII letters in any
// case: all a header name may hold.
func equalFoldASCII(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		x, y := b[i], s[i]
		if x == y {
			continue
		}
		// Only a letter's two cases differ in bit 0x20 alone.
		if l := x | 0x20; l != y|0x20 || l < 'a' || l > 'z' {
			return false
		}
	}
	return true
}

// headerSeen is a set of the request headers the gateway rewrites.
type headerSeen uint8

const (
	// seenHop: a hop-by-hop header (hopHeaders), Expect, or anything a
	// Connection line may name; prepareRequest then takes its full path.
	seenHop headerSeen = 1 << iota
	seenForwardedFor
	seenForwardedProto
	seenRequestID
	seenLoop
)

// classifyHeader says which of the rewritten headers name is, in any case.
func classifyHeader(name []byte) headerSeen {
	is := func(s string) bool { return equalFoldASCII(name, s) }
	switch len(name) {
	case 2:
		if is("te") {
			return seenHop
		}
	case 6:
		if is("expect") {
			return seenHop
		}
	case 7:
		if is("trailer") || is("upgrade") {
			return seenHop
		}
	case 10:
		if is("connection") || is("keep-alive") {
			return seenHop
		}
	case 12:
		if is(HeaderRequestID) {
			return seenRequestID
		}
	case 15:
		if is("x-forwarded-for") {
			return seenForwardedFor
		}
	case 16:
		if is("proxy-connection") {
			return seenHop
		}
	case 17:
		switch {
		case is("transfer-encoding"):
			return seenHop
		case is("x-forwarded-proto"):
			return seenForwardedProto
		case is(HeaderLoop):
			return seenLoop
		}
	case 18:
		if is("proxy-authenticate") {
			return seenHop
		}
	case 19:
		if is("proxy-authorization") {
			return seenHop
		}
	}
	return 0
}

// dropUnderscoreHeaders deletes every header whose name has an
// underscore. Rare: its allocations do not matter.
func dropUnderscoreHeaders(hdr *fasthttp.RequestHeader) {
	var names [][]byte
	for k := range hdr.All() {
		if bytes.IndexByte(k, '_') >= 0 {
			names = append(names, append([]byte(nil), k...))
		}
	}
	for _, k := range names {
		hdr.DelBytes(k)
	}
}

// isTokenByte reports whether c may appear in an RFC 9110 token.
func isTokenByte(c byte) bool { return tokenBytes[c] }

// tokenBytes is the RFC 9110 tchar set as a table: one load per byte on
// the request path instead of a chain of comparisons. It is never written.
var tokenBytes = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()
