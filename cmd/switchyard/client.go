package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/switchyard/switchyard/admin"
	"github.com/switchyard/switchyard/analysis"
	"github.com/switchyard/switchyard/proxy"
)

const (
	defaultAdmin = "http://127.0.0.1:9901"
	// maxReply bounds what is read of an admin API answer.
	maxReply = 8 << 20
)

// client talks to one gateway's admin API.
type client struct {
	base      string // scheme://host[:port][/prefix], no trailing slash
	token     string
	hc        *http.Client
	timeout   time.Duration
	retryWait time.Duration
	logger    any // nil, or a retryablehttp.Logger with --verbose
}

// connect builds the admin API client from the common flags. A wrong
// --admin or token flag is a usage error, found before anything is sent.
func (c *cli) connect(f *cmdFlags) (*client, error) {
	raw := strings.TrimSpace(f.admin)
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, f.usageError("--admin %q is not an admin API URL (want e.g. http://127.0.0.1:9901)", f.admin)
	}
	token, err := c.token(f)
	if err != nil {
		return nil, f.usageError("%v", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	cl := &client{base: strings.TrimSuffix(u.String(), "/"), token: token, timeout: f.timeout, retryWait: c.retryWait,
		hc: &http.Client{Transport: tr, Timeout: f.timeout}}
	if f.verbose {
		cl.logger = log.New(c.stderr, "switchyard: ", 0)
	}
	return cl, nil
}

// token picks the bearer token: --token, else --token-file, else
// $SWITCHYARD_TOKEN. A flag on the command line beats the environment,
// so a token exported for one gateway does not shadow the file named for
// another.
func (c *cli) token(f *cmdFlags) (string, error) {
	switch {
	case f.token != "" && f.tokenFile != "":
		return "", errors.New("--token and --token-file both given; pass one")
	case f.token != "":
		return strings.TrimSpace(f.token), nil
	case f.tokenFile != "":
		data, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return "", fmt.Errorf("reading --token-file: %w", err)
		}
		tok := strings.TrimSpace(string(data))
		if tok == "" {
			return "", fmt.Errorf("--token-file %s is empty; it should hold the token of the gateway's admin.token_file", f.tokenFile)
		}
		return tok, nil
	}
	return strings.TrimSpace(c.getenv("SWITCHYARD_TOKEN")), nil
}

func (cl *client) close() { cl.hc.CloseIdleConnections() }

// call is one admin API request.
type call struct {
	method, path string
	// body is sent as JSON; nil sends none.
	body   any
	header http.Header
	// idempotent says the request may reach the gateway twice. One that
	// may not (toggle, rollback, promote, a switch with If-Match) is
	// retried only when it never reached the gateway.
	idempotent bool
}

// do sends req, retrying transient failures, and decodes a 2xx answer
// into out unless out is nil. It returns the answer's body as it came.
// Any answer but 2xx comes back as a *cliError. Decoding is lenient:
// unknown fields are ignored and absent ones stay zero, so one CLI reads
// older and newer gateways alike.
func (cl *client) do(ctx context.Context, req call, out any) ([]byte, error) {
	var raw any // nil: no body
	if req.body != nil {
		data, err := json.Marshal(req.body)
		if err != nil {
			return nil, fmt.Errorf("encoding the request body: %w", err)
		}
		raw = data
	}
	hreq, err := retryablehttp.NewRequestWithContext(ctx, req.method, cl.base+req.path, raw)
	if err != nil {
		return nil, &cliError{code: exitUsage, msg: fmt.Sprintf("building %s %s: %v", req.method, cl.base+req.path, err)}
	}
	for k, v := range req.header {
		hreq.Header[k] = v
	}
	hreq.Header.Set("Accept", "application/json")
	hreq.Header.Set("User-Agent", "switchyard-cli/"+buildVersion())
	if req.body != nil {
		hreq.Header.Set("Content-Type", "application/json")
	}
	if cl.token != "" {
		hreq.Header.Set("Authorization", "Bearer "+cl.token)
	}
	rc := &retryablehttp.Client{
		HTTPClient:   cl.hc,
		Logger:       cl.logger,
		RetryWaitMin: cl.retryWait,
		RetryWaitMax: 8 * cl.retryWait,
		RetryMax:     3,
		CheckRetry:   retryPolicy(req.idempotent),
		Backoff:      cappedBackoff,
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
	}
	resp, err := rc.Do(hreq)
	if err != nil {
		return nil, cl.connError(ctx, req.method, req.path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxReply))
	if err != nil {
		return nil, cl.connError(ctx, req.method, req.path, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, cl.apiError(req.method, req.path, resp.StatusCode, data)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return nil, cl.malformed(req.method, req.path, err)
		}
	}
	return data, nil
}

