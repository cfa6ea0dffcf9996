package bot

// Hostile input and unauthorized people, end to end: every test here goes
// through the signed HTTP handlers into the real engine and bbolt store, with
// fakes of Slack, authentik and Cloudflare, and asserts what Slack was sent,
// the run's state and the run's audit log.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ssobot/ssobot/bot/slacktest"
	"github.com/ssobot/ssobot/workflow"
	"github.com/ssobot/ssobot/workflow/authentik/authentiktest"
	"github.com/ssobot/ssobot/workflow/cloudflare/cloudflaretest"
)

// postRaw sends a body signed at ts and returns the status and the answer.
func (e *e2e) postRaw(path string, body []byte, ts time.Time) (int, string) {
	e.t.Helper()
	req := slacktest.SignedRequest(e.http.URL+path, testSecret, body, ts)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(out)
}

// interact posts a signed interaction body, waits for the work it started
// off the request path and returns the status and the private answers
// (response_url posts) sent meanwhile.
func (e *e2e) interact(body []byte) (int, []string) {
	e.t.Helper()
	before := len(e.slack.Calls(slacktest.MethodResponseURL))
	status, _ := e.postRaw("/slack/interactions", body, e.clock.Now())
	e.bot.wg.Wait()
	return status, responseTexts(e.slack.Calls(slacktest.MethodResponseURL))[before:]
}

// control runs a slash command whose answer comes later (cancel, retry) and
// returns that answer.
func (e *e2e) control(user, text string) string {
	e.t.Helper()
	before := len(e.slack.Calls(slacktest.MethodResponseURL))
	e.command(user, "C1", text)
	e.bot.wg.Wait()
	got := responseTexts(e.slack.Calls(slacktest.MethodResponseURL))[before:]
	if len(got) != 1 {
		e.t.Fatalf("%q as %s: %d private answers %q; want 1", text, user, len(got), got)
	}
	return got[0]
}

// rootOf waits until the latest root message posted for run id satisfies
// pred and returns it.
func (e *e2e) rootOf(id int64, what string, pred func(slacktest.Message) bool) slacktest.Message {
	e.t.Helper()
	prefix := fmt.Sprintf("SSO setup #%d for ", id)
	var msg slacktest.Message
	e.waitCalls(what, func(calls []slacktest.Call) bool {
		var ts string
		for _, c := range rootPosts(calls) {
			if strings.HasPrefix(c.Param("text"), prefix) {
				ts = resultTS(c)
			}
		}
		if ts == "" {
			return false
		}
		m, ok := e.slack.Message("C1", ts)
		if ok && pred(m) {
			msg = m
			return true
		}
		return false
	})
	return msg
}

// gateOf waits until run id's root message shows the buttons of gate and
// its thread says so, which the worker posts only after it stored the
// message's reference on the run: from then on clicks are checked against it.
func (e *e2e) gateOf(id int64, gate workflow.StepName) slacktest.Message {
	e.t.Helper()
	m := e.rootOf(id, fmt.Sprintf("run %d at gate %s", id, gate), hasButtonFor(gate))
	e.replyIn(m, "Waiting for approval: *"+StepLabel(gate)+"*")
	return m
}

// replyIn waits for a reply containing text in the thread of root.
func (e *e2e) replyIn(root slacktest.Message, text string) {
	e.t.Helper()
	e.waitCalls("a reply saying "+text, func(c []slacktest.Call) bool {
		for _, r := range replies(c) {
			if r.Param("thread_ts") == root.TS && strings.Contains(r.Param("text"), text) {
				return true
			}
		}
		return false
	})
}

func textHas(s string) func(slacktest.Message) bool {
	return func(m slacktest.Message) bool { return strings.Contains(m.Text, s) }
}

func (e *e2e) run(id int64) *workflow.Run {
	e.t.Helper()
	r, err := e.engine.Get(context.Background(), id)
	if err != nil {
		e.t.Fatalf("get run %d: %v", id, err)
	}
	return r
}

// events returns run id's audit events of type typ by actor.
func (e *e2e) events(id int64, typ workflow.EventType, actor string) []workflow.Event {
	e.t.Helper()
	evs, err := e.engine.Events(context.Background(), id)
	if err != nil {
		e.t.Fatalf("events of run %d: %v", id, err)
	}
	var out []workflow.Event
	for _, ev := range evs {
		if (typ == "" || ev.Type == typ) && (actor == "" || ev.Actor == actor) {
			out = append(out, ev)
		}
	}
	return out
}

