package workflow_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ssobot/ssobot/workflow"
	"github.com/ssobot/ssobot/workflow/authentik/authentiktest"
	"github.com/ssobot/ssobot/workflow/cloudflare/cloudflaretest"
)

// logRecord is one captured log line, with the attributes added by With.
type logRecord struct {
	level slog.Level
	msg   string
	attrs map[string]string
}

// captured is a slog.Handler that keeps every record, for tests that assert
// what a line says rather than search text.
type captured struct {
	mu    *sync.Mutex
	recs  *[]logRecord
	attrs []slog.Attr
}

func newCaptured() *captured { return &captured{mu: &sync.Mutex{}, recs: &[]logRecord{}} }

func (c *captured) Enabled(context.Context, slog.Level) bool { return true }
func (c *captured) WithGroup(string) slog.Handler            { return c }
func (c *captured) WithAttrs(as []slog.Attr) slog.Handler {
	return &captured{mu: c.mu, recs: c.recs, attrs: append(append([]slog.Attr{}, c.attrs...), as...)}
}

func (c *captured) Handle(_ context.Context, r slog.Record) error {
	rec := logRecord{level: r.Level, msg: r.Message, attrs: map[string]string{}}
	for _, a := range c.attrs {
		rec.attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.attrs[a.Key] = a.Value.String()
		return true
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	*c.recs = append(*c.recs, rec)
	return nil
}

// with lists the records of message msg whose attributes include want.
func (c *captured) with(msg string, want map[string]string) []logRecord {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []logRecord
next:
	for _, r := range *c.recs {
		if r.msg != msg {
			continue
		}
		for k, v := range want {
			if r.attrs[k] != v {
				continue next
			}
		}
		out = append(out, r)
	}
	return out
}

func (c *captured) dump() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, r := range *c.recs {
		fmt.Fprintf(&b, "%s %q %v\n", r.level, r.msg, r.attrs)
	}
	return b.String()
}

// logLine is what a test expects of one line: its level, the attributes it
// has with their values, those it has with any value, and those it lacks.
type logLine struct {
	msg      string
	level    slog.Level
	attrs    map[string]string
	contains map[string]string // attribute → a substring of its value
	lacks    []string
}

func (l logLine) check(t *testing.T, logs *captured) {
	t.Helper()
	got := logs.with(l.msg, l.attrs)
	if len(got) != 1 {
		t.Errorf("%d lines %q with %v, want 1; logs:\n%s", len(got), l.msg, l.attrs, logs.dump())
		return
	}
	r := got[0]
	if r.level != l.level {
		t.Errorf("%q %v logged at %s, want %s", l.msg, l.attrs, r.level, l.level)
	}
	for k, sub := range l.contains {
		if v, ok := r.attrs[k]; !ok || !strings.Contains(v, sub) {
			t.Errorf("%q %v: %s=%q, want it to contain %q", l.msg, l.attrs, k, v, sub)
		}
	}
	for _, k := range l.lacks {
		if v, ok := r.attrs[k]; ok {
			t.Errorf("%q %v has %s=%q, want none", l.msg, l.attrs, k, v)
		}
	}
}

