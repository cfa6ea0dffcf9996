package workflow_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ssobot/ssobot/workflow"
	"github.com/ssobot/ssobot/workflow/authentik/authentiktest"
	"github.com/ssobot/ssobot/workflow/cloudflare/cloudflaretest"
)

// TestRetryGivesAFreshAttemptBudget: a step that gave up after its attempts
// gets the full budget again when the run is retried, not what is left.
func TestRetryGivesAFreshAttemptBudget(t *testing.T) {
	const budget = 3
	h := newHarness(t)
	// Fails every attempt before the retry and all but the last after it.
	h.ak.AddFault(authentiktest.Fault{Method: "POST", PathContains: "/core/applications/", Kind: authentiktest.FaultStatus, Status: 503, Times: 2*budget - 1})
	h.start(func(c *workflow.Config) { c.Retry.MaxAttempts = budget })
	r := h.newRun(workflow.Request{})
	h.approve(r.ID, workflow.GateAuthentik)
	failed := h.feed.waitState(t, r.ID, workflow.StateFailed)
	if s := failed.Step(workflow.StepAuthentikApplication); s.Status != workflow.StepFailed || s.Attempts != budget || !strings.Contains(failed.Error, "gave up after 3 attempts") {
		t.Fatalf("application step %s after %d attempts, error %q; want it to give up after %d", s.Status, s.Attempts, failed.Error, budget)
	}
	// A create that gave up on transient errors may have made its object.
	if want := `the last attempt may have created the authentik application "grafana" all the same (a retry finds it)`; !strings.HasSuffix(failed.Error, want) {
		t.Errorf("run error %q; want it to end %q", failed.Error, want)
	}
	if _, err := h.engine.Retry(context.Background(), r.ID, requester); err != nil {
		t.Fatal(err)
	}
	done := h.feed.wait(t, r.ID, "the application step done", stepDone(workflow.StepAuthentikApplication))
	s := done.Step(workflow.StepAuthentikApplication)
	if s.Status != workflow.StepSucceeded || s.Attempts != 2*budget {
		t.Fatalf("after the retry the application step %s after %d attempts (run error %q); want it to succeed on attempt %d, the last of a fresh budget",
			s.Status, s.Attempts, done.Error, 2*budget)
	}
}

// TestRetryAfterPreflightProblems: a run whose preflight found problems
// goes back to pending when retried, with its problems and error cleared,
// and runs preflight again.
func TestRetryAfterPreflightProblems(t *testing.T) {
	h := newHarness(t)
	h.ak.DeleteFlow(authentiktest.FlowInvalidation)
	h.start(nil)
	r := h.newRun(workflow.Request{})
	failed := h.feed.waitState(t, r.ID, workflow.StateFailed)
	if len(failed.Problems) == 0 {
		t.Fatalf("preflight failed without problems: %q", failed.Error)
	}
	got, err := h.engine.Retry(context.Background(), r.ID, requester)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != workflow.StatePending || len(got.Problems) != 0 || got.Error != "" {
		t.Errorf("retried run %s, problems %q, error %q; want pending with none", got.State, got.Problems, got.Error)
	}
	if s := got.Step(workflow.StepPreflight); s.Status != workflow.StepPending {
		t.Errorf("preflight step %s after the retry, want pending", s.Status)
	}
	// Preflight runs again, and finds the problem again.
	again := h.feed.wait(t, r.ID, "preflight tried again", func(r *workflow.Run) bool {
		return r.State == workflow.StateFailed && r.Step(workflow.StepPreflight).Attempts == 2
	})
	if !strings.Contains(strings.Join(again.Problems, "\n"), "no invalidation flow") {
		t.Errorf("problems after the second preflight %q", again.Problems)
	}
}

