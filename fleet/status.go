package fleet

import (
	"sort"
	"time"

	"github.com/switchyard/switchyard/config"
)

// Replica states in Status.
const (
	// StateOK: live and serving the fleet's generation.
	StateOK = "ok"
	// StateBehind: live but serving an older generation (for a few
	// milliseconds after each commit, longer means it is stuck).
	StateBehind = "behind"
	// StateStale: not heard from within member_timeout, or, for this
	// replica, cut off from the API server: it serves what it last saw.
	StateStale = "stale"
)

// Status is the "fleet" object of GET /admin/status.
type Status struct {
	// Namespace and ConfigMap name the intent object.
	Namespace string `json:"namespace"`
	ConfigMap string `json:"configmap"`
	// Replica is the replica that answered.
	Replica string `json:"replica"`
	// Generation is the committed intent's generation as this replica
	// last saw it; Intent is that intent.
	Generation uint64        `json:"generation"`
	Intent     *IntentStatus `json:"intent,omitempty"`
	// Pending is a switch being prepared; absent when none.
	Pending *Pending `json:"pending,omitempty"`
	// Agree is true when every live replica serves Generation.
	Agree bool `json:"agree"`
	// Stale is true while this replica cannot reach the API server; it
	// keeps serving what it last saw. APIContactAgeSeconds is how long
	// ago a call to it last succeeded.
	Stale                bool    `json:"stale"`
	APIContactAgeSeconds float64 `json:"api_contact_age_seconds"`
	// LastError is the latest problem with the API server or the intent
	// object; absent when none.
	LastError string `json:"last_error,omitempty"`
	// FilePending says why the last config file edit is not applied yet.
	FilePending string `json:"file_pending,omitempty"`
	// Replicas is every replica with a Lease, this one included, by name.
	Replicas []Replica `json:"replicas"`
}

// IntentStatus is the committed intent in Status.
type IntentStatus struct {
	Active       config.Color       `json:"active"`
	Canary       float64            `json:"canary_percent"`
	StickyHeader string             `json:"sticky_header,omitempty"`
	Mirror       *MirrorStatus      `json:"mirror,omitempty"`
	Trigger      string             `json:"trigger"`
	Forced       bool               `json:"forced,omitempty"`
	By           string             `json:"by"`
	At           time.Time          `json:"at"`
	Reason       string             `json:"reason,omitempty"`
	History      []Record           `json:"history,omitempty"`
	File         *FileRecordSummary `json:"config_file,omitempty"`
}

// MirrorStatus is the intent's shadow traffic.
type MirrorStatus struct {
	To      config.Color `json:"to"`
	Percent float64      `json:"percent"`
}

// FileRecordSummary is the config file's routing last applied.
type FileRecordSummary struct {
	Active config.Color `json:"active"`
	Canary float64      `json:"canary_percent"`
	Seen   int          `json:"contents_seen"`
}

// Replica is one replica in Status, in the shape the web console reads.
type Replica struct {
	// ID is the replica's name.
	ID string `json:"id"`
	// Generation and Active are what it serves.
	Generation uint64       `json:"generation"`
	Active     config.Color `json:"active,omitempty"`
	// State is ok, behind or stale.
	State string `json:"state"`
	// Seen is its last heartbeat; HeartbeatAgeSeconds how long ago.
	Seen                time.Time `json:"seen"`
	HeartbeatAgeSeconds float64   `json:"heartbeat_age_seconds"`
	// AppliedAt is when it started serving Generation.
	AppliedAt time.Time `json:"applied_at,omitzero"`
	// Live is false once it missed member_timeout; Agrees is true when it
	// is live and serves the fleet's generation.
	Live   bool `json:"live"`
	Agrees bool `json:"agrees"`
	// Self marks the replica that answered.
	Self bool `json:"self,omitempty"`
	// Pools is its own view of each pool: ready/total backends.
	Pools string `json:"pools,omitempty"`
}

// Status returns the fleet as this replica sees it.
func (f *Fleet) Status() Status {
	now := f.now()
	st := Status{Namespace: f.ns, ConfigMap: f.name, Replica: f.replica, Replicas: []Replica{}}
	in := f.intent.Load()
	if in != nil {
		st.Generation = in.Generation
		st.Pending = in.pendingAt(now)
		is := &IntentStatus{Active: in.Active, Canary: in.Canary, StickyHeader: in.StickyHeader, Trigger: in.Trigger,
			Forced: in.Forced, By: in.By, At: in.At, Reason: in.Reason, History: in.History,
			File: &FileRecordSummary{Active: in.File.Routing.Active, Canary: in.File.Routing.Canary, Seen: len(in.File.Seen)}}
		if in.Mirror != nil {
			is.Mirror = &MirrorStatus{To: in.Mirror.To, Percent: in.Mirror.Percent}
		}
		st.Intent = is
	}
	age := f.contactAge(now)
	st.APIContactAgeSeconds = age.Seconds()
	st.Stale = !f.started.Load() || age > f.cfg.MemberTimeout.D()
	if p := f.leaseErr.Load(); p != nil {
		st.LastError = *p
	}
	if p := f.badIntent.Load(); p != nil {
		st.LastError = *p
	}
	st.FilePending = f.FilePending()

	a := f.applied.Load()
	self := Replica{ID: f.replica, Generation: a.generation, Active: a.active, AppliedAt: a.at, Self: true,
		Live: !st.Stale, Seen: now.Add(-age), HeartbeatAgeSeconds: age.Seconds(), Pools: f.report().pools}
	st.Replicas = append(st.Replicas, self)
	ms, _ := f.memberView()
	for _, m := range ms {
		if m.replica == f.replica {
			continue
		}
		st.Replicas = append(st.Replicas, Replica{ID: m.replica, Generation: m.generation, Active: m.active, AppliedAt: m.appliedAt,
			Seen: m.renewed, HeartbeatAgeSeconds: now.Sub(m.renewed).Seconds(), Live: f.live(m, now), Pools: m.pools})
	}
	st.Agree = true
	for i := range st.Replicas {
		r := &st.Replicas[i]
		r.Agrees = r.Live && r.Generation == st.Generation
		switch {
		case !r.Live:
			r.State = StateStale
		case r.Generation != st.Generation:
			r.State = StateBehind
			st.Agree = false
		default:
			r.State = StateOK
		}
	}
	sort.Slice(st.Replicas, func(i, j int) bool { return st.Replicas[i].ID < st.Replicas[j].ID })
	return st
}
