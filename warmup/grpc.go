package warmup

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/switchyard/switchyard/proto/inference"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Warmup over gRPC: a KServe v2 ModelInfer (Triton's, KServe's,
// TorchServe's gRPC API) built once from the same JSON a KServe v2 REST
// /infer call takes, and the answer turned back into that JSON form, so
// that expect_json_field, expect_json_value and expect_body check it as
// they check an HTTP answer.

// inferJSON is a KServe v2 REST inference request or response.
type inferJSON struct {
	ID           string         `json:"id,omitempty"`
	ModelName    string         `json:"model_name,omitempty"`
	ModelVersion string         `json:"model_version,omitempty"`
	Inputs       []tensorJSON   `json:"inputs,omitempty"`
	Outputs      []tensorJSON   `json:"outputs,omitempty"`
	Parameters   map[string]any `json:"parameters,omitempty"`
}

type tensorJSON struct {
	Name     string          `json:"name"`
	Shape    []int64         `json:"shape,omitempty"`
	Datatype string          `json:"datatype,omitempty"`
	Data     json.RawMessage `json:"data,omitempty"`
}

// compileInfer turns a KServe v2 JSON inference request into the
// ModelInfer request for model, naming what is wrong in it.
func compileInfer(model string, body []byte) (*inference.ModelInferRequest, error) {
	var in inferJSON
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return nil, fmt.Errorf("warmup: body is not a KServe v2 inference request (%v); want {\"inputs\": [{\"name\", \"shape\", \"datatype\", \"data\"}]}", err)
	}
	if len(in.Inputs) == 0 {
		return nil, errors.New("warmup: the KServe v2 inference request has no inputs")
	}
	req := &inference.ModelInferRequest{ModelName: model, Id: in.ID}
	for i, t := range in.Inputs {
		c, n, err := tensorContents(t.Datatype, t.Data)
		if err != nil {
			return nil, fmt.Errorf("warmup: inputs[%d] (%s): %w", i, t.Name, err)
		}
		if want := elements(t.Shape); want != n {
			return nil, fmt.Errorf("warmup: inputs[%d] (%s): shape %v holds %d values, data has %d", i, t.Name, t.Shape, want, n)
		}
		req.Inputs = append(req.Inputs, &inference.ModelInferRequest_InferInputTensor{
			Name: t.Name, Datatype: t.Datatype, Shape: t.Shape, Contents: c})
	}
	for _, o := range in.Outputs {
		req.Outputs = append(req.Outputs, &inference.ModelInferRequest_InferRequestedOutputTensor{Name: o.Name})
	}
	return req, nil
}

func elements(shape []int64) int {
	n := 1
	for _, d := range shape {
		n *= int(d)
	}
	return n
}

// tensorContents flattens JSON data (nested arrays, row-major) into the
// typed contents of datatype, and counts the values.
func tensorContents(datatype string, data json.RawMessage) (*inference.InferTensorContents, int, error) {
	var flat []any
	var v any
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return nil, 0, fmt.Errorf("data is not JSON: %w", err)
	}
	var walk func(any)
	walk = func(x any) {
		if a, ok := x.([]any); ok {
			for _, e := range a {
				walk(e)
			}
			return
		}
		flat = append(flat, x)
	}
	walk(v)
	c := &inference.InferTensorContents{}
	for i, x := range flat {
		if err := appendValue(c, datatype, x); err != nil {
			return nil, 0, fmt.Errorf("data[%d]: %w", i, err)
		}
	}
	return c, len(flat), nil
}