// status reads GET /admin/status, decoded and as it came.
func (cl *client) status(ctx context.Context) (*admin.Status, []byte, error) {
	var st admin.Status
	raw, err := cl.do(ctx, call{method: http.MethodGet, path: "/admin/status", idempotent: true}, &st)
	if err != nil {
		return nil, nil, err
	}
	if !st.Active.Valid() {
		return nil, nil, cl.malformed(http.MethodGet, "/admin/status", fmt.Errorf("active is %q", st.Active))
	}
	return &st, raw, nil
}

// retryPolicy retries what a restart or a proxy in front of the gateway
// causes: a refused or reset connection, 502, 503 and 504. Never an
// answer of the gateway itself (409, 412, 4xx) nor a timeout.
func retryPolicy(idempotent bool) retryablehttp.CheckRetry {
	return func(ctx context.Context, resp *http.Response, err error) (bool, error) {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return false, nil
			}
			var op *net.OpError
			if errors.As(err, &op) && op.Op == "dial" {
				return true, nil
			}
			reset := errors.Is(err, syscall.ECONNRESET) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
			return idempotent && reset, nil
		}
		switch resp.StatusCode {
		case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return idempotent, nil
		}
		return false, nil
	}
}

// cappedBackoff is retryablehttp's exponential backoff, with a
// Retry-After header capped at the longest wait too.
func cappedBackoff(lo, hi time.Duration, attempt int, resp *http.Response) time.Duration {
	return min(retryablehttp.DefaultBackoff(lo, hi, attempt, resp), hi)
}

// cliError is a failure of a subcommand and the exit status it maps to.
type cliError struct {
	code int
	msg  string
	// detail lines are printed indented under msg: why each backend
	// refused, the analysis verdict.
	detail []string
	// hint is printed last: what to do about it.
	hint string
	// status and apiCode are the admin API's answer, when there was one.
	status  int
	apiCode string
}

func (e *cliError) Error() string { return e.msg }

// connError explains a request that got no answer.
func (cl *client) connError(ctx context.Context, method, path string, err error) error {
	if ctx.Err() != nil {
		return &cliError{code: exitUsage, msg: fmt.Sprintf("interrupted before the gateway answered %s %s; check the outcome with switchyard status", method, path)}
	}
	var why string
	var dns *net.DNSError
	var ne net.Error
	var ue *url.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		why = "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		why = "connection reset"
	case errors.As(err, &dns):
		why = "unknown host " + dns.Name
	case errors.As(err, &ne) && ne.Timeout():
		return &cliError{code: exitUsage, msg: fmt.Sprintf("the admin API at %s did not answer %s %s within %s; is the gateway overloaded or --admin wrong? raise --timeout or set --admin",
			cl.base, method, path, cl.timeout)}
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		why = "the connection closed before an answer"
	case errors.As(err, &ue):
		why = ue.Err.Error()
	default:
		why = err.Error()
	}
	return &cliError{code: exitUsage, msg: fmt.Sprintf("cannot reach the admin API at %s (%s); is the gateway running? set --admin or SWITCHYARD_ADMIN", cl.base, why)}
}

