// Package fleet makes every replica of the gateway follow one routing
// intent kept in the Kubernetes API, so that one admin call on any replica
// moves the whole fleet (docs/fleet.md).
//
// The intent (active color, canary split, sticky header, mirror,
// generation, who, when, why) lives in one ConfigMap. Every replica
// follows it through an informer scoped to that one object and applies
// each committed generation to its own router the moment it sees it. Each
// replica renews a Lease of its own (its heartbeat) that carries the
// generation it serves and its answer to the switch being prepared.
//
// A switch asked on any replica is two writes, each with the
// resourceVersion it was based on: prepare (the intent gains a pending
// switch; every live replica checks the target pool itself and answers in
// its Lease), then commit (the new generation, only when every live
// replica answered yes). A refusal or a replica that does not answer
// aborts it: nothing changed anywhere. A conflicting write means another
// replica moved first: the caller gets 412 with the state in force, never
// a blind retry.
//
// Losing the API server never changes routing: each replica keeps the
// last committed intent, shows itself stale, and turns /readyz to 503
// after fleet.stale_timeout.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/switchyard/switchyard/config"
	"github.com/switchyard/switchyard/proxy"
	"go.uber.org/zap"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/resourceversion"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// Target is the replica's own routing state that the fleet drives.
// *proxy.Router implements it.
type Target interface {
	Snapshot() *proxy.Snapshot
	ApplyIntent(proxy.Intent) (proxy.SwitchResult, error)
	CheckSwitch(config.Color) error
}

var _ Target = (*proxy.Router)(nil)

