package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Error is one problem in a configuration file: where it is and what to do
// about it.
type Error struct {
	// Path is the field path, e.g. pools.green.backends[1].
	Path string
	// Line is the 1-based line in the file, 0 when unknown.
	Line int
	// Msg says what is wrong and how to fix it.
	Msg string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("config: ")
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrInvalid is wrapped by every error Parse returns, so callers can tell a
// bad file from an unreadable one.
var ErrInvalid = errors.New("config: invalid")

// Errors is the list of problems found in one file, in file order.
type Errors []*Error

func (es Errors) Error() string {
	msgs := make([]string, len(es))
	for i, e := range es {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

// Is makes errors.Is(err, ErrInvalid) true.
func (es Errors) Is(target error) bool { return target == ErrInvalid }

// MaxFileSize is the largest config file accepted, 4 MiB: far above any
// real config, so that a wrong path (a log, a model file, /dev/zero) fails
// at once instead of being read into memory.
const MaxFileSize = 4 << 20

// Load reads the file at path with ReadFile and parses it with Parse. A
// file that cannot be read gives an error that does not wrap ErrInvalid.
func Load(path string) (*Config, []byte, error) {
	data, err := ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := Parse(data)
	return cfg, data, err
}

// ReadFile reads the config file at path. It refuses what is not a
// regular file (a directory, a device, a FIFO) and a file larger than
// MaxFileSize without reading it, and names the path in every error.
func ReadFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("config: reading %s: %w", path, err)
	}
	switch {
	case fi.IsDir():
		return nil, fmt.Errorf("config: %s is a directory; point at the YAML file itself", path)
	case !fi.Mode().IsRegular():
		return nil, fmt.Errorf("config: %s is not a regular file (%s); point at the YAML file", path, fi.Mode().Type())
	case fi.Size() > MaxFileSize:
		return nil, tooLarge(path, fi.Size())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: reading %s: %w", path, err)
	}
	defer f.Close()
	// The file may have grown since Stat: never read past the limit.
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: reading %s: %w", path, err)
	}
	if len(data) > MaxFileSize {
		return nil, tooLarge(path, int64(len(data)))
	}
	return data, nil
}

func tooLarge(path string, size int64) error {
	return fmt.Errorf("config: %s is %d bytes, over the %d MiB limit for a config file; check that the path names the config file", path, size, MaxFileSize>>20)
}