// clickOn is the click of user on action of message m carrying value,
// whatever the message's own buttons say.
func (e *e2e) clickOn(m slacktest.Message, action, user, value string) slacktest.BlockAction {
	return slacktest.BlockAction{UserID: user, TeamID: e.slack.TeamID(), ChannelID: m.Channel, MessageTS: m.TS,
		ActionID: action, BlockID: BlockGate, Value: value, ResponseURL: e.slack.NewResponseURLFor(m.Channel, m.TS, user)}
}

func body(a slacktest.BlockAction) []byte { return []byte(slacktest.BlockActionsPayload(a).Encode()) }

func buttonValue(t *testing.T, m slacktest.Message) string {
	t.Helper()
	b, ok := m.Button(ActionApprove)
	if !ok {
		t.Fatalf("message %s has no Approve button", m.TS)
	}
	return b.Value
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

func TestClickOnAnotherRunsMessageIsRefused(t *testing.T) {
	e := newE2E(t)
	e.slack.AddChannel("C2", "other", true)
	e.command("U1", "C1", "new Grafana")
	e.command("U1", "C1", "new Jira")
	rootA := e.gateOf(1, workflow.GateAuthentik)
	rootB := e.gateOf(2, workflow.GateAuthentik)
	valueB := buttonValue(t, rootB)
	replyA := e.slack.Thread("C1", rootA.TS)[1] // the first reply in run 1's thread

	const refusal = ":no_entry: This button does not belong to run #2's message."
	tests := []struct {
		name  string
		click slacktest.BlockAction
		// answer is the private answer; "" when the click carries no
		// response URL and no channel, so no answer is possible.
		answer string
	}{
		{"run 2's value on run 1's message", e.clickOn(rootA, ActionApprove, "U2", valueB), refusal},
		{"run 2's value rejecting on run 1's message", e.clickOn(rootA, ActionReject, "U2", valueB), refusal},
		{"run 2's value on a reply in run 1's thread", func() slacktest.BlockAction {
			a := e.clickOn(replyA, ActionApprove, "U2", valueB)
			a.ThreadTS = rootA.TS
			return a
		}(), refusal},
		{"run 2's value on its own ts in another channel", func() slacktest.BlockAction {
			a := e.clickOn(rootB, ActionApprove, "U2", valueB)
			a.ChannelID = "C2"
			return a
		}(), refusal},
		{"from an ephemeral message", func() slacktest.BlockAction {
			a := e.clickOn(rootB, ActionApprove, "U2", valueB)
			a.IsEphemeral, a.MessageTS = true, "1700000000.000999"
			return a
		}(), refusal},
		{"from an ephemeral message claiming the root's ts", func() slacktest.BlockAction {
			a := e.clickOn(rootB, ActionApprove, "U2", valueB)
			a.IsEphemeral = true
			return a
		}(), refusal},
		{"from no message at all (a modal)", slacktest.BlockAction{UserID: "U2", TeamID: e.slack.TeamID(), ViewID: "V123",
			ActionID: ActionApprove, BlockID: BlockGate, Value: valueB}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(e.events(2, workflow.EventDecisionRefused, "U2"))
			status, answers := e.interact(body(tt.click))
			if status != http.StatusOK {
				t.Fatalf("status %d", status)
			}
			switch {
			case tt.answer == "" && len(answers) != 0:
				t.Fatalf("answers %q; want none", answers)
			case tt.answer != "" && (len(answers) != 1 || answers[0] != tt.answer):
				t.Fatalf("answers %q; want %q", answers, tt.answer)
			}
			for _, id := range []int64{1, 2} {
				if r := e.run(id); r.State != workflow.StateAwaitingApproval || len(r.Approvals) != 0 {
					t.Fatalf("run %d changed: %s %+v", id, r.State, r.Approvals)
				}
			}
			refused := e.events(2, workflow.EventDecisionRefused, "U2")
			if len(refused) != before+1 || !strings.Contains(refused[len(refused)-1].Message, "does not belong to run #2's message") {
				t.Fatalf("audit log of run 2 has %d refusals by U2 (was %d): %+v", len(refused), before, refused)
			}
			if n := len(e.events(1, workflow.EventDecisionRefused, "")); n != 0 {
				t.Fatalf("run 1's audit log has %d refusals; the click was for run 2", n)
			}
		})
	}

	// The same value on run 2's own message is accepted.
	if got, _ := e.clickAs(rootB, ActionApprove, "U2"); !strings.Contains(got, "You approved") {
		t.Fatalf("click on run 2's own message: %q", got)
	}
	if r := e.run(2); len(r.Approvals) != 1 || r.Approvals[0].User != "U2" {
		t.Fatalf("run 2 approvals %+v", r.Approvals)
	}
	if r := e.run(1); r.State != workflow.StateAwaitingApproval || len(r.Approvals) != 0 {
		t.Fatalf("run 1 changed: %s %+v", r.State, r.Approvals)
	}
}

