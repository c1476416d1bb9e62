package fleet

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proxy"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A replica's Lease, named "<intent>-<replica>", is its heartbeat
// (spec.renewTime) and carries, in annotations, the generation it serves
// and its answer to the switch being prepared.
const (
	// LabelFleet, on every replica's Lease, names the intent ConfigMap:
	// kubectl get leases -l switchyard.io/fleet=NAME lists the fleet.
	LabelFleet = "switchyard.io/fleet"

	annGeneration = "switchyard.io/generation"
	annActive     = "switchyard.io/active"
	annAppliedAt  = "switchyard.io/applied-at"
	annPrepare    = "switchyard.io/prepare"
	annPools      = "switchyard.io/pools"
)

// Ack is a replica's answer to a prepare: whether it finds the target
// ready itself.
type Ack struct {
	// ID is the Pending prepare answered.
	ID string `json:"id"`
	OK bool   `json:"ok"`
	// Refused says why not, per backend, when the gate refused.
	Refused *proxy.RefusedError `json:"refused,omitempty"`
	// Error is any other reason not to switch.
	Error string `json:"error,omitempty"`
}

// member is one replica as its Lease shows it.
type member struct {
	name       string // the Lease's name
	replica    string
	renewed    time.Time
	generation uint64
	active     config.Color
	appliedAt  time.Time
	ack        *Ack
	pools      string
}

// leaseName is the Lease of replica in the fleet of intent name.
func leaseName(name, replica string) string { return name + "-" + replica }

// decodeMember reads a replica's Lease; ok is false for one that is not a
// replica's (no holder).
func decodeMember(l *coordinationv1.Lease) (member, bool) {
	m := member{name: l.Name}
	if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
		return m, false
	}
	m.replica = *l.Spec.HolderIdentity
	if l.Spec.RenewTime != nil {
		m.renewed = l.Spec.RenewTime.Time
	}
	a := l.Annotations
	m.generation, _ = strconv.ParseUint(a[annGeneration], 10, 64)
	m.active = config.Color(a[annActive])
	m.appliedAt, _ = time.Parse(time.RFC3339Nano, a[annAppliedAt])
	m.pools = a[annPools]
	if v := a[annPrepare]; v != "" {
		var ack Ack
		if json.Unmarshal([]byte(v), &ack) == nil {
			m.ack = &ack
		}
	}
	return m, true
}

// report is what this replica publishes in its Lease.
type report struct {
	generation uint64
	active     config.Color
	appliedAt  time.Time
	ack        *Ack
	pools      string
}

// encodeLease writes r into a copy of l (nil: a new Lease).
func encodeLease(l *coordinationv1.Lease, ns, name, replica string, memberTimeout time.Duration, now time.Time, r report) *coordinationv1.Lease {
	var out *coordinationv1.Lease
	if l == nil {
		out = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: leaseName(name, replica)}}
		acquired := metav1.NewMicroTime(now)
		out.Spec.AcquireTime = &acquired
	} else {
		out = l.DeepCopy()
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	out.Labels[LabelFleet] = name
	out.Labels["app.kubernetes.io/managed-by"] = "switchyard"
	if out.Annotations == nil {
		out.Annotations = map[string]string{}
	}
	a := out.Annotations
	a[annGeneration] = strconv.FormatUint(r.generation, 10)
	a[annActive] = string(r.active)
	a[annAppliedAt] = r.appliedAt.UTC().Format(time.RFC3339Nano)
	a[annPools] = r.pools
	a[annPrepare] = ""
	if r.ack != nil {
		a[annPrepare] = mustJSON(r.ack)
	}
	holder := replica
	secs := int32((memberTimeout + time.Second - 1) / time.Second)
	renew := metav1.NewMicroTime(now)
	out.Spec.HolderIdentity, out.Spec.LeaseDurationSeconds, out.Spec.RenewTime = &holder, &secs, &renew
	return out
}
