package fleet

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proxy"
	corev1 "k8s.io/api/core/v1"
)

// Keys of the intent ConfigMap's data. Each is one plain value, so that
// `kubectl get configmap NAME -o yaml` reads as what the fleet does; the
// pending prepare, the history and the config file's record are JSON.
const (
	keyGeneration    = "generation"
	keyActive        = "active"
	keyCanary        = "canary_percent"
	keyStickyHeader  = "sticky_header"
	keyMirrorTo      = "mirror_to"
	keyMirrorPercent = "mirror_percent"
	keyTrigger       = "trigger"
	keyForced        = "forced"
	keyBy            = "by"
	keyAt            = "at"
	keyReason        = "reason"
	keyPending       = "pending"
	keyHistory       = "history"
	keyFile          = "config_file"
)

// historySize bounds the switches kept in the intent object.
const historySize = 20

// seenSize bounds the config file contents remembered as applied.
const seenSize = 16

// Intent is the fleet's routing decision as the intent object holds it.
// A committed intent has a generation that grows with every change; a
// switch being prepared is Pending on top of the committed one.
type Intent struct {
	// Generation counts committed changes, from 1. It is the ETag of the
	// admin API in fleet mode.
	Generation uint64 `json:"generation"`
	// Active is the color every replica serves.
	Active config.Color `json:"active"`
	// Canary is the percent of live requests to the standby color.
	Canary float64 `json:"canary_percent"`
	// StickyHeader names the header whose hash keeps a user on one color.
	StickyHeader string `json:"sticky_header,omitempty"`
	// Mirror is the shadow traffic; nil is none.
	Mirror *proxy.MirrorSetting `json:"mirror,omitempty"`
	// Trigger, Forced, By, At and Reason say who made the last change,
	// how, when and why.
	Trigger string    `json:"trigger"`
	Forced  bool      `json:"forced,omitempty"`
	By      string    `json:"by"`
	At      time.Time `json:"at"`
	Reason  string    `json:"reason,omitempty"`
	// Pending is a switch being prepared: every live replica checks its
	// target and answers in its Lease. Nil when none.
	Pending *Pending `json:"pending,omitempty"`
	// History holds the latest committed switches, oldest first.
	History []Record `json:"history,omitempty"`
	// File records the config file's routing fields last turned into an
	// intent, so an edit seen by many replicas is applied once.
	File FileRecord `json:"config_file"`

	resourceVersion string
	uid             string
	// obj is the ConfigMap the intent was read from; never modified.
	obj *corev1.ConfigMap
}

// Pending is a switch being prepared.
type Pending struct {
	// ID names this prepare; replicas answer it in their Lease.
	ID      string       `json:"id"`
	To      config.Color `json:"to"`
	Trigger string       `json:"trigger"`
	By      string       `json:"by"`
	At      time.Time    `json:"at"`
	// Deadline is when the prepare is void if it was neither committed nor
	// aborted (the replica preparing it died): another switch may go on.
	Deadline time.Time `json:"deadline"`
}

// Record is one committed switch of the fleet.
type Record struct {
	From       config.Color `json:"from"`
	To         config.Color `json:"to"`
	Version    string       `json:"version,omitempty"`
	Trigger    string       `json:"trigger"`
	Forced     bool         `json:"forced,omitempty"`
	By         string       `json:"by"`
	At         time.Time    `json:"at"`
	Generation uint64       `json:"generation"`
}

// FileRecord is what the config file asked for, as last applied.
type FileRecord struct {
	// Routing is the file's active color and traffic section.
	Routing Routing `json:"routing"`
	// Seen lists the sha256 of recent file contents already applied, so a
	// replica that sees an old content late never applies it again.
	Seen []string `json:"seen,omitempty"`
}

// Routing is the part of an intent that routes requests.
type Routing struct {
	Active       config.Color         `json:"active"`
	Canary       float64              `json:"canary_percent"`
	StickyHeader string               `json:"sticky_header,omitempty"`
	Mirror       *proxy.MirrorSetting `json:"mirror,omitempty"`
}