// TestAuthorizationMatrix tries every action of every kind of person who
// must not take it, then the people who may.
func TestAuthorizationMatrix(t *testing.T) {
	e := newE2E(t, func(c *Config) {
		c.ApproverUsers = []string{"U1", "U2", "UDEL", "UBOT"}
		c.ApproverGroups = []string{"S1"}
	})
	for _, u := range []slacktest.User{
		{ID: "U5", Name: "grouped"},
		{ID: "U6", Name: "asker"},
		{ID: "UDEL", Name: "gone", Deleted: true},
		{ID: "UBOT", Name: "robot", IsBot: true},
	} {
		e.slack.AddUser(u)
	}
	// U5 is in the approver group, but a free workspace cannot list groups.
	e.slack.AddUserGroup("S1", "U5")
	e.slack.SetUserGroupsUnavailable(true)
	e.ak.AddApplication(authentiktest.Application{Name: "Taken by hand", Slug: "taken"})

	e.command("U1", "C1", "new Grafana") // 1: U1, an approver, asks
	e.command("U6", "C1", "new Jira")    // 2: U6, not an approver, asks
	e.command("U1", "C1", "new Taken slug=taken")
	e.command("U1", "C1", "new Wiki")
	gate1 := e.gateOf(1, workflow.GateAuthentik)
	gate2 := e.gateOf(2, workflow.GateAuthentik)
	e.replyIn(e.rootOf(3, "run 3 to fail", textHas("Failed")), "Run #3 failed") // the slug is taken
	gate4 := e.gateOf(4, workflow.GateAuthentik)
	gates := map[int64]slacktest.Message{1: gate1, 2: gate2, 4: gate4}

	const (
		notApprover = "you are not an approver: ask <@U1>, <@U2>, <@UDEL>, <@UBOT> or a member of <!subteam^S1>"
		control     = "only the requester or an approver may do that: "
	)
	type cell struct {
		actor, action string
		run           int64
		want          string // in the private answer, any case
	}
	var refused []cell
	for _, a := range []struct{ actor, why string }{
		{"U3", notApprover},
		{"UDEL", "deactivated Slack accounts cannot approve"},
		{"UBOT", "bots cannot approve"},
		{"U5", notApprover},
	} {
		refused = append(refused,
			cell{a.actor, ActionApprove, 1, a.why},
			cell{a.actor, ActionReject, 1, a.why},
			cell{a.actor, "cancel", 1, control + a.why},
			cell{a.actor, "retry", 3, control + a.why},
		)
	}
	refused = append(refused,
		cell{"U1", ActionApprove, 1, "you requested run #1, so another approver must decide"},
		cell{"U1", ActionReject, 1, "you requested run #1, so another approver must decide"},
		cell{"U6", ActionApprove, 2, notApprover},
		cell{"U6", ActionReject, 2, notApprover},
	)
	eventOf := map[string]workflow.EventType{ActionApprove: workflow.EventDecisionRefused, ActionReject: workflow.EventDecisionRefused,
		"cancel": workflow.EventCancelRefused, "retry": workflow.EventRetryRefused}

	for _, c := range refused {
		t.Run(fmt.Sprintf("%s %s run %d refused", c.actor, c.action, c.run), func(t *testing.T) {
			was := e.run(c.run)
			before := len(e.events(c.run, eventOf[c.action], c.actor))
			var got string
			switch c.action {
			case "cancel", "retry":
				got = e.control(c.actor, fmt.Sprintf("%s %d", c.action, c.run))
			default:
				got, _ = e.clickAs(gates[c.run], c.action, c.actor)
			}
			if !strings.HasPrefix(got, ":no_entry: ") || !containsFold(got, c.want) {
				t.Fatalf("answer %q; want a refusal saying %q", got, c.want)
			}
			if now := e.run(c.run); now.State != was.State || now.Version != was.Version || len(now.Approvals) != len(was.Approvals) {
				t.Fatalf("run %d changed: %s v%d -> %s v%d", c.run, was.State, was.Version, now.State, now.Version)
			}
			evs := e.events(c.run, eventOf[c.action], c.actor)
			if len(evs) != before+1 {
				t.Fatalf("%d %s events by %s in run %d's audit log; want %d", len(evs), eventOf[c.action], c.actor, c.run, before+1)
			}
			if last := evs[len(evs)-1]; !strings.Contains(last.Message, "refused") || !containsFold(last.Message, c.want) {
				t.Fatalf("audit event %q does not say why", last.Message)
			}
		})
	}

	// Nobody was asked twice: refusals changed no message's buttons.
	if m, _ := e.slack.Message("C1", gate1.TS); len(m.Buttons()) != 2 {
		t.Fatalf("run 1's message lost its buttons after refusals")
	}

	allowed := []struct {
		name, actor, action string
		run                 int64
		answer              string
		event               workflow.EventType
		state               workflow.State // "": only check the event
	}{
		{"an approver approves", "U2", ActionApprove, 1, "You approved", workflow.EventDecisionAccepted, ""},
		{"an approver rejects", "U2", ActionReject, 4, "You rejected", workflow.EventDecisionAccepted, workflow.StateRejected},
		{"the requester cancels", "U6", "cancel", 2, "Run #2 is cancelled", workflow.EventCancelled, workflow.StateCancelled},
		{"an approver cancels", "U2", "cancel", 1, "Run #1 is cancelled", workflow.EventCancelled, workflow.StateCancelled},
		{"the requester retries", "U1", "retry", 3, "Run #3 is running again", workflow.EventRetried, ""},
	}
	for _, a := range allowed {
		t.Run(a.name, func(t *testing.T) {
			var got string
			switch a.action {
			case "cancel", "retry":
				got = e.control(a.actor, fmt.Sprintf("%s %d", a.action, a.run))
			default:
				got, _ = e.clickAs(gates[a.run], a.action, a.actor)
			}
			if !strings.Contains(got, a.answer) {
				t.Fatalf("answer %q; want %q", got, a.answer)
			}
			if n := len(e.events(a.run, a.event, a.actor)); n != 1 {
				t.Fatalf("%d %s events by %s; want 1", n, a.event, a.actor)
			}
			if a.state != "" {
				if r := e.run(a.run); r.State != a.state {
					t.Fatalf("run %d is %s; want %s", a.run, r.State, a.state)
				}
			}
		})
	}

	// Refusals stay in the audit log: none reached a thread.
	for _, c := range replies(e.slack.Calls()) {
		if containsFold(c.Param("text"), "refused") || containsFold(c.Param("text"), "not an approver") {
			t.Fatalf("a refusal reached a thread: %s", c)
		}
	}
}