// Options are a Fleet's collaborators.
type Options struct {
	// Client reaches the API server. Required.
	Client kubernetes.Interface
	// Namespace holds the intent and the Leases. Required.
	Namespace string
	// Replica is this replica's name. Required.
	Replica string
	// Router is this replica's routing state. Required.
	Router Target
	// Log receives the fleet's transitions. Required.
	Log *zap.Logger
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// apiTimeout bounds one call to the API server.
const apiTimeout = 5 * time.Second

// Fleet is one replica's membership in the fleet: it follows the intent,
// publishes its heartbeat, answers prepares and writes the changes asked
// on this replica.
type Fleet struct {
	cfg               config.Fleet
	cs                kubernetes.Interface
	ns, name, replica string
	router            Target
	log               *zap.Logger
	now               func() time.Time

	// intent is the newest intent seen, committed or with a pending
	// prepare on top; nil before the first.
	intent atomic.Pointer[Intent]
	// badIntent says why the object cannot be read; nil when it can.
	badIntent atomic.Pointer[string]
	// listErr is the informers' last list or watch error, for the
	// start-up error.
	listErr atomic.Pointer[error]
	// contact is when a call to the API server last succeeded (Unix ns).
	contact atomic.Int64
	started atomic.Bool

	// applyMu serializes applying intents to the router.
	applyMu sync.Mutex
	applied atomic.Pointer[applied]

	membersMu sync.Mutex
	members   map[string]member // by Lease name
	// membersChanged is closed and replaced on every change of members.
	membersChanged chan struct{}

	// ack is this replica's answer to the latest prepare.
	ack  atomic.Pointer[Ack]
	kick chan struct{} // asks the heartbeat loop for a Lease write now
	// lease is this replica's Lease as last written; heartbeat loop only.
	lease     *coordinationv1.Lease
	leaseErr  atomic.Pointer[string]
	lostSince time.Time // heartbeat loop only: first failed write in a row

	// proposeMu lets one change at a time leave this replica.
	proposeMu sync.Mutex

	file fileState

	ctx       context.Context
	cancel    context.CancelFunc
	closeOnce sync.Once
	wg        sync.WaitGroup
	factories []informers.SharedInformerFactory
}

// applied is the intent generation this replica serves.
type applied struct {
	generation uint64
	uid        string
	active     config.Color
	at         time.Time
}

// New returns the fleet membership of this replica; Start joins it.
func New(cfg config.Fleet, opts Options) *Fleet {
	ctx, cancel := context.WithCancel(context.Background())
	f := &Fleet{
		cfg: cfg, cs: opts.Client, ns: opts.Namespace, name: cfg.Kubernetes.Name, replica: opts.Replica,
		router: opts.Router, log: opts.Log, now: opts.Now,
		members: map[string]member{}, membersChanged: make(chan struct{}),
		kick: make(chan struct{}, 1), ctx: ctx, cancel: cancel,
	}
	f.file.kick = make(chan struct{}, 1)
	if f.now == nil {
		f.now = time.Now
	}
	f.applied.Store(&applied{})
	return f
}

// Replica returns this replica's name.
func (f *Fleet) Replica() string { return f.replica }

// Start joins the fleet: it follows the intent object and this fleet's
// Leases, creates the intent from file when there is none yet, applies
// the committed intent to the router, queues file's routing as a config
// edit (sum is the file's sha256) and publishes this replica's Lease. It
// returns once the router serves the fleet's intent, or with an error
// after fleet.start_timeout: a replica must not serve before it knows the
// fleet's color.
func (f *Fleet) Start(ctx context.Context, file *config.Config, sum string) error {
	ctx, cancel := context.WithTimeout(ctx, f.cfg.StartTimeout.D())
	defer cancel()
	cmInf, leaseInf := f.informers()
	stop := f.ctx.Done()
	for _, fac := range f.factories {
		fac.Start(stop)
	}
	if !cache.WaitForCacheSync(ctx.Done(), cmInf.HasSynced, leaseInf.HasSynced) {
		return fmt.Errorf("fleet: no list of configmap %s/%s and its Leases within fleet.start_timeout %s: %w (is the API server reachable, and may this replica list and watch them? see docs/fleet.md)",
			f.ns, f.name, f.cfg.StartTimeout.D(), errors.Join(ctx.Err(), f.lastListError()))
	}
	var in *Intent
	for in == nil {
		var err error
		in, err = f.fetchOrCreate(ctx, file, sum)
		switch {
		case err == nil:
		case apierrors.IsForbidden(err) || errors.Is(err, ErrBadIntent) || ctx.Err() != nil:
			return err
		default:
			f.log.Warn("reading the fleet intent failed; retrying", zap.Error(err))
			select {
			case <-ctx.Done():
				return fmt.Errorf("fleet: reading configmap %s/%s: %w", f.ns, f.name, err)
			case <-time.After(f.cfg.Heartbeat.D()):
			}
		}
	}
	f.observe(in)
	f.queueFile(fileRouting(file), sum)
	for {
		err := f.writeLease(ctx)
		if err == nil {
			break
		}
		if apierrors.IsForbidden(err) || ctx.Err() != nil {
			return fmt.Errorf("fleet: publishing this replica's Lease %s/%s: %w", f.ns, leaseName(f.name, f.replica), err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(f.cfg.Heartbeat.D()):
		}
	}
	f.started.Store(true)
	a := f.applied.Load()
	f.log.Info("joined the fleet", zap.String("replica", f.replica), zap.String("configmap", f.ns+"/"+f.name),
		zap.Uint64("generation", a.generation), zap.String("env", string(a.active)), zap.Int("replicas", len(f.liveMembers(f.now()))))
	f.wg.Add(2)
	go f.heartbeat()
	go f.followFile()
	return nil
}

// Close leaves the fleet: it stops following, deletes this replica's
// Lease so the others stop counting it, and waits for its goroutines.
func (f *Fleet) Close() { f.closeOnce.Do(f.close) }

func (f *Fleet) close() {
	f.cancel()
	f.wg.Wait()
	for _, fac := range f.factories {
		fac.Shutdown()
	}
	if f.lease != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		rv := f.lease.ResourceVersion
		err := f.cs.CoordinationV1().Leases(f.ns).Delete(ctx, f.lease.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}})
		if err != nil && !apierrors.IsNotFound(err) {
			f.log.Info("leaving the fleet: this replica's Lease stays until it expires", zap.Error(err))
		}
	}
}

