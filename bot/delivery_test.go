package bot

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/ssobot/ssobot/bot/slacktest"
	"github.com/ssobot/ssobot/workflow"
)

// rootPosts are the successful chat.postMessage calls outside threads.
func rootPosts(calls []slacktest.Call) []slacktest.Call {
	var out []slacktest.Call
	for _, c := range okCalls(calls, "chat.postMessage") {
		if c.Param("thread_ts") == "" {
			out = append(out, c)
		}
	}
	return out
}

func replies(calls []slacktest.Call) []slacktest.Call {
	var out []slacktest.Call
	for _, c := range okCalls(calls, "chat.postMessage") {
		if c.Param("thread_ts") != "" {
			out = append(out, c)
		}
	}
	return out
}

func resultTS(c slacktest.Call) string {
	ts, _ := c.Result["ts"].(string)
	return ts
}

func awaiting(id int64, version uint64) *workflow.Run {
	r := sampleRun(workflow.GateAuthentik, workflow.StepWaiting, workflow.StateAwaitingApproval)
	r.ID, r.Version = id, version
	return r
}

// newDeliveryTest is a bot on a fake engine holding run 42, waiting at the
// authentik gate; the worker is not started.
func newDeliveryTest(t *testing.T) (*harness, *fakeEngine, *workflow.Run) {
	h := newHarness(t, nil)
	eng := newFakeEngine(h.clock)
	h.bot.Attach(eng)
	run := awaiting(42, 3)
	eng.put(run)
	return h, eng, run
}

func TestDeliveryPostsRootThenEditsInPlace(t *testing.T) {
	h, eng, run := newDeliveryTest(t)

	// Several snapshots before the worker runs coalesce into one message
	// showing the newest; the events all reach the thread, in order.
	older := run.Clone()
	older.Version, older.State = 2, workflow.StatePending
	older.Steps[1].Status = workflow.StepPending
	h.bot.RunChanged(context.Background(), older, []workflow.Event{{RunID: 42, Seq: 2, Type: workflow.EventPlanned}})
	h.bot.RunChanged(context.Background(), run, []workflow.Event{{RunID: 42, Seq: 3, Type: workflow.EventGateOpened, Step: workflow.GateAuthentik}})
	h.bot.RunChanged(context.Background(), older, nil) // late, older snapshot: ignored
	h.startWorker()

	calls := h.waitCalls("root and two replies", func(c []slacktest.Call) bool { return len(replies(c)) == 2 })
	roots := rootPosts(calls)
	if len(roots) != 1 {
		t.Fatalf("%d root messages; want 1\n%s", len(roots), callList(calls))
	}
	ts := resultTS(roots[0])
	msg, ok := h.slack.Message("C1", ts)
	if !ok || len(msg.Buttons()) != 2 || !strings.Contains(msg.Text, "Awaiting approval") {
		t.Fatalf("root message %+v", msg)
	}
	rs := replies(calls)
	if rs[0].Param("thread_ts") != ts || !strings.Contains(rs[0].Param("text"), "Preflight passed") ||
		!strings.Contains(rs[1].Param("text"), "Waiting for approval") || !strings.HasSuffix(rs[1].Param("text"), "\nApprovers: <@U2>") || rs[1].Param("reply_broadcast") == "true" {
		t.Fatalf("replies:\n%s", callList(rs))
	}
	if got := eng.run(42).MessageRef; got != "C1|"+ts {
		t.Fatalf("message ref %q; want C1|%s", got, ts)
	}

	// A decision: the same message loses its buttons.
	decided := run.Clone()
	decided.Version, decided.State = 5, workflow.StateRunning
	decided.Steps[1].Status = workflow.StepSucceeded
	decided.Steps[2].Status = workflow.StepRunning
	decided.Approvals = []workflow.Approval{{Gate: workflow.GateAuthentik, User: "U2", Decision: workflow.Approve, At: t0}}
	decided.MessageRef = "C1|" + ts
	h.bot.RunChanged(context.Background(), decided, []workflow.Event{{RunID: 42, Seq: 4, Type: workflow.EventDecisionAccepted, Step: workflow.GateAuthentik, Actor: "U2"}})
	calls = h.waitCalls("the update", func(c []slacktest.Call) bool { return len(okCalls(c, "chat.update")) == 1 && len(replies(c)) == 3 })
	if up := okCalls(calls, "chat.update")[0]; up.Param("ts") != ts || up.Param("channel") != "C1" {
		t.Fatalf("chat.update %s", up)
	}
	msg, _ = h.slack.Message("C1", ts)
	if len(msg.Buttons()) != 0 || !strings.Contains(string(msg.BlocksJSON), "\\u003c@U2\\u003e approved") && !strings.Contains(string(msg.BlocksJSON), "<@U2> approved") {
		t.Fatalf("decided message still has buttons or lacks the approval: %s", msg.BlocksJSON)
	}

	// A snapshot that renders the same is not sent again.
	h.bot.RunChanged(context.Background(), decided.Clone(), nil)
	h.bot.RunChanged(context.Background(), decided.Clone(), []workflow.Event{{RunID: 42, Seq: 5, Type: workflow.EventStepStarted, Step: workflow.StepAuthentikProvider}})
	calls = h.waitCalls("the next reply", func(c []slacktest.Call) bool { return len(replies(c)) == 4 })
	if n := len(okCalls(calls, "chat.update")); n != 1 {
		t.Fatalf("%d chat.update calls for unchanged content; want 1", n)
	}
	if n := len(rootPosts(calls)); n != 1 {
		t.Fatalf("%d root posts; want 1", n)
	}
}

