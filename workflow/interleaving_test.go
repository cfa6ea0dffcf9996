package workflow_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ssobot/ssobot/workflow"
	"github.com/ssobot/ssobot/workflow/authentik/authentiktest"
)

// holdingAuthentik holds CreateProvider for one application until released.
type holdingAuthentik struct {
	workflow.Authentik
	name    string
	entered chan struct{}
	release chan struct{}
	// errAfter, when set, is returned once the held create has been made,
	// as by a call that timed out after authentik did its work.
	errAfter error
	// refuse, when set, is returned instead of making the held create.
	refuse error
}

func (a *holdingAuthentik) CreateProvider(ctx context.Context, spec workflow.ProviderSpec) (workflow.Provider, error) {
	if spec.Name == "Provider for "+a.name {
		close(a.entered)
		<-a.release
		if a.refuse != nil {
			return workflow.Provider{}, a.refuse
		}
		if a.errAfter != nil {
			if _, err := a.Authentik.CreateProvider(ctx, spec); err != nil {
				return workflow.Provider{}, err
			}
			return workflow.Provider{}, a.errAfter
		}
	}
	return a.Authentik.CreateProvider(ctx, spec)
}

// readSignal tells when the engine reads one run in a given state.
type readSignal struct {
	workflow.Store
	mu    sync.Mutex
	id    int64
	state workflow.State
	read  chan struct{}
}

func (s *readSignal) arm(id int64, st workflow.State) <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.id, s.state, s.read = id, st, make(chan struct{})
	return s.read
}

func (s *readSignal) GetRun(ctx context.Context, id int64) (*workflow.Run, error) {
	r, err := s.Store.GetRun(ctx, id)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil && s.read != nil && id == s.id && r.State == s.state {
		close(s.read)
		s.read = nil
	}
	return r, err
}

// TestCancelWhileWaitingForSlot: a run approved while every slot is busy
// and cancelled before it gets one makes no call. The approval's commit
// records the next step's first attempt (foldIntent), so nothing but a
// fresh read after the wait stands between the cancel and the API.
func TestCancelWhileWaitingForSlot(t *testing.T) {
	h := newHarness(t)
	hold := &holdingAuthentik{name: "Alpha", entered: make(chan struct{}), release: make(chan struct{})}
	reads := &readSignal{}
	h.start(func(c *workflow.Config) {
		c.MaxConcurrentRuns = 1
		hold.Authentik = c.Authentik
		c.Authentik = hold
		reads.Store = c.Store
		c.Store = reads
	})
	beta := h.newRun(workflow.Request{ApplicationName: "Beta"})
	h.feed.waitGate(t, beta.ID, workflow.GateAuthentik)
	alpha := h.newRun(workflow.Request{ApplicationName: "Alpha"})
	h.approve(alpha.ID, workflow.GateAuthentik)
	<-hold.entered // Alpha holds the only slot

	read := reads.arm(beta.ID, workflow.StateRunning)
	h.approve(beta.ID, workflow.GateAuthentik)
	<-read // Beta's driver has read the approved run and waits for the slot
	if _, err := h.engine.Cancel(context.Background(), beta.ID, requester, "changed my mind"); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	close(hold.release)
	h.feed.waitGate(t, alpha.ID, workflow.GateCloudflare)

	got := h.feed.wait(t, beta.ID, "the provider step closed", func(r *workflow.Run) bool {
		return r.Step(workflow.StepAuthentikProvider).Status != workflow.StepRunning
	})
	if s := got.Step(workflow.StepAuthentikProvider); s.Status != workflow.StepCancelled {
		t.Errorf("Beta's provider step is %s, want %s", s.Status, workflow.StepCancelled)
	}
	for _, p := range h.ak.Providers() {
		if p.Name == "Provider for Beta" {
			t.Errorf("the cancelled run created %q", p.Name)
		}
	}
	if got.State != workflow.StateCancelled {
		t.Errorf("Beta is %s, want cancelled", got.State)
	}
}

