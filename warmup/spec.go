// Package warmup sends dummy inference to a model server before it gets
// traffic. A GPU server's first forward passes are slow (kernels load,
// memory is allocated), and a server that loads the wrong weights answers
// quickly but wrongly, so a backend counts as warm only after several
// consecutive answers that have the expected status, fields and body and,
// with a latency target, arrive fast enough.
//
// The flow is Compile a config.Warmup once into a Spec, then Warm each new
// backend with one shared Warmer, and Ping standby backends to keep them
// warm.
package warmup

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proto/inference"
)

// Spec is a compiled config.Warmup: body read, regexp compiled. It is
// read-only once built, so one Spec may serve many concurrent Warm and
// Ping calls.
type Spec struct {
	// Method and Path of the warmup request; Path starts with /.
	Method, Path string
	// Headers are set on every warmup request.
	Headers map[string]string
	// Body of every warmup request; nil sends none.
	Body []byte
	// Requests is how many consecutive answers must pass; MaxRequests is
	// how many requests Warm sends before giving up; ExpectStatus is the
	// status every answer must have.
	Requests, MaxRequests, ExpectStatus int
	// ExpectJSONField is a top-level JSON field that must be present.
	ExpectJSONField string
	// ExpectJSONValue is the JSON text the field must equal, compared
	// semantically ('4' equals 4.0, '"v2.7"' equals "v2.7"); empty accepts
	// any value.
	ExpectJSONValue string
	// ExpectBody, when set, must match the answer body.
	ExpectBody *regexp.Regexp
	// LatencyTarget, when positive, is the latency every one of the last
	// Requests answers must stay under; 0 means none.
	LatencyTarget time.Duration
	// Timeout bounds one warmup request, its transient retries included; 0
	// means only the caller's context bounds it.
	Timeout time.Duration
	// GRPCModel, when set, makes warmup a KServe v2 ModelInfer of this
	// model over gRPC (kind kserve-grpc) instead of an HTTP request;
	// Method, Path and ExpectStatus do not apply.
	GRPCModel string
	// grpcRequest is Body compiled into the ModelInfer request.
	grpcRequest *inference.ModelInferRequest
}

// Compile turns a config.Warmup into a Spec once, so that every warmup
// request reuses the read body and the compiled regexp, and so that a bad
// body_file or regexp fails the config load instead of a warmup.
//
// It returns a nil Spec and a nil error when warmup is off (!w.On()).
//
// w is normally a pool's warmup as config.Parse returns it, complete, and
// Compile uses it as it is: a Timeout or LatencyTarget of 0 means none, as
// in Spec. Only for a hand-built Warmup, a zero Method, Requests,
// MaxRequests or ExpectStatus (none of which Parse lets through) takes the
// value of config.Default. A JSON body without a Content-Type header gets
// "Content-Type: application/json", which most inference servers
// (FastAPI, TorchServe, KServe) need to parse it.
func Compile(w *config.Warmup) (*Spec, error) {
	if w == nil || !w.On() {
		return nil, nil
	}
	def := config.Default().Warmup
	s := &Spec{
		Method:          orDefault(w.Method, def.Method),
		Path:            w.Path,
		Requests:        orDefault(w.Requests, def.Requests),
		MaxRequests:     orDefault(w.MaxRequests, def.MaxRequests),
		ExpectStatus:    orDefault(w.ExpectStatus, def.ExpectStatus),
		ExpectJSONField: w.ExpectJSONField,
		ExpectJSONValue: w.ExpectJSONValue,
		LatencyTarget:   w.LatencyTarget.D(),
		Timeout:         w.Timeout.D(),
	}
	switch {
	case w.Body != "" && w.BodyFile != "":
		return nil, fmt.Errorf("warmup: both body and body_file are set; keep one")
	case w.BodyFile != "":
		b, err := os.ReadFile(w.BodyFile)
		if err != nil {
			return nil, fmt.Errorf("warmup: reading body_file %q: %w; create the file or fix body_file (a relative path is read from the gateway's working directory)", w.BodyFile, err)
		}
		s.Body = b
	case w.Body != "":
		s.Body = []byte(w.Body)
	}
	if w.ExpectBody != "" {
		re, err := regexp.Compile(w.ExpectBody)
		if err != nil {
			return nil, fmt.Errorf("warmup: expect_body %q is not a regular expression: %w; fix its syntax (RE2)", w.ExpectBody, err)
		}
		s.ExpectBody = re
	}
	s.Headers = make(map[string]string, len(w.Headers)+1)
	hasType := false
	for k, v := range w.Headers {
		s.Headers[k] = v
		hasType = hasType || strings.EqualFold(k, "Content-Type")
	}
	if !hasType && len(s.Body) > 0 && json.Valid(s.Body) {
		s.Headers["Content-Type"] = "application/json"
	}
	if w.Kind == config.WarmupKServeGRPC {
		req, err := compileInfer(w.Model, s.Body)
		if err != nil {
			return nil, err
		}
		s.GRPCModel, s.grpcRequest = w.Model, req
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	return s, nil
}

// check reports what makes s unusable, naming the config field to fix. It
// guards Warm and Ping against hand-built Specs as well as Compile's output.
func (s *Spec) check() error {
	switch {
	case s == nil:
		return fmt.Errorf("warmup: no spec (warmup is off); skip warmup instead of calling it, or set warmup.path")
	case s.GRPCModel != "" && s.grpcRequest == nil:
		return fmt.Errorf("warmup: kserve-grpc warmup of %q has no compiled request; build the Spec with Compile", s.GRPCModel)
	case s.GRPCModel == "" && !strings.HasPrefix(s.Path, "/"):
		return fmt.Errorf("warmup: path %q must start with /", s.Path)
	case s.Method == "" || strings.ContainsAny(s.Method, " \t\r\n/"):
		return fmt.Errorf("warmup: method %q is not an HTTP method (want e.g. POST)", s.Method)
	case s.Requests < 1:
		return fmt.Errorf("warmup: requests must be at least 1, got %d", s.Requests)
	case s.MaxRequests < s.Requests:
		return fmt.Errorf("warmup: max_requests %d is below requests %d; raise max_requests", s.MaxRequests, s.Requests)
	case s.ExpectStatus < 100 || s.ExpectStatus > 599:
		return fmt.Errorf("warmup: expect_status %d is not an HTTP status (want 100-599)", s.ExpectStatus)
	case s.LatencyTarget < 0:
		return fmt.Errorf("warmup: latency_target %s is negative; set a positive duration or 0 for none", s.LatencyTarget)
	case s.Timeout < 0:
		return fmt.Errorf("warmup: timeout %s is negative; set a positive duration", s.Timeout)
	case s.ExpectJSONValue != "" && s.ExpectJSONField == "":
		return fmt.Errorf("warmup: expect_json_value is set without expect_json_field; name the field it belongs to")
	case s.ExpectJSONValue != "" && !json.Valid([]byte(s.ExpectJSONValue)):
		return fmt.Errorf("warmup: expect_json_value %q is not JSON text; quote a string as '%s' or write a number as is", s.ExpectJSONValue, strconv.Quote(s.ExpectJSONValue))
	}
	return nil
}

func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