func TestHostileRequests(t *testing.T) {
	e := newE2E(t)
	e.command("U1", "C1", "new Grafana")
	root := e.gateOf(1, workflow.GateAuthentik)
	value := buttonValue(t, root)

	// padded is form, padded with an unknown field to exactly n bytes.
	padded := func(form url.Values, n int) []byte {
		base := len(form.Encode()) + len("&pad=")
		form.Set("pad", strings.Repeat("x", n-base))
		b := []byte(form.Encode())
		if len(b) != n {
			t.Fatalf("padded body is %d bytes; want %d", len(b), n)
		}
		return b
	}
	command := func(user, text string) url.Values {
		return slacktest.SlashCommandForm(e.slack.NewSlashCommand("/sso-setup", text, user, "C1"))
	}
	// withBytes puts raw bytes where marker is in a form's payload JSON:
	// encoding/json would replace invalid UTF-8 before it reached the bot.
	withBytes := func(payload json.RawMessage, marker, raw string) []byte {
		return []byte(url.Values{"payload": {strings.Replace(string(payload), marker, raw, 1)}}.Encode())
	}
	click := e.clickOn(root, ActionApprove, "U2", value)
	clickBadUTF8 := e.clickOn(root, ActionApprove, "U2", value)
	clickBadUTF8.UserName = "MARK"
	view := slacktest.ViewSubmission{UserID: "U1", TeamID: e.slack.TeamID(), ViewID: "V1", CallbackID: ModalCallbackID,
		PrivateMetadata: `{"channel":"C1"}`, Values: map[string]map[string]slacktest.StateValue{
			BlockAppName: {ModalActionValue: {Type: "plain_text_input", Value: "MARK"}}}}
	unknown := e.clickOn(root, "launch_missiles", "U2", value)

	tests := []struct {
		name string
		path string
		body []byte
		// status, and for 200 the answer: the HTTP body for commands, the
		// private answers for interactions.
		status int
		answer string
		// runs is how many runs exist afterwards; approved whether run 1
		// was approved.
		runs     int
		approved bool
	}{
		{"command just over the size limit", "/slack/commands", padded(command("U1", "new Big"), DefaultMaxBodyBytes+1), http.StatusRequestEntityTooLarge, "", 1, false},
		{"command of invalid UTF-8", "/slack/commands", []byte(command("U1", "new Graf\xffana").Encode()), http.StatusOK, "not valid UTF-8", 1, false},
		{"command with an invalid UTF-8 field", "/slack/commands", []byte(func() url.Values {
			f := command("U1", "new Grafana")
			f.Set("user_id", "U\xfe1")
			return f
		}().Encode()), http.StatusOK, "not valid UTF-8", 1, false},
		{"name of letters without a slug", "/slack/commands", []byte(command("U1", "new 日本語").Encode()), http.StatusOK, "No slug can be made from", 1, false},
		{"name of punctuation without a slug", "/slack/commands", []byte(command("U1", "new !!!").Encode()), http.StatusOK, "give one with slug=", 1, false},
		{"command exactly at the size limit", "/slack/commands", padded(command("U1", "new 日本語 slug=nihongo"), DefaultMaxBodyBytes), http.StatusOK, "Run #2 started", 2, false},
		{"click of invalid UTF-8", "/slack/interactions", withBytes(slacktest.BlockActionsJSON(clickBadUTF8), "MARK", "\xc3\x28"), http.StatusOK, "", 2, false},
		{"form of invalid UTF-8", "/slack/interactions", withBytes(slacktest.ViewSubmissionJSON(view), "MARK", "Graf\xffana"), http.StatusOK, "", 2, false},
		{"unknown action", "/slack/interactions", body(unknown), http.StatusOK, "I don't know that action.", 2, false},
		{"run that does not exist", "/slack/interactions", body(e.clickOn(root, ActionApprove, "U2", "99|authentik|x")), http.StatusOK, "There is no run #99.", 2, false},
		{"gate that does not exist", "/slack/interactions", body(e.clickOn(root, ActionApprove, "U2", "1|<!channel>|x")), http.StatusOK, "This button is not one I know", 2, false},
		{"value of another shape", "/slack/interactions", body(e.clickOn(root, ActionApprove, "U2", "1")), http.StatusOK, "This button is not one I know", 2, false},
		{"click just over the size limit", "/slack/interactions", padded(slacktest.BlockActionsPayload(click), DefaultMaxBodyBytes+1), http.StatusRequestEntityTooLarge, "", 2, false},
		{"click exactly at the size limit", "/slack/interactions", padded(slacktest.BlockActionsPayload(click), DefaultMaxBodyBytes), http.StatusOK, "You approved", 2, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			private := len(e.slack.Calls(slacktest.MethodResponseURL, "chat.postEphemeral"))
			answers := len(e.slack.Calls(slacktest.MethodResponseURL))
			status, out := e.postRaw(tt.path, tt.body, e.clock.Now())
			e.bot.wg.Wait()
			if status != tt.status {
				t.Fatalf("status %d; want %d (%s)", status, tt.status, out)
			}
			got := out
			if status != http.StatusOK {
				got = "" // refused before any handling
			} else if tt.path == "/slack/interactions" {
				if strings.TrimSpace(out) != "" {
					t.Fatalf("interaction answered %q on the request path", out)
				}
				got = strings.Join(responseTexts(e.slack.Calls(slacktest.MethodResponseURL))[answers:], "\n")
			}
			switch {
			case tt.answer == "" && got != "":
				t.Fatalf("answered %q; want nothing", got)
			case !strings.Contains(got, tt.answer):
				t.Fatalf("answer %q; want %q", got, tt.answer)
			}
			if tt.answer == "" {
				// Dropped: not even a private answer went to Slack.
				if n := len(e.slack.Calls(slacktest.MethodResponseURL, "chat.postEphemeral")); n != private {
					t.Fatalf("a dropped request was answered")
				}
			}
			if runs, _ := e.engine.List(context.Background(), workflow.ListOptions{}); len(runs) != tt.runs {
				t.Fatalf("%d runs; want %d", len(runs), tt.runs)
			}
			if r := e.run(1); (len(r.Approvals) == 1) != tt.approved {
				t.Fatalf("run 1 approvals %+v; approved want %v", r.Approvals, tt.approved)
			}
		})
	}
	if r := e.run(2); r.Request.ApplicationName != "日本語" || r.Params.ApplicationSlug != "nihongo" {
		t.Fatalf("run 2 %+v", r.Request)
	}
	// Only refusals of real decisions are audited: nothing was refused on
	// run 1, since every hostile click was stopped before the engine.
	if n := len(e.events(1, workflow.EventDecisionRefused, "")); n != 0 {
		t.Fatalf("%d refusals in run 1's audit log", n)
	}
	if n := len(e.events(1, workflow.EventDecisionAccepted, "U2")); n != 1 {
		t.Fatalf("%d accepted decisions; want 1", n)
	}
}

