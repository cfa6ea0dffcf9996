package bot

import (
	"testing"
	"time"

	"github.com/ssobot/ssobot/workflow/workflowtest"
)

// TestReplayGuard checks how long a request is remembered: at least
// replayKeep whenever it came in its generation, and forgotten once two
// generations have passed, including after a quiet spell.
func TestReplayGuard(t *testing.T) {
	a, b := replayKey("1700000000", []byte("a")), replayKey("1700000000", []byte("b"))
	if a == b || a != replayKey("1700000000", []byte("a")) || a == replayKey("1700000001", []byte("a")) {
		t.Fatal("replayKey does not tell requests apart by timestamp and body")
	}
	tests := []struct {
		name   string
		before time.Duration // after the guard starts, when a is first seen
		after  time.Duration // then, when a is sent again
		want   bool
	}{
		{"at once", 0, 0, true},
		{"just inside keep", 0, replayKeep - time.Second, true},
		{"keep, seen just before a rotation", replayKeep - time.Second, replayKeep - time.Second, true},
		{"keep, seen just after a rotation", replayKeep + time.Second, replayKeep - time.Second, true},
		{"past two generations", 0, 2*replayKeep + time.Second, false},
		{"past two generations, seen late", replayKeep - time.Second, 2*replayKeep + time.Second, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := workflowtest.NewClock(time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC))
			g := newReplayGuard(clock)
			clock.Advance(tt.before)
			if g.seen(a) {
				t.Fatal("a first request was taken for a replay")
			}
			// Other traffic meanwhile, which turns generations over.
			for step := time.Duration(0); step < tt.after; step += replayKeep / 4 {
				clock.Advance(min(replayKeep/4, tt.after-step))
				if g.seen(replayKey(step.String(), []byte("other"))) {
					t.Fatal("other traffic was taken for a replay")
				}
			}
			if got := g.seen(a); got != tt.want {
				t.Fatalf("sent again %v later: replay %v, want %v", tt.after, got, tt.want)
			}
		})
	}
	t.Run("quiet spell", func(t *testing.T) {
		clock := workflowtest.NewClock(time.Date(2026, 11, 29, 9, 0, 0, 0, time.UTC))
		g := newReplayGuard(clock)
		g.seen(a)
		clock.Advance(replayKeep / 2)
		g.seen(b)
		// No request for two generations: the next one finds both forgotten.
		clock.Advance(2*replayKeep + time.Second)
		if g.seen(b) || g.seen(a) {
			t.Fatal("requests older than two generations are still remembered")
		}
		if len(g.cur) != 2 || len(g.old) != 0 {
			t.Fatalf("after the quiet spell: %d keys in the new generation and %d in the old, want 2 and 0", len(g.cur), len(g.old))
		}
	})
}