// TestRunLogLines: each attempt's line says how it ended, failures at WARN
// with their error (and preflight's problems), and each run's end is one
// line with its state, its age and its error.
func TestRunLogLines(t *testing.T) {
	finished := func(state workflow.State, level slog.Level, errPart string) logLine {
		l := logLine{msg: "run finished", level: level, attrs: map[string]string{workflow.KeyRunID: "1", workflow.KeyState: string(state)},
			contains: map[string]string{"duration": ""}}
		if errPart == "" {
			l.lacks = []string{workflow.KeyError}
		} else {
			l.contains[workflow.KeyError] = errPart
		}
		return l
	}
	attempt := func(step workflow.StepName, n int, outcome string, level slog.Level) logLine {
		return logLine{msg: "step attempt finished", level: level,
			attrs:    map[string]string{workflow.KeyRunID: "1", workflow.KeyStep: string(step), workflow.KeyAttempt: fmt.Sprint(n), "outcome": outcome},
			contains: map[string]string{"duration": ""}}
	}
	withErr := func(l logLine, part string) logLine {
		l.contains[workflow.KeyError] = part
		return l
	}
	atGate := func(t *testing.T, h *harness, id int64) *workflow.Step {
		return h.feed.waitGate(t, id, workflow.GateAuthentik)
	}
	tests := []struct {
		name  string
		setup func(h *harness)
		drive func(t *testing.T, h *harness, id int64) // to the run's end
		want  []logLine
	}{
		{
			name: "succeeded",
			drive: func(t *testing.T, h *harness, id int64) {
				h.complete(id)
			},
			want: []logLine{
				attempt(workflow.StepPreflight, 1, "succeeded", slog.LevelInfo),
				attempt(workflow.StepVerify, 1, "succeeded", slog.LevelInfo),
				finished(workflow.StateSucceeded, slog.LevelInfo, ""),
			},
		},
		{
			name: "preflight problems",
			setup: func(h *harness) {
				h.ak.DeleteCertificate("authentik Self-signed Certificate")
				h.ak.DeleteScopeMapping(workflow.ScopeProfile)
				h.cf.AddIdentityProvider(cloudflaretest.IdentityProvider{Name: "authentik (Grafana)", Type: "oidc", Config: cloudflaretest.Config{ClientID: "x"}})
			},
			drive: func(t *testing.T, h *harness, id int64) { h.feed.waitState(t, id, workflow.StateFailed) },
			want: []logLine{
				func() logLine {
					l := attempt(workflow.StepPreflight, 1, "failed", slog.LevelWarn)
					l.attrs["problem_count"] = "3"
					l.contains["problems"] = `no certificate named "authentik Self-signed Certificate"`
					l.lacks = []string{workflow.KeyError}
					return l
				}(),
				finished(workflow.StateFailed, slog.LevelWarn, "preflight found 3 problem(s)"),
			},
		},
		{
			name: "transient failure retried",
			setup: func(h *harness) {
				// The token check: a call whose failure preflight cannot pass over.
				h.ak.AddFault(authentiktest.Fault{PathContains: "/core/users/me", Kind: authentiktest.FaultStatus, Status: 503, Times: 1})
			},
			drive: func(t *testing.T, h *harness, id int64) { atGate(t, h, id) },
			want: []logLine{
				func() logLine {
					l := withErr(attempt(workflow.StepPreflight, 1, "retrying", slog.LevelWarn), "503 Service Unavailable")
					l.attrs["transient"] = "true"
					l.contains["retry_in"] = ""
					return l
				}(),
				attempt(workflow.StepPreflight, 2, "succeeded", slog.LevelInfo),
			},
		},
		{
			name: "permanent failure",
			setup: func(h *harness) {
				h.ak.AddFault(authentiktest.Fault{Method: "POST", PathContains: "/core/applications/", Kind: authentiktest.FaultStatus, Status: 400, Times: 1})
			},
			drive: func(t *testing.T, h *harness, id int64) {
				h.approve(id, workflow.GateAuthentik)
				h.feed.waitState(t, id, workflow.StateFailed)
			},
			want: []logLine{
				func() logLine {
					l := withErr(attempt(workflow.StepAuthentikApplication, 1, "failed", slog.LevelWarn), "400 Bad Request")
					l.attrs["transient"] = "false"
					return l
				}(),
				finished(workflow.StateFailed, slog.LevelWarn, "authentik-application failed: "),
			},
		},
		{
			name: "rejected",
			drive: func(t *testing.T, h *harness, id int64) {
				g := atGate(t, h, id)
				if _, err := h.engine.Decide(context.Background(), workflow.DecisionRequest{RunID: id, Gate: g.Name, Nonce: g.Nonce, User: approver, Decision: workflow.Reject, Reason: "wrong team"}); err != nil {
					t.Fatal(err)
				}
			},
			want: []logLine{finished(workflow.StateRejected, slog.LevelWarn, "wrong team")},
		},
		{
			name: "cancelled",
			drive: func(t *testing.T, h *harness, id int64) {
				atGate(t, h, id)
				if _, err := h.engine.Cancel(context.Background(), id, requester, "not needed"); err != nil {
					t.Fatal(err)
				}
			},
			want: []logLine{finished(workflow.StateCancelled, slog.LevelInfo, "cancelled by "+requester+": not needed")},
		},
		{
			name: "expired",
			drive: func(t *testing.T, h *harness, id int64) {
				atGate(t, h, id)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := h.clock.WaitForTimer(ctx, 24*time.Hour); err != nil {
					t.Fatal("no deadline timer armed")
				}
				h.clock.Advance(24 * time.Hour)
				h.feed.waitState(t, id, workflow.StateExpired)
			},
			want: []logLine{finished(workflow.StateExpired, slog.LevelWarn, "gate authentik expired")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			if tt.setup != nil {
				tt.setup(h)
			}
			logs := newCaptured()
			h.start(func(c *workflow.Config) { c.Logger = slog.New(logs) })
			r := h.newRun(workflow.Request{})
			tt.drive(t, h, r.ID)
			h.stop() // every driver has returned: every line is written
			for _, l := range tt.want {
				l.check(t, logs)
			}
			if n := len(logs.with("run finished", nil)); tt.name == "transient failure retried" && n != 0 {
				t.Errorf("%d run finished lines for a run still open", n)
			}
		})
	}
}

