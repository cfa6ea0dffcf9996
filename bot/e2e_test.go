package bot

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ssobot/ssobot/bot/slacktest"
	"github.com/ssobot/ssobot/store"
	"github.com/ssobot/ssobot/workflow"
	"github.com/ssobot/ssobot/workflow/authentik"
	"github.com/ssobot/ssobot/workflow/authentik/authentiktest"
	"github.com/ssobot/ssobot/workflow/cloudflare"
	"github.com/ssobot/ssobot/workflow/cloudflare/cloudflaretest"
	"github.com/ssobot/ssobot/workflow/oidc"
	"github.com/ssobot/ssobot/workflow/workflowtest"
)

const e2eAccount = "0123456789abcdef0123456789abcdef"

// e2e is the whole bot over HTTP with the real engine and store, and fakes
// of Slack, authentik and Cloudflare behind it.
type e2e struct {
	*harness
	engine *workflow.Engine
	store  *store.Store
	dbPath string
	ak     *authentiktest.Server
	cf     *cloudflaretest.Server

	engCfg   workflow.Config
	engClock *workflowtest.Clock // the running engine's
	stopEng  func()              // stops the running engine and waits for it
}

func newE2E(t *testing.T, opts ...harnessOpt) *e2e {
	t.Helper()
	return newE2EWith(t, nil, opts...)
}