func appendValue(c *inference.InferTensorContents, datatype string, x any) error {
	if datatype == "BOOL" {
		b, ok := x.(bool)
		if !ok {
			return fmt.Errorf("%v is not a boolean", x)
		}
		c.BoolContents = append(c.BoolContents, b)
		return nil
	}
	if datatype == "BYTES" {
		s, ok := x.(string)
		if !ok {
			return fmt.Errorf("%v is not a string", x)
		}
		c.BytesContents = append(c.BytesContents, []byte(s))
		return nil
	}
	n, ok := x.(json.Number)
	if !ok {
		return fmt.Errorf("%v is not a number", x)
	}
	f, err := n.Float64()
	if err != nil {
		return err
	}
	switch datatype {
	case "INT8", "INT16", "INT32":
		c.IntContents = append(c.IntContents, int32(f))
	case "INT64":
		i, err := n.Int64()
		if err != nil {
			return err
		}
		c.Int64Contents = append(c.Int64Contents, i)
	case "UINT8", "UINT16", "UINT32":
		c.UintContents = append(c.UintContents, uint32(f))
	case "UINT64":
		c.Uint64Contents = append(c.Uint64Contents, uint64(f))
	case "FP32":
		c.Fp32Contents = append(c.Fp32Contents, float32(f))
	case "FP64":
		c.Fp64Contents = append(c.Fp64Contents, f)
	default:
		return fmt.Errorf("datatype %q is not supported in a warmup request (want BOOL, INT8-64, UINT8-64, FP32, FP64 or BYTES)", datatype)
	}
	return nil
}

// answerJSON writes a ModelInfer answer as KServe v2 REST JSON: outputs
// from their typed contents or, as Triton sends them, from
// raw_output_contents (little-endian; BYTES length-prefixed).
func answerJSON(res *inference.ModelInferResponse) ([]byte, error) {
	out := inferJSON{ID: res.GetId(), ModelName: res.GetModelName(), ModelVersion: res.GetModelVersion()}
	raw := res.GetRawOutputContents()
	for i, o := range res.GetOutputs() {
		var data any
		var err error
		if i < len(raw) {
			data, err = decodeRaw(o.GetDatatype(), raw[i])
		} else {
			data = typedData(o.GetContents())
		}
		if err != nil {
			return nil, fmt.Errorf("outputs[%d] (%s): %w", i, o.GetName(), err)
		}
		b, err := json.Marshal(data)
		if err != nil {
			return nil, err
		}
		out.Outputs = append(out.Outputs, tensorJSON{Name: o.GetName(), Shape: o.GetShape(), Datatype: o.GetDatatype(), Data: b})
	}
	return json.Marshal(out)
}

func typedData(c *inference.InferTensorContents) any {
	switch {
	case len(c.GetBoolContents()) > 0:
		return c.GetBoolContents()
	case len(c.GetIntContents()) > 0:
		return c.GetIntContents()
	case len(c.GetInt64Contents()) > 0:
		return c.GetInt64Contents()
	case len(c.GetUintContents()) > 0:
		return c.GetUintContents()
	case len(c.GetUint64Contents()) > 0:
		return c.GetUint64Contents()
	case len(c.GetFp32Contents()) > 0:
		return c.GetFp32Contents()
	case len(c.GetFp64Contents()) > 0:
		return c.GetFp64Contents()
	case len(c.GetBytesContents()) > 0:
		s := make([]string, len(c.GetBytesContents()))
		for i, b := range c.GetBytesContents() {
			s[i] = string(b)
		}
		return s
	}
	return []any{}
}

func decodeRaw(datatype string, b []byte) (any, error) {
	le := binary.LittleEndian
	size := map[string]int{"BOOL": 1, "INT8": 1, "UINT8": 1, "INT16": 2, "UINT16": 2, "INT32": 4, "UINT32": 4,
		"FP32": 4, "INT64": 8, "UINT64": 8, "FP64": 8}[datatype]
	if datatype == "BYTES" {
		var out []string
		for len(b) >= 4 {
			n := int(le.Uint32(b))
			if len(b) < 4+n {
				return nil, errors.New("BYTES element longer than the raw output")
			}
			out = append(out, string(b[4:4+n]))
			b = b[4+n:]
		}
		return out, nil
	}
	if size == 0 {
		return nil, fmt.Errorf("datatype %q cannot be checked", datatype)
	}
	if len(b)%size != 0 {
		return nil, fmt.Errorf("raw output of %d bytes is not whole %s values", len(b), datatype)
	}
	out := make([]any, 0, len(b)/size)
	for i := 0; i < len(b); i += size {
		e := b[i : i+size]
		switch datatype {
		case "BOOL":
			out = append(out, e[0] != 0)
		case "INT8":
			out = append(out, int8(e[0]))
		case "UINT8":
			out = append(out, e[0])
		case "INT16":
			out = append(out, int16(le.Uint16(e)))
		case "UINT16":
			out = append(out, le.Uint16(e))
		case "INT32":
			out = append(out, int32(le.Uint32(e)))
		case "UINT32":
			out = append(out, le.Uint32(e))
		case "FP32":
			out = append(out, math.Float32frombits(le.Uint32(e)))
		case "INT64":
			out = append(out, int64(le.Uint64(e)))
		case "UINT64":
			out = append(out, le.Uint64(e))
		case "FP64":
			out = append(out, math.Float64frombits(le.Uint64(e)))
		}
	}
	return out, nil
}