// Equal reports whether r and o route alike.
func (r Routing) Equal(o Routing) bool {
	if r.Active != o.Active || r.Canary != o.Canary || r.StickyHeader != o.StickyHeader {
		return false
	}
	if r.Mirror == nil || o.Mirror == nil {
		return r.Mirror == nil && o.Mirror == nil
	}
	return *r.Mirror == *o.Mirror
}

// Routing returns the routing part of in.
func (in *Intent) Routing() Routing {
	return Routing{Active: in.Active, Canary: in.Canary, StickyHeader: in.StickyHeader, Mirror: in.Mirror}
}

// setRouting replaces the routing part of in.
func (in *Intent) setRouting(r Routing) {
	in.Active, in.Canary, in.StickyHeader, in.Mirror = r.Active, r.Canary, r.StickyHeader, r.Mirror
}

// proxyIntent is what a replica's router applies.
func (in *Intent) proxyIntent() proxy.Intent {
	return proxy.Intent{Active: in.Active, Canary: in.Canary, StickyHeader: in.StickyHeader, Mirror: in.Mirror,
		Trigger: in.Trigger, Forced: in.Forced}
}

// pendingAt returns the pending prepare unless it is past its deadline at
// now.
func (in *Intent) pendingAt(now time.Time) *Pending {
	if in.Pending == nil || now.After(in.Pending.Deadline) {
		return nil
	}
	return in.Pending
}

// clone returns a copy of in that shares nothing mutable with it.
func (in *Intent) clone() *Intent {
	c := *in
	if in.Mirror != nil {
		m := *in.Mirror
		c.Mirror = &m
	}
	if in.Pending != nil {
		p := *in.Pending
		c.Pending = &p
	}
	c.History = slices.Clone(in.History)
	c.File.Seen = slices.Clone(in.File.Seen)
	if in.File.Routing.Mirror != nil {
		m := *in.File.Routing.Mirror
		c.File.Routing.Mirror = &m
	}
	return &c
}

// addHistory appends rec, keeping the latest historySize.
func (in *Intent) addHistory(rec Record) {
	in.History = append(in.History, rec)
	if len(in.History) > historySize {
		in.History = in.History[len(in.History)-historySize:]
	}
}

// seen reports whether the config content with sha256 sum was applied.
func (f *FileRecord) seen(sum string) bool { return slices.Contains(f.Seen, sum) }

// remember records sum as applied, keeping the latest seenSize.
func (f *FileRecord) remember(sum string) {
	if sum == "" || f.seen(sum) {
		return
	}
	f.Seen = append(f.Seen, sum)
	if len(f.Seen) > seenSize {
		f.Seen = f.Seen[len(f.Seen)-seenSize:]
	}
}

// ErrBadIntent marks an intent object that cannot be read, most likely
// edited by hand: replicas keep the last good intent and writes are
// refused until it is fixed.
var ErrBadIntent = errors.New("fleet: the intent object cannot be read")