// newE2EWith is newE2E with a change to the engine's configuration (e.g. a
// crash hook).
func newE2EWith(t *testing.T, engOpt func(*workflow.Config), opts ...harnessOpt) *e2e {
	t.Helper()
	ak := authentiktest.New()
	t.Cleanup(ak.Close)
	cf := cloudflaretest.New(e2eAccount)
	t.Cleanup(cf.Close)

	h := newHarness(t, nil, append([]harnessOpt{func(c *Config) {
		c.AuthentikURL = ak.URL()
		c.CloudflareAccountID = e2eAccount
	}}, opts...)...)

	dbPath := filepath.Join(t.TempDir(), "ssobot.db")
	st, err := store.Open(dbPath, store.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	akClient := ak.Client()
	akClient.Timeout = 5 * time.Second
	akAPI, err := authentik.New(ak.URL(), workflow.NewSecret(ak.Token()), akClient)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(ak.CertPEM()) {
		t.Fatal("fake authentik certificate is not PEM")
	}
	cfg := workflow.Config{
		Store:     st,
		Authentik: akAPI,
		Access:    cloudflare.New(e2eAccount, workflow.NewSecret(cf.Token()), cf.URL(), nil),
		Endpoints: oidc.New(oidc.WithRoots(roots)),
		Approvers: h.bot.Approvers(),
		Notifier:  h.bot,
		Logger:    slog.New(slog.NewTextHandler(h.logBuf, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Defaults:  workflow.Defaults{AuthentikURL: ak.URL()},
		Retry:     workflow.RetryPolicy{MaxAttempts: 4, Base: time.Second, Max: time.Minute},
	}
	if engOpt != nil {
		engOpt(&cfg)
	}
	e := &e2e{harness: h, store: st, dbPath: dbPath, ak: ak, cf: cf, engCfg: cfg}
	e.startEngine(cfg)
	t.Cleanup(func() {
		e.stopEng()
		if err := st.Check(); err != nil {
			t.Errorf("database check: %v", err)
		}
		if err := st.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	// Registered after the engine's cleanup, so it stops first.
	h.startWorker()
	return e
}

// startEngine builds an engine on the store, attaches it to the bot and
// runs it on a clock that skips every wait.
func (e *e2e) startEngine(cfg workflow.Config) {
	e.t.Helper()
	clock := workflowtest.NewClock(time.Now())
	cfg.Clock = clock
	e.engClock = clock
	eng, err := workflow.New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go clock.AutoAdvance(ctx, time.Hour)
	e.bot.Attach(eng)
	e.engine = eng
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()
	e.stopEng = func() {
		cancel()
		if err := <-done; err != nil {
			e.t.Errorf("engine: %v", err)
		}
	}
}

// restartEngine stops the engine, as a crash would, and starts a fresh one
// on the same store without the crash hook; it resumes the open runs.
func (e *e2e) restartEngine() {
	e.t.Helper()
	e.stopEng()
	cfg := e.engCfg
	cfg.CrashHook = nil
	e.startEngine(cfg)
}

// root waits for the run's root message to satisfy pred and returns it.
func (e *e2e) root(what string, pred func(slacktest.Message) bool) slacktest.Message {
	e.t.Helper()
	var msg slacktest.Message
	e.waitCalls(what, func(calls []slacktest.Call) bool {
		roots := rootPosts(calls)
		if len(roots) == 0 {
			return false
		}
		m, ok := e.slack.Message("C1", resultTS(roots[len(roots)-1]))
		if ok && pred(m) {
			msg = m
			return true
		}
		return false
	})
	return msg
}

func hasButtonFor(gate workflow.StepName) func(slacktest.Message) bool {
	return hasActionFor(ActionApprove, gate)
}

// hasActionFor matches a message with the action's button for gate.
func hasActionFor(action string, gate workflow.StepName) func(slacktest.Message) bool {
	return func(m slacktest.Message) bool {
		b, ok := m.Button(action)
		return ok && strings.Contains(b.Value, "|"+string(gate)+"|")
	}
}

// clickAs clicks a button of the message as user and returns the private
// answer and the signed form, for replays.
func (e *e2e) clickAs(m slacktest.Message, action, user string) (string, []byte) {
	e.t.Helper()
	a, err := e.slack.ClickButton(m.Channel, m.TS, action, user)
	if err != nil {
		e.t.Fatalf("click %s as %s: %v", action, user, err)
	}
	a.TeamID = e.slack.TeamID()
	body := []byte(slacktest.BlockActionsPayload(a).Encode())
	return e.postInteraction(body), body
}

func (e *e2e) postInteraction(body []byte) string {
	e.t.Helper()
	return e.postInteractionAt(body, e.clock.Now())
}

func (e *e2e) postInteractionAt(body []byte, ts time.Time) string {
	e.t.Helper()
	before := countMethod(e.slack.Calls(), slacktest.MethodResponseURL)
	req := slacktest.SignedRequest(e.http.URL+"/slack/interactions", testSecret, body, ts)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("interaction status %d", resp.StatusCode)
	}
	calls := e.waitCalls("the private answer", func(c []slacktest.Call) bool {
		return countMethod(c, slacktest.MethodResponseURL) > before
	})
	return responseTexts(calls)[before]
}

func TestEndToEnd(t *testing.T) {
	// The requester is an approver too: only another approver may approve.
	e := newE2E(t, func(c *Config) { c.ApproverUsers = []string{"U1", "U2"} })
	ctx := context.Background()

	// Start.
	if r := e.command("U1", "C1", "new Grafana"); r.Text != "Run #1 started: I'll post the plan in this channel." {
		t.Fatalf("start reply %q", r.Text)
	}
	gate1 := e.root("the authentik gate's buttons", hasButtonFor(workflow.GateAuthentik))

	// A refused self-approval and a refused click by a non-approver change
	// nothing, are explained privately and are audited.
	if got, _ := e.clickAs(gate1, ActionApprove, "U1"); !strings.Contains(got, "you requested run #1") && !strings.Contains(got, "You requested run #1") {
		t.Fatalf("self-approval answer %q", got)
	}
	if got, _ := e.clickAs(gate1, ActionApprove, "U3"); !strings.Contains(got, "not an approver: ask <@U1> or <@U2>") {
		t.Fatalf("non-approver answer %q", got)
	}
	if r, _ := e.engine.Get(ctx, 1); r.State != workflow.StateAwaitingApproval || len(r.Approvals) != 0 {
		t.Fatalf("refused clicks changed the run: %s %+v", r.State, r.Approvals)
	}

	// Two gates approved by an eligible approver.
	if got, _ := e.clickAs(gate1, ActionApprove, "U2"); !strings.Contains(got, "You approved") {
		t.Fatalf("approval answer %q", got)
	}
	gate2 := e.root("the Cloudflare gate's buttons", hasButtonFor(workflow.GateCloudflare))
	if gate2.TS != gate1.TS {
		t.Fatalf("a second root message was posted (%s, %s)", gate1.TS, gate2.TS)
	}
	// A double click: two clicks in flight on the same button.
	click1, err := e.slack.ClickButton(gate2.Channel, gate2.TS, ActionApprove, "U2")
	if err != nil {
		t.Fatal(err)
	}
	click2, err := e.slack.ClickButton(gate2.Channel, gate2.TS, ActionApprove, "U2")
	if err != nil {
		t.Fatal(err)
	}
	approval := []byte(slacktest.BlockActionsPayload(click1).Encode())
	approvalTS := e.clock.Now()
	if got := e.postInteractionAt(approval, approvalTS); !strings.Contains(got, "You approved") {
		t.Fatalf("second approval answer %q", got)
	}

	// Success: the root message shows every step done and no buttons.
	final := e.root("the run to succeed", func(m slacktest.Message) bool { return strings.Contains(m.Text, "Succeeded") })
	if len(final.Buttons()) != 0 {
		t.Fatalf("buttons left on the finished run: %+v", final.Buttons())
	}
	var blocks []map[string]any
	_ = json.Unmarshal(final.BlocksJSON, &blocks)
	steps := blockText(blocks, "steps")
	if n := strings.Count(steps, ":white_check_mark:"); n != len(workflow.Plan) {
		t.Fatalf("%d of %d steps shown done:\n%s", n, len(workflow.Plan), steps)
	}
	run, err := e.engine.Get(ctx, 1)
	if err != nil || run.State != workflow.StateSucceeded {
		t.Fatalf("run %v %v", run, err)
	}
	res := blockText(blocks, "resources")
	for _, want := range []string{
		e.ak.URL() + "/if/admin/#/core/providers/",
		e.ak.URL() + "/if/admin/#/core/applications/grafana|grafana>",
		"https://one.dash.cloudflare.com/" + e2eAccount + "/settings/authentication|" + run.Resources.CloudflareIdentityProviderID,
	} {
		if !strings.Contains(res, want) {
			t.Errorf("resources lack %q:\n%s", want, res)
		}
	}
	if approvals := blockText(blocks, "approvals"); strings.Count(approvals, "<@U2> approved") != 2 {
		t.Errorf("approvals:\n%s", approvals)
	}

	// The double click's loser is told who won; nothing changes.
	if got := e.postInteraction([]byte(slacktest.BlockActionsPayload(click2).Encode())); !strings.Contains(got, "Already approved by <@U2> at <!date^") {
		t.Fatalf("second click answer %q", got)
	}
	// A replayed request inside the signature window has no effect at all.
	answers := countMethod(e.slack.Calls(), slacktest.MethodResponseURL)
	// (The version may still move: the bot records its delivery progress.)
	eventsBefore, _ := e.engine.Events(ctx, 1)
	req := slacktest.SignedRequest(e.http.URL+"/slack/interactions", testSecret, approval, approvalTS)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("replay status %d", resp.StatusCode)
	}
	// The replay is dropped before its response is written: nothing can follow.
	if again, _ := e.engine.Get(ctx, 1); len(again.Approvals) != len(run.Approvals) || again.State != run.State {
		t.Fatalf("the replay changed the run (%d -> %d approvals)", len(run.Approvals), len(again.Approvals))
	}
	if eventsAfter, _ := e.engine.Events(ctx, 1); len(eventsAfter) != len(eventsBefore) {
		t.Fatalf("the replay added %d audit events", len(eventsAfter)-len(eventsBefore))
	}
	if n := countMethod(e.slack.Calls(), slacktest.MethodResponseURL); n != answers {
		t.Fatalf("the replay was answered (%d answers, was %d)", n, answers)
	}
	if !strings.Contains(e.logBuf.String(), "dropped a replayed Slack request") {
		t.Fatal("the replay was not noticed")
	}

	// The thread: events as replies, never broadcast, the requester told.
	e.waitCalls("the requester's mention", func(c []slacktest.Call) bool {
		for _, r := range replies(c) {
			if strings.Contains(r.Param("text"), "<@U1> :tada: Run #1 succeeded") {
				return true
			}
		}
		return false
	})
	thread := e.slack.Thread("C1", final.TS)
	var texts []string
	for _, m := range thread[1:] {
		if m.ReplyBroadcast {
			t.Errorf("broadcast reply %q", m.Text)
		}
		texts = append(texts, m.Text)
	}
	all := strings.Join(texts, "\n")
	for _, want := range []string{"Preflight passed", "<@U2> approved *Approval to create the authentik provider and application*",
		"Create the authentik OAuth2/OpenID provider", "Add the Cloudflare Access login method", "<@U1> :tada: Run #1 succeeded"} {
		if !strings.Contains(all, want) {
			t.Errorf("thread lacks %q:\n%s", want, all)
		}
	}
	if strings.Contains(all, "refused") {
		t.Errorf("refusals leaked into the thread:\n%s", all)
	}

	// The audit log has the refused clicks.
	evs, err := e.engine.Events(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	refusals := 0
	for _, ev := range evs {
		if ev.Type == workflow.EventDecisionRefused {
			refusals++
		}
	}
	if refusals != 3 { // self-approval, non-approver, double click
		t.Errorf("%d refused decisions in the audit log; want 3", refusals)
	}

	// status and list answer correctly.
	status := e.command("U3", "C1", "status 1")
	if status.ResponseType != "ephemeral" || !strings.Contains(status.Text, "Succeeded") || !strings.Contains(string(status.Blocks), "Verify the login method") {
		t.Fatalf("status %+v", status)
	}
	before := len(e.slack.Calls())
	if ack := e.command("U3", "C1", "status 1 public"); ack.ResponseType != "ephemeral" || ack.Text != "Sharing run #1 in this channel…" {
		t.Fatalf("public status acknowledged with %+v", ack)
	}
	// Posted for the channel, it names the requester and approver without
	// notifying them.
	shown := replyTexts(t, e.sharedCard(before))
	if bad := notifying(shown); bad != "" || !anyContains(shown, "*Requested by*\n@requester") || !anyContains(shown, "@approver approved _authentik_") {
		t.Fatalf("public status notifies (%q) or lacks the names:\n%s", bad, strings.Join(shown, "\n"))
	}
	list := e.command("U3", "C1", "list")
	if !strings.Contains(list.Text, "`#1` Grafana · :white_check_mark: Succeeded · <@U1>") {
		t.Fatalf("list %q", list.Text)
	}

	// Secrets never reach Slack or the logs.
	for _, c := range e.slack.Calls() {
		if strings.Contains(c.String(), testSecret) || strings.Contains(c.String(), e.ak.Token()) {
			t.Fatalf("a secret reached Slack: %s", c)
		}
	}
	if strings.Contains(e.logBuf.String(), "/response/") {
		t.Fatal("a response URL reached the logs")
	}
	for _, secret := range []string{testSecret, e.ak.Token(), e.cf.Token(), e.slack.BotToken()} {
		if strings.Contains(e.logBuf.String(), secret) {
			t.Fatalf("a secret reached the logs")
		}
	}
}

func TestEndToEndRejectAndRetry(t *testing.T) {
	e := newE2E(t, func(c *Config) { c.ApproverGroups = []string{"S1"} })
	e.slack.AddUser(slacktest.User{ID: "U4", Name: "dora"})
	e.slack.AddUserGroup("S1", "U4")

	e.command("U1", "C1", `new "Jira Cloud" slug=jira`)
	gate := e.root("the gate", hasButtonFor(workflow.GateAuthentik))
	// A click already in flight when the gate is decided.
	late, err := e.slack.ClickButton(gate.Channel, gate.TS, ActionApprove, "U2")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := e.clickAs(gate, ActionReject, "U4"); !strings.Contains(got, "You rejected") {
		t.Fatalf("reject answer %q", got)
	}
	final := e.root("the rejection", func(m slacktest.Message) bool { return strings.Contains(m.Text, "Rejected") })
	if len(final.Buttons()) != 0 {
		t.Fatal("buttons left on a rejected run")
	}
	e.waitCalls("the requester's mention", func(c []slacktest.Call) bool {
		for _, r := range replies(c) {
			if strings.Contains(r.Param("text"), "<@U1> :no_entry_sign: Run #1 was rejected") {
				return true
			}
		}
		return false
	})
	// A late click on the stale message is refused privately.
	if got := e.postInteraction([]byte(slacktest.BlockActionsPayload(late).Encode())); !strings.Contains(got, "Already rejected by <@U4>") {
		t.Fatalf("late click answer %q", got)
	}
	// Retry of a rejected run is refused; cancel of a finished one too.
	before := countMethod(e.slack.Calls(), slacktest.MethodResponseURL)
	e.command("U1", "C1", "retry 1")
	e.command("U3", "C1", "cancel 1")
	calls := e.waitCalls("two answers", func(c []slacktest.Call) bool { return countMethod(c, slacktest.MethodResponseURL) >= before+2 })
	answers := strings.Join(responseTexts(calls)[before:], "\n")
	if !strings.Contains(answers, "was rejected; only failed or expired runs can be retried") || !strings.Contains(answers, "only the requester or an approver") && !strings.Contains(answers, "Only the requester or an approver") {
		t.Fatalf("answers:\n%s", answers)
	}
}

// TestEndToEndCancelReasonIsProse: a cancel's reason is taken as typed,
// quotes included, unescaped once from what Slack sends, and shown escaped
// in the thread and on the card.
func TestEndToEndCancelReasonIsProse(t *testing.T) {
	e := newE2E(t)
	e.command("U1", "C1", "new Grafana")
	e.gateOf(1, workflow.GateAuthentik)

	// Typed: wrong app, should be "Grafana". <b> & &lt; *x* `y` C:\temp
	// Slack sends &, < and > as entities.
	typed := "cancel 1 wrong app, should be \"Grafana\". &lt;b&gt; &amp; &amp;lt; *x* `y` C:\\temp"
	if got := e.control("U1", typed); got != ":heavy_minus_sign: Run #1 is cancelled." {
		t.Fatalf("cancel answer %q", got)
	}
	const reason = "wrong app, should be \"Grafana\". <b> & &lt; *x* `y` C:\\temp"
	if r := e.run(1); r.State != workflow.StateCancelled || r.Error != "cancelled by U1: "+reason {
		t.Fatalf("run %s, error %q; want cancelled with the reason %q", r.State, r.Error, reason)
	}
	if evs := e.events(1, workflow.EventCancelled, "U1"); len(evs) != 1 || evs[0].Data["reason"] != reason {
		t.Fatalf("cancel events %+v; want one with the reason %q", evs, reason)
	}

	// Shown: no tag, no entity read twice, no bold or code.
	const shown = "cancelled by <@U1>: wrong app, should be \"Grafana\". &lt;b&gt; &amp; &amp;lt; \u200b*\u200bx\u200b*\u200b \u200b`\u200by\u200b`\u200b C:\\temp"
	root := e.rootOf(1, "run 1 to be cancelled", textHas("Cancelled"))
	e.replyIn(root, "Run #1 was "+shown)
	var card []string
	texts(string(root.BlocksJSON), &card)
	if !anyContains(card, "*Last error*\n"+shown) {
		t.Errorf("the card does not show the reason as %q:\n%s", shown, root.BlocksJSON)
	}
	// Shared in the channel, the card names whoever cancelled without
	// notifying them.
	before := len(e.slack.Calls())
	e.command("U3", "C1", "status 1 public")
	public := replyTexts(t, e.sharedCard(before))
	if bad := notifying(public); bad != "" || !anyContains(public, "*Last error*\n"+strings.Replace(shown, "<@U1>", "@requester", 1)) {
		t.Errorf("public status notifies (%q) or does not name who cancelled:\n%s", bad, strings.Join(public, "\n"))
	}
}

// TestEndToEndReminder: a gate still waiting for one of its two approvals
// a quarter of its time before it expires gets a thread reply calling the
// approver who has not approved; the card keeps its buttons.
func TestEndToEndReminder(t *testing.T) {
	e := newE2EWith(t, func(c *workflow.Config) {
		c.ApprovalTTL, c.ApprovalReminder, c.ApprovalsRequired = 24*time.Hour, 6*time.Hour, 2
	}, func(c *Config) { c.ApproverUsers, c.ApprovalsRequired = []string{"U2", "U4"}, 2 })
	e.slack.AddUser(slacktest.User{ID: "U4", Name: "dora"})

	e.command("U1", "C1", "new Grafana")
	gate := e.root("the gate", hasButtonFor(workflow.GateAuthentik))
	if got, _ := e.clickAs(gate, ActionApprove, "U2"); !strings.Contains(got, "You approved") {
		t.Fatalf("approval answer %q", got)
	}
	r, err := e.engine.Get(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	g := r.OpenGate()
	if g == nil || g.Name != workflow.GateAuthentik || r.CountingApprovals(g.Name) != 1 {
		t.Fatalf("run %s, gate %+v; want the authentik gate open with one approval", r.State, g)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.engClock.WaitForTimer(ctx, g.RemindAt.Sub(e.engClock.Now())); err != nil {
		t.Fatal("no timer for the reminder")
	}
	e.engClock.Advance(g.RemindAt.Sub(e.engClock.Now()))
	calls := e.waitCalls("the reminder", func(c []slacktest.Call) bool {
		for _, r := range replies(c) {
			if strings.Contains(r.Param("text"), "Still waiting for approval") {
				return true
			}
		}
		return false
	})
	var reminder string
	for _, r := range replies(calls) {
		if text := r.Param("text"); strings.Contains(text, "Still waiting for approval") {
			if reminder != "" {
				t.Fatalf("two reminders:\n%s\n%s", reminder, text)
			}
			reminder = text
			if r.Param("thread_ts") != gate.TS {
				t.Errorf("reminder in thread %s; want the run's %s", r.Param("thread_ts"), gate.TS)
			}
		}
	}
	if !strings.HasSuffix(reminder, "\nApprovers: <@U4>") || !strings.Contains(reminder, "expires <!date^") {
		t.Errorf("reminder %q; want the deadline and a call to U4 only", reminder)
	}
	if m, ok := e.slack.Message(gate.Channel, gate.TS); !ok || !hasButtonFor(workflow.GateAuthentik)(m) {
		t.Error("the card lost its buttons")
	}
}

func TestEndToEndNotInChannel(t *testing.T) {
	e := newE2E(t)
	e.slack.AddChannel("C9", "private-ops", false)
	if r := e.command("U1", "C9", "new Grafana"); !strings.Contains(r.Text, "Run #1 started") {
		t.Fatalf("reply %q", r.Text)
	}
	calls := e.waitCalls("the private notice", func(c []slacktest.Call) bool { return countMethod(c, slacktest.MethodResponseURL) == 1 })
	if got := responseTexts(calls)[0]; !strings.Contains(got, "/invite @ssobot") || !strings.Contains(got, "was cancelled") {
		t.Fatalf("notice %q", got)
	}
	r, err := e.engine.Get(context.Background(), 1)
	if err != nil || r.State != workflow.StateCancelled || r.MessageRef != "" {
		t.Fatalf("run %+v, %v; want cancelled without a message", r, err)
	}
	if n := len(e.ak.Providers()); n != 0 {
		t.Fatalf("%d providers created for a cancelled run", n)
	}
	// The cancelled run's own snapshot meets the same refusal; the
	// requester, told once, is not told again. The one delivery worker
	// posts a later run's message only after that snapshot.
	e.waitCalls("the cancelled snapshot's attempt", func(c []slacktest.Call) bool {
		n := 0
		for _, call := range c {
			if call.Method == "chat.postMessage" && call.Param("channel") == "C9" && call.Error == "not_in_channel" {
				n++
			}
		}
		return n == 2
	})
	e.command("U1", "C1", "new Jira")
	e.root("a later run's message", func(m slacktest.Message) bool { return m.Channel == "C1" })
	if got := responseTexts(e.slack.Calls()); len(got) != 1 {
		t.Errorf("requester told %d times:\n%s", len(got), strings.Join(got, "\n"))
	}
}

func TestEndToEndForm(t *testing.T) {
	e := newE2E(t)
	cmd := e.slack.NewSlashCommand("/sso-setup", "", "U1", "C1")
	if status, body := e.post("/slack/commands", slacktest.SlashCommandForm(cmd)); status != http.StatusOK || strings.TrimSpace(body) != "" {
		t.Fatalf("status %d body %q", status, body)
	}
	e.waitCalls("views.open", func(c []slacktest.Call) bool { return len(okCalls(c, "views.open")) == 1 })
	view := e.slack.Views()[0]
	sub, err := e.slack.SubmitView(view.ID, "U1", map[string]map[string]slacktest.StateValue{
		BlockAppName: {ModalActionValue: {Type: "plain_text_input", Value: "Wiki"}},
		BlockAppSlug: {ModalActionValue: {Type: "plain_text_input", Value: "token"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, body := e.post("/slack/interactions", slacktest.ViewSubmissionPayload(sub))
	if !strings.Contains(body, `"response_action":"errors"`) || !strings.Contains(body, BlockAppSlug) {
		t.Fatalf("bad slug accepted: %s", body)
	}
	sub.Values[BlockAppSlug] = map[string]slacktest.StateValue{ModalActionValue: {Type: "plain_text_input", Value: "wiki"}}
	if _, body := e.post("/slack/interactions", slacktest.ViewSubmissionPayload(sub)); strings.TrimSpace(body) != "" {
		t.Fatalf("good form refused: %s", body)
	}
	e.root("the run's message", hasButtonFor(workflow.GateAuthentik))
	if r, err := e.engine.Get(context.Background(), 1); err != nil || r.Params.ApplicationSlug != "wiki" || r.Request.Channel != "C1" {
		t.Fatalf("run %+v %v", r, err)
	}
}

// blockText is the text of the block with the given ID.
func blockText(blocks []map[string]any, id string) string {
	for _, b := range blocks {
		if b["block_id"] == id {
			if t, ok := b["text"].(map[string]any); ok {
				s, _ := t["text"].(string)
				return s
			}
		}
	}
	return ""
}

func TestEndToEndDeletedRootAndRateLimits(t *testing.T) {
	e := newE2E(t)
	e.command("U1", "C1", "new Grafana")
	gate1 := e.root("the first gate", hasButtonFor(workflow.GateAuthentik))

	// Someone deletes the message and Slack rate-limits the edits: the
	// approval still lands, a new root is posted and the run goes on there.
	e.slack.DeleteMessage("C1", gate1.TS)
	e.slack.RateLimitNext("chat.update", 2, 2)
	// The click was in flight before the deletion: build it from the value.
	g, err := e.engine.Get(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	a := slacktest.BlockAction{UserID: "U2", TeamID: e.slack.TeamID(), ChannelID: "C1", MessageTS: gate1.TS, ActionID: ActionApprove, BlockID: BlockGate,
		Value: ButtonValue(1, workflow.GateAuthentik, g.OpenGate().Nonce), ResponseURL: e.slack.NewResponseURLFor("C1", "", "U2")}
	if got := e.postInteraction([]byte(slacktest.BlockActionsPayload(a).Encode())); !strings.Contains(got, "You approved") {
		t.Fatalf("answer %q", got)
	}
	gate2 := e.root("a new root at the second gate", hasButtonFor(workflow.GateCloudflare))
	if gate2.TS == gate1.TS {
		t.Fatal("no new root message")
	}
	if got, _ := e.clickAs(gate2, ActionApprove, "U2"); !strings.Contains(got, "You approved") {
		t.Fatalf("answer %q", got)
	}
	e.root("success", func(m slacktest.Message) bool { return strings.Contains(m.Text, "Succeeded") })
	if r, _ := e.engine.Get(context.Background(), 1); r.MessageRef != "C1|"+gate2.TS {
		t.Fatalf("message ref %q; want the new root %s", r.MessageRef, gate2.TS)
	}
	limited := 0
	for _, c := range e.slack.Calls("chat.update") {
		if c.Status == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited != 2 {
		t.Fatalf("%d rate-limited chat.update calls; want 2", limited)
	}
	var waited bool
	for _, w := range e.clock.Waits() {
		waited = waited || w >= 2*time.Second
	}
	if !waited {
		t.Fatalf("the worker did not wait out Retry-After: %v", e.clock.Waits())
	}
	for _, m := range e.slack.Thread("C1", gate2.TS)[1:] {
		if m.ThreadTS != gate2.TS {
			t.Fatalf("reply %q outside the new thread", m.Text)
		}
	}
}

// TestEndToEndControlAnswerReachesItsSenderOnly: when the answer to a
// cancel cannot go through the canceller's response URL, it falls back to
// a private message to them, not to the response URL of the command that
// started the run (the requester's).
func TestEndToEndControlAnswerReachesItsSenderOnly(t *testing.T) {
	e := newE2E(t)
	newCmd := e.slack.NewSlashCommand("/sso-setup", "new Grafana", "U1", "C1")
	e.post("/slack/commands", slacktest.SlashCommandForm(newCmd))
	e.root("the run's message", hasButtonFor(workflow.GateAuthentik))

	e.slack.FailNext(slacktest.MethodResponseURL, 1, "internal_error")
	cancelCmd := e.slack.NewSlashCommand("/sso-setup", "cancel 1", "U3", "C1")
	e.post("/slack/commands", slacktest.SlashCommandForm(cancelCmd))
	calls := e.waitCalls("the answer to U3", func(c []slacktest.Call) bool {
		for _, m := range okCalls(c, "chat.postEphemeral") {
			if m.Param("user") == "U3" {
				return true
			}
		}
		return false
	})
	for _, c := range calls {
		if c.Method == slacktest.MethodResponseURL && c.URL == newCmd.ResponseURL {
			t.Errorf("the answer to U3's cancel went to U1's response URL: %s", c)
		}
	}
	if r, err := e.engine.Get(context.Background(), 1); err != nil || r.State.Terminal() {
		t.Errorf("run 1: %v, %v; a bystander's cancel must be refused", r.State, err)
	}
}

// TestEndToEndExpiredThenRetried: a gate that expired is asked again with
// `retry`: the thread says so, the card gets live buttons again, and an
// approval on it lets the run go on.
func TestEndToEndExpiredThenRetried(t *testing.T) {
	// Longer than the engine clock's automatic advance, so the gate waits.
	e := newE2EWith(t, func(c *workflow.Config) { c.ApprovalTTL, c.ApprovalReminder = 24*time.Hour, 0 })
	e.command("U1", "C1", "new Grafana")
	gate := e.root("the gate", hasButtonFor(workflow.GateAuthentik))
	r, err := e.engine.Get(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.engClock.WaitForTimerAt(ctx, r.OpenGate().Deadline); err != nil {
		t.Fatal("no timer for the deadline")
	}
	e.engClock.Advance(r.OpenGate().Deadline.Sub(e.engClock.Now()))
	e.root("the expiry", func(m slacktest.Message) bool { return len(m.Buttons()) == 0 && strings.Contains(m.Text, "Expired") })
	e.waitCalls("the expiry reply", func(c []slacktest.Call) bool {
		for _, r := range replies(c) {
			if strings.Contains(r.Param("text"), "expired without a decision; run #1 has ended. To ask again, type `/sso-setup retry 1` in the channel.") {
				return true
			}
		}
		return false
	})

	before := countMethod(e.slack.Calls(), slacktest.MethodResponseURL)
	e.command("U1", "C1", "retry 1")
	calls := e.waitCalls("the retry's answer", func(c []slacktest.Call) bool { return countMethod(c, slacktest.MethodResponseURL) > before })
	if got := responseTexts(calls)[before]; !strings.Contains(got, "*Approval to create the authentik provider and application* of run #1 is open again, until <!date^") {
		t.Fatalf("retry answer %q", got)
	}
	e.waitCalls("the thread saying so", func(c []slacktest.Call) bool {
		for _, r := range replies(c) {
			if strings.Contains(r.Param("text"), ":repeat: <@U1> opened *") {
				return true
			}
		}
		return false
	})
	reopened := e.root("the reopened gate", hasButtonFor(workflow.GateAuthentik))
	if reopened.TS != gate.TS {
		t.Errorf("the gate reopened on message %s; want the run's message %s", reopened.TS, gate.TS)
	}
	if got, _ := e.clickAs(reopened, ActionApprove, "U2"); !strings.Contains(got, "You approved") {
		t.Fatalf("approval answer %q", got)
	}
	e.root("the next gate", hasButtonFor(workflow.GateCloudflare))
}
