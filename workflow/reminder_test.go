package workflow_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ssobot/ssobot/workflow"
)

// reminders are the run's reminder events, by gate.
func reminders(t *testing.T, h *harness, id int64) map[workflow.StepName][]workflow.Event {
	t.Helper()
	events, err := h.engine.Events(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	out := map[workflow.StepName][]workflow.Event{}
	for _, ev := range events {
		if ev.Type == workflow.EventGateReminder {
			out[ev.Step] = append(out[ev.Step], ev)
		}
	}
	return out
}

// waitTimer fails the test unless the engine arms a timer due within d.
func waitTimer(t *testing.T, h *harness, d time.Duration, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.clock.WaitForTimer(ctx, d); err != nil {
		t.Fatalf("no timer armed for %s", what)
	}
}

// TestGateReminder: an open gate's approvers are reminded once, at the
// configured time before its deadline, and never when the reminder is off,
// not shorter than the gate's lifetime, or the gate is decided first.
func TestGateReminder(t *testing.T) {
	const ttl = 24 * time.Hour
	tests := []struct {
		name     string
		reminder time.Duration
		// wantAt is when the reminder is due after the gate opens (0: never);
		// more than an hour before the deadline, which the harness's clock
		// would reach on its own.
		wantAt time.Duration
	}{
		{"a quarter before the deadline", 6 * time.Hour, 18 * time.Hour},
		{"two hours before", 2 * time.Hour, ttl - 2*time.Hour},
		{"off", 0, 0},
		{"as long as the gate's lifetime", ttl, 0},
		{"longer", 2 * ttl, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.start(func(c *workflow.Config) { c.ApprovalTTL, c.ApprovalReminder = ttl, tt.reminder })
			r := h.newRun(workflow.Request{})
			g := h.feed.waitGate(t, r.ID, workflow.GateAuthentik)
			opened := h.clock.Now()
			if tt.wantAt == 0 {
				if !g.RemindAt.IsZero() {
					t.Fatalf("RemindAt %v; want none", g.RemindAt)
				}
				waitTimer(t, h, ttl, "the deadline")
				h.clock.Advance(g.Deadline.Sub(opened))
				h.feed.waitState(t, r.ID, workflow.StateExpired)
				if got := reminders(t, h, r.ID); len(got) != 0 {
					t.Errorf("reminders %v; want none", got)
				}
				return
			}
			if want := g.Deadline.Add(-tt.reminder); !g.RemindAt.Equal(want) {
				t.Fatalf("RemindAt %v; want %v (deadline %v less %v)", g.RemindAt, want, g.Deadline, tt.reminder)
			}
			// Two hours before the reminder is due, nothing is sent (the
			// harness's clock moves on its own to timers due within an
			// hour, so a closer look would race with it).
			waitTimer(t, h, tt.wantAt, "the reminder")
			h.clock.Advance(tt.wantAt - 2*time.Hour)
			if got := reminders(t, h, r.ID); len(got) != 0 {
				t.Fatalf("reminded %v before the time", got)
			}
			h.clock.Advance(2 * time.Hour)
			got := h.feed.wait(t, r.ID, "the reminder sent", func(r *workflow.Run) bool {
				g := r.OpenGate()
				return g != nil && g.RemindAt.IsZero()
			})
			if got.State != workflow.StateAwaitingApproval {
				t.Fatalf("run %s after the reminder; want it still waiting", got.State)
			}
			sent := reminders(t, h, r.ID)[workflow.GateAuthentik]
			if len(sent) != 1 || sent[0].Data["missing"] != "1" || sent[0].Data["deadline"] != g.Deadline.Format(time.RFC3339) {
				t.Fatalf("reminders %+v; want one, for 1 approval, with the deadline", sent)
			}
			// A restart does not remind again; the gate still expires on time.
			h.restart(func(c *workflow.Config) { c.ApprovalTTL, c.ApprovalReminder = ttl, tt.reminder })
			waitTimer(t, h, g.Deadline.Sub(h.clock.Now()), "the deadline after a restart")
			h.clock.Advance(g.Deadline.Sub(h.clock.Now()))
			h.feed.waitState(t, r.ID, workflow.StateExpired)
			if got := reminders(t, h, r.ID); len(got) != 1 || len(got[workflow.GateAuthentik]) != 1 {
				t.Errorf("reminders %v; want the one", got)
			}
		})
	}
}