// decodeIntent reads an intent from a ConfigMap's data. A ConfigMap
// without a generation holds no intent yet: nil, nil.
func decodeIntent(cm *corev1.ConfigMap) (*Intent, error) {
	d := cm.Data
	if d[keyGeneration] == "" {
		return nil, nil
	}
	in := &Intent{resourceVersion: cm.ResourceVersion, uid: string(cm.UID), obj: cm, Trigger: d[keyTrigger], By: d[keyBy],
		StickyHeader: d[keyStickyHeader], Reason: d[keyReason]}
	bad := func(key, why string) error {
		return fmt.Errorf("%w: configmap %s/%s: data.%s: %s; fix it or delete the key's value (kubectl edit)", ErrBadIntent, cm.Namespace, cm.Name, key, why)
	}
	var err error
	if in.Generation, err = strconv.ParseUint(d[keyGeneration], 10, 64); err != nil || in.Generation == 0 {
		return nil, bad(keyGeneration, fmt.Sprintf("%q is not a positive whole number", d[keyGeneration]))
	}
	in.Active = config.Color(d[keyActive])
	if !in.Active.Valid() {
		return nil, bad(keyActive, fmt.Sprintf("%q is not a color (want blue or green)", d[keyActive]))
	}
	if v := d[keyCanary]; v != "" {
		if in.Canary, err = strconv.ParseFloat(v, 64); err != nil || !(in.Canary >= 0 && in.Canary <= 100) {
			return nil, bad(keyCanary, fmt.Sprintf("%q is not a percent within 0-100", v))
		}
	}
	if h := in.StickyHeader; h != "" && !config.ValidHeaderName(h) {
		return nil, bad(keyStickyHeader, fmt.Sprintf("%q is not a header name", h))
	}
	if to := d[keyMirrorTo]; to != "" {
		p, err := strconv.ParseFloat(d[keyMirrorPercent], 64)
		if err != nil || !(p > 0 && p <= 100) {
			return nil, bad(keyMirrorPercent, fmt.Sprintf("%q is not a percent within (0, 100]", d[keyMirrorPercent]))
		}
		if c := config.Color(to); c != in.Active.Other() {
			return nil, bad(keyMirrorTo, fmt.Sprintf("%q is not the standby color, %s", to, in.Active.Other()))
		}
		in.Mirror = &proxy.MirrorSetting{To: config.Color(to), Percent: p}
	}
	in.Forced = d[keyForced] == "true"
	if v := d[keyAt]; v != "" {
		if in.At, err = time.Parse(time.RFC3339Nano, v); err != nil {
			return nil, bad(keyAt, fmt.Sprintf("%q is not an RFC 3339 time", v))
		}
	}
	for key, dst := range map[string]any{keyPending: &in.Pending, keyHistory: &in.History, keyFile: &in.File} {
		if v := d[key]; v != "" {
			if err := json.Unmarshal([]byte(v), dst); err != nil {
				return nil, bad(key, "not the JSON the gateway writes: "+err.Error())
			}
		}
	}
	return in, nil
}

// encodeIntent writes in into a copy of cm's data, keeping keys it does
// not own (an operator's notes).
func encodeIntent(cm *corev1.ConfigMap, in *Intent) *corev1.ConfigMap {
	out := cm.DeepCopy()
	if out.Data == nil {
		out.Data = map[string]string{}
	}
	d := out.Data
	d[keyGeneration] = strconv.FormatUint(in.Generation, 10)
	d[keyActive] = string(in.Active)
	d[keyCanary] = strconv.FormatFloat(in.Canary, 'f', -1, 64)
	d[keyStickyHeader] = in.StickyHeader
	d[keyMirrorTo], d[keyMirrorPercent] = "", ""
	if in.Mirror != nil && in.Mirror.Percent > 0 {
		d[keyMirrorTo], d[keyMirrorPercent] = string(in.Mirror.To), strconv.FormatFloat(in.Mirror.Percent, 'f', -1, 64)
	}
	d[keyTrigger], d[keyBy], d[keyReason] = in.Trigger, in.By, in.Reason
	d[keyForced] = strconv.FormatBool(in.Forced)
	d[keyAt] = in.At.UTC().Format(time.RFC3339Nano)
	d[keyPending] = ""
	if in.Pending != nil {
		d[keyPending] = mustJSON(in.Pending)
	}
	d[keyHistory] = mustJSON(in.History)
	d[keyFile] = mustJSON(in.File)
	return out
}

// mustJSON encodes v, which holds only types that always encode.
func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("fleet: encoding %T: %v", v, err))
	}
	return string(b)
}

// ownKeys lists the data keys the gateway writes, for the docs' table and
// the tests.
func ownKeys() []string {
	return slices.Sorted(maps.Keys(map[string]bool{keyGeneration: true, keyActive: true, keyCanary: true, keyStickyHeader: true,
		keyMirrorTo: true, keyMirrorPercent: true, keyTrigger: true, keyForced: true, keyBy: true, keyAt: true, keyReason: true,
		keyPending: true, keyHistory: true, keyFile: true}))
}