// informers sets up the two informers: the intent ConfigMap alone, and
// this fleet's Leases.
func (f *Fleet) informers() (cmInf, leaseInf cache.SharedIndexInformer) {
	cmFactory := informers.NewSharedInformerFactoryWithOptions(f.cs, 0, informers.WithNamespace(f.ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", f.name).String()
		}))
	leaseFactory := informers.NewSharedInformerFactoryWithOptions(f.cs, 0, informers.WithNamespace(f.ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.LabelSelector = labels.SelectorFromSet(labels.Set{LabelFleet: f.name}).String()
		}))
	f.factories = []informers.SharedInformerFactory{cmFactory, leaseFactory}
	cmInf = cmFactory.Core().V1().ConfigMaps().Informer()
	_ = cmInf.SetWatchErrorHandler(f.watchError)
	_, _ = cmInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    f.onConfigMap,
		UpdateFunc: func(_, obj any) { f.onConfigMap(obj) },
		DeleteFunc: func(any) {
			f.log.Error("the fleet intent configmap was deleted; serving the last committed intent until it is back",
				zap.String("configmap", f.ns+"/"+f.name))
		},
	})
	leaseInf = leaseFactory.Coordination().V1().Leases().Informer()
	_ = leaseInf.SetWatchErrorHandler(f.watchError)
	_, _ = leaseInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { f.onLease(obj, false) },
		UpdateFunc: func(_, obj any) { f.onLease(obj, false) },
		DeleteFunc: func(obj any) { f.onLease(obj, true) },
	})
	return cmInf, leaseInf
}

func (f *Fleet) watchError(_ *cache.Reflector, err error) {
	f.listErr.Store(&err)
	if ce := f.log.Check(zap.DebugLevel, "fleet watch interrupted"); ce != nil {
		ce.Write(zap.Error(err))
	}
}

func (f *Fleet) lastListError() error {
	if p := f.listErr.Load(); p != nil {
		return *p
	}
	return nil
}

func (f *Fleet) onConfigMap(obj any) {
	cm, ok := obj.(*corev1.ConfigMap)
	if !ok || cm.Name != f.name {
		return
	}
	in, err := decodeIntent(cm)
	if err != nil {
		msg := err.Error()
		if old := f.badIntent.Swap(&msg); old == nil || *old != msg {
			f.log.Error("fleet intent unreadable; serving the last committed intent", zap.Error(err))
		}
		return
	}
	if in == nil {
		return
	}
	f.badIntent.Store(nil)
	f.observe(in)
}

// observe takes in as the intent if it is newer than the one held, applies
// its committed part and answers its prepare.
func (f *Fleet) observe(in *Intent) {
	for {
		cur := f.intent.Load()
		if cur != nil && !newer(in, cur) {
			return
		}
		if f.intent.CompareAndSwap(cur, in) {
			break
		}
	}
	f.apply(in)
	f.answer(in)
}

// newer reports whether a is a later state of the intent than b: a new
// object, a higher generation, or the same generation written later (a
// prepare on top of it).
func newer(a, b *Intent) bool {
	switch {
	case a.uid != b.uid:
		return true
	case a.Generation != b.Generation:
		return a.Generation > b.Generation
	}
	c, err := resourceversion.CompareResourceVersion(a.resourceVersion, b.resourceVersion)
	if err != nil {
		return a.resourceVersion != b.resourceVersion
	}
	return c > 0
}

// apply makes the router serve in's committed routing unless this
// replica already serves that generation or a later one.
func (f *Fleet) apply(in *Intent) {
	f.applyMu.Lock()
	defer f.applyMu.Unlock()
	cur := f.applied.Load()
	if cur.uid == in.uid && cur.generation >= in.Generation {
		return
	}
	res, err := f.router.ApplyIntent(in.proxyIntent())
	if err != nil {
		f.log.Error("applying the fleet intent failed; serving the previous one", zap.Uint64("generation", in.Generation), zap.Error(err))
		return
	}
	a := &applied{generation: in.Generation, uid: in.uid, active: in.Active, at: f.now()}
	f.applied.Store(a)
	if !res.NoOp {
		f.log.Info("following the fleet: switched", zap.String("env", string(in.Active)), zap.String("from", string(res.From)),
			zap.Uint64("generation", in.Generation), zap.String("trigger", in.Trigger), zap.String("by", in.By))
	}
	f.kickLease()
}

// reapply re-publishes the applied intent's routing, after a config
// reload rebuilt the router's snapshot from the file.
func (f *Fleet) reapply() {
	in := f.intent.Load()
	if in == nil {
		return
	}
	f.applyMu.Lock()
	defer f.applyMu.Unlock()
	if a := f.applied.Load(); a.uid != in.uid || a.generation != in.Generation {
		return // apply will run for it
	}
	if _, err := f.router.ApplyIntent(in.proxyIntent()); err != nil {
		f.log.Error("re-applying the fleet intent after a reload failed", zap.Error(err))
	}
}