// TestGateReminderAfterDecisions: a gate decided before its reminder gets
// none; the next gate gets its own, counting the approvals still missing.
func TestGateReminderAfterDecisions(t *testing.T) {
	const second = "U_SECOND"
	h := newHarness(t)
	h.appr.ids[second] = true
	cfg := func(c *workflow.Config) {
		c.ApprovalTTL, c.ApprovalReminder, c.ApprovalsRequired = 24*time.Hour, 6*time.Hour, 2
	}
	h.start(cfg)
	r := h.newRun(workflow.Request{})
	g := h.feed.waitGate(t, r.ID, workflow.GateAuthentik)
	for _, u := range []string{approver, second} {
		if _, err := h.approveAs(r.ID, g, u); err != nil {
			t.Fatalf("approve as %s: %v", u, err)
		}
	}
	next := h.feed.waitGate(t, r.ID, workflow.GateCloudflare)
	if want := next.Deadline.Add(-6 * time.Hour); !next.RemindAt.Equal(want) {
		t.Fatalf("the next gate's RemindAt %v; want %v", next.RemindAt, want)
	}
	if _, err := h.approveAs(r.ID, next, approver); err != nil {
		t.Fatal(err)
	}
	waitTimer(t, h, next.RemindAt.Sub(h.clock.Now()), "the next gate's reminder")
	h.clock.Advance(next.RemindAt.Sub(h.clock.Now()))
	h.feed.wait(t, r.ID, "the reminder sent", func(r *workflow.Run) bool {
		g := r.OpenGate()
		return g != nil && g.RemindAt.IsZero()
	})
	got := reminders(t, h, r.ID)
	if len(got[workflow.GateAuthentik]) != 0 {
		t.Errorf("the decided gate was reminded: %v", got[workflow.GateAuthentik])
	}
	if sent := got[workflow.GateCloudflare]; len(sent) != 1 || sent[0].Data["missing"] != "1" {
		t.Errorf("reminders of the open gate %+v; want one, for the 1 approval missing of 2", sent)
	}
}

// TestGateReminderAcrossDowntime: a process that was down when a reminder
// was due sends it on start if the gate is still open, and, if the deadline
// passed too, expires the gate without reminding anyone.
//
// Reminders turned off meanwhile clear those already set.
func TestGateReminderAcrossDowntime(t *testing.T) {
	tests := []struct {
		name      string
		down      time.Duration // the clock moves this far while stopped
		reminder  time.Duration // the restarted engine's; off unless shorter than the TTL
		wantState workflow.State
		reminded  int
	}{
		{"reminder due", 20 * time.Hour, 6 * time.Hour, workflow.StateAwaitingApproval, 1},
		{"deadline passed", 25 * time.Hour, 6 * time.Hour, workflow.StateExpired, 0},
		{"reminders turned off", 20 * time.Hour, 0, workflow.StateExpired, 0},
		{"reminders no shorter than the TTL", 20 * time.Hour, 24 * time.Hour, workflow.StateExpired, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.start(func(c *workflow.Config) { c.ApprovalTTL, c.ApprovalReminder = 24*time.Hour, 6*time.Hour })
			r := h.newRun(workflow.Request{})
			g := h.feed.waitGate(t, r.ID, workflow.GateAuthentik)
			h.stop()
			h.clock.Advance(tt.down)
			h.feed = newFeed()
			off := tt.reminder <= 0 || tt.reminder >= 24*time.Hour
			h.start(func(c *workflow.Config) { c.ApprovalTTL, c.ApprovalReminder = 24*time.Hour, tt.reminder })
			if off {
				// The reminder is cleared, not sent, and nothing is due
				// before the deadline.
				cleared := h.feed.wait(t, r.ID, "the reminder cleared", func(r *workflow.Run) bool {
					g := r.OpenGate()
					return g != nil && g.RemindAt.IsZero()
				})
				if cleared.State != workflow.StateAwaitingApproval {
					t.Fatalf("run %s; want it still waiting", cleared.State)
				}
				waitTimer(t, h, g.Deadline.Sub(h.clock.Now()), "the deadline")
				if n := len(reminders(t, h, r.ID)[workflow.GateAuthentik]); n != 0 {
					t.Fatalf("%d reminders before the deadline; want none", n)
				}
				h.clock.Advance(g.Deadline.Sub(h.clock.Now()))
			}
			got := h.feed.wait(t, r.ID, "the gate handled", func(r *workflow.Run) bool {
				g := r.OpenGate()
				return r.State.Terminal() || (!off && g != nil && g.RemindAt.IsZero())
			})
			if got.State != tt.wantState {
				t.Fatalf("run %s; want %s", got.State, tt.wantState)
			}
			if n := len(reminders(t, h, r.ID)[workflow.GateAuthentik]); n != tt.reminded {
				t.Errorf("%d reminders; want %d", n, tt.reminded)
			}
		})
	}
}