// grpcConns keeps one client connection per backend for gRPC warmup,
// dialed in cleartext or with the backend's TLS config; a call with
// another config replaces the connection.
type grpcConns struct {
	mu    sync.Mutex
	conns map[string]grpcConn
}

type grpcConn struct {
	tls *tls.Config
	cc  *grpc.ClientConn
}

func (g *grpcConns) get(b Backend) (*grpc.ClientConn, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	old, ok := g.conns[b.Addr]
	if ok && old.tls == b.TLS {
		return old.cc, nil
	}
	creds := insecure.NewCredentials()
	if b.TLS != nil {
		creds = credentials.NewTLS(b.TLS)
	}
	cc, err := grpc.NewClient("passthrough:///"+b.Addr, grpc.WithTransportCredentials(creds),
		grpc.WithUserAgent("switchyard-warmup"))
	if err != nil {
		return nil, err
	}
	if ok {
		_ = old.cc.Close()
	}
	if g.conns == nil {
		g.conns = map[string]grpcConn{}
	}
	g.conns[b.Addr] = grpcConn{tls: b.TLS, cc: cc}
	return cc, nil
}

func (g *grpcConns) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for addr, c := range g.conns {
		_ = c.cc.Close()
		delete(g.conns, addr)
	}
}

// exchangeGRPC is exchange for kserve-grpc warmup: one ModelInfer, its
// answer checked as JSON. A status other than OK is an answer (a wrong
// one); UNAVAILABLE, a refused connection or a timeout is none.
func (w *Warmer) exchangeGRPC(ctx context.Context, b Backend, spec *Spec) (lat time.Duration, answered bool, err error) {
	rctx := ctx
	if spec.Timeout > 0 {
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(ctx, spec.Timeout)
		defer cancel()
	}
	cc, err := w.grpc.get(b)
	if err != nil {
		return 0, false, fmt.Errorf("gRPC client not built: %w", err)
	}
	req := proto.Clone(spec.grpcRequest).(*inference.ModelInferRequest)
	start := time.Now()
	res, err := inference.NewGRPCInferenceServiceClient(cc).ModelInfer(rctx, req)
	lat = time.Since(start)
	if err != nil {
		st, _ := status.FromError(err)
		switch {
		case ctx.Err() != nil:
			return 0, false, ctx.Err()
		case st.Code() == codes.DeadlineExceeded && rctx.Err() != nil:
			return 0, false, fmt.Errorf("ModelInfer timed out after %s (raise warmup.timeout if the model is this slow)", spec.Timeout)
		case st.Code() == codes.Unavailable:
			return 0, false, fmt.Errorf("ModelInfer %s: %s", st.Code(), st.Message())
		default:
			return lat, true, wrong("ModelInfer %s: %s", st.Code(), st.Message())
		}
	}
	body, err := answerJSON(res)
	if err != nil {
		return lat, true, wrong("ModelInfer answer unreadable: %v", err)
	}
	if err := checkAnswer(spec, spec.ExpectStatus, body, false); err != nil {
		return lat, true, err
	}
	if spec.LatencyTarget > 0 && lat >= spec.LatencyTarget {
		return lat, true, wrong("ModelInfer took %s, want under latency_target %s", lat.Round(time.Microsecond), spec.LatencyTarget)
	}
	return lat, true, nil
}