func TestReplays(t *testing.T) {
	tests := []struct {
		name string
		// click: replay a click on run 1's gate; else the command itself.
		click bool
		// after is how long after signing the copy arrives.
		after      time.Duration
		wantStatus int
	}{
		{"command inside the window", false, time.Minute, http.StatusOK},
		{"click inside the window", true, time.Minute, http.StatusOK},
		{"command after the window", false, SignatureWindow + time.Second, http.StatusUnauthorized},
		{"click after the window", true, SignatureWindow + time.Second, http.StatusUnauthorized},
		{"command with its signature in upper case", false, 0, http.StatusUnauthorized},
		{"click with its signature in upper case", true, 0, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newE2E(t)
			signedAt := e.clock.Now()
			body := []byte(slacktest.SlashCommandForm(e.slack.NewSlashCommand("/sso-setup", "new Grafana", "U1", "C1")).Encode())
			path := "/slack/commands"
			if status, out := e.postRaw(path, body, signedAt); status != http.StatusOK || !strings.Contains(out, "Run #1 started") {
				t.Fatalf("first command: %d %q", status, out)
			}
			root := e.gateOf(1, workflow.GateAuthentik)
			if tt.click {
				signedAt = e.clock.Now()
				body, path = []byte(slacktest.BlockActionsPayload(e.clickOn(root, ActionApprove, "U2", buttonValue(t, root))).Encode()), "/slack/interactions"
				if status, _ := e.postRaw(path, body, signedAt); status != http.StatusOK {
					t.Fatalf("first click: %d", status)
				}
				e.bot.wg.Wait()
			}
			answers := len(e.slack.Calls(slacktest.MethodResponseURL))
			e.clock.Advance(tt.after)
			req := slacktest.SignedRequest(e.http.URL+path, testSecret, body, signedAt)
			if strings.Contains(tt.name, "upper case") {
				req.Header.Set(HeaderSignature, "v0="+strings.ToUpper(strings.TrimPrefix(req.Header.Get(HeaderSignature), "v0=")))
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			outb, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			status, out := resp.StatusCode, string(outb)
			e.bot.wg.Wait()
			if status != tt.wantStatus {
				t.Fatalf("replay status %d; want %d (%q)", status, tt.wantStatus, out)
			}
			if status == http.StatusOK && !tt.click && !strings.Contains(out, "already handled") {
				t.Fatalf("replayed command answered %q", out)
			}
			if n := len(e.slack.Calls(slacktest.MethodResponseURL)); n != answers {
				t.Fatalf("the replay was answered privately")
			}
			// One effect only.
			if runs, _ := e.engine.List(context.Background(), workflow.ListOptions{}); len(runs) != 1 {
				t.Fatalf("%d runs; want 1", len(runs))
			}
			wantDecisions := 0
			if tt.click {
				wantDecisions = 1
			}
			if n := len(e.events(1, workflow.EventDecisionAccepted, "")); n != wantDecisions {
				t.Fatalf("%d accepted decisions; want %d", n, wantDecisions)
			}
			if n := len(e.events(1, workflow.EventDecisionRefused, "")); n != 0 {
				t.Fatalf("the replay reached the engine: %d refusals", n)
			}
		})
	}
}