// failOnce is a Store whose next UpdateRun, once armed, fails, as a
// database that could not be written for a moment.
type failOnce struct {
	workflow.Store
	mu     sync.Mutex
	armed  bool
	failed int
}

func (s *failOnce) arm() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.armed = true
}

func (s *failOnce) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failed
}

func (s *failOnce) UpdateRun(ctx context.Context, id int64, fn func(r *workflow.Run) ([]workflow.Event, error)) (*workflow.Run, error) {
	s.mu.Lock()
	fail := s.armed
	if fail {
		s.armed = false
		s.failed++
	}
	s.mu.Unlock()
	if fail {
		return nil, errors.New("database busy")
	}
	return s.Store.UpdateRun(ctx, id, fn)
}

// TestGateReminderAfterAStoreError: a reminder that could not be recorded
// (or, reminders being off, cleared) is tried again, and the gate still
// expires at its deadline without a restart.
func TestGateReminderAfterAStoreError(t *testing.T) {
	const ttl, before = 24 * time.Hour, 6 * time.Hour
	for _, off := range []bool{false, true} {
		name := "reminder sent"
		if off {
			name = "reminder cleared"
		}
		t.Run(name, func(t *testing.T) {
			h := newHarness(t)
			st := &failOnce{}
			withStore := func(reminder time.Duration) func(*workflow.Config) {
				return func(c *workflow.Config) {
					st.Store = c.Store
					c.Store = st
					c.ApprovalTTL, c.ApprovalReminder = ttl, reminder
				}
			}
			h.start(withStore(before))
			r := h.newRun(workflow.Request{})
			g := h.feed.waitGate(t, r.ID, workflow.GateAuthentik)
			if off {
				// The next write of the run is the restarted engine's
				// clearing of the reminder.
				st.arm()
				h.restart(withStore(0))
			} else {
				waitTimer(t, h, ttl-before, "the reminder")
				st.arm()
				h.clock.Advance(g.RemindAt.Sub(h.clock.Now()))
			}
			h.feed.wait(t, r.ID, "the reminder handled", func(r *workflow.Run) bool {
				g := r.OpenGate()
				return g != nil && g.RemindAt.IsZero()
			})
			if n := st.count(); n != 1 {
				t.Fatalf("%d writes failed; want the one", n)
			}
			want := 1
			if off {
				want = 0
			}
			if n := len(reminders(t, h, r.ID)[workflow.GateAuthentik]); n != want {
				t.Errorf("%d reminders; want %d", n, want)
			}
			// The deadline's own timer: the failed write's retry left
			// one listed that fires earlier, and advancing on that one
			// could pass the deadline before the driver armed it.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := h.clock.WaitForTimerAt(ctx, g.Deadline); err != nil {
				t.Fatal("no timer armed for the deadline")
			}
			h.clock.Advance(g.Deadline.Sub(h.clock.Now()))
			h.feed.waitState(t, r.ID, workflow.StateExpired)
		})
	}
}