func TestDeliveryRepostsADeletedRoot(t *testing.T) {
	h, eng := newHandlerHarness(t)
	h.startWorker()
	run := awaiting(7, 1)
	eng.put(run)
	h.bot.RunChanged(context.Background(), run, nil)
	calls := h.waitCalls("the root", func(c []slacktest.Call) bool { return len(rootPosts(c)) == 1 })
	first := resultTS(rootPosts(calls)[0])

	h.slack.DeleteMessage("C1", first)
	next := run.Clone()
	next.Version, next.State = 2, workflow.StateRunning
	next.Steps[1].Status = workflow.StepSucceeded
	h.bot.RunChanged(context.Background(), next, []workflow.Event{{RunID: 7, Seq: 9, Type: workflow.EventDecisionAccepted, Step: workflow.GateAuthentik, Actor: "U2"}})
	calls = h.waitCalls("a new root and its reply", func(c []slacktest.Call) bool { return len(rootPosts(c)) == 2 && len(replies(c)) == 1 })
	second := resultTS(rootPosts(calls)[1])
	if second == first {
		t.Fatal("the new root has the old ts")
	}
	if up := h.slack.Calls("chat.update"); len(up) != 1 || up[0].Error != "message_not_found" {
		t.Fatalf("chat.update calls:\n%s", callList(up))
	}
	if r := replies(calls)[0]; r.Param("thread_ts") != second {
		t.Fatalf("reply went to thread %q; want the new root %q", r.Param("thread_ts"), second)
	}
	if got := eng.run(7).MessageRef; got != "C1|"+second {
		t.Fatalf("message ref %q; want the new root", got)
	}
}

func TestDeliveryHonoursRateLimits(t *testing.T) {
	h, eng := newHandlerHarness(t)
	h.startWorker()
	run := awaiting(3, 1)
	eng.put(run)
	h.bot.RunChanged(context.Background(), run, nil)
	calls := h.waitCalls("the root", func(c []slacktest.Call) bool { return len(rootPosts(c)) == 1 })
	ts := resultTS(rootPosts(calls)[0])

	h.slack.RateLimitNext("chat.update", 2, 7)
	done := run.Clone()
	done.Version, done.State = 9, workflow.StateSucceeded
	for i := range done.Steps {
		done.Steps[i].Status = workflow.StepSucceeded
	}
	h.bot.RunChanged(context.Background(), done, nil)
	h.waitCalls("the update to land", func(c []slacktest.Call) bool { return len(okCalls(c, "chat.update")) == 1 })
	if n := len(h.slack.Calls("chat.update")); n != 3 {
		t.Fatalf("%d chat.update calls; want 2 rate-limited and 1 good", n)
	}
	var waited int
	for _, w := range h.clock.Waits() {
		if w >= 7*time.Second {
			waited++
		}
	}
	if waited < 2 {
		t.Fatalf("worker waits %v; want two of at least Retry-After (7s)", h.clock.Waits())
	}
	msg, _ := h.slack.Message("C1", ts)
	if !strings.Contains(msg.Text, "Succeeded") {
		t.Fatalf("message text %q; want the caught-up state", msg.Text)
	}
}

// TestDeliveryRetriesServerErrorsOnUpdate: an update of the run's message
// that Slack fails on its side (an HTTP 5xx, internal_error and the like) is
// retried until the message shows the run's state, not dropped as a refusal.
func TestDeliveryRetriesServerErrorsOnUpdate(t *testing.T) {
	for _, tt := range []struct {
		name string
		fail func(s *slacktest.Server)
	}{
		{"HTTP 503", func(s *slacktest.Server) { s.FailNextStatus("chat.update", 1, http.StatusServiceUnavailable) }},
		{"HTTP 500", func(s *slacktest.Server) { s.FailNextStatus("chat.update", 1, http.StatusInternalServerError) }},
		{"internal_error", func(s *slacktest.Server) { s.FailNext("chat.update", 1, "internal_error") }},
		{"service_unavailable", func(s *slacktest.Server) { s.FailNext("chat.update", 1, "service_unavailable") }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, eng := newHandlerHarness(t)
			h.startWorker()
			run := awaiting(3, 1)
			eng.put(run)
			h.bot.RunChanged(context.Background(), run, nil)
			calls := h.waitCalls("the root", func(c []slacktest.Call) bool { return len(rootPosts(c)) == 1 })
			ts := resultTS(rootPosts(calls)[0])

			tt.fail(h.slack)
			done := run.Clone()
			done.Version, done.State = 9, workflow.StateSucceeded
			for i := range done.Steps {
				done.Steps[i].Status = workflow.StepSucceeded
			}
			h.bot.RunChanged(context.Background(), done, nil)
			h.waitCalls("the update to land", func(c []slacktest.Call) bool { return len(okCalls(c, "chat.update")) == 1 })
			if n := len(h.slack.Calls("chat.update")); n != 2 {
				t.Fatalf("%d chat.update calls; want the failed one and its retry", n)
			}
			if msg, _ := h.slack.Message("C1", ts); !strings.Contains(msg.Text, "Succeeded") {
				t.Fatalf("message text %q; want the run's final state", msg.Text)
			}
		})
	}
}

func TestDeliveryRetriesTransientFailuresWithoutDuplicates(t *testing.T) {
	h, eng := newHandlerHarness(t)
	h.startWorker()
	run := awaiting(5, 1)
	eng.put(run)
	h.slack.FailNext("chat.postMessage", 1, "internal_error")
	h.bot.RunChanged(context.Background(), run, []workflow.Event{
		{RunID: 5, Seq: 3, Type: workflow.EventGateOpened, Step: workflow.GateAuthentik},
		{RunID: 5, Seq: 2, Type: workflow.EventPlanned},
	})
	calls := h.waitCalls("root and replies", func(c []slacktest.Call) bool { return len(replies(c)) == 2 })
	if n := len(rootPosts(calls)); n != 1 {
		t.Fatalf("%d roots; want 1", n)
	}
	rs := replies(calls)
	if !strings.Contains(rs[0].Param("text"), "Preflight passed") || !strings.Contains(rs[1].Param("text"), "Waiting for approval") {
		t.Fatalf("replies out of order:\n%s", callList(rs))
	}

	// A reply that fails is retried; those already posted are not repeated.
	h.slack.FailNext("chat.postMessage", 1, "service_unavailable")
	h.bot.RunChanged(context.Background(), run, []workflow.Event{
		{RunID: 5, Seq: 4, Type: workflow.EventNote, Message: "one"},
		{RunID: 5, Seq: 5, Type: workflow.EventNote, Message: "two"},
	})
	calls = h.waitCalls("both notes", func(c []slacktest.Call) bool { return len(replies(c)) == 4 })
	var notes []string
	for _, r := range replies(calls)[2:] {
		notes = append(notes, r.Param("text"))
	}
	if strings.Join(notes, ",") != ":memo: one,:memo: two" {
		t.Fatalf("notes %q", notes)
	}
	if len(h.clock.Waits()) == 0 {
		t.Fatal("no backoff before retrying")
	}
}

