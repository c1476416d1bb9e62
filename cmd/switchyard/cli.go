package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-retryablehttp"
	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proxy"
)

// cliUsage lists the operator subcommands, for main's usage text.
const cliUsage = `
Operator commands, through the admin API:
  switchyard status [--json] [--watch [--interval 2s]]
  switchyard switch blue|green|toggle [--force] [--wait] [--if-match GEN]
  switchyard rollback [--force] [--wait]
  switchyard traffic COLOR=PERCENT       canary split, e.g. green=5; green=0 ends it
  switchyard mirror COLOR PERCENT | off   copy a share of requests to the standby color
  switchyard promote [--wait]            switch only if the canary analysis passes
  switchyard warmup blue|green           run warmup again on a pool
  switchyard reload                      re-read the config file now
` + commonFlagsUsage

const commonFlagsUsage = `
Flags of every operator command:
  --admin URL         admin API (default $SWITCHYARD_ADMIN, else http://127.0.0.1:9901)
  --token-file FILE   file holding the bearer token of admin.token_file
  --token TOKEN       the token itself (visible to ps; prefer the file or $SWITCHYARD_TOKEN)
  --timeout 10s       limit for each request to the admin API
  --verbose           log retries on stderr
Exit status: 0 done (a no-op included), 1 refused or a failed check, 2 usage or connection error.
`

const (
	defaultAdmin = "http://127.0.0.1:9901"
	// maxReply bounds what is read of an admin API answer.
	maxReply = 8 << 20
)

// cli runs the operator subcommands. Its fields are what tests replace.
type cli struct {
	stdout, stderr io.Writer
	getenv         func(string) string
	now            func() time.Time
	// poll is how often --wait reads the drain's progress.
	poll time.Duration
	// retryWait is the first pause before a retry; it doubles each time,
	// up to 8 times as long.
	retryWait time.Duration
}

// runCLI runs the operator subcommand cmd with args. ok is false when cmd
// is not one of them, so main can try its own.
func runCLI(cmd string, args []string, stdout, stderr io.Writer) (code int, ok bool) {
	c := &cli{stdout: stdout, stderr: stderr, getenv: os.Getenv, now: time.Now,
		poll: 250 * time.Millisecond, retryWait: 100 * time.Millisecond}
	run := c.command(cmd)
	if run == nil {
		return 0, false
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx, args), true
}

// command returns the subcommand called name, nil if there is none.
func (c *cli) command(name string) func(context.Context, []string) int {
	switch name {
	case "status":
		return c.status
	case "switch":
		return c.doSwitch
	case "rollback":
		return c.rollback
	case "traffic":
		return c.traffic
	case "mirror":
		return c.mirror
	case "promote":
		return c.promote
	case "warmup":
		return c.warmup
	case "reload":
		return c.reload
	}
	return nil
}

// cmdFlags are a subcommand's flag set and the flags every subcommand has.
type cmdFlags struct {
	*flag.FlagSet
	name, synopsis string
	admin          string
	token          string
	tokenFile      string
	timeout        time.Duration
	verbose        bool
}

func (c *cli) flags(name, synopsis string) *cmdFlags {
	f := &cmdFlags{FlagSet: flag.NewFlagSet(name, flag.ContinueOnError), name: name, synopsis: synopsis}
	// Errors and help are printed by parse, in our words.
	f.SetOutput(io.Discard)
	f.Usage = func() {}
	admin := c.getenv("SWITCHYARD_ADMIN")
	if admin == "" {
		admin = defaultAdmin
	}
	f.StringVar(&f.admin, "admin", admin, "admin API URL")
	f.StringVar(&f.token, "token", "", "bearer token")
	f.StringVar(&f.tokenFile, "token-file", "", "file holding the bearer token")
	f.DurationVar(&f.timeout, "timeout", 10*time.Second, "limit for each request")
	f.BoolVar(&f.verbose, "verbose", false, "log retries on stderr")
	return f
}

// parse parses flags and positional arguments in any order ("switch green
// --wait" as well as "switch --wait green"; everything after "--" is
// positional) and returns the positional ones. When ok is false the
// subcommand returns code: help was asked for, or the flags are wrong.
func (c *cli) parse(f *cmdFlags, args []string) (pos []string, code int, ok bool) {
	for {
		if err := f.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fmt.Fprintf(c.stdout, "Usage:\n  %s\n%s", f.synopsis, commonFlagsUsage)
				return nil, exitOK, false
			}
			return nil, c.usage(f, "%v", err), false
		}
		rest := f.Args()
		if len(rest) == 0 {
			break
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if f.timeout <= 0 {
		return nil, c.usage(f, "--timeout must be positive, got %s", f.timeout), false
	}
	return pos, 0, true
}