// answer checks the target of in's pending switch on this replica and
// publishes the answer in its Lease.
func (f *Fleet) answer(in *Intent) {
	p := in.pendingAt(f.now())
	if p == nil || p.By == f.replica {
		return
	}
	if a := f.ack.Load(); a != nil && a.ID == p.ID {
		return
	}
	ack := &Ack{ID: p.ID, OK: true}
	if err := f.router.CheckSwitch(p.To); err != nil {
		ack.OK = false
		var refused *proxy.RefusedError
		if errors.As(err, &refused) {
			ack.Refused = refused
		} else {
			ack.Error = err.Error()
		}
	}
	f.ack.Store(ack)
	f.kickLease()
}

func (f *Fleet) onLease(obj any, deleted bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	l, ok := obj.(*coordinationv1.Lease)
	if !ok || l.Labels[LabelFleet] != f.name {
		return
	}
	m, ok := decodeMember(l)
	f.membersMu.Lock()
	defer f.membersMu.Unlock()
	if deleted || !ok {
		delete(f.members, l.Name)
	} else {
		f.members[l.Name] = m
	}
	close(f.membersChanged)
	f.membersChanged = make(chan struct{})
}

// memberView returns the members and a channel closed at their next
// change.
func (f *Fleet) memberView() (map[string]member, <-chan struct{}) {
	f.membersMu.Lock()
	defer f.membersMu.Unlock()
	out := make(map[string]member, len(f.members))
	for k, v := range f.members {
		out[k] = v
	}
	return out, f.membersChanged
}

// live reports whether m renewed its Lease within member_timeout of now.
func (f *Fleet) live(m member, now time.Time) bool {
	return now.Sub(m.renewed) < f.cfg.MemberTimeout.D()
}

// liveMembers returns the live replicas other than this one, by name.
func (f *Fleet) liveMembers(now time.Time) []member {
	ms, _ := f.memberView()
	var out []member
	for _, m := range ms {
		if m.replica != f.replica && f.live(m, now) {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].replica < out[j].replica })
	return out
}

// touch records a successful call to the API server.
func (f *Fleet) touch() { f.contact.Store(f.now().UnixNano()) }

// contactAge is how long ago a call to the API server last succeeded.
func (f *Fleet) contactAge(now time.Time) time.Duration {
	c := f.contact.Load()
	if c == 0 {
		return 0
	}
	return now.Sub(time.Unix(0, c))
}

// Generation returns the generation of the newest committed intent seen;
// it is the admin API's ETag in fleet mode.
func (f *Fleet) Generation() uint64 {
	if in := f.intent.Load(); in != nil {
		return in.Generation
	}
	return 0
}

// ErrNotReady is returned by Ready while this replica must not take
// traffic.
var ErrNotReady = errors.New("fleet: replica not ready")

// Ready is nil while this replica may take traffic: it joined the fleet
// and reached the API server within fleet.stale_timeout.
func (f *Fleet) Ready() error {
	if !f.started.Load() {
		return fmt.Errorf("%w: it has not read the fleet intent yet", ErrNotReady)
	}
	limit := f.cfg.StaleTimeout.D()
	if age := f.contactAge(f.now()); limit > 0 && age > limit {
		return fmt.Errorf("%w: no contact with the Kubernetes API for %s (fleet.stale_timeout %s); still serving generation %d, but the fleet may have moved on",
			ErrNotReady, age.Round(time.Second), limit, f.applied.Load().generation)
	}
	return nil
}

// kickLease asks the heartbeat loop to write the Lease now.
func (f *Fleet) kickLease() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// heartbeat renews this replica's Lease every fleet.heartbeat, and at once
// when it has something new to say, until Close.
func (f *Fleet) heartbeat() {
	defer f.wg.Done()
	t := time.NewTicker(f.cfg.Heartbeat.D())
	defer t.Stop()
	beats := 0
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-t.C:
			beats++
			if beats%gcEvery == 0 {
				f.collectGone()
			}
		case <-f.kick:
		}
		ctx, cancel := context.WithTimeout(f.ctx, apiTimeout)
		err := f.writeLease(ctx)
		cancel()
		f.noteContact(err)
	}
}