// TestRunFinishedLoggedOnce: however a run's end is raced for (a cancel, a
// reject and the gate's deadline at once), one line says it ended, with the
// state it ended in.
func TestRunFinishedLoggedOnce(t *testing.T) {
	h := newHarness(t)
	logs := newCaptured()
	h.start(func(c *workflow.Config) { c.Logger = slog.New(logs) })
	const n = 6
	ids := make([]int64, n)
	gates := make([]*workflow.Step, n)
	for i := range ids {
		ids[i] = h.newRun(workflow.Request{ApplicationName: fmt.Sprintf("App %d", i)}).ID
	}
	for i, id := range ids {
		gates[i] = h.feed.waitGate(t, id, workflow.GateAuthentik)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.clock.WaitForTimer(ctx, 24*time.Hour); err != nil {
		t.Fatal("no deadline timer armed")
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, id := range ids {
		g := gates[i]
		wg.Go(func() {
			<-start
			_, _ = h.engine.Cancel(context.Background(), id, requester, "")
		})
		wg.Go(func() {
			<-start
			_, _ = h.engine.Decide(context.Background(), workflow.DecisionRequest{RunID: id, Gate: g.Name, Nonce: g.Nonce, User: approver, Decision: workflow.Reject})
		})
	}
	wg.Go(func() {
		<-start
		h.clock.Advance(24 * time.Hour)
	})
	close(start)
	wg.Wait()
	ended := make([]*workflow.Run, n)
	for i, id := range ids {
		ended[i] = h.feed.waitState(t, id, workflow.StateCancelled, workflow.StateRejected, workflow.StateExpired)
	}
	h.stop()
	for i, id := range ids {
		got := logs.with("run finished", map[string]string{workflow.KeyRunID: fmt.Sprint(id)})
		if len(got) != 1 {
			t.Errorf("run %d: %d run finished lines, want 1:\n%s", id, len(got), logs.dump())
			continue
		}
		if s := got[0].attrs[workflow.KeyState]; s != string(ended[i].State) {
			t.Errorf("run %d ended %s, logged %s", id, ended[i].State, s)
		}
	}
}