// TestThreadReplyPostedOnceAcrossARetry: when a later reply of a delivery
// fails and the delivery is retried, the replies already in the thread are
// not posted again.
func TestThreadReplyPostedOnceAcrossARetry(t *testing.T) {
	for _, tt := range []struct {
		name string
		fail func(s *slacktest.Server) // makes the second reply's post fail
	}{
		{"internal_error", func(s *slacktest.Server) { s.FailNext("chat.postMessage", 1, "internal_error") }},
		{"HTTP 503", func(s *slacktest.Server) { s.FailNextStatus("chat.postMessage", 1, http.StatusServiceUnavailable) }},
		{"rate limited", func(s *slacktest.Server) { s.RateLimitNext("chat.postMessage", 1, 2) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, eng := newHandlerHarness(t)
			h.startWorker()
			run := awaiting(5, 1)
			eng.put(run)
			h.bot.RunChanged(context.Background(), run, nil)
			calls := h.waitCalls("the root", func(c []slacktest.Call) bool { return len(rootPosts(c)) == 1 })
			root := resultTS(rootPosts(calls)[0])

			h.slack.PassNext("chat.postMessage", 1) // the first reply
			tt.fail(h.slack)
			h.bot.RunChanged(context.Background(), run, []workflow.Event{
				{RunID: 5, Seq: 2, Type: workflow.EventNote, Message: "one"},
				{RunID: 5, Seq: 3, Type: workflow.EventNote, Message: "two"},
			})
			calls = h.waitCalls("the second reply after the retry", func(c []slacktest.Call) bool {
				return slices.ContainsFunc(replies(c), func(c slacktest.Call) bool { return c.Param("text") == ":memo: two" })
			})
			if n := countMethod(calls, "chat.postMessage") - len(okCalls(calls, "chat.postMessage")); n != 1 {
				t.Fatalf("%d failed posts; want the second reply's one\n%s", n, callList(calls))
			}
			var thread []string
			for _, m := range h.slack.Thread("C1", root)[1:] {
				thread = append(thread, m.Text)
			}
			if got := strings.Join(thread, ","); got != ":memo: one,:memo: two" {
				t.Fatalf("thread replies %q; want each note once, in order", thread)
			}
			if len(h.clock.Waits()) == 0 {
				t.Fatal("no wait before the retry")
			}
		})
	}
}

// TestWithRetryRateLimits: a Slack call made on a person's behalf waits out
// rate limits as Slack asks, a second at least, and gives up after a few
// attempts rather than retrying forever.
func TestWithRetryRateLimits(t *testing.T) {
	for _, tt := range []struct {
		name       string
		limited    int // 429 answers before Slack lets the call through
		retryAfter int // seconds
		wantCalls  int
		wantErr    bool
		wantWaits  []time.Duration
	}{
		{"let through at once", 0, 0, 1, false, nil},
		{"after Slack's wait", 2, 3, 3, false, []time.Duration{3 * time.Second, 3 * time.Second}},
		{"Retry-After 0 waits a second", 1, 0, 2, false, []time.Duration{time.Second}},
		{"always rate limited", 100, 2, 3, true, []time.Duration{2 * time.Second, 2 * time.Second}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.slack.RateLimitNext("chat.postEphemeral", tt.limited, tt.retryAfter)
			_, err := h.bot.withRetry(context.Background(), func(ctx context.Context) (string, error) {
				return h.bot.client.PostEphemeralContext(ctx, "C1", "U1", slack.MsgOptionText("hi", false))
			})
			var rl *slack.RateLimitedError
			if tt.wantErr != (err != nil) || (err != nil && !errors.As(err, &rl)) {
				t.Errorf("err = %v; want a rate-limit error %v", err, tt.wantErr)
			}
			if n := len(h.slack.Calls("chat.postEphemeral")); n != tt.wantCalls {
				t.Errorf("%d calls; want %d", n, tt.wantCalls)
			}
			if w := h.clock.Waits(); !slices.Equal(w, tt.wantWaits) {
				t.Errorf("waits %v; want %v", w, tt.wantWaits)
			}
		})
	}
}

// TestBotStartedInADirectMessage: a run started in a direct message
// between people (where no bot can post or be invited) is cancelled with
// advice that can be followed.
func TestBotStartedInADirectMessage(t *testing.T) {
	h, eng := newHandlerHarness(t)
	eng.notifier = h.bot
	h.startWorker()
	if r := h.command("U1", "D0123DM", "new Grafana"); !strings.Contains(r.Text, "Run #1 started") {
		t.Fatalf("reply %q", r.Text)
	}
	calls := h.waitCalls("the private notice", func(c []slacktest.Call) bool { return countMethod(c, slacktest.MethodResponseURL) == 1 })
	if got := responseTexts(calls)[0]; !strings.Contains(got, "I can't post in a direct message between people, so run #1 (Grafana) was cancelled") || strings.Contains(got, "<#D0123DM>") {
		t.Fatalf("notice %q", got)
	}
	if c := eng.Cancels(); len(c) != 1 || !strings.Contains(c[0], "direct message") {
		t.Fatalf("cancels %v; want the reason recorded", c)
	}
}

