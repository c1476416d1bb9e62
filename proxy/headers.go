package proxy

import (
	"bytes"
	"math/rand/v2"
	"net/netip"

	"github.com/valyala/fasthttp"
)

// Response headers that tell which pool answered.
const (
	HeaderColor     = "X-Switchyard-Color"
	HeaderVersion   = "X-Switchyard-Version"
	HeaderRequestID = "X-Request-Id"
)

// hopHeaders are meaningful only for one connection (RFC 9110 §7.6.1) and
// must not be forwarded in either direction. fasthttp frames bodies itself,
// so Transfer-Encoding and Content-Length are rewritten, not copied.
var hopHeaders = [...]string{
	"Connection",
	"Proxy-Connection",
	"Keep-Alive",
	"Proxy-Authenticate",
	"Proxy-Authorization",
	"Te",
	"Trailer",
	"Transfer-Encoding",
	"Upgrade",
}

// connectionTokens calls del for every header named in a Connection value,
// which the sender declared hop-by-hop too.
func connectionTokens(v []byte, del func([]byte)) {
	for len(v) > 0 {
		var tok []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			tok, v = v[:i], v[i+1:]
		} else {
			tok, v = v, nil
		}
		tok = bytes.TrimSpace(tok)
		if len(tok) > 0 && !bytes.EqualFold(tok, []byte("close")) && !bytes.EqualFold(tok, []byte("keep-alive")) {
			del(tok)
		}
	}
}

// dropConnectionTokens deletes the headers named by every Connection line
// (a sender may split the list over several lines). The values are copied
// into scratch first: deleting headers moves the bytes they point into.
func dropConnectionTokens(lines [][]byte, scratch []byte, del func([]byte)) []byte {
	if len(lines) == 0 {
		return scratch
	}
	scratch = scratch[:0]
	for _, v := range lines {
		scratch = append(scratch, v...)
		scratch = append(scratch, ',')
	}
	connectionTokens(scratch, del)
	return scratch
}

// prepareRequest turns the client's request into the upstream request in
// place: hop-by-hop headers go, forwarding headers and a request ID are
// added. Host is left as the client sent it. scratch is reused per request.
//
// seen, from screen, says which of the headers rewritten here the client
// sent; the others are added without looking for them.
func prepareRequest(ctx *fasthttp.RequestCtx, scratch []byte, seen headerSeen) []byte {
	h := &ctx.Request.Header
	// An HTTP/1.0 request means close without a Connection line, and
	// fasthttp would say so upstream.
	if seen&seenHop != 0 || h.ConnectionClose() {
		scratch = dropConnectionTokens(h.PeekAll("Connection"), scratch, h.DelBytes)
		// fasthttp keeps a chunked body's trailers and, once the Trailer
		// header goes, would send them as headers: a client could smuggle
		// a header past every check that ran on the head. Fields sent
		// after the body are not the backend's business.
		scratch = dropConnectionTokens(h.PeekAll("Trailer"), scratch, h.DelBytes)
		for _, name := range hopHeaders {
			h.Del(name)
		}
		// We already hold the whole body; the backend must not wait for a
		// 100 Continue that will never come from us.
		h.Del("Expect")
	}

	// Every earlier hop, over however many lines they came, then us.
	buf := scratch[:0]
	if seen&seenForwardedFor != 0 {
		for _, prior := range h.PeekAll("X-Forwarded-For") {
			buf = append(buf, prior...)
			buf = append(buf, ", "...)
		}
		h.Del("X-Forwarded-For")
	}
	buf = appendIP(buf, ctx)
	h.SetCanonical(headerForwardedForKey, buf)
	proto := protoHTTP
	if ctx.IsTLS() {
		proto = protoHTTPS
	}
	h.SetCanonical(headerForwardedProtoKey, proto)

	if seen&seenRequestID == 0 || len(h.Peek(HeaderRequestID)) == 0 {
		mark := len(buf)
		buf = appendRequestID(buf)
		h.SetCanonical(headerRequestIDKey, buf[mark:])
	}
	return buf
}

// Canonical header names and values set on every request, as bytes so
// that fasthttp neither normalises nor converts them.
var (
	headerForwardedForKey   = []byte("X-Forwarded-For")
	headerForwardedProtoKey = []byte("X-Forwarded-Proto")
	headerRequestIDKey      = []byte(HeaderRequestID)
	protoHTTP, protoHTTPS   = []byte("http"), []byte("https")
)

func appendIP(dst []byte, ctx *fasthttp.RequestCtx) []byte {
	addr, ok := netip.AddrFromSlice(ctx.RemoteIP())
	if !ok {
		return append(dst, "unknown"...)
	}
	return addr.Unmap().AppendTo(dst)
}

// appendRequestID appends 32 random hex digits: unique enough to join logs,
// and made without allocating.
func appendRequestID(dst []byte) []byte {
	const hex = "0123456789abcdef"
	for range 2 {
		v := rand.Uint64()
		for range 16 {
			dst = append(dst, hex[v&0xf])
			v >>= 4
		}
	}
	return dst
}

// stripResponseHops removes hop-by-hop headers from an upstream response
// read straight into the client's response.
func stripResponseHops(h *fasthttp.ResponseHeader, scratch []byte) []byte {
	scratch = dropConnectionTokens(h.PeekAll("Connection"), scratch, h.DelBytes)
	for _, name := range hopHeaders {
		if name != "Transfer-Encoding" {
			h.Del(name)
		}
	}
	// The upstream's wish to close its connection is not the client's.
	h.ResetConnectionClose()
	return scratch
}
