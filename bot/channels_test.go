package bot

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/ssobot/ssobot/bot/slacktest"
	"github.com/ssobot/ssobot/workflow"
)

// startedIn starts a run in channel ch through the engine, as a bot whose
// SSOBOT_CHANNELS allowed ch would have (before a restart with another
// list), and waits for its first gate.
func (e *e2e) startedIn(ctx context.Context, ch string) *workflow.Run {
	e.t.Helper()
	run, err := e.engine.Start(ctx, workflow.Request{ApplicationName: "Grafana", RequestedBy: "U1", Channel: ch})
	if err != nil {
		e.t.Fatal(err)
	}
	return e.waitRun(ctx, run.ID, "the gate", func(r *workflow.Run) bool { return r.OpenGate() != nil })
}

// expiredIn is startedIn with the gate left to expire; it returns the run
// once the bot has delivered the expiry, so that nothing else writes it.
func (e *e2e) expiredIn(ctx context.Context, ch string) *workflow.Run {
	e.t.Helper()
	return e.expire(ctx, e.startedIn(ctx, ch))
}

// expire lets the open gate of run r expire and returns the run once the
// bot has delivered the expiry.
func (e *e2e) expire(ctx context.Context, r *workflow.Run) *workflow.Run {
	e.t.Helper()
	if err := e.engClock.WaitForTimerAt(ctx, r.OpenGate().Deadline); err != nil {
		e.t.Fatal("no timer for the deadline")
	}
	e.engClock.Advance(r.OpenGate().Deadline.Sub(e.engClock.Now()))
	return e.waitRun(ctx, r.ID, "the expiry, delivered", func(r *workflow.Run) bool {
		if r.State != workflow.StateExpired || r.Delivered == 0 {
			return false
		}
		evs, err := e.engine.Events(ctx, r.ID)
		return err == nil && len(evs) > 0 && evs[len(evs)-1].Seq == r.Delivered
	})
}