func TestBotNotInChannel(t *testing.T) {
	h, eng := newHandlerHarness(t)
	eng.notifier = h.bot
	h.startWorker()
	h.slack.AddChannel("C9", "secret", false)
	r := h.command("U1", "C9", "new Grafana")
	if !strings.Contains(r.Text, "Run #1 started") {
		t.Fatalf("reply %q", r.Text)
	}
	calls := h.waitCalls("the private notice", func(c []slacktest.Call) bool { return countMethod(c, slacktest.MethodResponseURL) == 1 })
	if got := responseTexts(calls)[0]; !strings.Contains(got, "I can't post in <#C9>") || !strings.Contains(got, "/invite @ssobot") {
		t.Fatalf("notice %q", got)
	}
	cancels := eng.Cancels()
	if len(cancels) != 1 || !strings.HasPrefix(cancels[0], "1|"+workflow.SystemActor+"|") {
		t.Fatalf("cancels %v; want run 1 cancelled by the system", cancels)
	}
	// The cancellation's own change posts nothing more. The worker is FIFO:
	// once a later run's message is up, the cancelled run was handled.
	h.bot.RunChanged(context.Background(), eng.run(1), []workflow.Event{{RunID: 1, Seq: 9, Type: workflow.EventCancelled}})
	marker := awaiting(99, 1)
	eng.put(marker)
	h.bot.RunChanged(context.Background(), marker, nil)
	calls = h.waitCalls("the marker run", func(c []slacktest.Call) bool { return len(rootPosts(c)) == 1 })
	for _, c := range calls {
		if c.Method == "chat.postMessage" && c.Param("channel") == "C9" && c.Error == "" {
			t.Fatalf("posted in C9 after all: %s", c)
		}
	}
	if n := len(h.slack.Calls("chat.postMessage")); n != 2 {
		t.Fatalf("%d chat.postMessage calls; want the failed one and the marker\n%s", n, callList(h.slack.Calls()))
	}
}

// TestBotRootRefused: any error that retrying cannot change (here a
// workspace setting that keeps apps from posting) cancels the run and tells
// the requester why, as not being in the channel does.
func TestBotRootRefused(t *testing.T) {
	for _, tt := range []struct {
		code, notice string
		posts        int // refused blocks are tried again as the compact card
	}{
		{"restricted_action", "Slack refused my message in <#C1> (`restricted_action`)", 1},
		{"restricted_action_read_only_channel", "Slack refused my message in <#C1> (`restricted_action_read_only_channel`)", 1},
		// Not the channel's fault: no advice to pick another one.
		{"invalid_blocks", "a fault of ssobot or its Slack app", 2},
		{"missing_scope", "a fault of ssobot or its Slack app", 1},
	} {
		code := tt.code
		t.Run(code, func(t *testing.T) {
			h, eng := newHandlerHarness(t)
			eng.notifier = h.bot
			h.startWorker()
			h.slack.FailNext("chat.postMessage", tt.posts, code)
			if r := h.command("U1", "C1", "new Grafana"); !strings.Contains(r.Text, "Run #1 started") {
				t.Fatalf("reply %q", r.Text)
			}
			calls := h.waitCalls("the private notice", func(c []slacktest.Call) bool { return countMethod(c, slacktest.MethodResponseURL) == 1 })
			if got := responseTexts(calls)[0]; !strings.Contains(got, tt.notice) || !strings.Contains(got, "run #1 (Grafana)") || !strings.Contains(got, "was cancelled") {
				t.Errorf("notice %q; want it to say %q", got, tt.notice)
			}
			cancels := eng.Cancels()
			if len(cancels) != 1 || !strings.HasPrefix(cancels[0], "1|"+workflow.SystemActor+"|") || !strings.Contains(cancels[0], code) {
				t.Errorf("cancels %v; want run 1 cancelled by the system, naming %s", cancels, code)
			}
			if n := countMethod(h.slack.Calls(), "chat.postMessage"); n != tt.posts {
				t.Errorf("%d chat.postMessage calls; want the %d refused", n, tt.posts)
			}
		})
	}
}

func TestBotNotInChannelWithoutResponseURLUsesDM(t *testing.T) {
	h, eng := newHandlerHarness(t)
	h.startWorker()
	h.slack.AddChannel("C9", "secret", false)
	run := awaiting(8, 1)
	run.Request.Channel = "C9"
	eng.put(run)
	h.bot.RunChanged(context.Background(), run, nil)
	calls := h.waitCalls("a DM", func(c []slacktest.Call) bool {
		for _, m := range okCalls(c, "chat.postMessage") {
			if m.Param("channel") == "U1" {
				return true
			}
		}
		return false
	})
	if n := len(okCalls(calls, "chat.postEphemeral")); n != 0 {
		t.Fatalf("ephemeral in a channel the bot is not in succeeded?")
	}
	if c := eng.Cancels(); len(c) != 1 {
		t.Fatalf("cancels %v", c)
	}
}

func TestCatchUpOnStart(t *testing.T) {
	h, eng := newHandlerHarness(t)
	api := slack.New(h.slack.BotToken(), slack.OptionAPIURL(h.slack.APIURL()))
	_, oldTS, err := api.PostMessage("C1", slack.MsgOptionText("old", false))
	if err != nil {
		t.Fatal(err)
	}
	open := awaiting(1, 4) // never posted (e.g. a crash right after Start)
	finished := sampleRun("", "", workflow.StateSucceeded)
	finished.ID, finished.MessageRef = 2, "C1|"+oldTS
	noMessage := sampleRun(workflow.StepPreflight, workflow.StepFailed, workflow.StateFailed)
	noMessage.ID = 3 // finished without a message: left alone
	for _, r := range []*workflow.Run{open, finished, noMessage} {
		eng.put(r)
	}
	h.startWorker()
	calls := h.waitCalls("catch-up", func(c []slacktest.Call) bool {
		return len(rootPosts(c)) == 2 && len(okCalls(c, "chat.update")) == 1
	})
	if up := okCalls(calls, "chat.update")[0]; up.Param("ts") != oldTS {
		t.Fatalf("updated %s", up)
	}
	if r := eng.run(1); r.MessageRef == "" {
		t.Fatal("the open run's message ref was not stored")
	}
	if r := eng.run(3); r.MessageRef != "" {
		t.Fatal("a finished run without a message got one")
	}
}

