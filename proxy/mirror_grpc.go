package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/switchyard/switchyard/config"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
)

// Shadow traffic for gRPC, unary calls only. Whether a call is unary shows
// only once it ended: one request message and one answer message (a
// server-streaming call also sends one request message). So the request
// body is teed as it is forwarded, the answer's messages are counted, and
// a finished unary call is copied to the standby like an HTTP/1.1 request:
// after the client has its answer, through the same bounded queue.

// grpcCopy is a unary call to replay on the standby.
type grpcCopy struct {
	path   string
	header http.Header
	body   []byte
	code   codes.Code
}

// grpcTee records a gRPC request body up to max bytes as it is read.
// The transport reads it on a goroutine of its own, hence the lock.
type grpcTee struct {
	io.ReadCloser
	mu   sync.Mutex
	buf  bytes.Buffer
	max  int
	over bool
	eof  bool
}

func (t *grpcTee) Read(p []byte) (int, error) {
	n, err := t.ReadCloser.Read(p)
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.over {
		if t.buf.Len()+n > t.max {
			t.over = true
			t.buf = bytes.Buffer{}
		} else {
			t.buf.Write(p[:n])
		}
	}
	if err == io.EOF {
		t.eof = true
	}
	return n, err
}

// grpcMessages counts the length-prefixed messages of a gRPC body, fed in
// pieces; whole reports whether the body ended on a message boundary.
type grpcMessages struct {
	n         int
	head      [5]byte
	headLen   int
	remaining uint32
}

func (m *grpcMessages) feed(p []byte) {
	for len(p) > 0 {
		if m.remaining > 0 {
			k := min(uint32(len(p)), m.remaining)
			m.remaining -= k
			p = p[k:]
			continue
		}
		k := copy(m.head[m.headLen:], p)
		m.headLen += k
		p = p[k:]
		if m.headLen == 5 {
			m.n++
			m.remaining = binary.BigEndian.Uint32(m.head[1:])
			m.headLen = 0
		}
	}
}

func (m *grpcMessages) whole() bool { return m.headLen == 0 && m.remaining == 0 }

// unaryRequest returns the body of a one-message request that was read to
// its end, or nil.
func (t *grpcTee) unaryRequest() []byte {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.over || !t.eof {
		return nil
	}
	var m grpcMessages
	m.feed(t.buf.Bytes())
	if m.n != 1 || !m.whole() {
		return nil
	}
	return t.buf.Bytes()
}

// mirrorGRPC queues a copy of a finished unary call, or drops it.
func (p *h2Proxy) mirrorGRPC(r *http.Request, call *h2Call, code codes.Code) {
	body := call.tee.unaryRequest()
	if body == nil || call.body == nil || call.body.msgs.n != 1 || !call.body.msgs.whole() {
		return // a stream, an oversized or unfinished call: not copied
	}
	hdr := make(http.Header, len(r.Header))
	for k, v := range r.Header {
		switch k {
		case grpcTimeout, HeaderLoop, "Te", "Connection":
		default:
			hdr[k] = v
		}
	}
	job := mirrorJobs.Get().(*mirrorJob)
	job.to = call.snap.traffic.mirrorTo
	job.grpc = &grpcCopy{path: r.URL.RequestURI(), header: hdr, body: body, code: code}
	p.h.mirror.enqueue(job, grpcHTTPStatus[code])
}

// sendGRPC replays a unary call on the standby pool and records how its
// outcome compares with the live one.
func (m *Mirror) sendGRPC(ctx context.Context, job *mirrorJob) {
	snap := m.router.Snapshot()
	if snap.Active == job.to {
		m.dropped.WithLabelValues(dropSwitched).Inc()
		return
	}
	pool := snap.Pool(job.to)
	start := time.Now()
	b := pool.pick(nil, start.UnixNano())
	if b == nil || pool.upstream.err != nil || pool.protocol == config.ProtocolHTTP1 {
		m.dropped.WithLabelValues(dropNotReady).Inc()
		return
	}
	c := job.grpc
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	scheme := "http"
	if pool.upstream.tls != nil {
		scheme = "https"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, scheme+"://"+b.addr+c.path, bytes.NewReader(c.body))
	if err != nil {
		return
	}
	req.Header = c.header
	req.Header.Set("Te", "trailers")
	req.ContentLength = int64(len(c.body))
	b.inflight.Add(1)
	code := codes.Unavailable
	res, err := b.h2Transport(pool.upstream).RoundTrip(req)
	if err == nil {
		_, err = io.Copy(io.Discard, res.Body)
		_ = res.Body.Close()
		v := res.Trailer.Get(grpcStatus)
		if v == "" {
			v = res.Header.Get(grpcStatus)
		}
		if err == nil {
			code = parseGRPCStatus(v)
		}
	}
	b.inflight.Add(-1)
	if err != nil && isTimeout(err) {
		code = codes.DeadlineExceeded
	}
	status := grpcHTTPStatus[code]
	differs := code != c.code
	m.router.shadow[colorIndex(job.to)].record(time.Now(), status >= 500, differs, time.Since(start))
	m.sent.WithLabelValues(string(job.to), pool.Version, statusClass(status)).Inc()
	if err != nil {
		if ce := m.log.Check(zap.DebugLevel, "mirrored gRPC call failed"); ce != nil {
			ce.Write(zap.String("env", string(job.to)), zap.String("version", pool.Version), zap.String("backend", b.addr), zap.Error(err))
		}
	}
}