// Parse decodes data strictly onto the defaults and validates the result.
// On any problem it returns nil and an Errors listing every problem found.
func Parse(data []byte) (*Config, error) {
	if len(data) > MaxFileSize {
		return nil, Errors{{Msg: fmt.Sprintf("the config is %d bytes, over the %d MiB limit; check that it is the config file", len(data), MaxFileSize>>20)}}
	}
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil {
		return nil, Errors{yamlError(err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, Errors{{Line: extra.Line, Msg: "more than one YAML document; keep one config per file"}}
	}
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	if doc.Kind != yaml.MappingNode {
		return nil, Errors{{Line: doc.Line, Msg: "the file must be a YAML mapping (key: value), e.g. \"active: blue\""}}
	}

	lines := map[string]int{}
	var errs Errors
	walkKeys(doc, reflect.TypeOf(Config{}), "", lines, &errs)
	if len(errs) > 0 {
		return nil, errs
	}
	cfg, err := decode(doc)
	if err != nil {
		return nil, err
	}
	if errs := cfg.validate(lines); len(errs) > 0 {
		return nil, errs
	}
	return cfg, nil
}

// decode decodes doc onto the defaults. A pool's health and warmup
// sections start from the top-level ones as the file sets them, wherever
// the file writes those, so doc is decoded twice: once for the top-level
// sections, then onto fresh defaults whose pools start from them.
func decode(doc *yaml.Node) (*Config, error) {
	top := Default()
	if err := doc.Decode(top); err != nil {
		return nil, Errors{yamlError(err)}
	}
	cfg := Default()
	for _, c := range []Color{Blue, Green} {
		p := cfg.Pools.Get(c)
		p.Health, p.Warmup = ptr(top.Health), top.Warmup.inherit()
	}
	if err := doc.Decode(cfg); err != nil {
		return nil, Errors{yamlError(err)}
	}
	return cfg, nil
}

// walkKeys reports every mapping key that has no field in t, with its path
// and line, and records the line of every known path for later messages.
// It drops every key of a struct whose value is null ("key:" with nothing
// after it, "key: ~"), so that such a key keeps its default exactly as an
// absent one does.
func walkKeys(n *yaml.Node, t reflect.Type, path string, lines map[string]int, errs *Errors) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	lines[path] = n.Line
	if t == reflect.TypeOf(Duration(0)) {
		var d Duration
		if err := d.UnmarshalYAML(deref(n)); err != nil {
			*errs = append(*errs, &Error{Path: path, Line: n.Line, Msg: strings.TrimPrefix(err.Error(), fmt.Sprintf("line %d: ", n.Line))})
		}
		return
	}
	switch {
	case t.Kind() == reflect.Struct && n.Kind == yaml.MappingNode && t != reflect.TypeOf(Duration(0)):
		fields := yamlFields(t)
		kept := make([]*yaml.Node, 0, len(n.Content))
		for i := 0; i+1 < len(n.Content); i += 2 {
			key, val := n.Content[i], n.Content[i+1]
			f, ok := fields[key.Value]
			if !ok {
				*errs = append(*errs, &Error{Path: join(path, key.Value), Line: key.Line, Msg: unknownKeyMsg(key.Value, fields)})
				continue
			}
			if isNull(val) {
				lines[join(path, key.Value)] = key.Line
				continue
			}
			kept = append(kept, key, val)
			walkKeys(val, f.Type, join(path, key.Value), lines, errs)
		}
		n.Content = kept
	case t.Kind() == reflect.Struct && n.Kind != yaml.AliasNode:
		got := "a list"
		if n.Kind == yaml.ScalarNode {
			got = strconv.Quote(n.Value)
		}
		*errs = append(*errs, &Error{Path: path, Line: n.Line, Msg: "is " + got + ", not a section; write its fields as key: value under it"})
	case t.Kind() == reflect.Slice && n.Kind == yaml.SequenceNode:
		for i, item := range n.Content {
			walkKeys(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), lines, errs)
		}
	case t.Kind() == reflect.Map && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			walkKeys(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value), lines, errs)
		}
	}
}

// isNull reports whether n, or the node an alias n stands for, is null.
func isNull(n *yaml.Node) bool {
	n = deref(n)
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// deref returns the node an alias n stands for, or n itself.
func deref(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		return n.Alias
	}
	return n
}

func yamlFields(t reflect.Type) map[string]reflect.StructField {
	fields := make(map[string]reflect.StructField, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name != "" && name != "-" {
			fields[name] = f
		}
	}
	return fields
}

func unknownKeyMsg(key string, fields map[string]reflect.StructField) string {
	known := make([]string, 0, len(fields))
	for k := range fields {
		known = append(known, k)
	}
	sort.Strings(known)
	best, bestDist := "", 3
	for _, k := range known {
		if d := editDistance(key, k); d < bestDist {
			best, bestDist = k, d
		}
	}
	if best != "" {
		return fmt.Sprintf("unknown key %q (did you mean %q?)", key, best)
	}
	return fmt.Sprintf("unknown key %q (known keys: %s)", key, strings.Join(known, ", "))
}

// editDistance is the Levenshtein distance, for "did you mean" hints.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// yamlError turns a yaml.v3 error into an Error with the line pulled out.
func yamlError(err error) *Error {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		return lineError(te.Errors[0])
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if msg == "EOF" {
		return &Error{Msg: "the file is empty; start from the example in the README"}
	}
	return lineError(msg)
}

func lineError(msg string) *Error {
	msg = strings.TrimPrefix(msg, "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, tail, ok := strings.Cut(rest, ":"); ok {
			if n, err := strconv.Atoi(num); err == nil {
				return &Error{Line: n, Msg: strings.TrimSpace(tail)}
			}
		}
	}
	return &Error{Msg: msg}
}

// UnmarshalYAML accepts a Go duration string such as "500ms" or "2s".
// A bare number is refused because its unit would be a guess.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want a duration such as \"2s\"", n.Line)
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (want e.g. \"500ms\", \"2s\", \"1m\")", n.Line, n.Value)
	}
	if v < 0 {
		return fmt.Errorf("line %d: duration %q is negative", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}