func TestRunFlushesOnShutdown(t *testing.T) {
	h, eng := newHandlerHarness(t)
	run := awaiting(4, 1)
	eng.put(run)
	h.bot.RunChanged(context.Background(), run, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.bot.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := len(rootPosts(h.slack.Calls())); n != 1 {
		t.Fatalf("%d root posts after shutdown; want the queued one delivered\n%s\n%s", n, callList(h.slack.Calls()), h.logBuf.String())
	}
}

func TestRunNeedsAnEngine(t *testing.T) {
	h := newHarness(t, nil)
	if err := h.bot.Run(context.Background()); err == nil {
		t.Fatal("Run without an engine did not fail")
	}
}

func TestRunChangedNeverBlocks(t *testing.T) {
	h := newHarness(t, nil) // no worker: nothing drains the queue
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 5000 {
			h.bot.RunChanged(context.Background(), awaiting(int64(i%50+1), uint64(i)), []workflow.Event{{Seq: uint64(i), Type: workflow.EventNote}})
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("RunChanged blocked")
	}
	if n := h.bot.queue.pending(); n != 50 {
		t.Fatalf("%d runs queued; want 50 (coalesced)", n)
	}
	for i := range maxQueuedEvents + 50 {
		h.bot.RunChanged(context.Background(), awaiting(1000, 1), []workflow.Event{{Seq: uint64(i + 1), Type: workflow.EventNote}})
	}
	h.bot.queue.mu.Lock()
	defer h.bot.queue.mu.Unlock()
	if it := h.bot.queue.items[1]; len(it.events) != 100 || it.run.Version != 4950 {
		t.Fatalf("run 1 holds %d events, version %d; want 100 and the newest", len(it.events), it.run.Version)
	}
	if it := h.bot.queue.items[1000]; len(it.events) != maxQueuedEvents || it.dropped != 50 || it.events[0].Seq != 51 {
		t.Fatalf("run 1000 holds %d events, dropped %d; want the newest %d", len(it.events), it.dropped, maxQueuedEvents)
	}
}

// TestCatchUpPostsUndeliveredOutcome: the process stopped after a run ended
// but before its outcome reached the thread; the next start posts it, with
// the requester mentioned, once.
func TestCatchUpPostsUndeliveredOutcome(t *testing.T) {
	h, eng := newHandlerHarness(t)
	api := slack.New(h.slack.BotToken(), slack.OptionAPIURL(h.slack.APIURL()))
	_, rootTS, err := api.PostMessage("C1", slack.MsgOptionText("run 2", false))
	if err != nil {
		t.Fatal(err)
	}
	finished := sampleRun("", "", workflow.StateSucceeded)
	finished.ID, finished.MessageRef = 2, "C1|"+rootTS
	eng.put(finished)
	eng.mu.Lock()
	eng.events = map[int64][]workflow.Event{2: {
		{RunID: 2, Seq: 9, Type: workflow.EventStepSucceeded, Step: workflow.StepVerify, Message: "verified"},
		{RunID: 2, Seq: 10, Type: workflow.EventSucceeded, Message: "the login method is ready"},
	}}
	eng.mu.Unlock()
	// With its context already done, Run catches up, flushes and returns.
	stopped, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.bot.Run(stopped); err != nil {
		t.Fatal(err)
	}
	mentioned := false
	for _, m := range h.slack.Thread("C1", rootTS) {
		mentioned = mentioned || (m.TS != rootTS && strings.Contains(m.Text, "<@"+finished.Request.RequestedBy+">"))
	}
	if !mentioned {
		t.Fatalf("no outcome reply mentioning the requester:\n%s", callList(h.slack.Calls()))
	}
	if d := eng.run(2).Delivered; d != 10 {
		t.Errorf("Delivered = %d, want 10", d)
	}
	if replies := len(h.slack.Thread("C1", rootTS)) - 1; replies != 1 {
		t.Errorf("%d thread replies, want only the outcome", replies)
	}

	// A second start finds nothing left to post.
	again, err := New(h.bot.cfg)
	if err != nil {
		t.Fatal(err)
	}
	again.Attach(eng)
	before := len(h.slack.Thread("C1", rootTS))
	if err := again.Run(stopped); err != nil {
		t.Fatal(err)
	}
	if after := len(h.slack.Thread("C1", rootTS)); after != before {
		t.Errorf("the outcome was posted again: %d replies, was %d", after, before)
	}
}

// TestGateCallRecordedOnceOpen: the reply calling the approvers of a gate
// still open is recorded as delivered (one write), so that a restart knows
// it was posted; a call whose gate was decided by the time it was posted
// needs no record.
func TestGateCallRecordedOnceOpen(t *testing.T) {
	decided := sampleRun(workflow.StepAuthentikProvider, workflow.StepRunning, workflow.StateRunning)
	decided.ID, decided.Version = 7, 4
	// The engine's run past the gate, numbered below the snapshot so that
	// the worker's catch-up (which queues the engine's open runs) does not
	// replace the snapshot being delivered.
	decidedBehind := decided.Clone()
	decidedBehind.Version = 2
	opened := []workflow.Event{
		{RunID: 7, Seq: 2, Type: workflow.EventPlanned},
		{RunID: 7, Seq: 3, Type: workflow.EventGateOpened, Step: workflow.GateAuthentik}}
	for _, tt := range []struct {
		name          string
		snapshot, now *workflow.Run // the one delivered, the engine's when the call is posted
		events        []workflow.Event
		refused       bool // Slack refuses the call for good (restricted_action)
		want          uint64
	}{
		{name: "gate open", snapshot: awaiting(7, 3), now: awaiting(7, 3), events: opened, want: 3},
		{name: "reminder", snapshot: awaiting(7, 3), now: awaiting(7, 3), want: 4,
			events: append(slices.Clone(opened), workflow.Event{RunID: 7, Seq: 4, Type: workflow.EventGateReminder, Step: workflow.GateAuthentik})},
		{name: "gate decided before the delivery", snapshot: decided, now: decided, events: opened, want: 0},
		{name: "gate decided while the call was posted", snapshot: awaiting(7, 3), now: decidedBehind, events: opened, want: 0},
		{name: "call refused", snapshot: awaiting(7, 3), now: awaiting(7, 3), events: opened, refused: true, want: 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, eng := newHandlerHarness(t)
			run := tt.snapshot
			eng.put(tt.now)
			if tt.refused {
				h.slack.PassNext("chat.postMessage", 2) // the root and the plan's reply
				h.slack.FailNext("chat.postMessage", 1, "restricted_action")
			}
			h.bot.RunChanged(context.Background(), run, tt.events)
			// With its context already done, Run delivers what is queued and returns.
			stopped, cancel := context.WithCancel(context.Background())
			cancel()
			if err := h.bot.Run(stopped); err != nil {
				t.Fatal(err)
			}
			taken := len(tt.events) // the replies Slack took
			if tt.refused {
				taken--
			}
			if calls := h.slack.Calls(); len(rootPosts(calls)) != 1 || len(replies(calls)) != taken {
				t.Fatalf("want the root message and %d replies:\n%s", taken, callList(calls))
			}
			if d := eng.run(7).Delivered; d != tt.want {
				t.Errorf("Delivered = %d, want %d", d, tt.want)
			}
			writes := slices.DeleteFunc(eng.Calls(), func(c string) bool { return c != "SetDelivered" })
			if len(writes) != min(int(tt.want), 1) {
				t.Errorf("%d SetDelivered writes; want %d", len(writes), min(int(tt.want), 1))
			}
		})
	}
}

