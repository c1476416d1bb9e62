package config

import (
	"regexp"
	"time"
)

// Fleet makes every replica of the gateway follow one routing intent
// (active color, canary split, mirror) kept in a Kubernetes object, so that
// one admin call on any replica moves the whole fleet (docs/fleet.md). It
// is off while Kubernetes.Name is empty: each gateway then keeps its own
// routing state, as without Kubernetes. Changing any of it needs a restart.
type Fleet struct {
	// Kubernetes names the object holding the intent and how to reach the
	// API server.
	Kubernetes FleetKubernetes `yaml:"kubernetes"`
	// Replica is this gateway's name in the fleet: it names its Lease and
	// is shown in status and refusals. Default "": $POD_NAME, else the host
	// name. Two live replicas must never share a name.
	Replica string `yaml:"replica"`
	// Heartbeat is how often this replica renews its Lease, which carries
	// the generation it serves. Default 1s; must be positive.
	Heartbeat Duration `yaml:"heartbeat"`
	// MemberTimeout is how long a replica may go without renewing its
	// Lease before the others count it as gone: left out of the switch
	// gate and shown as stale. Default 5s; at least twice heartbeat.
	MemberTimeout Duration `yaml:"member_timeout"`
	// PrepareTimeout bounds how long a switch waits for every live replica
	// to check the target pool itself; a replica that has not answered by
	// then refuses the switch. Default 3s; must be positive.
	PrepareTimeout Duration `yaml:"prepare_timeout"`
	// StaleTimeout is how long this replica may fail to reach the API
	// server before /readyz answers 503, so that the Service stops sending
	// it traffic. It keeps serving the last committed intent all along.
	// Default 30s; 0 = never turn unready for that; else at least
	// member_timeout.
	StaleTimeout Duration `yaml:"stale_timeout"`
	// StartTimeout bounds how long start-up waits to read the intent: a
	// replica never serves before it knows the fleet's color, so it exits
	// with an error instead (and Kubernetes restarts it). Default 60s; must
	// be positive.
	StartTimeout Duration `yaml:"start_timeout"`
}

// FleetKubernetes locates the intent object.
type FleetKubernetes struct {
	// Name is the ConfigMap holding the intent, in Namespace; each
	// replica's Lease is named after it ("<name>-<replica>"). Default "":
	// fleet mode off.
	Name string `yaml:"name"`
	// Namespace holds the ConfigMap and the Leases. Default "": the pod's
	// own namespace ($POD_NAMESPACE, else the service account's namespace
	// file).
	Namespace string `yaml:"namespace"`
	// Kubeconfig is a kubeconfig file to reach the API server with.
	// Default "": the in-cluster service account.
	Kubeconfig string `yaml:"kubeconfig"`
}

// Defaults of the fleet section.
const (
	DefaultFleetHeartbeat      = time.Second
	DefaultFleetMemberTimeout  = 5 * time.Second
	DefaultFleetPrepareTimeout = 3 * time.Second
	DefaultFleetStaleTimeout   = 30 * time.Second
	DefaultFleetStartTimeout   = time.Minute
)

// On reports whether fleet mode is configured.
func (f *Fleet) On() bool { return f.Kubernetes.Name != "" }

// dns1123Label and dns1123Subdomain are Kubernetes' name rules.
var (
	dns1123Label     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dns1123Subdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
)

// ValidObjectName reports whether s can name a ConfigMap or a Lease: a
// DNS-1123 subdomain of at most 253 characters.
func ValidObjectName(s string) bool { return len(s) <= 253 && dns1123Subdomain.MatchString(s) }

// validateFleet checks the fleet section; nothing but its durations when
// fleet mode is off.
func (c *Config) validateFleet(p *problems) {
	f := &c.Fleet
	checkPositive(p, "fleet.heartbeat", f.Heartbeat, "")
	checkPositive(p, "fleet.prepare_timeout", f.PrepareTimeout, "")
	checkPositive(p, "fleet.start_timeout", f.StartTimeout, "")
	if f.Heartbeat > 0 && f.MemberTimeout < 2*f.Heartbeat {
		p.add("fleet.member_timeout", "%s is shorter than twice fleet.heartbeat (%s): one late renewal would count a live replica as gone",
			f.MemberTimeout.D(), f.Heartbeat.D())
	}
	if f.StaleTimeout < 0 || (f.StaleTimeout > 0 && f.StaleTimeout < f.MemberTimeout) {
		p.add("fleet.stale_timeout", "must be 0 (never unready) or at least fleet.member_timeout (%s), got %s", f.MemberTimeout.D(), f.StaleTimeout.D())
	}
	k := f.Kubernetes
	if k.Name != "" && (!ValidObjectName(k.Name) || len(k.Name) > 189) {
		p.add("fleet.kubernetes.name", "%q is not a ConfigMap name (want lowercase letters, digits, '-' and '.', at most 189 characters, e.g. switchyard-fleet)", k.Name)
	}
	if k.Namespace != "" && (len(k.Namespace) > 63 || !dns1123Label.MatchString(k.Namespace)) {
		p.add("fleet.kubernetes.namespace", "%q is not a namespace name (want lowercase letters, digits and '-', at most 63 characters)", k.Namespace)
	}
	if f.Replica != "" && (len(f.Replica) > 63 || !dns1123Subdomain.MatchString(f.Replica)) {
		p.add("fleet.replica", "%q is not a replica name (want lowercase letters, digits, '-' and '.', at most 63 characters; default: $POD_NAME)", f.Replica)
	}
	if f.On() && c.StateDir != "" {
		p.add("state_dir", "%q: in fleet mode the switch is kept in the intent ConfigMap %s, for every replica; remove state_dir", c.StateDir, k.Name)
	}
	if !f.On() && (k.Namespace != "" || k.Kubeconfig != "" || f.Replica != "") {
		p.add("fleet.kubernetes.name", "missing: fleet.kubernetes or fleet.replica is set but fleet mode stays off without the intent's ConfigMap name, e.g. switchyard-fleet")
	}
}