// TestDecisionAtTheDeadline: a decision made at the very instant of the
// gate's deadline is too late (the deadline is the first instant the gate
// is closed), even when the driver has not expired the gate yet.
func TestDecisionAtTheDeadline(t *testing.T) {
	h := newHarness(t)
	h.start(nil)
	r := h.newRun(workflow.Request{})
	g := h.feed.waitGate(t, r.ID, workflow.GateAuthentik)
	hold := make(chan struct{})
	defer close(hold)
	// The restarted engine's drivers wait: nothing but the decision
	// expires the gate.
	h.restart(holdDrivers(hold))
	h.clock.Advance(g.Deadline.Sub(h.clock.Now()))
	if now := h.clock.Now(); !now.Equal(g.Deadline) {
		t.Fatalf("clock at %v, want exactly the deadline %v", now, g.Deadline)
	}
	_, err := h.engine.Decide(context.Background(), workflow.DecisionRequest{RunID: r.ID, Gate: g.Name, Nonce: g.Nonce, User: approver, Decision: workflow.Approve})
	var ref *workflow.RefusedError
	if !errors.As(err, &ref) || ref.Kind != workflow.RefusedExpired || !ref.At.Equal(g.Deadline) {
		t.Fatalf("decision at the deadline: %v (%+v); want it refused as expired", err, ref)
	}
	got, err := h.store.GetRun(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != workflow.StateExpired || len(got.Approvals) != 0 {
		t.Errorf("run %s with approvals %v; want expired with none", got.State, got.Approvals)
	}
}

// TestSetDeliveredNeverGoesBack: a front end acknowledging an older event
// after a newer one (deliveries racing) leaves the mark where it was,
// without a write.
func TestSetDeliveredNeverGoesBack(t *testing.T) {
	h := newHarness(t)
	h.start(nil)
	r := h.newRun(workflow.Request{})
	h.feed.waitGate(t, r.ID, workflow.GateAuthentik)
	ctx := context.Background()
	at5, err := h.engine.SetDelivered(ctx, r.ID, 5)
	if err != nil {
		t.Fatal(err)
	}
	if at5.Delivered != 5 {
		t.Fatalf("delivered %d, want 5", at5.Delivered)
	}
	back, err := h.engine.SetDelivered(ctx, r.ID, 3)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := h.store.GetRun(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	for what, got := range map[string]*workflow.Run{"returned": back, "stored": stored} {
		if got.Delivered != 5 || got.Version != at5.Version {
			t.Errorf("%s run: delivered %d at version %d; want 5 at version %d", what, got.Delivered, got.Version, at5.Version)
		}
	}
}

// TestLapsedApprovalIsNoted: when an earlier approval stops counting
// because its approver is no longer one, the audit log says so, naming them.
func TestLapsedApprovalIsNoted(t *testing.T) {
	h, r, g := twoApprovalGate(t, nil)
	if _, err := h.approveAs(r.ID, g, approver); err != nil {
		t.Fatal(err)
	}
	h.appr.mu.Lock()
	delete(h.appr.ids, approver)
	h.appr.mu.Unlock()
	if _, err := h.approveAs(r.ID, g, approver2); err != nil {
		t.Fatal(err)
	}
	events, err := h.engine.Events(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	noted := false
	for _, ev := range events {
		if ev.Type == workflow.EventNote && ev.Step == g.Name && ev.Actor == approver &&
			strings.Contains(ev.Message, "the approval of "+approver+" does not count") {
			noted = true
		}
	}
	if !noted {
		t.Errorf("no note that %s's approval lapsed in %v", approver, events)
	}
}

// TestCancelLeavesACallInFlightToItsResult: cancelling while a step's call
// is in flight leaves the step running; the call's result closes it, what
// it created is recorded on the run, and a note says so (the reply saying
// the run was cancelled could not list it). A call that fails may have
// created its object all the same: the note names it by its keys.
func TestCancelLeavesACallInFlightToItsResult(t *testing.T) {
	tests := []struct {
		name       string
		errAfter   error
		refuse     error
		wantStatus workflow.StepStatus
		wantNote   string // in the step's one note; with refuse, "may have created" must not be
	}{
		{"the create succeeds", nil, nil, workflow.StepSucceeded,
			"authentik-provider finished after the run was cancelled: provider \"Provider for Grafana\" is #"},
		{"the create times out after authentik made it", context.DeadlineExceeded, nil, workflow.StepCancelled,
			"it may have created the authentik provider \"Provider for Grafana\" (client ID "},
		{"authentik refuses the create", nil, &workflow.APIError{System: "authentik", Op: "create provider", Status: 403, Permanent: true, Message: "forbidden"}, workflow.StepCancelled,
			"attempt 1 of authentik-provider failed after the run was cancelled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			hold := &holdingAuthentik{name: "Grafana", entered: make(chan struct{}), release: make(chan struct{}), errAfter: tt.errAfter, refuse: tt.refuse}
			release := sync.OnceFunc(func() { close(hold.release) })
			defer release()
			h.start(func(c *workflow.Config) {
				hold.Authentik = c.Authentik
				c.Authentik = hold
			})
			r := h.newRun(workflow.Request{ApplicationName: "Grafana"})
			h.approve(r.ID, workflow.GateAuthentik)
			<-hold.entered // the provider's create is in flight
			got, err := h.engine.Cancel(context.Background(), r.ID, requester, "changed my mind")
			if err != nil {
				t.Fatal(err)
			}
			if s := got.Step(workflow.StepAuthentikProvider); got.State != workflow.StateCancelled || s.Status != workflow.StepRunning || !s.FinishedAt.IsZero() {
				t.Errorf("right after the cancel: run %s, provider step %s (finished %v); want cancelled, the step still running", got.State, s.Status, s.FinishedAt)
			}
			release()
			done := h.feed.wait(t, r.ID, "the provider step closed", func(r *workflow.Run) bool {
				return r.Step(workflow.StepAuthentikProvider).Status != workflow.StepRunning
			})
			provs := h.ak.Providers()
			if want := map[bool]int{true: 0, false: 1}[tt.refuse != nil]; len(provs) != want {
				t.Fatalf("%d providers; want %d", len(provs), want)
			}
			if s := done.Step(workflow.StepAuthentikProvider); s.Status != tt.wantStatus || done.State != workflow.StateCancelled {
				t.Errorf("provider step %s, run %s; want %s on the cancelled run", s.Status, done.State, tt.wantStatus)
			}
			if tt.errAfter == nil && tt.refuse == nil && done.Resources.AuthentikProviderID != provs[0].PK {
				t.Errorf("run records %+v; want the provider created recorded", done.Resources)
			}
			if n := len(h.ak.Applications()); n != 0 {
				t.Errorf("%d applications: the cancelled run went on", n)
			}
			events, err := h.engine.Events(context.Background(), r.ID)
			if err != nil {
				t.Fatal(err)
			}
			var notes []string
			for _, ev := range events {
				if ev.Type == workflow.EventNote && ev.Step == workflow.StepAuthentikProvider {
					notes = append(notes, ev.Message)
				}
			}
			if len(notes) != 1 || !strings.Contains(notes[0], tt.wantNote) {
				t.Errorf("notes %q; want one containing %q", notes, tt.wantNote)
			}
			if tt.refuse != nil && len(notes) == 1 && strings.Contains(notes[0], "may have created") {
				t.Errorf("note %q: a refused create made nothing", notes[0])
			}
		})
	}
}

// TestCreateThatGivesUpNamesWhatItMayHaveMade: a create step that gave up
// on transient errors says, in the run's error, which object its last
// attempt may have made, by the keys an operator would look it up by.
func TestCreateThatGivesUpNamesWhatItMayHaveMade(t *testing.T) {
	const budget = 2
	tests := []struct {
		name  string
		step  workflow.StepName
		fault func(h *harness)
		want  func(p workflow.Params) string
	}{
		{"provider", workflow.StepAuthentikProvider,
			func(h *harness) {
				h.ak.AddFault(authentiktest.Fault{Method: "POST", PathContains: "/providers/oauth2/", Kind: authentiktest.FaultStatus, Status: 503, Times: budget})
			},
			func(p workflow.Params) string {
				return fmt.Sprintf("the authentik provider %q (client ID %s)", p.ProviderName, p.ClientID)
			}},
		{"application", workflow.StepAuthentikApplication,
			func(h *harness) {
				h.ak.AddFault(authentiktest.Fault{Method: "POST", PathContains: "/core/applications/", Kind: authentiktest.FaultStatus, Status: 503, Times: budget})
			},
			func(p workflow.Params) string { return fmt.Sprintf("the authentik application %q", p.ApplicationSlug) }},
		{"login method", workflow.StepCloudflareLoginMethod,
			func(h *harness) {
				h.cf.AddFault(cloudflaretest.Fault{Method: "POST", PathContains: "/identity_providers", Kind: cloudflaretest.FaultStatus, Status: 503, Times: budget})
			},
			func(p workflow.Params) string {
				return fmt.Sprintf("the Cloudflare login method %q", p.LoginMethodName)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			tt.fault(h)
			h.start(func(c *workflow.Config) { c.Retry.MaxAttempts = budget })
			r := h.newRun(workflow.Request{})
			h.approve(r.ID, workflow.GateAuthentik)
			if tt.step == workflow.StepCloudflareLoginMethod {
				h.approve(r.ID, workflow.GateCloudflare)
			}
			failed := h.feed.waitState(t, r.ID, workflow.StateFailed)
			if s := failed.Step(tt.step); s.Status != workflow.StepFailed {
				t.Fatalf("step %s %s (run error %q); want it failed", tt.step, s.Status, failed.Error)
			}
			want := "; the last attempt may have created " + tt.want(failed.Params) + " all the same (a retry finds it)"
			if !strings.HasSuffix(failed.Error, want) {
				t.Errorf("run error %q; want it to end %q", failed.Error, want)
			}
		})
	}
}

// holdingAccess holds Organization (read by preflight) until released.
type holdingAccess struct {
	workflow.Access
	entered chan struct{}
	release chan struct{}
}

func (a *holdingAccess) Organization(ctx context.Context) (workflow.Organization, error) {
	close(a.entered)
	<-a.release
	return a.Access.Organization(ctx)
}

// TestCancelDuringPreflightLeavesNoKeptNote: a step that creates nothing
// (preflight here) and finishes after its run was cancelled leaves no note
// saying something was kept: there is nothing to delete by hand.
func TestCancelDuringPreflightLeavesNoKeptNote(t *testing.T) {
	h := newHarness(t)
	hold := &holdingAccess{entered: make(chan struct{}), release: make(chan struct{})}
	released := false
	defer func() {
		if !released {
			close(hold.release)
		}
	}()
	h.start(func(c *workflow.Config) {
		hold.Access = c.Access
		c.Access = hold
	})
	r := h.newRun(workflow.Request{})
	<-hold.entered // preflight is in flight
	if _, err := h.engine.Cancel(context.Background(), r.ID, requester, "changed my mind"); err != nil {
		t.Fatal(err)
	}
	released = true
	close(hold.release)
	done := h.feed.wait(t, r.ID, "preflight closed", func(r *workflow.Run) bool {
		return r.Step(workflow.StepPreflight).Status != workflow.StepRunning
	})
	if done.State != workflow.StateCancelled {
		t.Fatalf("run %s; want it cancelled", done.State)
	}
	events, err := h.engine.Events(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range events {
		if ev.Type == workflow.EventNote && ev.Step == workflow.StepPreflight {
			t.Errorf("note on preflight %q; want none, since it created nothing", ev.Message)
		}
	}
}

// TestRetryReopensAnExpiredGate: an expired run's retry opens its gate
// again with a new deadline and nonce; approvals given before it expired
// still count, the old buttons stay refused, nothing created before the
// gate is made again, and the run then finishes.
func TestRetryReopensAnExpiredGate(t *testing.T) {
	h, r, g := twoApprovalGate(t, nil)
	ctx := context.Background()
	if _, err := h.approveAs(r.ID, g, approver); err != nil {
		t.Fatal(err)
	}
	if _, err := h.approveAs(r.ID, g, approver2); err != nil {
		t.Fatal(err)
	}
	cfGate := h.feed.waitGate(t, r.ID, workflow.GateCloudflare)
	if _, err := h.approveAs(r.ID, cfGate, approver); err != nil {
		t.Fatal(err)
	}
	advanceToDeadline(t, h, cfGate.Deadline)
	expired := h.feed.waitState(t, r.ID, workflow.StateExpired)
	providerID := expired.Resources.AuthentikProviderID

	reopened, err := h.engine.Retry(ctx, r.ID, requester)
	if err != nil {
		t.Fatal(err)
	}
	s := reopened.Step(workflow.GateCloudflare)
	now := h.clock.Now()
	switch {
	case reopened.State != workflow.StateAwaitingApproval || s.Status != workflow.StepWaiting || reopened.Error != "":
		t.Fatalf("after retry: run %s, gate %s, error %q; want the gate waiting again", reopened.State, s.Status, reopened.Error)
	case s.Nonce == cfGate.Nonce || s.Nonce == "":
		t.Errorf("gate nonce %q; want a new one", s.Nonce)
	case !s.Deadline.Equal(now.Add(24 * time.Hour)):
		t.Errorf("deadline %s; want a full TTL from now (%s)", s.Deadline, now.Add(24*time.Hour))
	case !s.FinishedAt.IsZero():
		t.Errorf("reopened gate keeps FinishedAt %s", s.FinishedAt)
	case reopened.CountingApprovals(workflow.GateCloudflare) != 1:
		t.Errorf("%d approvals count; want the one given before the gate expired", reopened.CountingApprovals(workflow.GateCloudflare))
	}
	evs, err := h.engine.Events(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	last := evs[len(evs)-2:]
	if last[0].Type != workflow.EventRetried || last[0].Actor != requester || last[1].Type != workflow.EventGateOpened {
		t.Errorf("last events %+v; want the retry by the requester, then the gate opened", last)
	}
	// A click on the message before the gate expired is for the old gate.
	if _, err := h.approveAs(r.ID, cfGate, approver2); !isRefused(err) {
		t.Errorf("approval with the expired gate's nonce: %v; want it refused", err)
	}
	if _, err := h.approveAs(r.ID, s, approver2); err != nil {
		t.Fatal(err)
	}
	done := h.feed.waitState(t, r.ID, workflow.StateSucceeded, workflow.StateFailed)
	if done.State != workflow.StateSucceeded {
		t.Fatalf("run %s: %s", done.State, done.Error)
	}
	if done.Resources.AuthentikProviderID != providerID {
		t.Errorf("provider %d; want the one made before the gate expired (%d)", done.Resources.AuthentikProviderID, providerID)
	}
	h.assertOneOfEach(done)
}

// TestRetryRefusals: only failed and expired runs can be retried, and only
// by the requester or an approver.
func TestRetryRefusals(t *testing.T) {
	tests := []struct {
		name  string
		end   func(h *harness, r *workflow.Run)
		user  string
		state workflow.State // the refusal's, when it is about the state
	}{
		{"rejected", func(h *harness, r *workflow.Run) {
			g := h.feed.waitGate(h.t, r.ID, workflow.GateAuthentik)
			if _, err := h.engine.Decide(context.Background(), workflow.DecisionRequest{RunID: r.ID, Gate: g.Name, Nonce: g.Nonce, User: approver, Decision: workflow.Reject, Reason: "no"}); err != nil {
				h.t.Fatal(err)
			}
			h.feed.waitState(h.t, r.ID, workflow.StateRejected)
		}, requester, workflow.StateRejected},
		{"cancelled", func(h *harness, r *workflow.Run) {
			h.feed.waitGate(h.t, r.ID, workflow.GateAuthentik)
			if _, err := h.engine.Cancel(context.Background(), r.ID, requester, "wrong name"); err != nil {
				h.t.Fatal(err)
			}
		}, requester, workflow.StateCancelled},
		{"waiting", func(h *harness, r *workflow.Run) { h.feed.waitGate(h.t, r.ID, workflow.GateAuthentik) }, requester, workflow.StateAwaitingApproval},
		{"expired, by someone else", func(h *harness, r *workflow.Run) {
			g := h.feed.waitGate(h.t, r.ID, workflow.GateAuthentik)
			advanceToDeadline(h.t, h, g.Deadline)
			h.feed.waitState(h.t, r.ID, workflow.StateExpired)
		}, "U_STRANGER", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.start(nil)
			r := h.newRun(workflow.Request{})
			tt.end(h, r)
			before, err := h.engine.Get(context.Background(), r.ID)
			if err != nil {
				t.Fatal(err)
			}
			_, err = h.engine.Retry(context.Background(), r.ID, tt.user)
			var ref *workflow.RefusedError
			if !errors.As(err, &ref) {
				t.Fatalf("retry: %v; want a refusal", err)
			}
			if tt.state != "" && (ref.Kind != workflow.RefusedRunState || ref.State != tt.state) {
				t.Errorf("refusal %+v; want one about the run being %s", ref, tt.state)
			}
			if after, err := h.engine.Get(context.Background(), r.ID); err != nil || after.State != before.State {
				t.Errorf("after the refusal run is %v (%v); want it still %s", after.State, err, before.State)
			}
		})
	}
}

// TestRetryAfterTheQuorumWasLowered: approvals given before a gate expired
// that alone meet a requirement lowered since do not pass the reopened
// gate without anyone acting; they stop counting, and their approvers may
// approve again.
func TestRetryAfterTheQuorumWasLowered(t *testing.T) {
	h, r, g := twoApprovalGate(t, nil)
	if _, err := h.approveAs(r.ID, g, approver); err != nil {
		t.Fatal(err)
	}
	advanceToDeadline(t, h, g.Deadline)
	h.feed.waitState(t, r.ID, workflow.StateExpired)
	h.restart(func(c *workflow.Config) { c.ApprovalsRequired = 1 })
	reopened, err := h.engine.Retry(context.Background(), r.ID, requester)
	if err != nil {
		t.Fatal(err)
	}
	s := reopened.Step(workflow.GateAuthentik)
	if s.Status != workflow.StepWaiting || s.Required != 1 || reopened.CountingApprovals(s.Name) != 0 {
		t.Fatalf("reopened gate %s, %d required, %d approvals counting; want it waiting for 1 new approval", s.Status, s.Required, reopened.CountingApprovals(s.Name))
	}
	if _, err := h.approveAs(r.ID, s, approver); err != nil {
		t.Fatalf("the earlier approver approving again: %v", err)
	}
	h.feed.waitGate(t, r.ID, workflow.GateCloudflare)
}

// reopenLowered approves gate g of run r as each of users, lets it
// expire, and opens it again by a retry with required approvals now.
func reopenLowered(t *testing.T, h *harness, r *workflow.Run, g *workflow.Step, required int, users ...string) (*workflow.Run, *workflow.Step) {
	t.Helper()
	for _, u := range users {
		if _, err := h.approveAs(r.ID, g, u); err != nil {
			t.Fatal(err)
		}
	}
	advanceToDeadline(t, h, g.Deadline)
	h.feed.waitState(t, r.ID, workflow.StateExpired)
	h.restart(func(c *workflow.Config) { c.ApprovalsRequired = required })
	reopened, err := h.engine.Retry(context.Background(), r.ID, requester)
	if err != nil {
		t.Fatal(err)
	}
	s := reopened.Step(g.Name)
	if s.Status != workflow.StepWaiting || s.Required != required || reopened.CountingApprovals(s.Name) != 0 {
		t.Fatalf("reopened gate %s, %d required, %d counting; want it waiting for %d new approvals", s.Status, s.Required, reopened.CountingApprovals(s.Name), required)
	}
	return reopened, s
}

// TestSetAsideApprovalsStayAsideAtTheNextDecision: approvals set aside when
// the gate was opened again (they alone would pass it) do not count again
// when someone decides: one approval after the reopening is not enough for
// a gate that needs two. An approver who approves again replaces their own
// set-aside approval with one that counts.
func TestSetAsideApprovalsStayAsideAtTheNextDecision(t *testing.T) {
	h, r, g := twoApprovalGate(t, func(c *workflow.Config) { c.ApprovalsRequired = 3 })
	reopened, s := reopenLowered(t, h, r, g, 2, approver, approver2)
	for _, a := range reopened.ApprovalsFor(s.Name) {
		if !a.SetAside {
			t.Errorf("approval %+v not set aside by the reopening", a)
		}
	}
	evs, err := h.engine.Events(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(evs, func(ev workflow.Event) bool {
		return ev.Type == workflow.EventNote && ev.Step == s.Name && strings.Contains(ev.Message, "the approvals given before gate authentik expired do not count")
	}) {
		t.Errorf("no note that the earlier approvals were set aside in %v", evs)
	}

	again := h.clock.Now()
	got, err := h.approveAs(r.ID, s, approver)
	if err != nil {
		t.Fatalf("the earlier approver approving again: %v", err)
	}
	if got.State != workflow.StateAwaitingApproval || got.Step(s.Name).Status != workflow.StepWaiting || got.CountingApprovals(s.Name) != 1 {
		t.Fatalf("after one approval since the reopening: run %s, gate %s, %d counting (%+v); want the gate waiting with 1 of 2",
			got.State, got.Step(s.Name).Status, got.CountingApprovals(s.Name), got.Approvals)
	}
	as := got.ApprovalsFor(s.Name)
	if len(as) != 2 {
		t.Fatalf("approvals %+v; want two, the new one having replaced its giver's old one", as)
	}
	for _, a := range as {
		switch a.User {
		case approver:
			if !a.Counts(s.Name) || a.At.Before(again) {
				t.Errorf("%s's approval %+v; want the new one, counting", approver, a)
			}
		case approver2:
			if a.Counts(s.Name) || !a.SetAside {
				t.Errorf("%s's approval %+v; want the old one, still set aside", approver2, a)
			}
		}
	}
	if got, err := h.approveAs(r.ID, s, approver2); err != nil || got.Step(s.Name).Status != workflow.StepSucceeded {
		t.Fatalf("a second approval since the reopening: %v; want the gate approved", err)
	}
	h.feed.waitGate(t, r.ID, workflow.GateCloudflare)
}

// TestReopeningSetsAsideLapsedApprovalsToo: when the reopening sets the
// earlier approvals aside, one that had lapsed (its approver was off the
// list) is set aside with them: its approver back on the list must not
// bring it back to pass the gate with a single new approval.
func TestReopeningSetsAsideLapsedApprovalsToo(t *testing.T) {
	const approver3 = "U_APPROVER3"
	h, r, g := twoApprovalGate(t, func(c *workflow.Config) { c.ApprovalsRequired = 3 })
	h.appr.mu.Lock()
	h.appr.ids[approver3] = true
	h.appr.mu.Unlock()
	if _, err := h.approveAs(r.ID, g, approver); err != nil {
		t.Fatal(err)
	}
	h.appr.mu.Lock()
	delete(h.appr.ids, approver)
	h.appr.mu.Unlock()
	// approver's approval lapses at the next decision; two still count.
	_, s := reopenLowered(t, h, r, g, 2, approver2, approver3)
	h.appr.mu.Lock()
	h.appr.ids[approver] = true
	h.appr.mu.Unlock()
	got, err := h.approveAs(r.ID, s, approver2)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != workflow.StateAwaitingApproval || got.CountingApprovals(s.Name) != 1 {
		t.Fatalf("after one approval since the reopening: run %s, %d counting (%+v); want the gate waiting with 1 of 2", got.State, got.CountingApprovals(s.Name), got.Approvals)
	}
}

// advanceToDeadline moves the clock to a gate's deadline once the driver
// has armed its timer: advancing before would leave that timer a whole
// TTL ahead of the clock.
func advanceToDeadline(t *testing.T, h *harness, deadline time.Time) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.clock.WaitForTimerAt(ctx, deadline); err != nil {
		t.Fatal("no timer armed for the gate's deadline")
	}
	h.clock.Advance(deadline.Sub(h.clock.Now()))
}