// usage reports a usage error and returns exitUsage.
func (c *cli) usage(f *cmdFlags, format string, args ...any) int {
	fmt.Fprintf(c.stderr, "switchyard %s: %s\nUsage: %s  (switchyard %s -h for the flags)\n", f.name, fmt.Sprintf(format, args...), f.synopsis, f.name)
	return exitUsage
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

// fail prints err on stderr and returns its exit status.
func (c *cli) fail(err error) int {
	var ce *cliError
	if !errors.As(err, &ce) {
		ce = &cliError{code: exitUsage, msg: err.Error()}
	}
	fmt.Fprintln(c.stderr, "switchyard: "+ce.msg)
	for _, l := range ce.detail {
		fmt.Fprintln(c.stderr, "  "+l)
	}
	if ce.hint != "" {
		fmt.Fprintln(c.stderr, ce.hint)
	}
	return ce.code
}

// client talks to one gateway's admin API.
type client struct {
	base      string // scheme://host[:port][/prefix], no trailing slash
	token     string
	hc        *http.Client
	timeout   time.Duration
	retryWait time.Duration
	logger    any // nil, or a retryablehttp.Logger with --verbose
}

// connect builds the admin API client from the common flags.
// connectNoArgs parses the flags of a subcommand that takes no
// arguments and connects to the admin API.
func (c *cli) connectNoArgs(f *cmdFlags, args []string) (*client, int, bool) {
	pos, code, ok := c.parse(f, args)
	if !ok {
		return nil, code, false
	}
	if len(pos) > 0 {
		return nil, c.usage(f, "unexpected argument %q", pos[0]), false
	}
	return c.connect(f)
}

func (c *cli) connect(f *cmdFlags) (*client, int, bool) {
	raw := strings.TrimSpace(f.admin)
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, c.usage(f, "--admin %q is not an admin API URL (want e.g. http://127.0.0.1:9901)", f.admin), false
	}
	token, err := c.token(f)
	if err != nil {
		return nil, c.usage(f, "%v", err), false
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	cl := &client{base: strings.TrimSuffix(u.String(), "/"), token: token, timeout: f.timeout, retryWait: c.retryWait,
		hc: &http.Client{Transport: tr, Timeout: f.timeout}}
	if f.verbose {
		cl.logger = log.New(c.stderr, "switchyard: ", 0)
	}
	return cl, 0, true
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

// reply is an admin API answer with a 2xx status.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request, retrying transient failures. idempotent says the
// request may be sent twice: a request that is not (toggle, rollback,
// promote, a switch with If-Match) is retried only when it never reached
// the gateway. Any answer but 2xx comes back as a *cliError.
func (cl *client) do(ctx context.Context, method, path string, body any, idempotent bool, header http.Header) (*reply, error) {
	var raw any // nil: no body
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encoding the request body: %w", err)
		}
		raw = data
	}
	req, err := retryablehttp.NewRequestWithContext(ctx, method, cl.base+path, raw)
	if err != nil {
		return nil, &cliError{code: exitUsage, msg: fmt.Sprintf("building %s %s: %v", method, cl.base+path, err)}
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "switchyard-cli/"+buildVersion())
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if cl.token != "" {
		req.Header.Set("Authorization", "Bearer "+cl.token)
	}
	rc := &retryablehttp.Client{
		HTTPClient:   cl.hc,
		Logger:       cl.logger,
		RetryWaitMin: cl.retryWait,
		RetryWaitMax: 8 * cl.retryWait,
		RetryMax:     3,
		CheckRetry:   retryPolicy(idempotent),
		Backoff:      cappedBackoff,
		ErrorHandler: retryablehttp.PassthroughErrorHandler,
	}
	resp, err := rc.Do(req)
	if err != nil {
		return nil, cl.connError(ctx, method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxReply))
	if err != nil {
		return nil, cl.connError(ctx, method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, cl.apiError(method, path, resp.StatusCode, data)
	}
	return &reply{status: resp.StatusCode, header: resp.Header, body: data}, nil
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
	var v verdictDoc
	if err := json.Unmarshal(raw, &v); err != nil || (v.Phase == "" && len(v.Reasons) == 0) {
		var buf bytes.Buffer
		if json.Compact(&buf, raw) != nil {
			return nil
		}
		return []string{"verdict: " + buf.String()}
	}
	return append([]string{"verdict:"}, indentLines(v.lines(), "  ")...)
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

// decode reads a 2xx answer into v.
func (cl *client) decode(method, path string, rep *reply, v any) error {
	if err := json.Unmarshal(rep.body, v); err != nil {
		return cl.malformed(method, path, err)
	}
	return nil
}

func (cl *client) malformed(method, path string, err error) error {
	return &cliError{code: exitUsage, msg: fmt.Sprintf("the admin API at %s answered %s %s with something switchyard cannot read (%v); is --admin the admin listener (admin.listen), not the traffic port?",
		cl.base, method, path, err)}
}

// getStatus reads GET /admin/status, decoded and raw.
func (cl *client) getStatus(ctx context.Context) (*statusDoc, []byte, error) {
	rep, err := cl.do(ctx, http.MethodGet, "/admin/status", nil, true, nil)
	if err != nil {
		return nil, nil, err
	}
	var st statusDoc
	if err := cl.decode(http.MethodGet, "/admin/status", rep, &st); err != nil {
		return nil, nil, err
	}
	if !st.Active.Valid() {
		return nil, nil, cl.malformed(http.MethodGet, "/admin/status", fmt.Errorf("active is %q", st.Active))
	}
	return &st, rep.body, nil
}

func (c *cli) status(ctx context.Context, args []string) int {
	f := c.flags("status", "switchyard status [--json] [--watch [--interval 2s]]")
	asJSON := f.Bool("json", false, "print the raw JSON")
	watch := f.Bool("watch", false, "refresh until interrupted")
	interval := f.Duration("interval", 2*time.Second, "refresh period of --watch")
	// Not in the usage: stop --watch after this many refreshes (tests).
	count := f.Int("count", 0, "")
	pos, code, ok := c.parse(f, args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return c.usage(f, "unexpected argument %q", pos[0])
	}
	if *interval <= 0 {
		return c.usage(f, "--interval must be positive, got %s", *interval)
	}
	cl, code, ok := c.connect(f)
	if !ok {
		return code
	}
	defer cl.close()
	if !*watch {
		st, raw, err := cl.getStatus(ctx)
		if err != nil {
			return c.fail(err)
		}
		if *asJSON {
			return c.printJSON(raw, true)
		}
		renderStatus(c.stdout, st, c.now())
		return exitOK
	}

	tick := time.NewTicker(*interval)
	defer tick.Stop()
	for n := 1; ; n++ {
		st, raw, err := cl.getStatus(ctx)
		var ce *cliError
		switch {
		case ctx.Err() != nil:
			return exitOK // interrupted: the normal end of --watch
		case errors.As(err, &ce) && ce.status != 0 && ce.status < 500:
			return c.fail(err) // a wrong token or URL does not heal by waiting
		case *asJSON && err == nil:
			c.printJSON(raw, false)
		case *asJSON:
			c.fail(err)
		default:
			fmt.Fprintf(c.stdout, "\x1b[H\x1b[2J%s  every %s, Ctrl-C to stop  %s\n\n", cl.base, *interval, c.now().Format("15:04:05"))
			if err != nil {
				fmt.Fprintf(c.stdout, "%v\n", err)
			} else {
				renderStatus(c.stdout, st, c.now())
			}
		}
		if *count > 0 && n >= *count {
			return exitOK
		}
		select {
		case <-ctx.Done():
			return exitOK
		case <-tick.C:
		}
	}
}

// printJSON prints an admin API answer, indented or on one line.
func (c *cli) printJSON(raw []byte, pretty bool) int {
	var buf bytes.Buffer
	var err error
	if pretty {
		err = json.Indent(&buf, raw, "", "  ")
	} else {
		err = json.Compact(&buf, raw)
	}
	if err != nil {
		return c.fail(fmt.Errorf("the admin API answered with invalid JSON: %w", err))
	}
	buf.WriteByte('\n')
	_, _ = c.stdout.Write(buf.Bytes())
	return exitOK
}

func (c *cli) doSwitch(ctx context.Context, args []string) int {
	f := c.flags("switch", "switchyard switch blue|green|toggle [--force] [--wait] [--if-match GEN]")
	force := f.Bool("force", false, "switch even if the target is not ready")
	wait := f.Bool("wait", false, "wait until the old color has drained")
	ifMatch := f.String("if-match", "", "switch only if the routing generation is still GEN")
	pos, code, ok := c.parse(f, args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return c.usage(f, "want one color: blue, green or toggle")
	}
	to := pos[0]
	if to != "toggle" && !config.Color(to).Valid() {
		return c.usage(f, "unknown color %q (want blue, green or toggle)", to)
	}
	header := http.Header{}
	if *ifMatch != "" {
		gen, err := strconv.ParseUint(strings.Trim(strings.TrimPrefix(*ifMatch, "W/"), `"`), 10, 64)
		if err != nil || gen == 0 {
			return c.usage(f, "--if-match %q is not a generation (want the number switchyard status shows)", *ifMatch)
		}
		header.Set("If-Match", `"`+strconv.FormatUint(gen, 10)+`"`)
	}
	cl, code, ok := c.connect(f)
	if !ok {
		return code
	}
	defer cl.close()
	body := map[string]any{"to": to}
	if *force {
		body["force"] = true
	}
	// A second toggle undoes the first; a switch to a color is a no-op
	// the second time, unless If-Match turns it into a refusal.
	idempotent := to != "toggle" && *ifMatch == ""
	rep, err := cl.do(ctx, http.MethodPost, "/admin/switch", body, idempotent, header)
	if err != nil {
		var ce *cliError
		if errors.As(err, &ce) && ce.apiCode == "refused" {
			ce.hint = "wait until the backends are ready (switchyard status --watch), fix them, or pass --force"
		}
		return c.fail(err)
	}
	return c.switched(ctx, cl, "/admin/switch", rep, "switched", *wait)
}

func (c *cli) rollback(ctx context.Context, args []string) int {
	f := c.flags("rollback", "switchyard rollback [--force] [--wait]")
	force := f.Bool("force", false, "roll back even if the old color is not ready")
	wait := f.Bool("wait", false, "wait until the color rolled back from has drained")
	cl, code, ok := c.connectNoArgs(f, args)
	if !ok {
		return code
	}
	defer cl.close()
	var body any
	if *force {
		body = map[string]bool{"force": true}
	}
	rep, err := cl.do(ctx, http.MethodPost, "/admin/rollback", body, false, nil)
	if err != nil {
		var ce *cliError
		if errors.As(err, &ce) && ce.apiCode == "refused" {
			ce.hint = "the color to roll back to is not ready; fix it (switchyard status) or pass --force"
		}
		return c.fail(err)
	}
	return c.switched(ctx, cl, "/admin/rollback", rep, "rolled back", *wait)
}

func (c *cli) promote(ctx context.Context, args []string) int {
	f := c.flags("promote", "switchyard promote [--wait]")
	wait := f.Bool("wait", false, "wait until the old color has drained")
	cl, code, ok := c.connectNoArgs(f, args)
	if !ok {
		return code
	}
	defer cl.close()
	rep, err := cl.do(ctx, http.MethodPost, "/admin/promote", nil, false, nil)
	if err != nil {
		var ce *cliError
		if errors.As(err, &ce) && ce.code == exitRefused {
			ce.msg = "not promoted: " + ce.msg
		}
		return c.fail(err)
	}
	// The answer is {"switch": <switch result>, "verdict": {...}}; a bare
	// switch result is read too.
	var res struct {
		Switch  json.RawMessage `json:"switch"`
		Verdict *verdictDoc     `json:"verdict"`
	}
	if err := cl.decode(http.MethodPost, "/admin/promote", rep, &res); err != nil {
		return c.fail(err)
	}
	if len(res.Switch) > 0 && string(res.Switch) != "null" {
		rep = &reply{status: rep.status, header: rep.header, body: res.Switch}
	}
	var verdict []string
	if res.Verdict != nil {
		verdict = res.Verdict.lines()
	}
	return c.switched(ctx, cl, "/admin/promote", rep, "promoted", *wait, verdict...)
}

// switched prints a switch result, then the extra lines, and, with wait,
// follows the drain of the color traffic left.
func (c *cli) switched(ctx context.Context, cl *client, path string, rep *reply, verb string, wait bool, extra ...string) int {
	var res proxy.SwitchResult
	if err := cl.decode(http.MethodPost, path, rep, &res); err != nil {
		return c.fail(err)
	}
	if !res.To.Valid() {
		return c.fail(cl.malformed(http.MethodPost, path, fmt.Errorf("to is %q", res.To)))
	}
	fmt.Fprintln(c.stdout, describeSwitch(verb, &res))
	for _, l := range extra {
		fmt.Fprintln(c.stdout, l)
	}
	if !wait || res.NoOp || res.Drain == nil {
		return exitOK
	}
	return c.waitDrain(ctx, cl, *res.Drain)
}

// waitDrain polls the status until the drain that started with d ends.
func (c *cli) waitDrain(ctx context.Context, cl *client, d proxy.DrainStatus) int {
	// On a terminal the progress line is rewritten in place; elsewhere
	// (a CI log) a line is printed when the count changes, or every 5s.
	live := isTerminal(c.stdout)
	printed := false
	lastInflight := int64(-1)
	var lastAt time.Time
	progress := func(d proxy.DrainStatus) {
		line := fmt.Sprintf("draining %s: %d in flight, %.1fs", d.Color, d.Inflight, d.Seconds)
		switch {
		case live:
			fmt.Fprint(c.stdout, "\r\x1b[K"+line)
		case d.Inflight != lastInflight || c.now().Sub(lastAt) >= 5*time.Second:
			fmt.Fprintln(c.stdout, line)
			lastInflight, lastAt = d.Inflight, c.now()
		}
		printed = true
	}
	end := func() {
		if live && printed {
			fmt.Fprintln(c.stdout)
		}
	}
	tick := time.NewTicker(c.poll)
	defer tick.Stop()
	for {
		st, _, err := cl.getStatus(ctx)
		if err != nil {
			end()
			if ctx.Err() != nil {
				return c.fail(&cliError{code: exitRefused, msg: fmt.Sprintf("stopped waiting; the switch is done and %s keeps draining in the gateway (switchyard status)", d.Color)})
			}
			var ce *cliError
			if errors.As(err, &ce) {
				ce.msg = fmt.Sprintf("the switch is done, but waiting for %s to drain failed: %s", d.Color, ce.msg)
			}
			return c.fail(err)
		}
		cur, found := findDrain(st, d)
		switch {
		case !found:
			end()
			return c.fail(&cliError{code: exitRefused, msg: fmt.Sprintf("the gateway no longer reports the drain of %s (restarted?); see switchyard status", d.Color)})
		case !cur.Started.Equal(d.Started):
			end()
			fmt.Fprintf(c.stdout, "the drain of %s was replaced by a later switch; see switchyard status\n", d.Color)
			return exitOK
		case cur.State == proxy.DrainRunning:
			progress(cur)
		case cur.State == proxy.DrainDone:
			end()
			fmt.Fprintf(c.stdout, "%s (%s) drained in %.1fs; %s finished\n", cur.Color, cur.Version, cur.Seconds, plural(cur.AtSwap, "request"))
			return exitOK
		case cur.State == proxy.DrainCancelled:
			end()
			fmt.Fprintf(c.stdout, "the drain of %s was cancelled after %.1fs: %s is live again\n", cur.Color, cur.Seconds, cur.Color)
			return exitOK
		case cur.State == proxy.DrainTimedOut:
			end()
			return c.fail(&cliError{code: exitRefused,
				msg: fmt.Sprintf("the drain of %s (%s) timed out after %.1fs; %s still running on %s", cur.Color, cur.Version, cur.Seconds,
					plural(cur.Straggler, "request"), cur.Color),
				hint: "stragglers are not killed: they finish or fail on their own; raise switch.drain_timeout if they are legitimate"})
		default:
			end()
			return c.fail(&cliError{code: exitRefused, msg: fmt.Sprintf("the drain of %s is in a state switchyard does not know: %q; see switchyard status", cur.Color, cur.State)})
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
}

// findDrain finds the drain of d's color; a different start time means a
// later switch drained that color again.
func findDrain(st *statusDoc, d proxy.DrainStatus) (proxy.DrainStatus, bool) {
	for _, cur := range st.Drains {
		if cur.Color == d.Color {
			return cur, true
		}
	}
	return proxy.DrainStatus{}, false
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func (c *cli) traffic(ctx context.Context, args []string) int {
	f := c.flags("traffic", "switchyard traffic COLOR=PERCENT [--sticky-header NAME]  (e.g. green=5; green=0 ends the canary)")
	sticky := f.String("sticky-header", "", `request header whose hash keeps a user on one color; "" for none`)
	pos, code, ok := c.parse(f, args)
	if !ok {
		return code
	}
	body := map[string]any{}
	f.Visit(func(fl *flag.Flag) {
		if fl.Name == "sticky-header" {
			body["sticky_header"] = *sticky
		}
	})
	switch {
	case len(pos) > 1:
		return c.usage(f, "give one color's share, e.g. green=5; the active color takes the rest")
	case len(pos) == 0 && len(body) == 0:
		return c.usage(f, "want COLOR=PERCENT, e.g. green=5")
	case len(pos) == 1:
		color, pct, found := strings.Cut(pos[0], "=")
		if !found {
			return c.usage(f, "%q is not COLOR=PERCENT (e.g. green=5)", pos[0])
		}
		if !config.Color(color).Valid() {
			return c.usage(f, "unknown color %q in %q (want blue or green)", color, pos[0])
		}
		n, err := strconv.ParseFloat(strings.TrimSuffix(pct, "%"), 64)
		if err != nil || !(n >= 0 && n <= 100) {
			return c.usage(f, "%q: the percent must be a number from 0 to 100", pos[0])
		}
		body[color] = n
	}
	return c.putTraffic(ctx, f, body)
}

func (c *cli) mirror(ctx context.Context, args []string) int {
	f := c.flags("mirror", "switchyard mirror COLOR PERCENT | switchyard mirror off")
	pos, code, ok := c.parse(f, args)
	if !ok {
		return code
	}
	var mirror any // nil: off
	switch {
	case len(pos) == 1 && pos[0] == "off":
	case len(pos) == 2:
		if !config.Color(pos[0]).Valid() {
			return c.usage(f, "unknown color %q (want blue or green)", pos[0])
		}
		pct, err := strconv.ParseFloat(strings.TrimSuffix(pos[1], "%"), 64)
		if err != nil || pct <= 0 || pct > 100 {
			return c.usage(f, "percent %q must be a number above 0 and at most 100 (switchyard mirror off stops mirroring)", pos[1])
		}
		mirror = map[string]any{"to": pos[0], "percent": pct}
	default:
		return c.usage(f, "want COLOR PERCENT (e.g. green 1) or off")
	}
	return c.putTraffic(ctx, f, map[string]any{"mirror": mirror})
}

// putTraffic sends PUT /admin/traffic and prints the split it answers.
func (c *cli) putTraffic(ctx context.Context, f *cmdFlags, body any) int {
	cl, code, ok := c.connect(f)
	if !ok {
		return code
	}
	defer cl.close()
	rep, err := cl.do(ctx, http.MethodPut, "/admin/traffic", body, true, nil)
	if err != nil {
		return c.fail(err)
	}
	var tr trafficDoc
	if err := cl.decode(http.MethodPut, "/admin/traffic", rep, &tr); err != nil {
		return c.fail(err)
	}
	fmt.Fprintln(c.stdout, describeTraffic(&tr))
	return exitOK
}

func (c *cli) warmup(ctx context.Context, args []string) int {
	f := c.flags("warmup", "switchyard warmup blue|green")
	pos, code, ok := c.parse(f, args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return c.usage(f, "want one color: blue or green")
	}
	if !config.Color(pos[0]).Valid() {
		return c.usage(f, "unknown color %q (want blue or green)", pos[0])
	}
	cl, code, ok := c.connect(f)
	if !ok {
		return code
	}
	defer cl.close()
	if _, err := cl.do(ctx, http.MethodPost, "/admin/warmup", map[string]string{"color": pos[0]}, true, nil); err != nil {
		return c.fail(err)
	}
	fmt.Fprintf(c.stdout, "warming %s again; follow it with: switchyard status --watch\n", pos[0])
	return exitOK
}

func (c *cli) reload(ctx context.Context, args []string) int {
	f := c.flags("reload", "switchyard reload")
	cl, code, ok := c.connectNoArgs(f, args)
	if !ok {
		return code
	}
	defer cl.close()
	rep, err := cl.do(ctx, http.MethodPost, "/admin/reload", nil, true, nil)
	if err != nil {
		var ce *cliError
		if errors.As(err, &ce) && ce.apiCode == "reload_failed" {
			ce.msg = "the config was rejected; the running one stays in force: " + ce.msg
			ce.hint = "fix the file (switchyard validate --config FILE) and reload again"
		}
		return c.fail(err)
	}
	var res struct {
		Config *configDoc `json:"config"`
	}
	if err := cl.decode(http.MethodPost, "/admin/reload", rep, &res); err != nil {
		return c.fail(err)
	}
	fmt.Fprintln(c.stdout, describeReload(res.Config))
	return exitOK
}
