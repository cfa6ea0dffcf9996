package workflow_test

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ssobot/ssobot/workflow"
	"github.com/ssobot/ssobot/workflow/cloudflare/cloudflaretest"
	"github.com/ssobot/ssobot/workflow/workflowtest"
)

// fastBy is how far ahead the clock runs before NTP sets it right.
const fastBy = 30 * 24 * time.Hour

// logLines returns the lines of the harness's log that contain msg.
func logLines(h *harness, msg string) []string {
	var out []string
	for line := range strings.SplitSeq(h.logs.String(), "\n") {
		if strings.Contains(line, msg) {
			out = append(out, line)
		}
	}
	return out
}

// slogTime is how slog's text handler writes t.
func slogTime(t time.Time) string { return t.Format("2006-01-02T15:04:05.000Z07:00") }

// TestBackoffSetByAFastClockIsPulledIn: a transient failure recorded while
// the clock ran 30 days fast leaves a next attempt 30 days ahead once the
// clock is set right. After a restart the run waits no longer than the
// longest backoff (MaxRetryAfter here, above Retry.Max), says why in its
// audit log and, once, in a warning, and goes on.
func TestBackoffSetByAFastClockIsPulledIn(t *testing.T) {
	h := newHarness(t)
	right := h.clock.Now()
	// The fast clock never moves: the backoff is not waited out on it.
	h.clock = workflowtest.NewClock(right.Add(fastBy))
	h.cf.AddFault(cloudflaretest.Fault{Method: http.MethodGet, PathContains: "organizations", Kind: cloudflaretest.FaultStatus, Status: 503, Times: 1})
	h.start(nil)
	r := h.newRun(workflow.Request{})
	failed := h.feed.wait(t, r.ID, "a backoff", func(r *workflow.Run) bool { return !r.Step(workflow.StepPreflight).NextAttemptAt.IsZero() })
	stored := failed.Step(workflow.StepPreflight).NextAttemptAt
	if stored.Sub(right) < fastBy {
		t.Fatalf("next attempt at %s; want it set by the fast clock, past %s", stored, right.Add(fastBy))
	}

	h.clock = workflowtest.NewClock(right)
	h.restart(nil)
	due := right.Add(workflow.MaxRetryAfter)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.clock.WaitForTimerAt(ctx, due); err != nil {
		t.Fatalf("no wake-up at the longest backoff from now (%s); log:\n%s", due, h.logs.String())
	}
	got, err := h.engine.Get(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if at := got.Step(workflow.StepPreflight).NextAttemptAt; !at.Equal(due) {
		t.Errorf("stored next attempt %s; want it moved to %s", at, due)
	}
	evs, err := h.engine.Events(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(evs, func(ev workflow.Event) bool {
		return ev.Type == workflow.EventNote && ev.Step == workflow.StepPreflight &&
			strings.Contains(ev.Message, "was set for "+stored.UTC().Format(time.RFC3339)) && ev.Data["retry_at"] == due.Format(time.RFC3339)
	}) {
		t.Errorf("no note of the next attempt moved in events %v", evs)
	}

	h.clock.Advance(workflow.MaxRetryAfter)
	h.feed.waitGate(t, r.ID, workflow.GateAuthentik)
	warns := logLines(h, "next attempt was set further ahead than the longest backoff")
	if len(warns) != 1 {
		t.Fatalf("%d warnings of the moved attempt; want 1:\n%s", len(warns), strings.Join(warns, "\n"))
	}
	for _, want := range []string{"level=WARN", "run_id=" + strconv.FormatInt(r.ID, 10), "next_attempt_at=" + slogTime(stored)} {
		if !strings.Contains(warns[0], want) {
			t.Errorf("warning %q lacks %q", warns[0], want)
		}
	}
}

// TestGateOpenedByAFastClockKeepsItsDeadline: a gate opened while the clock
// ran 30 days fast keeps its deadline once the clock is set right (moving it
// earlier could expire it before the time people were shown), and a
// warning says, once, that it waits that much longer than its TTL.
func TestGateOpenedByAFastClockKeepsItsDeadline(t *testing.T) {
	h := newHarness(t)
	h.appr.ids[approver2] = true
	right := h.clock.Now()
	h.clock = workflowtest.NewClock(right.Add(fastBy))
	twoApprovals := func(c *workflow.Config) { c.ApprovalsRequired = 2 }
	h.start(twoApprovals)
	r := h.newRun(workflow.Request{})
	g := h.feed.waitGate(t, r.ID, workflow.GateAuthentik)

	h.clock = workflowtest.NewClock(right)
	h.restart(twoApprovals)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.clock.WaitForTimerAt(ctx, g.Deadline); err != nil {
		t.Fatalf("no wake-up at the gate's deadline %s; log:\n%s", g.Deadline, h.logs.String())
	}
	armed := h.clock.Waiters()
	// A decision drives the run again: the warning is not repeated.
	got, err := h.approveAs(r.ID, g, approver)
	if err != nil {
		t.Fatal(err)
	}
	if s := got.Step(g.Name); got.State != workflow.StateAwaitingApproval || !s.Deadline.Equal(g.Deadline) {
		t.Fatalf("run %s, deadline %s; want the gate waiting until %s", got.State, s.Deadline, g.Deadline)
	}
	// The driver arms the deadline again once it has looked at the gate.
	if err := h.clock.WaitForWaiters(ctx, armed+1); err != nil {
		t.Fatal("the driver did not look at the gate again after the decision")
	}
	warns := logLines(h, "open gate opened later than the clock reads")
	if len(warns) != 1 {
		t.Fatalf("%d warnings of the gate opened ahead; want 1:\n%s", len(warns), strings.Join(warns, "\n"))
	}
	for _, want := range []string{"level=WARN", "run_id=" + strconv.FormatInt(r.ID, 10), "opened_at=" + slogTime(g.StartedAt), "deadline=" + slogTime(g.Deadline)} {
		if !strings.Contains(warns[0], want) {
			t.Errorf("warning %q lacks %q", warns[0], want)
		}
	}
}