// TestCatchUpPostsUnrecordedGateCall: the process stopped after a gate
// opened, before its call to the approvers was recorded as posted; the next
// start calls them (again), once, and not for a call recorded.
func TestCatchUpPostsUnrecordedGateCall(t *testing.T) {
	for _, tt := range []struct {
		name      string
		delivered uint64
		closed    bool // the channel was taken off SSOBOT_CHANNELS: the reply would call no one
		calls     int  // replies calling the approver, after each start
		replies   int  // thread replies in all, after both starts
	}{
		{name: "not recorded", delivered: 0, calls: 1, replies: 1},
		{name: "recorded", delivered: 4, calls: 0, replies: 0},
		{name: "channel closed", delivered: 0, closed: true, calls: 0, replies: 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h, eng := newHandlerHarness(t, func(c *Config) {
				if tt.closed {
					c.AllowedChannels = []string{"C9"}
				}
			})
			api := slack.New(h.slack.BotToken(), slack.OptionAPIURL(h.slack.APIURL()))
			_, rootTS, err := api.PostMessage("C1", slack.MsgOptionText("run 2", false))
			if err != nil {
				t.Fatal(err)
			}
			r := awaiting(2, 5)
			r.MessageRef, r.Delivered = "C1|"+rootTS, tt.delivered
			eng.put(r)
			eng.mu.Lock()
			eng.events = map[int64][]workflow.Event{2: {
				{RunID: 2, Seq: 2, Type: workflow.EventPlanned, Message: "planned"},
				{RunID: 2, Seq: 3, Type: workflow.EventStepSucceeded, Step: workflow.StepPreflight, Message: "checked"},
				{RunID: 2, Seq: 4, Type: workflow.EventGateOpened, Step: workflow.GateAuthentik, Message: "waiting"},
			}}
			eng.mu.Unlock()
			stopped, cancel := context.WithCancel(context.Background())
			cancel()
			for start := range 2 {
				b := h.bot
				if start > 0 {
					if b, err = New(h.bot.cfg); err != nil {
						t.Fatal(err)
					}
					b.Attach(eng)
				}
				if err := b.Run(stopped); err != nil {
					t.Fatal(err)
				}
				calls := 0
				for _, m := range h.slack.Thread("C1", rootTS) {
					if m.TS != rootTS && strings.Contains(m.Text, "<@U2>") {
						calls++
					}
				}
				if calls != tt.calls {
					t.Errorf("start %d: %d replies calling the approver; want %d", start+1, calls, tt.calls)
				}
			}
			if n := len(h.slack.Thread("C1", rootTS)) - 1; n != tt.replies {
				t.Errorf("%d thread replies after two starts; want %d", n, tt.replies)
			}
			writes := slices.DeleteFunc(eng.Calls(), func(c string) bool { return c != "SetDelivered" })
			if len(writes) != tt.calls {
				t.Errorf("%d SetDelivered writes; want %d", len(writes), tt.calls)
			}
		})
	}
}

// TestDeliveryNeverGivesUp: a Slack outage longer than the backoff's
// ramp does not drop a run's update, which may be the message with its
// buttons: it is posted once Slack answers again.
func TestDeliveryNeverGivesUp(t *testing.T) {
	h, eng := newHandlerHarness(t)
	run := awaiting(7, 3)
	eng.put(run)
	h.slack.FailNext("chat.postMessage", 3*deliveryLoudAfter, "service_unavailable")
	h.startWorker()
	h.bot.RunChanged(context.Background(), run, []workflow.Event{
		{RunID: 7, Seq: 2, Type: workflow.EventPlanned},
		{RunID: 7, Seq: 3, Type: workflow.EventGateOpened, Step: workflow.GateAuthentik}})
	// The thread replies follow the root and the storing of its reference.
	calls := h.waitCalls("the root message and replies after the outage", func(c []slacktest.Call) bool { return len(rootPosts(c)) == 1 && len(replies(c)) == 2 })
	if n := countMethod(calls, "chat.postMessage"); n <= 3*deliveryLoudAfter {
		t.Errorf("%d chat.postMessage calls; want the %d failures and then the root", n, 3*deliveryLoudAfter)
	}
	if r := eng.run(7); r.MessageRef == "" {
		t.Error("the run's message reference was not stored")
	}
}

