package proxy

import (
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
)

// gRPC over HTTP/2 (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md):
// a call is a POST whose content type starts with application/grpc; its
// outcome is the grpc-status trailer (or header, for a trailers-only
// answer), whatever the HTTP status.
const (
	grpcContentType = "application/grpc"
	grpcStatus      = "Grpc-Status"
	grpcMessage     = "Grpc-Message"
	grpcTimeout     = "Grpc-Timeout"
)

// isGRPC reports whether r is a gRPC call.
func isGRPC(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return strings.HasPrefix(ct, grpcContentType) &&
		(len(ct) == len(grpcContentType) || ct[len(grpcContentType)] == '+' || ct[len(grpcContentType)] == ';')
}

// writeGRPCError answers a gRPC call the gateway could not forward with a
// trailers-only response: HTTP 200, the status in the headers, no body.
// That is what a gRPC client reads as a status, where a 502 with a JSON
// body would read as a broken server.
func writeGRPCError(w http.ResponseWriter, code codes.Code, msg string) {
	h := w.Header()
	h.Set("Content-Type", grpcContentType)
	h.Set(grpcStatus, strconv.Itoa(int(code)))
	h.Set(grpcMessage, encodeGRPCMessage(msg))
	w.WriteHeader(http.StatusOK)
}

// encodeGRPCMessage percent-encodes a status message as the protocol asks:
// bytes outside printable ASCII, and '%' itself.
func encodeGRPCMessage(msg string) string {
	for i := 0; i < len(msg); i++ {
		if c := msg[i]; c < ' ' || c > '~' || c == '%' {
			var b strings.Builder
			for j := 0; j < len(msg); j++ {
				c := msg[j]
				if c < ' ' || c > '~' || c == '%' {
					fmt.Fprintf(&b, "%%%02X", c)
				} else {
					b.WriteByte(c)
				}
			}
			return b.String()
		}
	}
	return msg
}

// decodeGRPCMessage undoes encodeGRPCMessage, for logs.
func decodeGRPCMessage(msg string) string {
	if s, err := url.PathUnescape(msg); err == nil {
		return s
	}
	return msg
}

// parseGRPCTimeout reads a grpc-timeout value: up to 8 digits and a unit,
// H M S m u n. ok is false for anything else, which the call then runs
// without (a malformed deadline is the client's bug, not a reason to fail
// it).
func parseGRPCTimeout(v string) (d time.Duration, ok bool) {
	if len(v) < 2 || len(v) > 9 {
		return 0, false
	}
	n, err := strconv.ParseInt(v[:len(v)-1], 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	var unit time.Duration
	switch v[len(v)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	if n > math.MaxInt64/int64(unit) {
		// 8 digits of hours overflow a Duration: as good as no deadline.
		return time.Duration(math.MaxInt64), true
	}
	return time.Duration(n) * unit, true
}

// grpcHTTPStatus maps a gRPC code to the HTTP status google.rpc.Code
// documents for it, so that switchyard_requests_total's status classes,
// the release analysis and outlier detection judge a gRPC call by its
// outcome rather than by the 200 every gRPC answer carries.
var grpcHTTPStatus = [...]int{
	codes.OK:                 200,
	codes.Canceled:           499,
	codes.Unknown:            500,
	codes.InvalidArgument:    400,
	codes.DeadlineExceeded:   504,
	codes.NotFound:           404,
	codes.AlreadyExists:      409,
	codes.PermissionDenied:   403,
	codes.ResourceExhausted:  429,
	codes.FailedPrecondition: 400,
	codes.Aborted:            409,
	codes.OutOfRange:         400,
	codes.Unimplemented:      501,
	codes.Internal:           500,
	codes.Unavailable:        503,
	codes.DataLoss:           500,
	codes.Unauthenticated:    401,
}

// grpcCodes is how many codes the protocol defines (0-16).
const grpcCodes = len(grpcHTTPStatus)

// grpcBackendFailure reports whether a code the backend sent counts
// against it for outlier ejection: the server broke or is unreachable,
// not the request was wrong or its deadline too short.
func grpcBackendFailure(c codes.Code) bool {
	switch c {
	case codes.Unknown, codes.Internal, codes.Unavailable, codes.DataLoss:
		return true
	}
	return false
}

// parseGRPCStatus reads a grpc-status value; a missing or malformed one
// is Unknown, as the protocol says a client must treat it.
func parseGRPCStatus(v string) codes.Code {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n >= grpcCodes {
		return codes.Unknown
	}
	return codes.Code(n)
}

// grpcCodeNames are the codes as the protocol spells them (UNAVAILABLE),
// the values of the grpc_code label.
var grpcCodeNames = [grpcCodes]string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
	"PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
	"UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
}

func grpcCodeName(c int) string { return grpcCodeNames[c] }