// TestSlackFailuresCatchUp: whatever Slack does to the run's message, the
// run goes on and its root message ends showing every step done.
func TestSlackFailuresCatchUp(t *testing.T) {
	tests := []struct {
		name string
		// before runs before the command; atGate once the root is up.
		before, atGate func(e *e2e, root slacktest.Message)
		method         string // the method that failed
		failures       int
		newRoot        bool // the root is posted again
	}{
		{name: "chat.postMessage fails 3 times", method: "chat.postMessage", failures: 3,
			before: func(e *e2e, _ slacktest.Message) { e.slack.FailNext("chat.postMessage", 3, "internal_error") }},
		{name: "chat.postMessage rate-limited twice", method: "chat.postMessage", failures: 2,
			before: func(e *e2e, _ slacktest.Message) { e.slack.RateLimitNext("chat.postMessage", 2, 3) }},
		{name: "chat.update fails 3 times", method: "chat.update", failures: 3,
			atGate: func(e *e2e, _ slacktest.Message) { e.slack.FailNext("chat.update", 3, "service_unavailable") }},
		{name: "chat.update rate-limited 3 times", method: "chat.update", failures: 3,
			atGate: func(e *e2e, _ slacktest.Message) { e.slack.RateLimitNext("chat.update", 3, 5) }},
		{name: "root deleted mid-run", method: "chat.update", failures: 1, newRoot: true,
			atGate: func(e *e2e, root slacktest.Message) { e.slack.DeleteMessage("C1", root.TS) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newE2E(t)
			if tt.before != nil {
				tt.before(e, slacktest.Message{})
			}
			e.command("U1", "C1", "new Grafana")
			gate1 := e.gateOf(1, workflow.GateAuthentik)
			if tt.atGate != nil {
				tt.atGate(e, gate1)
			}
			// Built from the value, as the click may be in flight on a
			// message deleted meanwhile.
			if _, got := e.interact(body(e.clickOn(gate1, ActionApprove, "U2", buttonValue(t, gate1)))); len(got) != 1 || !strings.Contains(got[0], "You approved") {
				t.Fatalf("first approval: %q", got)
			}
			gate2 := e.gateOf(1, workflow.GateCloudflare)
			if (gate2.TS != gate1.TS) != tt.newRoot {
				t.Fatalf("root %s then %s; new root want %v", gate1.TS, gate2.TS, tt.newRoot)
			}
			if got, _ := e.clickAs(gate2, ActionApprove, "U2"); !strings.Contains(got, "You approved") {
				t.Fatalf("second approval: %q", got)
			}
			final := e.rootOf(1, "the root to show success", textHas("Succeeded"))
			e.replyIn(final, "<@U1> :tada: Run #1 succeeded")

			run := e.run(1)
			if run.State != workflow.StateSucceeded || run.MessageRef != "C1|"+final.TS {
				t.Fatalf("run %s with message %q; want succeeded on C1|%s", run.State, run.MessageRef, final.TS)
			}
			var blocks []map[string]any
			if err := json.Unmarshal(final.BlocksJSON, &blocks); err != nil {
				t.Fatal(err)
			}
			if steps := blockText(blocks, "steps"); strings.Count(steps, ":white_check_mark:") != len(workflow.Plan) {
				t.Fatalf("final root shows %d of %d steps done:\n%s", strings.Count(steps, ":white_check_mark:"), len(workflow.Plan), steps)
			}
			if len(final.Buttons()) != 0 {
				t.Fatalf("buttons left on the final root: %+v", final.Buttons())
			}
			var roots int
			for _, m := range e.slack.Messages("C1") {
				if m.ThreadTS == "" && strings.HasPrefix(m.Text, "SSO setup #1 ") {
					roots++
				}
			}
			if roots != 1 {
				t.Fatalf("%d live root messages for run 1; want 1", roots)
			}
			var failed int
			for _, c := range e.slack.Calls(tt.method) {
				if c.Error != "" || c.Status != http.StatusOK {
					failed++
				}
			}
			if failed != tt.failures {
				t.Fatalf("%d failed %s calls; want %d", failed, tt.method, tt.failures)
			}
		})
	}
}