// TestCatchUpAfterRetriedRun: a run that failed (its outcome delivered),
// was retried and succeeded, with the process stopped before the success
// reached Slack, gets its message and outcome brought up to date at the
// next start.
func TestCatchUpAfterRetriedRun(t *testing.T) {
	h, eng := newHandlerHarness(t)
	api := slack.New(h.slack.BotToken(), slack.OptionAPIURL(h.slack.APIURL()))
	_, rootTS, err := api.PostMessage("C1", slack.MsgOptionText("run 2 failed", false))
	if err != nil {
		t.Fatal(err)
	}
	r := sampleRun("", "", workflow.StateSucceeded)
	r.ID, r.MessageRef, r.Delivered = 2, "C1|"+rootTS, 4
	eng.put(r)
	eng.mu.Lock()
	eng.events = map[int64][]workflow.Event{2: {
		{RunID: 2, Seq: 4, Type: workflow.EventFailed, Message: "failed"},
		{RunID: 2, Seq: 5, Type: workflow.EventRetried, Message: "retried"},
		{RunID: 2, Seq: 9, Type: workflow.EventSucceeded, Message: "the login method is ready"},
	}}
	eng.mu.Unlock()
	stopped, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.bot.Run(stopped); err != nil {
		t.Fatal(err)
	}
	if n := len(okCalls(h.slack.Calls(), "chat.update")); n != 1 {
		t.Errorf("%d chat.update calls; want the root brought up to date", n)
	}
	if d := eng.run(2).Delivered; d != 9 {
		t.Errorf("Delivered = %d, want 9", d)
	}
}

// The worker forgets a run once it has delivered it finished, so that it
// does not remember every run it ever posted; a retried run is picked up
// again from its message reference, without a second root message.
func TestDeliveryForgetsFinishedRuns(t *testing.T) {
	h, _, run := newDeliveryTest(t)
	h.startWorker()
	waitTracked := func(want int64) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for h.bot.tracked.Load() != want {
			select {
			case <-deadline:
				t.Fatalf("the worker remembers %d runs, want %d", h.bot.tracked.Load(), want)
			default:
				runtime.Gosched()
			}
		}
	}
	h.bot.RunChanged(context.Background(), run, nil)
	calls := h.waitCalls("the root message", func(c []slacktest.Call) bool { return len(rootPosts(c)) == 1 })
	ts := resultTS(rootPosts(calls)[0])
	waitTracked(1)

	failed := run.Clone()
	failed.Version, failed.State, failed.MessageRef = 4, workflow.StateFailed, "C1|"+ts
	failed.Error = "authentik: create provider: 400"
	h.bot.RunChanged(context.Background(), failed, []workflow.Event{{RunID: 42, Seq: 4, Type: workflow.EventFailed, Message: failed.Error}})
	h.waitCalls("the failure", func(c []slacktest.Call) bool { return len(okCalls(c, "chat.update")) == 1 })
	waitTracked(0)

	retried := failed.Clone()
	retried.Version, retried.State, retried.Error = 6, workflow.StateRunning, ""
	h.bot.RunChanged(context.Background(), retried, []workflow.Event{{RunID: 42, Seq: 5, Type: workflow.EventStepStarted, Step: workflow.StepAuthentikProvider}})
	calls = h.waitCalls("the retry", func(c []slacktest.Call) bool { return len(okCalls(c, "chat.update")) == 2 })
	if n := len(rootPosts(calls)); n != 1 {
		t.Fatalf("%d root messages after the retry, want 1 (the first, edited)\n%s", n, callList(calls))
	}
	if up := okCalls(calls, "chat.update")[1]; up.Param("ts") != ts {
		t.Fatalf("the retry edited %s, want the run's message %s", up.Param("ts"), ts)
	}
}

// TestApproverCall: the reply for an open gate, and its reminder, mention
// who may decide it (and has not approved it yet), since editing the run's
// message notifies no one.
func TestApproverCall(t *testing.T) {
	many := make([]string, 12)
	for i := range many {
		many[i] = fmt.Sprintf("U%02d", i+10)
	}
	tests := []struct {
		name   string
		users  []string
		groups []string
		self   bool
		// approvals already given, of the open gate unless noted
		approvals []workflow.Approval
		want      string
	}{
		{"users, not the requester", []string{"U1", "U2", "U3"}, nil, false, nil, "\nApprovers: <@U2> <@U3>"},
		{"the requester when self-approval is on", []string{"U1", "U2"}, nil, true, nil, "\nApprovers: <@U1> <@U2>"},
		{"groups first", []string{"U2"}, []string{"S1ABC"}, false, nil, "\nApprovers: <!subteam^S1ABC> <@U2>"},
		{"only the requester listed", []string{"U1"}, nil, false, nil, ""},
		{"not those who approved this gate", []string{"U2", "U3", "U4", "U5"}, nil, false, []workflow.Approval{
			{Gate: workflow.GateAuthentik, User: "U2", Decision: workflow.Approve},
			{Gate: workflow.GateAuthentik, User: "U3", Decision: workflow.Approve, Lapsed: true},
			{Gate: workflow.GateCloudflare, User: "U4", Decision: workflow.Approve},
			{Gate: workflow.GateAuthentik, User: "U5", Decision: workflow.Approve, SetAside: true},
		}, "\nApprovers: <@U3> <@U4> <@U5>"},
		{"everyone approved", []string{"U2"}, []string{"S1ABC"}, false, []workflow.Approval{
			{Gate: workflow.GateAuthentik, User: "U2", Decision: workflow.Approve},
		}, "\nApprovers: <!subteam^S1ABC>"},
		{"a long list is cut", many, nil, false, nil, "\nApprovers: " + strings.Join(func() []string {
			var m []string
			for _, u := range many[:10] {
				m = append(m, "<@"+u+">")
			}
			return m
		}(), " ") + " and 2 more"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &Bot{cfg: Config{ApproverUsers: tt.users, ApproverGroups: tt.groups, AllowSelfApproval: tt.self}}
			run := awaiting(1, 1)
			run.Approvals = tt.approvals
			if got := b.approverCall(run, workflow.GateAuthentik); got != tt.want {
				t.Errorf("approverCall = %q; want %q", got, tt.want)
			}
		})
	}
}