// noteContact logs the loss and the return of the API server once each,
// and catches up on the intent when it returns.
func (f *Fleet) noteContact(err error) {
	now := f.now()
	if err != nil {
		msg := err.Error()
		f.leaseErr.Store(&msg)
		if f.lostSince.IsZero() {
			f.lostSince = now
			f.log.Warn("fleet: the Kubernetes API cannot be reached; serving the last committed intent",
				zap.Uint64("generation", f.applied.Load().generation), zap.Error(err))
		}
		return
	}
	f.leaseErr.Store(nil)
	if !f.lostSince.IsZero() {
		f.log.Info("fleet: the Kubernetes API is back", zap.Duration("lost_for", now.Sub(f.lostSince)))
		f.lostSince = time.Time{}
		// The watch comes back on its own backoff; read the intent now.
		ctx, cancel := context.WithTimeout(f.ctx, apiTimeout)
		defer cancel()
		if in, err := f.fetch(ctx); err == nil && in != nil {
			f.observe(in)
		}
	}
}

// writeLease publishes this replica's report in its Lease, creating it
// when missing. It is the only writer of that Lease, so a conflict (an
// operator's edit) is merged by writing again on the fresh copy.
func (f *Fleet) writeLease(ctx context.Context) error {
	leases := f.cs.CoordinationV1().Leases(f.ns)
	r := f.report()
	for attempt := 0; ; attempt++ {
		var err error
		var out *coordinationv1.Lease
		if f.lease == nil {
			out, err = leases.Create(ctx, encodeLease(nil, f.ns, f.name, f.replica, f.cfg.MemberTimeout.D(), f.now(), r), metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				// A Lease left by this replica's previous run.
				if f.lease, err = leases.Get(ctx, leaseName(f.name, f.replica), metav1.GetOptions{}); err == nil {
					continue
				}
			}
		} else {
			out, err = leases.Update(ctx, encodeLease(f.lease, f.ns, f.name, f.replica, f.cfg.MemberTimeout.D(), f.now(), r), metav1.UpdateOptions{})
			switch {
			case apierrors.IsNotFound(err):
				f.lease = nil
				if attempt < 2 {
					continue
				}
			case apierrors.IsConflict(err) && attempt < 2:
				if f.lease, err = leases.Get(ctx, leaseName(f.name, f.replica), metav1.GetOptions{}); err == nil {
					continue
				}
			}
		}
		if err != nil {
			return err
		}
		f.lease = out
		f.touch()
		return nil
	}
}

// report is what this replica publishes now.
func (f *Fleet) report() report {
	a := f.applied.Load()
	snap := f.router.Snapshot()
	r := report{generation: a.generation, active: a.active, appliedAt: a.at, ack: f.ack.Load()}
	for i, p := range snap.Pools {
		if i > 0 {
			r.pools += " "
		}
		r.pools += fmt.Sprintf("%s=%d/%d", p.Color, p.ReadyBackends(), len(p.Backends))
	}
	return r
}

// gcEvery is how many heartbeats pass between looks for Leases of
// replicas long gone.
const gcEvery = 30

// collectGone deletes the Leases of replicas that have not renewed them
// for ten member timeouts (and at least a minute): pods that were killed
// without leaving. A Lease renewed meanwhile is kept (resourceVersion
// precondition).
func (f *Fleet) collectGone() {
	after := max(10*f.cfg.MemberTimeout.D(), time.Minute)
	now := f.now()
	ms, _ := f.memberView()
	for _, m := range ms {
		if m.replica == f.replica || now.Sub(m.renewed) < after {
			continue
		}
		ctx, cancel := context.WithTimeout(f.ctx, apiTimeout)
		l, err := f.cs.CoordinationV1().Leases(f.ns).Get(ctx, m.name, metav1.GetOptions{})
		if err == nil {
			if cur, ok := decodeMember(l); !ok || now.Sub(cur.renewed) >= after {
				rv := l.ResourceVersion
				err = f.cs.CoordinationV1().Leases(f.ns).Delete(ctx, m.name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}})
				if err == nil {
					f.log.Info("removed the Lease of a replica gone for long", zap.String("replica", m.replica), zap.Time("last_heartbeat", m.renewed))
				}
			}
		}
		cancel()
	}
}