// apiBody is the admin API's error body.
type apiBody struct {
	Error   string              `json:"error"`
	Message string              `json:"message"`
	Refused *proxy.RefusedError `json:"refused"`
	Verdict json.RawMessage     `json:"verdict"`
}

// apiError turns a non-2xx answer into a *cliError: 409, 412 and 422
// are refusals (exit 1); anything else means the call itself was wrong or
// the gateway failed (exit 2).
func (cl *client) apiError(method, path string, status int, data []byte) error {
	var b apiBody
	isAPI := json.Unmarshal(data, &b) == nil && b.Error != ""
	e := &cliError{code: exitUsage, status: status, apiCode: b.Error}
	msg := trimPackage(b.Message)
	if !isAPI {
		msg = strings.TrimSpace(string(data))
		if len(msg) > 200 {
			msg = msg[:200] + "..."
		}
	}
	if msg == "" {
		msg = http.StatusText(status)
	}
	switch status {
	case http.StatusConflict, http.StatusPreconditionFailed, http.StatusUnprocessableEntity:
		e.code, e.msg = exitRefused, msg
		if r := b.Refused; r != nil {
			for _, addr := range sortedKeys(r.Backends) {
				e.detail = append(e.detail, addr+": "+r.Backends[addr])
			}
			if r.Reason != "" && !strings.Contains(msg, r.Reason) {
				e.detail = append(e.detail, r.Reason)
			}
		}
		e.detail = append(e.detail, verdictLines(b.Verdict)...)
	case http.StatusUnauthorized, http.StatusForbidden:
		if cl.token == "" {
			e.msg = fmt.Sprintf("the admin API at %s needs a token (%d); pass --token-file FILE with the token of the gateway's admin.token_file, or set SWITCHYARD_TOKEN", cl.base, status)
		} else {
			e.msg = fmt.Sprintf("the admin API at %s did not accept the token (%d); use the token in the gateway's admin.token_file", cl.base, status)
		}
	case http.StatusNotFound, http.StatusMethodNotAllowed, http.StatusNotImplemented:
		if isAPI {
			e.msg = fmt.Sprintf("the gateway does not support %s %s (%d); upgrade it", method, path, status)
		} else {
			e.msg = fmt.Sprintf("%s %s%s answered %d, not the admin API's JSON; is --admin the admin listener (admin.listen), not the traffic port?", method, cl.base, path, status)
		}
	default:
		if status >= 500 {
			e.msg = fmt.Sprintf("the admin API at %s failed %s %s (%d): %s", cl.base, method, path, status, msg)
		} else {
			e.msg = fmt.Sprintf("the gateway rejected %s %s (%d): %s", method, path, status, msg)
		}
	}
	return e
}

// verdictLines renders the verdict of a refused promotion; one that is not
// shaped as switchyard knows is shown as it came.
func verdictLines(raw json.RawMessage) []string {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var v analysis.Verdict
	if err := json.Unmarshal(raw, &v); err != nil || (v.Phase == "" && len(v.Reasons) == 0) {
		var buf bytes.Buffer
		if json.Compact(&buf, raw) != nil {
			return nil
		}
		return []string{"verdict: " + buf.String()}
	}
	return append([]string{"verdict:"}, indentLines(describeVerdict(&v), "  ")...)
}

func indentLines(lines []string, prefix string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = prefix + l
	}
	return out
}

// trimPackage drops the Go package prefix of a server message ("proxy:
// switch to green refused" reads "switch to green refused").
func trimPackage(msg string) string {
	for _, p := range []string{"proxy: ", "analysis: "} {
		msg = strings.TrimPrefix(msg, p)
	}
	return msg
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func (cl *client) malformed(method, path string, err error) error {
	return &cliError{code: exitUsage, msg: fmt.Sprintf("the admin API at %s answered %s %s with something switchyard cannot read (%v); is --admin the admin listener (admin.listen), not the traffic port?",
		cl.base, method, path, err)}
}