// TestReminderCallsThoseWhoHaveNotApproved: the reminder of a gate is a
// thread reply that calls the approvers again, except those whose approval
// of the gate already counts.
func TestReminderCallsThoseWhoHaveNotApproved(t *testing.T) {
	h, eng := newHandlerHarness(t, func(c *Config) { c.ApproverUsers, c.ApprovalsRequired = []string{"U2", "U3"}, 2 })
	h.startWorker()
	run := awaiting(5, 1)
	eng.put(run)
	h.bot.RunChanged(context.Background(), run, []workflow.Event{{RunID: 5, Seq: 3, Type: workflow.EventGateOpened, Step: workflow.GateAuthentik}})
	h.waitCalls("the gate's reply", func(c []slacktest.Call) bool { return len(replies(c)) == 1 })

	approved := run.Clone()
	approved.Version = 2
	approved.Approvals = []workflow.Approval{{Gate: workflow.GateAuthentik, User: "U2", Decision: workflow.Approve, At: t0}}
	eng.put(approved)
	h.bot.RunChanged(context.Background(), approved, []workflow.Event{{RunID: 5, Seq: 5, Type: workflow.EventGateReminder, Step: workflow.GateAuthentik, Data: map[string]string{"missing": "1"}}})
	calls := h.waitCalls("the reminder", func(c []slacktest.Call) bool { return len(replies(c)) == 2 })
	opened, reminder := replies(calls)[0].Param("text"), replies(calls)[1].Param("text")
	if !strings.Contains(opened, "Approvers: <@U2> <@U3>") {
		t.Errorf("gate reply %q; want both approvers called", opened)
	}
	if !strings.Contains(reminder, "Still waiting for approval") || !strings.HasSuffix(reminder, "\nApprovers: <@U3>") {
		t.Errorf("reminder %q; want it to call U3 only", reminder)
	}
}

// TestRefusedBlocksFallBackToACompactMessage: when Slack refuses the run's
// message for its blocks (invalid, or too long), the run still gets a
// message with its gate's buttons, on the first post and on an update
// (else the old buttons, which the engine refuses, would stay).
func TestRefusedBlocksFallBackToACompactMessage(t *testing.T) {
	h, eng, run := newDeliveryTest(t)
	h.slack.FailNext("chat.postMessage", 1, "msg_blocks_too_long")
	h.bot.RunChanged(context.Background(), run, nil)
	h.startWorker()
	calls := h.waitCalls("a root message", func(c []slacktest.Call) bool { return len(rootPosts(c)) == 1 })
	ts := resultTS(rootPosts(calls)[0])
	msg, ok := h.slack.Message("C1", ts)
	if !ok || len(msg.Buttons()) != 2 || !strings.Contains(msg.Text, "SSO setup #42") {
		t.Fatalf("root message %+v; want the compact card with the gate's buttons", msg)
	}
	// The next gate: the full update is refused, the compact one carries
	// the new gate's buttons.
	next := run.Clone()
	next.Version = 9
	for i := range next.Steps {
		if next.Steps[i].Name == workflow.GateCloudflare {
			next.Steps[i].Status, next.Steps[i].Nonce = workflow.StepWaiting, "nonce-cloudflare"
			break
		}
		next.Steps[i].Status = workflow.StepSucceeded
	}
	next.MessageRef = "C1|" + ts
	h.slack.FailNext("chat.update", 1, "invalid_blocks")
	h.bot.RunChanged(context.Background(), next, nil)
	h.waitCalls("the compact update", func(c []slacktest.Call) bool { return len(okCalls(c, "chat.update")) == 1 })
	msg, _ = h.slack.Message("C1", ts)
	if bs := msg.Buttons(); len(bs) != 2 || !strings.Contains(bs[0].Value, "cloudflare") {
		t.Fatalf("after the refused update, buttons %+v; want the Cloudflare gate's", bs)
	}
	// The worker stored the reference before it went on to the update.
	if got := eng.run(42); got.State != workflow.StateAwaitingApproval || got.MessageRef != "C1|"+ts {
		t.Fatalf("run %s, message %q; want it waiting (not cancelled), on the compact message", got.State, got.MessageRef)
	}
	if !strings.Contains(h.logBuf.String(), "Slack refused the run's message") {
		t.Error("the refusal was not logged")
	}
}

// TestPermanent: failed Slack calls worth no retry are told from the rest.
func TestPermanent(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"rate limited", &slack.RateLimitedError{RetryAfter: time.Second}, false},
		{"server error", slack.StatusCodeError{Code: 502, Status: "502 Bad Gateway"}, false},
		{"client error", slack.StatusCodeError{Code: 404, Status: "404 Not Found"}, true},
		{"redirect not followed", fmt.Errorf("post: %w", &workflow.RedirectError{Status: 302}), true},
		{"network", context.DeadlineExceeded, false},
		{"slack fatal_error", slack.SlackErrorResponse{Err: "fatal_error"}, false},
		{"slack channel_not_found", slack.SlackErrorResponse{Err: "channel_not_found"}, true},
	}
	for _, tt := range tests {
		if got := permanent(tt.err); got != tt.want {
			t.Errorf("%s: permanent(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}