// TestDecisionAfterDeadline: a gate whose deadline passed while the driver
// was held back (after a restart here) refuses a late decision and expires
// with it, in one commit.
func TestDecisionAfterDeadline(t *testing.T) {
	h := newHarness(t)
	h.start(nil)
	r := h.newRun(workflow.Request{})
	g := h.feed.waitGate(t, r.ID, workflow.GateAuthentik)
	hold := make(chan struct{})
	defer close(hold)
	h.restart(holdDrivers(hold))
	h.clock.Advance(g.Deadline.Sub(h.clock.Now()) + time.Hour)

	_, err := h.engine.Decide(context.Background(), workflow.DecisionRequest{RunID: r.ID, Gate: g.Name, Nonce: g.Nonce, User: approver, Decision: workflow.Approve})
	var ref *workflow.RefusedError
	if !errors.As(err, &ref) || !strings.Contains(ref.Reason, "expired") || ref.Kind != workflow.RefusedExpired || !ref.At.Equal(g.Deadline) {
		t.Fatalf("late decision: %v (%+v), want a refusal saying the gate expired at its deadline", err, ref)
	}
	got, err := h.store.GetRun(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if s := got.Step(g.Name); got.State != workflow.StateExpired || s.Status != workflow.StepExpired || len(got.Approvals) != 0 {
		t.Errorf("run %s, gate %s, approvals %v; want expired, expired, none", got.State, s.Status, got.Approvals)
	}
	evs, err := h.store.Events(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	var types []workflow.EventType
	for _, ev := range evs[len(evs)-2:] {
		types = append(types, ev.Type)
	}
	if len(types) != 2 || types[0] != workflow.EventGateExpired || types[1] != workflow.EventDecisionRefused {
		t.Errorf("last events %v, want gate.expired then gate.decision_refused", types)
	}
	if len(h.ak.Providers()) != 0 {
		t.Error("a late approval created a provider")
	}
}

// failingUpdates fails every UpdateRun once failing is set, noting the
// engine clock's time of each.
type failingUpdates struct {
	workflow.Store
	clock   interface{ Now() time.Time }
	mu      sync.Mutex
	failing bool
	at      []time.Time
	third   chan struct{}
}

var errDiskFull = errors.New("disk full")

func (s *failingUpdates) UpdateRun(ctx context.Context, id int64, fn func(r *workflow.Run) ([]workflow.Event, error)) (*workflow.Run, error) {
	s.mu.Lock()
	if s.failing {
		s.at = append(s.at, s.clock.Now())
		if len(s.at) == 3 {
			close(s.third)
		}
		s.mu.Unlock()
		return nil, errDiskFull
	}
	s.mu.Unlock()
	return s.Store.UpdateRun(ctx, id, fn)
}

// TestExpireBacksOffOnStoreError: a gate that cannot be expired because
// the store fails is tried again after the store retry delay, not in a
// loop that holds a CPU and floods the log.
func TestExpireBacksOffOnStoreError(t *testing.T) {
	h := newHarness(t)
	st := &failingUpdates{clock: h.clock, third: make(chan struct{})}
	h.start(func(c *workflow.Config) {
		st.Store = c.Store
		c.Store = st
	})
	r := h.newRun(workflow.Request{})
	g := h.feed.waitGate(t, r.ID, workflow.GateAuthentik)
	st.mu.Lock()
	st.failing = true
	st.mu.Unlock()
	// The driver arms the deadline's timer after the gate's commit is
	// visible: advancing before would leave it a day ahead of the clock.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.clock.WaitForTimer(ctx, 24*time.Hour); err != nil {
		t.Fatal("no deadline timer armed")
	}
	h.clock.Advance(g.Deadline.Sub(h.clock.Now()))
	select {
	case <-st.third:
	case <-time.After(20 * time.Second):
		st.mu.Lock()
		t.Fatalf("the expiry was not tried three times: tried at %v; clock %v, %d timers\n%s", st.at, h.clock.Now(), h.clock.Waiters(), h.logs.String())
	}
	st.mu.Lock()
	at := st.at[:3]
	st.mu.Unlock()
	for i := 1; i < len(at); i++ {
		if gap := at[i].Sub(at[i-1]); gap < 5*time.Second {
			t.Errorf("expiry tried again %v after a failure, want at least the 5s store retry delay", gap)
		}
	}
}

// TestTeamDomainGivenMatches: a team= that names the account's own team
// domain (in any case) is accepted, and the account's spelling is used.
func TestTeamDomainGivenMatches(t *testing.T) {
	h := newHarness(t)
	h.start(nil)
	r := h.newRun(workflow.Request{TeamDomain: "Company"})
	h.feed.waitGate(t, r.ID, workflow.GateAuthentik)
	got := h.feed.latest[r.ID]
	if got.Params.CallbackURL != "https://company.cloudflareaccess.com/cdn-cgi/access/callback" {
		t.Errorf("callback %q", got.Params.CallbackURL)
	}
}

// TestVerifyChecksProviderSettings: what the provider was created with is
// checked again in verify, since the approval window leaves time to change
// it; a provider that lost its email scope mapping fails the run.
func TestVerifyChecksProviderSettings(t *testing.T) {
	h := newHarness(t)
	h.start(nil)
	r := h.newRun(workflow.Request{})
	h.approve(r.ID, workflow.GateAuthentik)
	h.feed.waitGate(t, r.ID, workflow.GateCloudflare)
	h.ak.DeleteScopeMapping(workflow.ScopeEmail)
	h.approve(r.ID, workflow.GateCloudflare)
	done := h.feed.waitState(t, r.ID, workflow.StateSucceeded, workflow.StateFailed)
	if done.State != workflow.StateFailed || !strings.Contains(done.Error, "lacks the "+workflow.ScopeEmail+" scope mapping") {
		t.Errorf("run %s: %q; want verify to fail on the missing email scope mapping", done.State, done.Error)
	}
}

const approver2 = "U_APPROVER2"

// twoApprovalGate starts an engine that needs two approvals per gate, with
// approver2 as a second approver (mod may change the configuration), and
// a run waiting at its first gate.
func twoApprovalGate(t *testing.T, mod func(*workflow.Config)) (*harness, *workflow.Run, *workflow.Step) {
	h := newHarness(t)
	h.appr.ids[approver2] = true
	h.start(func(c *workflow.Config) {
		c.ApprovalsRequired = 2
		if mod != nil {
			mod(c)
		}
	})
	r := h.newRun(workflow.Request{})
	return h, r, h.feed.waitGate(t, r.ID, workflow.GateAuthentik)
}

// TestQuorumCountsCurrentApprovers: with two approvals required, an
// approval by someone taken off the approver list before the second click
// no longer counts; the gate waits for another current approver.
func TestQuorumCountsCurrentApprovers(t *testing.T) {
	h, r, g := twoApprovalGate(t, nil)
	decide := func(user string) (*workflow.Run, error) { return h.approveAs(r.ID, g, user) }
	if _, err := decide(approver); err != nil {
		t.Fatal(err)
	}
	h.appr.mu.Lock()
	delete(h.appr.ids, approver)
	h.appr.mu.Unlock()
	got, err := decide(approver2)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != workflow.StateAwaitingApproval || got.Step(g.Name).Status != workflow.StepWaiting {
		t.Fatalf("after one current approver: run %s, gate %s; want the gate still waiting", got.State, got.Step(g.Name).Status)
	}
	// The run says which approval no longer counts, for the card's "1 of 2".
	if n, first := got.CountingApprovals(g.Name), got.ApprovalsFor(g.Name)[0]; n != 1 || !first.Lapsed || first.User != approver {
		t.Errorf("counting approvals %d, first %+v; want 1, and the first marked lapsed", n, first)
	}
	h.appr.mu.Lock()
	h.appr.ids["U_APPROVER3"] = true
	h.appr.mu.Unlock()
	if got, err = decide("U_APPROVER3"); err != nil || got.Step(g.Name).Status != workflow.StepSucceeded {
		t.Fatalf("a second current approver: %v, gate %v; want it approved", err, got)
	}
}

// TestLapsedApproverApprovesAgain: with as many approvers as approvals
// required, an approver taken off the list and put back may approve again,
// or nobody could open the gate.
func TestLapsedApproverApprovesAgain(t *testing.T) {
	h, r, g := twoApprovalGate(t, nil)
	if _, err := h.approveAs(r.ID, g, approver); err != nil {
		t.Fatal(err)
	}
	h.appr.mu.Lock()
	delete(h.appr.ids, approver)
	h.appr.mu.Unlock()
	if got, err := h.approveAs(r.ID, g, approver2); err != nil || got.Step(g.Name).Status != workflow.StepWaiting {
		t.Fatalf("second approval: %v, %v; want the gate waiting", err, got)
	}
	h.appr.mu.Lock()
	h.appr.ids[approver] = true
	h.appr.mu.Unlock()
	got, err := h.approveAs(r.ID, g, approver)
	if err != nil || got.Step(g.Name).Status != workflow.StepSucceeded {
		t.Fatalf("the approver back on the list approves again: %v; want the gate approved", err)
	}
	if n := len(got.ApprovalsFor(g.Name)); n != 2 {
		t.Errorf("%d approvals recorded; want 2, one per person", n)
	}
	// One who still counts may not approve twice.
	r2 := h.newRun(workflow.Request{ApplicationName: "Wiki"})
	g2 := h.feed.waitGate(t, r2.ID, workflow.GateAuthentik)
	if _, err := h.approveAs(r2.ID, g2, approver); err != nil {
		t.Fatal(err)
	}
	var ref *workflow.RefusedError
	if _, err := h.approveAs(r2.ID, g2, approver); !errors.As(err, &ref) || ref.Kind != workflow.RefusedRepeat || ref.Decision != workflow.Approve || ref.At.IsZero() {
		t.Errorf("a second approval by the same approver: %v (%+v); want it refused as a repeat, with the first's time", err, ref)
	}
}

// TestPartialApprovalThenCancel: a gate whose run was cancelled after one of two
// approvals is not "already approved" to the next approver (nor one that
// expired: the same branch).
func TestPartialApprovalThenCancel(t *testing.T) {
	h, r, g := twoApprovalGate(t, nil)
	if _, err := h.approveAs(r.ID, g, approver); err != nil {
		t.Fatal(err)
	}
	if _, err := h.engine.Cancel(context.Background(), r.ID, requester, ""); err != nil {
		t.Fatal(err)
	}
	_, err := h.approveAs(r.ID, g, approver2)
	var ref *workflow.RefusedError
	if !errors.As(err, &ref) || ref.DecidedBy != "" || !strings.Contains(ref.Reason, "is already cancelled") || ref.Kind != workflow.RefusedRunState || ref.State != workflow.StateCancelled {
		t.Errorf("refusal %v (decided by %q); want one saying the run is cancelled", err, refDecidedBy(ref))
	}
}

func refDecidedBy(r *workflow.RefusedError) string {
	if r == nil {
		return ""
	}
	return r.DecidedBy
}

// TestCancelDuringBackoff: a step waiting for its next attempt has no
// call in flight, so a cancel closes it at once, and it stays closed
// across a restart.
func TestCancelDuringBackoff(t *testing.T) {
	h := newHarness(t)
	h.ak.AddFault(authentiktest.Fault{Method: "POST", PathContains: "/providers/oauth2/", Kind: authentiktest.FaultStatus, Status: 429, RetryAfter: "7200", Times: 1})
	// The backoff (at least 2h) outlasts what the clock passes on its own
	// (1h): a Retry-After is honoured only up to MaxRetryAfter.
	long := func(c *workflow.Config) { c.Retry.Base, c.Retry.Max = 4*time.Hour, 4*time.Hour }
	h.start(long)
	r := h.newRun(workflow.Request{})
	h.approve(r.ID, workflow.GateAuthentik)
	h.feed.wait(t, r.ID, "the provider step waiting to retry", func(r *workflow.Run) bool {
		return !r.Step(workflow.StepAuthentikProvider).NextAttemptAt.IsZero()
	})
	got, err := h.engine.Cancel(context.Background(), r.ID, requester, "")
	if err != nil {
		t.Fatal(err)
	}
	if s := got.Step(workflow.StepAuthentikProvider); s.Status != workflow.StepCancelled || !s.NextAttemptAt.IsZero() {
		t.Errorf("provider step %s, next attempt %v; want cancelled, none", s.Status, s.NextAttemptAt)
	}
	h.restart(long)
	h.clock.Advance(5 * time.Hour)
	after, err := h.engine.Get(context.Background(), r.ID)
	if err != nil || after.Step(workflow.StepAuthentikProvider).Status != workflow.StepCancelled || len(h.ak.Providers()) != 0 {
		t.Errorf("after a restart: %v, %d providers; want the step cancelled and nothing created", err, len(h.ak.Providers()))
	}
}

// TestGiveUpNamesTheLastError: when the last attempt of a step was
// interrupted and the budget is spent, the run's error gives what the
// earlier attempts failed with, not only that the process stopped.
func TestGiveUpNamesTheLastError(t *testing.T) {
	h := newHarness(t)
	h.ak.AddFault(authentiktest.Fault{Method: "POST", PathContains: "/providers/oauth2/", Kind: authentiktest.FaultStatus, Status: 503, Times: 2})
	intents := 0
	crashed := make(chan struct{})
	h.start(func(c *workflow.Config) {
		c.Retry.MaxAttempts = 3
		// The third attempt's intent is recorded, then the process "dies".
		c.CrashHook = func(p workflow.CrashPoint, s workflow.StepName) bool {
			if p != workflow.CrashAfterIntent || s != workflow.StepAuthentikProvider {
				return false
			}
			if intents++; intents == 3 {
				close(crashed)
				return true
			}
			return false
		}
	})
	r := h.newRun(workflow.Request{})
	h.approve(r.ID, workflow.GateAuthentik)
	<-crashed
	h.restart(func(c *workflow.Config) { c.Retry.MaxAttempts = 3 })
	done := h.feed.waitState(t, r.ID, workflow.StateFailed)
	if !strings.Contains(done.Error, "the last interrupted") || !strings.Contains(done.Error, "503") {
		t.Errorf("run error %q; want the give-up to name the last interrupted attempt and the 503 before it", done.Error)
	}
}

// pausingStore holds the caller of one UpdateRun between its commit and
// its return, as a descheduled goroutine would be.
type pausingStore struct {
	workflow.Store
	mu        sync.Mutex
	armed     bool
	committed chan struct{}
	release   chan struct{}
}

func (s *pausingStore) UpdateRun(ctx context.Context, id int64, fn func(r *workflow.Run) ([]workflow.Event, error)) (*workflow.Run, error) {
	r, err := s.Store.UpdateRun(ctx, id, fn)
	s.mu.Lock()
	pause := s.armed && err == nil
	s.armed = s.armed && !pause
	s.mu.Unlock()
	if pause {
		close(s.committed)
		<-s.release
	}
	return r, err
}

// versionLog records the versions each run was notified with, in order.
type versionLog struct {
	mu       sync.Mutex
	versions []uint64
}

func (l *versionLog) RunChanged(_ context.Context, r *workflow.Run, _ []workflow.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.versions = append(l.versions, r.Version)
}

// TestNotificationsFollowCommits: an approval whose committing goroutine
// is held between its commit and its notification, and a cancel of the
// same run meanwhile: the front end hears of the approval first.
func TestNotificationsFollowCommits(t *testing.T) {
	h := newHarness(t)
	st := &pausingStore{committed: make(chan struct{}), release: make(chan struct{})}
	seen := &versionLog{}
	h.start(func(c *workflow.Config) {
		st.Store = c.Store
		c.Store = st
		c.Notifier = multiNotifier{h.feed, seen}
	})
	r := h.newRun(workflow.Request{})
	g := h.feed.waitGate(t, r.ID, workflow.GateAuthentik)
	st.mu.Lock()
	st.armed = true
	st.mu.Unlock()
	approved := make(chan error, 1)
	go func() {
		_, err := h.engine.Decide(context.Background(), workflow.DecisionRequest{RunID: r.ID, Gate: g.Name, Nonce: g.Nonce, User: approver, Decision: workflow.Approve})
		approved <- err
	}()
	<-st.committed
	cancelled := make(chan error, 1)
	go func() {
		_, err := h.engine.Cancel(context.Background(), r.ID, requester, "")
		cancelled <- err
	}()
	// Without ordering the cancel commits and notifies now; with it, it
	// waits for the approval's notification. Either way, go on after a
	// while (no verdict depends on how long).
	select {
	case <-cancelled:
		cancelled <- nil
	case <-time.After(200 * time.Millisecond):
	}
	close(st.release)
	if err := <-approved; err != nil {
		t.Fatal(err)
	}
	<-cancelled
	h.feed.waitState(t, r.ID, workflow.StateCancelled)
	seen.mu.Lock()
	defer seen.mu.Unlock()
	for i := 1; i < len(seen.versions); i++ {
		if seen.versions[i] <= seen.versions[i-1] {
			t.Fatalf("notified versions %v: not in commit order", seen.versions)
		}
	}
}

type multiNotifier []workflow.Notifier

func (m multiNotifier) RunChanged(ctx context.Context, r *workflow.Run, evs []workflow.Event) {
	for _, n := range m {
		n.RunChanged(ctx, r, evs)
	}
}

// flakyApprovers fails the eligibility check of one user.
type flakyApprovers struct {
	workflow.Approvers
	mu      sync.Mutex
	failFor string
}

func (a *flakyApprovers) Eligible(ctx context.Context, user string) (bool, string, error) {
	a.mu.Lock()
	fail := user == a.failFor
	a.mu.Unlock()
	if fail {
		return false, "", errors.New("slack: ratelimited")
	}
	return a.Approvers.Eligible(ctx, user)
}

// TestQuorumWhenAnEarlierApproverCannotBeChecked: a lookup error about an
// earlier approver does not fail the next approver's decision, and the
// earlier approval, valid when given, counts: with exactly as many
// approvers as approvals required, nobody else could open the gate.
func TestQuorumWhenAnEarlierApproverCannotBeChecked(t *testing.T) {
	flaky := &flakyApprovers{}
	h, r, g := twoApprovalGate(t, func(c *workflow.Config) {
		flaky.Approvers = c.Approvers
		c.Approvers = flaky
	})
	decide := func(user string) (*workflow.Run, error) { return h.approveAs(r.ID, g, user) }
	if _, err := decide(approver); err != nil {
		t.Fatal(err)
	}
	flaky.mu.Lock()
	flaky.failFor = approver
	flaky.mu.Unlock()
	got, err := decide(approver2)
	if err != nil {
		t.Fatalf("the second approver's decision failed on the first one's lookup: %v", err)
	}
	if got.Step(g.Name).Status != workflow.StepSucceeded {
		t.Errorf("gate %s; want it approved: the first approval counts as given", got.Step(g.Name).Status)
	}
}

// TestDefaultLoginMethodNames: each application gets a login method of
// its own name by default, so a second run does not collide with the
// first; a long application name is cut to fit.
func TestDefaultLoginMethodNames(t *testing.T) {
	h := newHarness(t)
	h.start(nil)
	first := h.complete(h.newRun(workflow.Request{ApplicationName: "Grafana"}).ID)
	second := h.newRun(workflow.Request{ApplicationName: "Jenkins"})
	h.feed.waitGate(t, second.ID, workflow.GateAuthentik)
	if first.State != workflow.StateSucceeded || first.Params.LoginMethodName != "authentik (Grafana)" {
		t.Errorf("first run %s with login method %q", first.State, first.Params.LoginMethodName)
	}
	if got := h.feed.latest[second.ID]; got.Params.LoginMethodName != "authentik (Jenkins)" {
		t.Errorf("second login method %q", got.Params.LoginMethodName)
	}
	long := h.newRun(workflow.Request{ApplicationName: strings.Repeat("é", workflow.MaxNameLength)})
	if n := len([]rune(long.Params.LoginMethodName)); n != workflow.MaxNameLength || !strings.HasSuffix(long.Params.LoginMethodName, "…)") {
		t.Errorf("login method for a long name: %q (%d characters)", long.Params.LoginMethodName, n)
	}
}

// pausingCreate holds the caller of CreateRun between its commit and its
// return, and tells when a cancel has committed and when the engine's
// start-up scan of open runs is done.
type pausingCreate struct {
	workflow.Store
	created   chan int64    // the new run's ID, once committed
	release   chan struct{} // lets CreateRun return
	cancelled chan struct{} // closed once an UpdateRun cancelled a run
	scanned   chan struct{} // closed once the open runs were listed
	once      sync.Once
	scanOnce  sync.Once
}

func (s *pausingCreate) ListRuns(ctx context.Context, opts workflow.ListOptions) ([]*workflow.Run, error) {
	runs, err := s.Store.ListRuns(ctx, opts)
	s.scanOnce.Do(func() { close(s.scanned) })
	return runs, err
}

func (s *pausingCreate) CreateRun(ctx context.Context, r *workflow.Run, events ...workflow.Event) error {
	if err := s.Store.CreateRun(ctx, r, events...); err != nil {
		return err
	}
	s.created <- r.ID
	<-s.release
	return nil
}

func (s *pausingCreate) UpdateRun(ctx context.Context, id int64, fn func(r *workflow.Run) ([]workflow.Event, error)) (*workflow.Run, error) {
	r, err := s.Store.UpdateRun(ctx, id, fn)
	if err == nil && r.State == workflow.StateCancelled {
		s.once.Do(func() { close(s.cancelled) })
	}
	return r, err
}

// TestCreationNotifiedFirst: a run cancelled by its ID right after it is
// stored, while Start has not yet told the front end of it, is notified
// in version order: creation, cancel, then the closed preflight.
func TestCreationNotifiedFirst(t *testing.T) {
	h := newHarness(t)
	st := &pausingCreate{created: make(chan int64, 1), release: make(chan struct{}), cancelled: make(chan struct{}), scanned: make(chan struct{})}
	seen := &versionLog{}
	h.start(func(c *workflow.Config) {
		st.Store = c.Store
		c.Store = st
		c.Notifier = multiNotifier{seen, h.feed} // seen first: the feed's wait ends the test
	})
	<-st.scanned // else the scan could find the new run and drive it at once
	started := make(chan error, 1)
	go func() {
		_, err := h.engine.Start(context.Background(), workflow.Request{ApplicationName: "Grafana", RequestedBy: requester})
		started <- err
	}()
	id := <-st.created // stored, not yet notified
	cancelled := make(chan error, 1)
	go func() {
		_, err := h.engine.Cancel(context.Background(), id, requester, "")
		cancelled <- err
	}()
	<-st.cancelled // the cancel has committed
	close(st.release)
	if err := <-started; err != nil {
		t.Fatal(err)
	}
	if err := <-cancelled; err != nil {
		t.Fatal(err)
	}
	h.feed.wait(t, id, "preflight closed", func(r *workflow.Run) bool {
		return r.State == workflow.StateCancelled && r.Step(workflow.StepPreflight).Status != workflow.StepRunning
	})
	seen.mu.Lock()
	defer seen.mu.Unlock()
	if want := []uint64{1, 2, 3}; !slices.Equal(seen.versions, want) {
		evs, _ := h.engine.Events(context.Background(), id)
		for _, ev := range evs {
			t.Logf("%d %s %s %s", ev.Seq, ev.Type, ev.Step, ev.Message)
		}
		t.Fatalf("notified versions %v, want %v", seen.versions, want)
	}
}