// TestSecretsStayOut runs whole runs, failing and crashing ones included,
// and looks for every credential wherever the bot writes.
func TestSecretsStayOut(t *testing.T) {
	tests := []struct {
		name  string
		setup func(e *e2e)
		crash bool // crash after the login method call, then restart
		final string
	}{
		{name: "succeeds", final: "Succeeded"},
		{name: "transient authentik errors", final: "Succeeded", setup: func(e *e2e) {
			e.ak.AddFault(authentiktest.Fault{Method: http.MethodPost, PathContains: "/providers/oauth2/", Kind: authentiktest.FaultStatus, Status: 503, Times: 2})
		}},
		{name: "login method refused", final: "Failed", setup: func(e *e2e) {
			e.cf.AddFault(cloudflaretest.Fault{Method: http.MethodPost, PathContains: "identity_providers", Kind: cloudflaretest.FaultStatus, Status: 400})
		}},
		{name: "crash after the login method call", final: "Succeeded", crash: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			crashed := make(chan struct{})
			var hook func(*workflow.Config)
			if tt.crash {
				hook = func(c *workflow.Config) {
					c.CrashHook = func(p workflow.CrashPoint, step workflow.StepName) bool {
						if p == workflow.CrashAfterCall && step == workflow.StepCloudflareLoginMethod {
							close(crashed)
							return true
						}
						return false
					}
				}
			}
			e := newE2EWith(t, hook)
			if tt.setup != nil {
				tt.setup(e)
			}
			e.command("U1", "C1", `new "Secret Wiki" login=authentik`)
			for _, g := range []workflow.StepName{workflow.GateAuthentik, workflow.GateCloudflare} {
				if got, _ := e.clickAs(e.gateOf(1, g), ActionApprove, "U2"); !strings.Contains(got, "You approved") {
					t.Fatalf("approval of %s: %q", g, got)
				}
			}
			if tt.crash {
				select {
				case <-crashed:
				case <-time.After(10 * time.Second):
					t.Fatal("the engine never reached the crash point")
				}
				e.restartEngine()
			}
			e.rootOf(1, "the end", textHas(tt.final))
			status := e.command("U3", "C1", "status 1")
			list := e.command("U3", "C1", "list")

			providers := e.ak.Providers()
			if len(providers) != 1 || providers[0].ClientSecret == "" {
				t.Fatalf("providers %d; want one with a client secret", len(providers))
			}
			clientSecret := providers[0].ClientSecret
			if tt.final == "Succeeded" {
				// The secret did travel, to Cloudflare and nowhere else.
				idps := e.cf.IdentityProviders()
				if len(idps) != 1 || !strings.Contains(fmt.Sprint(idps[0]), clientSecret) {
					t.Fatalf("Cloudflare login methods %d; want one holding the client secret", len(idps))
				}
			}
			run, events := e.run(1), e.events(1, "", "")
			runJSON, _ := json.Marshal(run)
			eventsJSON, _ := json.Marshal(events)
			db, err := os.ReadFile(e.dbPath)
			if err != nil {
				t.Fatal(err)
			}
			places := map[string]string{
				"Slack calls":      slackTraffic(e.slack.Calls()),
				"logs":             e.logBuf.String(),
				"database file":    string(db),
				"run record":       string(runJSON),
				"audit log":        string(eventsJSON),
				"status and list":  fmt.Sprintf("%+v %+v", status, list),
				"run error fields": run.Error + run.LastError(),
			}
			secrets := map[string]string{
				"client secret":        clientSecret,
				"authentik token":      e.ak.Token(),
				"Cloudflare token":     e.cf.Token(),
				"Slack bot token":      e.slack.BotToken(),
				"Slack signing secret": testSecret,
			}
			for where, text := range places {
				for what, secret := range secrets {
					if strings.Contains(text, secret) {
						t.Errorf("the %s is in the %s", what, where)
					}
				}
			}
			if strings.Contains(e.logBuf.String(), "/response/") {
				t.Error("a response URL reached the logs")
			}
		})
	}
}

// slackTraffic is everything the bot sent to Slack and got back, without
// the bearer token each call must carry.
func slackTraffic(calls []slacktest.Call) string {
	var b strings.Builder
	for _, c := range calls {
		j, _ := json.Marshal(c.JSON)
		r, _ := json.Marshal(c.Result)
		fmt.Fprintf(&b, "%s %s %s %s %s\n", c.Method, c.URL, c.Form.Encode(), j, r)
	}
	return b.String()
}
