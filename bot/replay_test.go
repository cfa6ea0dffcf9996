package bot

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ssobot/ssobot/bot/slacktest"
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

// TestReplayAcrossTheWholeWindow: a request whose timestamp is ahead of the
// clock stays inside the signature window for up to twice its length, and
// a copy sent at any time in it is refused, wherever the guard's generations
// turned over meanwhile. (Seen just before a turn-over, a guard keeping
// requests for only one window would have forgotten it.)
func TestReplayAcrossTheWholeWindow(t *testing.T) {
	tests := []struct {
		name      string
		firstAt   time.Duration // after the bot starts, when the request is first sent
		otherAt   time.Duration // when another request comes meanwhile (0: none)
		replayGap time.Duration // then, when the same request comes again
	}{
		{"first seen at start", 0, 0, 8 * time.Minute},
		{"first seen just before a window's end", SignatureWindow - time.Second, 0, 8 * time.Minute},
		{"other traffic meanwhile", SignatureWindow - time.Second, SignatureWindow + time.Minute, 8 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, _ := newHandlerHarness(t)
			start := h.clock.Now()
			form := slacktest.SlashCommandForm(h.slack.NewSlashCommand("/sso-setup", "help", "U1", "C1"))
			h.clock.Advance(tt.firstAt)
			ts := h.clock.Now().Add(4 * time.Minute) // a sender's clock ahead of ours
			if status, body := h.postAt("/slack/commands", form, ts); status != http.StatusOK || !strings.Contains(body, "*Usage*") {
				t.Fatalf("first request: %d %q; want it answered", status, body)
			}
			if tt.otherAt > 0 {
				h.clock.Advance(start.Add(tt.otherAt).Sub(h.clock.Now()))
				other := slacktest.SlashCommandForm(h.slack.NewSlashCommand("/sso-setup", "help", "U3", "C1"))
				if _, body := h.post("/slack/commands", other); !strings.Contains(body, "*Usage*") {
					t.Fatalf("other request: %q", body)
				}
			}
			h.clock.Advance(start.Add(tt.firstAt + tt.replayGap).Sub(h.clock.Now()))
			if d := h.clock.Now().Sub(ts); d > SignatureWindow || d < -SignatureWindow {
				t.Fatalf("test setup: the timestamp is %v from the clock, outside the window", d)
			}
			status, body := h.postAt("/slack/commands", form, ts)
			if status != http.StatusOK || !strings.Contains(body, "already handled") {
				t.Fatalf("copy %v later, its timestamp %v from the clock: %d %q; want it refused as a replay",
					tt.replayGap, h.clock.Now().Sub(ts), status, truncateRunes(body, 80))
			}
		})
	}
}
