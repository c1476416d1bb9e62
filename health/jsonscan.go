package health

import (
	"bytes"
	"strconv"
	"unicode/utf8"
)

// scanJSONHealth is ParseJSONHealth's fast path, for the body a json-kind
// server sends on every probe: one flat object of strings, numbers,
// booleans and nulls. It decodes such a body into h as encoding/json
// would, without json's reflection (for the model server's body, 1µs
// and 2 allocations where encoding/json takes 8µs and 21), and reports
// whether it could. On
// anything else (escapes, nested values, a key json would match by case
// folding, a wrong type, a malformed body) it returns false, h is to be
// discarded, and encoding/json decides, with its errors.
// FuzzScanJSONHealth holds the two to the same answers.
func scanJSONHealth(body []byte, h *jsonHealth) bool {
	// Two allocations in all: the values, and one string that the
	// strings kept are parts of.
	s := jsonScanner{b: body, text: string(body), v: new(jsonValues)}
	s.space()
	if !s.eat('{') {
		return false
	}
	s.space()
	if !s.eat('}') {
		for {
			start, end, ok := s.str()
			if !ok {
				return false
			}
			key := s.b[start:end]
			s.space()
			if !s.eat(':') {
				return false
			}
			s.space()
			if !s.field(key, h) {
				return false
			}
			s.space()
			if s.eat(',') {
				s.space()
				continue
			}
			if s.eat('}') {
				break
			}
			return false
		}
	}
	s.space()
	return s.i == len(s.b)
}

// jsonHealthFields are jsonHealth's JSON names.
var jsonHealthFields = [...]string{"status", "model_loaded", "cuda_available", "device", "gpu_uuid",
	"gpu_memory_used_bytes", "gpu_memory_total_bytes", "gpu_utilization", "queue_depth",
	"requests_running", "kv_cache_usage", "boot_id", "version"}

// jsonScanner reads JSON from b at i.
type jsonScanner struct {
	b []byte
	i int
	// text is b as a string.
	text string
	// v holds the values h's fields point to.
	v *jsonValues
}

// jsonValues are the values of one body's fields.
type jsonValues struct {
	status, device, gpuUUID, bootID, version                       string
	modelLoaded, cudaAvailable                                     bool
	gpuMemUsed, gpuMemTotal, gpuUtil, queueDepth, running, kvCache float64
}

// field reads the value of key into h's field of that name, or skips it
// when h has none.
func (s *jsonScanner) field(key []byte, h *jsonHealth) bool {
	switch string(key) {
	case "status":
		return s.strValue(&h.Status, &s.v.status)
	case "model_loaded":
		return s.boolValue(&h.ModelLoaded, &s.v.modelLoaded)
	case "cuda_available":
		return s.boolValue(&h.CUDAAvailable, &s.v.cudaAvailable)
	case "device":
		return s.strValue(&h.Device, &s.v.device)
	case "gpu_uuid":
		return s.strValue(&h.GPUUUID, &s.v.gpuUUID)
	case "gpu_memory_used_bytes":
		return s.numValue(&h.GPUMemUsed, &s.v.gpuMemUsed)
	case "gpu_memory_total_bytes":
		return s.numValue(&h.GPUMemTotal, &s.v.gpuMemTotal)
	case "gpu_utilization":
		return s.numValue(&h.GPUUtil, &s.v.gpuUtil)
	case "queue_depth":
		return s.numValue(&h.QueueDepth, &s.v.queueDepth)
	case "requests_running":
		return s.numValue(&h.Running, &s.v.running)
	case "kv_cache_usage":
		return s.numValue(&h.KVCacheUsage, &s.v.kvCache)
	case "boot_id":
		return s.strValue(&h.BootID, &s.v.bootID)
	case "version":
		return s.strValue(&h.Version, &s.v.version)
	}
	// encoding/json also gives a field a key equal to its name under
	// Unicode case folding; leave any such key, and any key not plain
	// ASCII, to it.
	for _, c := range key {
		if c >= utf8.RuneSelf {
			return false
		}
	}
	for _, name := range jsonHealthFields {
		if bytes.EqualFold(key, []byte(name)) {
			return false
		}
	}
	return s.skip()
}

func (s *jsonScanner) space() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// eat consumes c if it is next.
func (s *jsonScanner) eat(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// word consumes w if it is next.
func (s *jsonScanner) word(w string) bool {
	if bytes.HasPrefix(s.b[s.i:], []byte(w)) {
		s.i += len(w)
		return true
	}
	return false
}

// str reads a string with no escapes, of valid UTF-8, and returns where
// its contents are in b.
func (s *jsonScanner) str() (start, end int, ok bool) {
	if !s.eat('"') {
		return 0, 0, false
	}
	start = s.i
	ascii := true
	for ; s.i < len(s.b); s.i++ {
		switch c := s.b[s.i]; {
		case c == '"':
			end = s.i
			s.i++
			return start, end, ascii || utf8.Valid(s.b[start:end])
		case c == '\\' || c < 0x20:
			return 0, 0, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return 0, 0, false
}

// number reads a number as JSON writes it and returns its text.
func (s *jsonScanner) number() (string, bool) {
	start := s.i
	s.eat('-')
	switch {
	case s.eat('0'):
	case s.i < len(s.b) && '1' <= s.b[s.i] && s.b[s.i] <= '9':
		s.digits()
	default:
		return "", false
	}
	if s.eat('.') && !s.digits() {
		return "", false
	}
	if s.eat('e') || s.eat('E') {
		if !s.eat('+') {
			s.eat('-')
		}
		if !s.digits() {
			return "", false
		}
	}
	return s.text[start:s.i], true
}

// digits consumes one or more digits; false when there is none.
func (s *jsonScanner) digits() bool {
	start := s.i
	for s.i < len(s.b) && isDigit(s.b[s.i]) {
		s.i++
	}
	return s.i > start
}

// strValue reads a string or null into the field p, whose value is v.
func (s *jsonScanner) strValue(p **string, v *string) bool {
	if s.word("null") {
		*p = nil
		return true
	}
	start, end, ok := s.str()
	if !ok {
		return false
	}
	*v, *p = s.text[start:end], v
	return true
}

// boolValue reads a boolean or null into the field p, whose value is v.
func (s *jsonScanner) boolValue(p **bool, v *bool) bool {
	switch {
	case s.word("null"):
		*p = nil
		return true
	case s.word("true"):
		*v = true
	case s.word("false"):
		*v = false
	default:
		return false
	}
	*p = v
	return true
}

// numValue reads a number or null into the field p, whose value is v.
func (s *jsonScanner) numValue(p **float64, v *float64) bool {
	if s.word("null") {
		*p = nil
		return true
	}
	text, ok := s.number()
	if !ok {
		return false
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil {
		return false // out of range: json's error
	}
	*v, *p = f, v
	return true
}

// skip reads a value of a field jsonHealth does not have: a string, a
// number, a boolean or null.
func (s *jsonScanner) skip() bool {
	if s.i >= len(s.b) {
		return false
	}
	switch s.b[s.i] {
	case '"':
		_, _, ok := s.str()
		return ok
	case 't':
		return s.word("true")
	case 'f':
		return s.word("false")
	case 'n':
		return s.word("null")
	}
	_, ok := s.number()
	return ok
}