// waitRun polls the engine until run id satisfies pred.
func (e *e2e) waitRun(ctx context.Context, id int64, what string, pred func(*workflow.Run) bool) *workflow.Run {
	e.t.Helper()
	for {
		r, err := e.engine.Get(ctx, id)
		if err == nil && pred(r) {
			return r
		}
		select {
		case <-ctx.Done():
			e.t.Fatalf("waiting for %s of run #%d: %v (last error %v)", what, id, ctx.Err(), err)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// answer sends a slash command and returns the private answer it gets
// through its response URL (cancel and retry answer there).
func (e *e2e) answer(user, channel, text string) string {
	e.t.Helper()
	before := countMethod(e.slack.Calls(), slacktest.MethodResponseURL)
	e.command(user, channel, text)
	calls := e.waitCalls("the answer to "+text, func(c []slacktest.Call) bool { return countMethod(c, slacktest.MethodResponseURL) > before })
	return responseTexts(calls)[before]
}

// newChannelE2E is the end-to-end setup of these tests: SSOBOT_CHANNELS
// set to allowed (none: unset), C2 a private channel an earlier list
// allowed, gates open 24 hours with the given reminder, and a context for
// the test's waits.
func newChannelE2E(t *testing.T, allowed []string, reminder time.Duration) (*e2e, context.Context) {
	t.Helper()
	e := newE2EWith(t, func(c *workflow.Config) { c.ApprovalTTL, c.ApprovalReminder = 24*time.Hour, reminder },
		func(c *Config) { c.AllowedChannels = allowed })
	e.slack.AddChannel("C2", "old-sso", true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return e, ctx
}

// channelCase is a run started in runIn under the list allowed, closed
// when the list no longer names runIn.
type channelCase struct {
	name    string
	allowed []string
	runIn   string
	closed  bool
}

// channelCases: a run in a listed channel, in one taken off the list, and
// with no list set.
var channelCases = []channelCase{
	{name: "allowed channel", allowed: []string{"C1"}, runIn: "C1"},
	{name: "removed channel", allowed: []string{"C1"}, runIn: "C2", closed: true},
	{name: "no list set", runIn: "C2"},
}

// TestRetryInRemovedChannel: `retry` of an expired run whose channel
// SSOBOT_CHANNELS no longer lists (the bot restarted with a new list) is
// refused privately, saying where runs may be started instead, and leaves
// the run exactly as it was; where the channel is listed, or no list is
// set, the retry opens the gate again.
func TestRetryInRemovedChannel(t *testing.T) {
	refusal := []string{
		":no_entry: Run #1 was not retried: runs may no longer be started or resumed in ",
		", and ssobot starts runs only in <#C1> or <#C3>. To set it up again, type `/sso-setup new &lt;application name&gt;` there.",
	}
	// What `status 1` answers where the refusal was asked for.
	const (
		statusHere  = " `/sso-setup status 1` still works and shows what run #1 created, if anything: delete that by hand before a new run uses the same names."
		statusThere = " Ask in the channel of run #1 what it created, if anything (`/sso-setup status 1` shows it there): delete that by hand before a new run uses the same names."
	)
	tests := []struct {
		name          string
		allowed       []string
		runIn         string
		user, typedIn string
		want          []string // in the answer
		notWant       []string
		retried       bool
	}{
		{name: "allowed channel", allowed: []string{"C1", "C3"}, runIn: "C1", user: "U1", typedIn: "C1",
			want: []string{"of run #1 is open again"}, retried: true},
		{name: "removed channel", allowed: []string{"C1", "C3"}, runIn: "C2", user: "U1", typedIn: "C2",
			want: append(refusal, "resumed in <#C2>, and", statusHere)},
		// An expired run cannot be cancelled: the answer does not offer it.
		{name: "removed channel, expired run not offered a cancel", allowed: []string{"C1", "C3"}, runIn: "C2", user: "U2", typedIn: "D2",
			want: append(refusal, "resumed in <#C2>, and", statusHere), notWant: []string{"cancel"}},
		// The run's channel may be private: someone who may not see the
		// run from where they ask is not told which it is, nor that
		// status works there.
		{name: "removed channel, asked by a bystander elsewhere", allowed: []string{"C1", "C3"}, runIn: "C2", user: "U3", typedIn: "C1",
			want: append(refusal, "resumed in the channel of run #1, and", statusThere), notWant: []string{"C2", "still works"}},
		{name: "removed channel, asked by a bystander there", allowed: []string{"C1", "C3"}, runIn: "C2", user: "U3", typedIn: "C2",
			want: append(refusal, "resumed in <#C2>, and", statusHere)},
		{name: "no list set", runIn: "C2", user: "U1", typedIn: "C2",
			want: []string{"of run #1 is open again"}, retried: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, ctx := newChannelE2E(t, tt.allowed, 0)
			before := e.expiredIn(ctx, tt.runIn)
			eventsBefore, err := e.engine.Events(ctx, before.ID)
			if err != nil {
				t.Fatal(err)
			}

			got := e.answer(tt.user, tt.typedIn, "retry 1")
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("answer lacks %q:\n%s", w, got)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(got, w) {
					t.Errorf("answer has %q:\n%s", w, got)
				}
			}
			if bad := bareControl(got); bad != "" {
				t.Errorf("answer has a bare < or >: %q", bad)
			}

			after, err := e.engine.Get(ctx, before.ID)
			if err != nil {
				t.Fatal(err)
			}
			if tt.retried {
				if after.State != workflow.StateAwaitingApproval {
					t.Fatalf("run is %s after the retry; want %s", after.State, workflow.StateAwaitingApproval)
				}
				return
			}
			// Refused: not a field of the run changed, and the engine was
			// not asked (it would have logged a refusal).
			if !reflect.DeepEqual(after, before) {
				t.Errorf("run changed by a refused retry:\nbefore %+v\nafter  %+v", before, after)
			}
			eventsAfter, err := e.engine.Events(ctx, before.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(eventsAfter, eventsBefore) {
				t.Errorf("events changed by a refused retry: %d before, %d after", len(eventsBefore), len(eventsAfter))
			}
			// Status answers as the refusal says, typed where it was.
			r := e.command(tt.user, tt.typedIn, "status 1")
			if strings.Contains(got, statusHere) != strings.Contains(r.Text, "Grafana") {
				t.Errorf("status typed in %s: %q; the refusal said %q", tt.typedIn, r.Text, got)
			}
		})
	}
}

// TestRetryInRemovedChannelByState: in a channel SSOBOT_CHANNELS no longer
// lists, only the retry of a failed or expired run, which the engine would
// act on, is refused for the channel; a retry of a run in any other state
// goes to the engine and gets its answer, not advice to set up again and
// delete by hand what may be a working setup.
func TestRetryInRemovedChannelByState(t *testing.T) {
	h, eng := newHandlerHarness(t, func(c *Config) { c.AllowedChannels = []string{"C1"} })
	h.slack.AddChannel("C2", "old-sso", true)
	retries := func() int {
		n := 0
		for _, c := range eng.Calls() {
			if c == "Retry" {
				n++
			}
		}
		return n
	}
	for i, st := range workflow.States {
		r := sampleRun(workflow.GateAuthentik, workflow.StepWaiting, st)
		r.ID, r.Request.Channel = int64(i+1), "C2"
		eng.put(r)
		t.Run(string(st), func(t *testing.T) {
			retriesBefore, before := retries(), countMethod(h.slack.Calls(), slacktest.MethodResponseURL)
			h.command("U1", "C2", fmt.Sprintf("retry %d", r.ID))
			calls := h.waitCalls("the answer", func(c []slacktest.Call) bool { return countMethod(c, slacktest.MethodResponseURL) > before })
			got, asked := responseTexts(calls)[before], retries() > retriesBefore
			if st.Retryable() {
				if want := fmt.Sprintf(":no_entry: Run #%d was not retried: runs may no longer be started or resumed in <#C2>", r.ID); !strings.HasPrefix(got, want) || asked {
					t.Errorf("answer %q (engine asked: %v); want %q… without asking the engine", got, asked, want)
				}
				return
			}
			if want := fmt.Sprintf(":no_entry: Run #%d %s; only failed or expired runs can be retried.", r.ID, stateVerb(st)); got != want || !asked {
				t.Errorf("answer %q (engine asked: %v); want the engine's %q", got, asked, want)
			}
		})
	}
}

// rootIn waits for a root message posted in channel ch to satisfy pred.
func (e *e2e) rootIn(ch, what string, pred func(slacktest.Message) bool) slacktest.Message {
	e.t.Helper()
	var msg slacktest.Message
	e.waitCalls(what, func(calls []slacktest.Call) bool {
		for _, c := range rootPosts(calls) {
			if m, ok := e.slack.Message(ch, resultTS(c)); ok && pred(m) {
				msg = m
				return true
			}
		}
		return false
	})
	return msg
}

// hasRejectFor matches by the Reject button, which the card of a run in a
// removed channel keeps.
func hasRejectFor(gate workflow.StepName) func(slacktest.Message) bool {
	return hasActionFor(ActionReject, gate)
}

// clickOldAs clicks, as user, a button the card showed before the bot
// restarted with a shorter SSOBOT_CHANNELS (Slack clients may still show
// it): Approve has the value of Reject, which the card keeps.
func (e *e2e) clickOldAs(m slacktest.Message, action, user string) string {
	e.t.Helper()
	a, err := e.slack.ClickButton(m.Channel, m.TS, ActionReject, user)
	if err != nil {
		e.t.Fatalf("click %s as %s: %v", action, user, err)
	}
	a.ActionID, a.Text, a.TeamID = action, action, e.slack.TeamID()
	return e.postInteraction([]byte(slacktest.BlockActionsPayload(a).Encode()))
}

// TestClickInRemovedChannel: an Approve click on the card of a run whose
// channel SSOBOT_CHANNELS no longer lists is refused privately, as a retry
// is, though the gate was opened before; the run does not change and can
// still be ended, by Reject or cancel. Where the channel is listed, or no
// list is set, the click counts.
func TestClickInRemovedChannel(t *testing.T) {
	const endsRun = "Approvers can still end the run with Reject, and the requester or an approver with `/sso-setup cancel 1`."
	tests := []struct {
		name    string
		allowed []string
		runIn   string
		action  string
		user    string // who clicks; U2, an approver, if ""
		want    string // in the answer
		refused bool
	}{
		{name: "approve, allowed channel", allowed: []string{"C1"}, runIn: "C1", action: ActionApprove,
			want: "You approved *Approval to create the authentik provider and application* of run #1."},
		{name: "approve, removed channel", allowed: []string{"C1"}, runIn: "C2", action: ActionApprove, refused: true,
			want: ":no_entry: Your approval of run #1 was not recorded: runs may no longer be started or resumed in <#C2>, and ssobot starts runs only in <#C1>. " + endsRun},
		// Neither Reject nor cancel is the bystander's: the answer says
		// whose they are.
		{name: "approve by a bystander, removed channel", allowed: []string{"C1"}, runIn: "C2", action: ActionApprove, user: "U3", refused: true,
			want: ":no_entry: Your approval of run #1 was not recorded: runs may no longer be started or resumed in <#C2>, and ssobot starts runs only in <#C1>. " + endsRun},
		{name: "reject, removed channel", allowed: []string{"C1"}, runIn: "C2", action: ActionReject,
			want: "You rejected *Approval to create the authentik provider and application* of run #1."},
		{name: "approve, no list set", runIn: "C2", action: ActionApprove,
			want: "You approved *Approval to create the authentik provider and application* of run #1."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, ctx := newChannelE2E(t, tt.allowed, 0)
			e.startedIn(ctx, tt.runIn)
			card := e.rootIn(tt.runIn, "the gate", hasRejectFor(workflow.GateAuthentik))
			// Once the card is recorded nothing else writes the run.
			before := e.waitRun(ctx, 1, "the card recorded", func(r *workflow.Run) bool { return r.MessageRef != "" })
			eventsBefore, err := e.engine.Events(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}

			var got string
			user := cmp.Or(tt.user, "U2")
			if _, ok := card.Button(tt.action); ok {
				got, _ = e.clickAs(card, tt.action, user)
			} else {
				// The card offers no Approve any more (see
				// TestCardInRemovedChannel): a click on it as it was
				// before the restart.
				got = e.clickOldAs(card, tt.action, user)
			}
			if !strings.Contains(got, tt.want) {
				t.Fatalf("answer %q; want %q", got, tt.want)
			}
			if bad := bareControl(got); bad != "" {
				t.Errorf("answer has a bare < or >: %q", bad)
			}
			after, err := e.engine.Get(ctx, 1)
			if err != nil {
				t.Fatal(err)
			}
			if !tt.refused {
				if len(after.Approvals) != 1 {
					t.Fatalf("approvals after the click: %+v", after.Approvals)
				}
				return
			}
			if !reflect.DeepEqual(after, before) {
				t.Errorf("run changed by a refused click:\nbefore %+v\nafter  %+v", before, after)
			}
			if eventsAfter, err := e.engine.Events(ctx, 1); err != nil || !reflect.DeepEqual(eventsAfter, eventsBefore) {
				t.Errorf("events changed by a refused click (%v): %d before, %d after", err, len(eventsBefore), len(eventsAfter))
			}
			// A retry of the open run gets the engine's answer (it is
			// not one the engine acts on), and cancel still ends it; so
			// does a retry of the cancelled run.
			if got := e.answer("U1", "C2", "retry 1"); got != ":no_entry: Run #1 is waiting for approval; only failed or expired runs can be retried." {
				t.Errorf("retry answer %q", got)
			}
			if got := e.answer("U1", "C2", "cancel 1"); got != ":heavy_minus_sign: Run #1 is cancelled." {
				t.Errorf("cancel answer %q", got)
			}
			if got := e.answer("U1", "C2", "retry 1"); got != ":no_entry: Run #1 was cancelled; only failed or expired runs can be retried." {
				t.Errorf("retry answer after the cancel %q", got)
			}
		})
	}
}

// TestCardInRemovedChannel: the card of a run whose channel SSOBOT_CHANNELS
// no longer lists offers only Reject at its open gate, which is all that
// would be accepted, and says why and how the run still ends; where the
// channel is listed, or no list is set, it offers Approve and Reject.
func TestCardInRemovedChannel(t *testing.T) {
	const why = ":no_entry: This gate can no longer be approved: runs may no longer be started or resumed in <#C2>, and ssobot starts runs only in <#C1>. Approvers can still end the run with Reject, and the requester or an approver with `/sso-setup cancel 1`."
	for _, tt := range channelCases {
		t.Run(tt.name, func(t *testing.T) {
			e, ctx := newChannelE2E(t, tt.allowed, 0)
			e.startedIn(ctx, tt.runIn)
			card := e.rootIn(tt.runIn, "the gate", hasRejectFor(workflow.GateAuthentik))
			var actions []string
			for _, b := range card.Buttons() {
				actions = append(actions, b.ActionID)
			}
			want := []string{ActionApprove, ActionReject}
			if tt.closed {
				want = []string{ActionReject}
			}
			if !reflect.DeepEqual(actions, want) {
				t.Errorf("card's buttons %v; want %v", actions, want)
			}
			if got := blockText(cardBlocks(t, card), "gate_closed"); tt.closed && got != why || !tt.closed && got != "" {
				t.Errorf("card's explanation %q; want %q", got, map[bool]string{true: why}[tt.closed])
			}
			if bad := bareControl(card.PlainText()); bad != "" {
				t.Errorf("card has a bare < or >: %q", bad)
			}
			if !tt.closed {
				return
			}
			// The Reject it offers ends the run.
			if got, _ := e.clickAs(card, ActionReject, "U2"); !strings.Contains(got, "You rejected") {
				t.Fatalf("reject answer %q", got)
			}
			e.waitRun(ctx, 1, "the rejection", func(r *workflow.Run) bool { return r.State == workflow.StateRejected })
			e.rootIn(tt.runIn, "the card without buttons", func(m slacktest.Message) bool {
				return m.TS == card.TS && len(m.Buttons()) == 0 && strings.Contains(m.Text, "Rejected")
			})
		})
	}
}

// cardBlocks decodes a message's blocks as blockText reads them.
func cardBlocks(t *testing.T, m slacktest.Message) []map[string]any {
	t.Helper()
	var blocks []map[string]any
	if err := json.Unmarshal(m.BlocksJSON, &blocks); err != nil {
		t.Fatal(err)
	}
	return blocks
}

// TestCompactCardInRemovedChannel: the compact card, shown when Slack
// refuses the full one, offers no Approve either on a run that may not go on.
func TestCompactCardInRemovedChannel(t *testing.T) {
	r := sampleRun(workflow.GateAuthentik, workflow.StepWaiting, workflow.StateAwaitingApproval)
	for _, closed := range []string{"", "runs may no longer be started or resumed in <#C2>, and ssobot starts runs only in <#C1>."} {
		var actions []string
		text := ""
		for _, blk := range renderCompact(r, true, closed) {
			switch b := blk.(type) {
			case *slack.ActionBlock:
				for _, el := range b.Elements.ElementSet {
					actions = append(actions, el.(*slack.ButtonBlockElement).ActionID)
				}
			case *slack.SectionBlock:
				if b.BlockID == "gate_closed" {
					text = b.Text.Text
				}
			}
		}
		want := []string{ActionApprove, ActionReject}
		if closed != "" {
			want = []string{ActionReject}
		}
		if !reflect.DeepEqual(actions, want) || (closed != "") != strings.Contains(text, closed+" Approvers can still end the run with Reject, and the requester or an approver with `/sso-setup cancel 42`.") {
			t.Errorf("closed %q: buttons %v, explanation %q", closed, actions, text)
		}
	}
}

// TestGateRepliesInRemovedChannel: in the thread of a run whose channel
// SSOBOT_CHANNELS no longer lists, the replies that open a gate and remind
// of it do not call the approvers to approve what would be refused: they
// call the requester, saying why the gate can no longer be approved and how
// the run ends. Where the channel is listed, or no list is set, they ask
// the approvers.
func TestGateRepliesInRemovedChannel(t *testing.T) {
	const closed = "<@U1> %s *Approval to create the authentik provider and application* can no longer be approved: runs may no longer be started or resumed in <#C2>, and ssobot starts runs only in <#C1>. It expires <!date^"
	// The requester may not Reject their own run: only cancel is offered.
	const tail = ", and the run ends with it. To end it now, type `/sso-setup cancel 1` in the channel."
	for _, tt := range channelCases {
		t.Run(tt.name, func(t *testing.T) {
			e, ctx := newChannelE2E(t, tt.allowed, 6*time.Hour)
			r := e.startedIn(ctx, tt.runIn)
			card := e.rootIn(tt.runIn, "the gate", hasRejectFor(workflow.GateAuthentik))
			g := r.OpenGate()
			if err := e.engClock.WaitForTimer(ctx, g.RemindAt.Sub(e.engClock.Now())); err != nil {
				t.Fatal("no timer for the reminder")
			}
			e.engClock.Advance(g.RemindAt.Sub(e.engClock.Now()))
			calls := e.waitCalls("the reminder", func(c []slacktest.Call) bool {
				for _, r := range replies(c) {
					if strings.Contains(r.Param("text"), ":hourglass_flowing_sand:") {
						return true
					}
				}
				return false
			})
			var planned, opened, reminder string
			for _, r := range replies(calls) {
				if r.Param("thread_ts") != card.TS {
					continue
				}
				switch text := r.Param("text"); {
				case strings.Contains(text, ":clipboard:"):
					planned = text
				case strings.Contains(text, ":raised_hand:"):
					opened = text
				case strings.Contains(text, ":hourglass_flowing_sand:"):
					reminder = text
				}
			}
			// The plan is not said to be ready for an approval.
			if want := map[bool]string{false: ":clipboard: Preflight passed: the plan is ready for approval.\n", true: ":clipboard: Preflight passed: the plan is ready.\n"}[tt.closed]; !strings.HasPrefix(planned, want) {
				t.Errorf("plan reply %q; want %q", planned, want)
			}
			for _, c := range []struct{ what, got, emoji, open string }{
				{"gate opened", opened, ":raised_hand:", ":raised_hand: Waiting for approval: *Approval to create the authentik provider and application*, expires <!date^"},
				{"reminder", reminder, ":hourglass_flowing_sand:", ":hourglass_flowing_sand: Still waiting for approval: *Approval to create the authentik provider and application*. It expires <!date^"},
			} {
				if bad := bareControl(c.got); bad != "" {
					t.Errorf("%s reply has a bare < or >: %q", c.what, bad)
				}
				if !tt.closed {
					if !strings.HasPrefix(c.got, c.open) || !strings.HasSuffix(c.got, "\nApprovers: <@U2>") {
						t.Errorf("%s reply %q; want %q… calling U2", c.what, c.got, c.open)
					}
					continue
				}
				if want := fmt.Sprintf(closed, c.emoji); !strings.HasPrefix(c.got, want) || !strings.HasSuffix(c.got, tail) {
					t.Errorf("%s reply %q; want %q…%q", c.what, c.got, want, tail)
				}
				if strings.Contains(c.got, "Approvers:") || strings.Contains(c.got, "<@U2>") {
					t.Errorf("%s reply calls the approvers: %q", c.what, c.got)
				}
				if strings.Contains(c.got, "Reject") {
					t.Errorf("%s reply offers the requester a Reject: %q", c.what, c.got)
				}
			}
		})
	}
}

// TestRetryHintsInRemovedChannel: the thread replies saying that a run
// failed or expired, and the answer to a Reject click on a gate that
// expired, tell to type `retry`; for a run whose channel SSOBOT_CHANNELS no
// longer lists, which would refuse that retry, they give the refusal's
// advice instead: start a new run where runs may be, and delete by hand
// what this one created.
func TestRetryHintsInRemovedChannel(t *testing.T) {
	const advice = "It cannot be retried: runs may no longer be started or resumed in <#C2>, and ssobot starts runs only in <#C1>. To set it up again, type `/sso-setup new &lt;application name&gt;` there. `/sso-setup status 1` still works and shows what run #1 created, if anything: delete that by hand before a new run uses the same names."
	check := func(t *testing.T, what, got, retry string, closed bool) {
		t.Helper()
		if bad := bareControl(got); bad != "" {
			t.Errorf("%s has a bare < or >: %q", what, bad)
		}
		if closed {
			if !strings.HasSuffix(got, advice) || strings.Contains(got, "retry 1") || strings.Contains(got, "A retry") {
				t.Errorf("%s %q; want it to end with %q and offer no retry", what, got, advice)
			}
			return
		}
		if !strings.Contains(got, retry) || strings.Contains(got, "It cannot be retried") {
			t.Errorf("%s %q; want %q", what, got, retry)
		}
	}
	for _, tt := range channelCases {
		t.Run(tt.name+", expired", func(t *testing.T) {
			e, ctx := newChannelE2E(t, tt.allowed, 0)
			r := e.startedIn(ctx, tt.runIn)
			card := e.rootIn(tt.runIn, "the gate", hasRejectFor(workflow.GateAuthentik))
			// The engine's driver stops, as in a restart, and the
			// deadline passes without it expiring the gate: a Reject
			// click finds the gate expired, and expires it.
			e.stopEng()
			e.engClock.Advance(r.OpenGate().Deadline.Sub(e.engClock.Now()))
			got, _ := e.clickAs(card, ActionReject, "U2")
			var reply string
			e.waitCalls("the expiry reply", func(calls []slacktest.Call) bool {
				for _, c := range replies(calls) {
					if text := c.Param("text"); c.Param("thread_ts") == card.TS && strings.Contains(text, ":alarm_clock:") {
						reply = text
						return true
					}
				}
				return false
			})
			e.startEngine(e.engCfg) // for the cleanup, which stops it
			check(t, "expiry reply", reply, "run #1 has ended. To ask again, type `/sso-setup retry 1` in the channel.", tt.closed)
			if !strings.Contains(got, "of run #1 expired <!date^") {
				t.Fatalf("answer to the late Reject %q", got)
			}
			check(t, "answer to the late Reject", got, " To ask again, type `/sso-setup retry 1` in the channel.", tt.closed)
		})
		t.Run(tt.name+", failed", func(t *testing.T) {
			e := newE2EWith(t, nil, func(c *Config) { c.AllowedChannels = tt.allowed })
			e.slack.AddChannel("C2", "old-sso", true)
			// Preflight fails: the authorization flow is missing.
			e.ak.DeleteFlow("default-provider-authorization-explicit-consent")
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := e.engine.Start(ctx, workflow.Request{ApplicationName: "Grafana", RequestedBy: "U1", Channel: tt.runIn}); err != nil {
				t.Fatal(err)
			}
			var reply string
			e.waitCalls("the failure reply", func(calls []slacktest.Call) bool {
				for _, c := range replies(calls) {
					if text := c.Param("text"); strings.HasPrefix(text, "<@U1> :x: Run #1 failed: ") {
						reply = text
						return true
					}
				}
				return false
			})
			check(t, "failure reply", reply, "Fix the cause, then type `/sso-setup retry 1` in the channel. A retry keeps", tt.closed)
		})
	}
}

// TestOutcomeInRemovedChannelSaysWhatIsLeft: the failure and expiry
// replies of a run whose channel SSOBOT_CHANNELS no longer lists list what
// it created without saying a retry reuses it.
func TestOutcomeInRemovedChannelSaysWhatIsLeft(t *testing.T) {
	r := sampleRun(workflow.GateCloudflare, workflow.StepWaiting, workflow.StateFailed)
	r.Resources = workflow.Resources{AuthentikProviderID: 5}
	const closed = "runs may no longer be started or resumed in <#C1>, and ssobot starts runs only in <#C9>."
	for _, typ := range []workflow.EventType{workflow.EventFailed, workflow.EventGateExpired} {
		got, ok := eventText(r, workflow.Event{Type: typ, Step: workflow.GateCloudflare, Message: "x"}, links{}, closed)
		want := "It cannot be retried: " + closed + startAgainText(42, "/sso-setup", true) +
			"\nLeft in place, since ssobot deletes nothing; delete them by hand before a new run uses the same names:\n• authentik provider <https://auth.example.com/if/admin/#/core/providers/5|#5>"
		if !ok || !strings.HasSuffix(got, want) {
			t.Errorf("%s reply %q; want it to end with %q", typ, got, want)
		}
	}
}
