package bot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/ssobot/ssobot/bot/slacktest"
	"github.com/ssobot/ssobot/workflow"
)

// newHandlerHarness attaches a fake engine without starting the delivery
// worker, so every Slack call seen comes from the handlers themselves.
func newHandlerHarness(t *testing.T, opts ...harnessOpt) (*harness, *fakeEngine) {
	t.Helper()
	h := newHarness(t, nil, opts...)
	eng := newFakeEngine(h.clock)
	h.bot.Attach(eng)
	return h, eng
}

func TestRequestsWithoutAValidSignatureAreRefused(t *testing.T) {
	h, eng := newHandlerHarness(t)
	cmd := slacktest.SlashCommandForm(h.slack.NewSlashCommand("/sso-setup", "new Grafana", "U1", "C1"))
	click := slacktest.BlockActionsPayload(slacktest.BlockAction{UserID: "U2", ActionID: ActionApprove, BlockID: BlockGate, Value: "1|authentik|n", ChannelID: "C1"})
	now := h.clock.Now()
	sign := func(body string, ts time.Time) http.Header {
		hd := http.Header{}
		hd.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
		hd.Set(HeaderSignature, slacktest.Sign(testSecret, ts, []byte(body)))
		return hd
	}
	tests := []struct {
		name   string
		header func(body string) http.Header
		body   func(body string) string
	}{
		{"no headers", func(string) http.Header { return http.Header{} }, nil},
		{"no signature", func(b string) http.Header { hd := sign(b, now); hd.Del(HeaderSignature); return hd }, nil},
		{"no timestamp", func(b string) http.Header { hd := sign(b, now); hd.Del(HeaderTimestamp); return hd }, nil},
		{"expired", func(b string) http.Header { return sign(b, now.Add(-6*time.Minute)) }, nil},
		{"from the future", func(b string) http.Header { return sign(b, now.Add(6*time.Minute)) }, nil},
		{"tampered body", func(b string) http.Header { return sign(b, now) }, func(b string) string { return strings.Replace(b, "U", "W", 1) }},
		{"bad header format", func(b string) http.Header {
			hd := sign(b, now)
			hd.Set(HeaderSignature, strings.TrimPrefix(hd.Get(HeaderSignature), "v0="))
			return hd
		}, nil},
		{"other secret", func(b string) http.Header {
			hd := sign(b, now)
			hd.Set(HeaderSignature, slacktest.Sign("not-the-secret", now, []byte(b)))
			return hd
		}, nil},
	}
	for _, path := range []string{"/slack/commands", "/slack/interactions"} {
		form := cmd
		if path == "/slack/interactions" {
			form = click
		}
		for _, tt := range tests {
			t.Run(path+"/"+tt.name, func(t *testing.T) {
				body := form.Encode()
				hd := tt.header(body)
				if tt.body != nil {
					body = tt.body(body)
				}
				req, _ := http.NewRequest(http.MethodPost, h.http.URL+path, strings.NewReader(body))
				req.Header = hd
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("status %d; want 401", resp.StatusCode)
				}
			})
		}
	}
	h.bot.wg.Wait()
	if calls := eng.Calls(); len(calls) != 0 {
		t.Fatalf("the engine was called for unsigned requests: %v", calls)
	}
	if calls := h.slack.Calls(); len(calls) != 0 {
		t.Fatalf("Slack was called for unsigned requests:\n%s", callList(calls))
	}
}

func TestBodyTooLarge(t *testing.T) {
	h, eng := newHandlerHarness(t, func(c *Config) { c.MaxBodyBytes = 1024 })
	form := slacktest.SlashCommandForm(h.slack.NewSlashCommand("/sso-setup", "new "+strings.Repeat("x", 2000), "U1", "C1"))
	status, _ := h.post("/slack/commands", form)
	if status != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d; want 413", status)
	}
	if calls := eng.Calls(); len(calls) != 0 {
		t.Fatalf("engine called: %v", calls)
	}
}

func TestOnlyPOST(t *testing.T) {
	h, _ := newHandlerHarness(t)
	resp, err := http.Get(h.http.URL + "/slack/commands")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET status %d; want 405", resp.StatusCode)
	}
}

func TestCommandNewStartsARunWithoutCallingSlack(t *testing.T) {
	h, eng := newHandlerHarness(t)
	r := h.command("U1", "C1", `new "My App" slug=my-app team=company login=SSO`)
	if r.ResponseType != slack.ResponseTypeEphemeral || r.Text != "Run #1 started: I'll post the plan in this channel." {
		t.Fatalf("reply = %+v", r)
	}
	run := eng.run(1)
	want := workflow.Request{ApplicationName: "My App", ApplicationSlug: "my-app", TeamDomain: "company.cloudflareaccess.com",
		LoginMethodName: "SSO", RequestedBy: "U1", Channel: "C1"}
	if run == nil || run.Request != want {
		t.Fatalf("started %+v; want request %+v", run, want)
	}
	if calls := h.slack.Calls(); len(calls) != 0 {
		t.Fatalf("the command called Slack on the request path:\n%s", callList(calls))
	}
	if n := h.bot.queue.pending(); n != 1 {
		t.Fatalf("%d runs queued for delivery; want 1", n)
	}
}

func TestReplayedCommandHasNoEffect(t *testing.T) {
	h, eng := newHandlerHarness(t)
	form := slacktest.SlashCommandForm(h.slack.NewSlashCommand("/sso-setup", "new Grafana", "U1", "C1"))
	ts := h.clock.Now()
	_, first := h.postAt("/slack/commands", form, ts)
	status, second := h.postAt("/slack/commands", form, ts)
	if !strings.Contains(first, "Run #1 started") || status != http.StatusOK || !strings.Contains(second, "already handled") {
		t.Fatalf("answers %q then %d %q", first, status, second)
	}
	if eng.run(2) != nil {
		t.Fatal("the replay started a second run")
	}
	// The same command sent again (a new request) is a new run.
	h.clock.Advance(time.Second)
	if _, third := h.postAt("/slack/commands", form, h.clock.Now()); !strings.Contains(third, "Run #2 started") {
		t.Fatalf("answer %q", third)
	}
}

func TestCommandReplies(t *testing.T) {
	// Slack gets no call until every command is answered; a command whose
	// answer waited for one would not be answered in time (boundedClient).
	old := namesTimeout
	namesTimeout = time.Minute
	t.Cleanup(func() { namesTimeout = old })
	hold := newHoldSlack()
	h, eng := newHandlerHarness(t, func(c *Config) { slack.OptionHTTPClient(&http.Client{Transport: hold})(c.Client) })
	for i := 1; i <= 12; i++ {
		r := sampleRun(workflow.GateAuthentik, workflow.StepWaiting, workflow.StateAwaitingApproval)
		r.ID = int64(i)
		name := fmt.Sprintf("App %d", i)
		r.Request.ApplicationName, r.Params.ApplicationName = name, name
		eng.put(r)
	}
	tests := []struct {
		name     string
		text     string
		channel  string // C1, the runs' channel, unless set
		respType string
		want     []string
		notWant  []string
	}{
		{name: "help", text: "help", want: []string{"*Usage*", "`/sso-setup new &lt;application name&gt;"}},
		{name: "no name", text: "new", want: []string{"Give the application name: `new &lt;application name&gt;`"}},
		{name: "unknown", text: "deploy", want: []string{":warning: I don't know the subcommand “deploy”.", "*Usage*"}},
		{name: "malformed", text: "new Grafana color=red", want: []string{"nknown option `color=`", "*Usage*"}},
		{name: "invalid slug", text: "new Grafana slug=authorize", want: []string{":warning: The slug", "reserved by authentik"}},
		{name: "invalid team", text: "new Grafana team=bad_team!", want: []string{"is not a team domain"}},
		{name: "escaped validation error", text: "new Grafana slug=&lt;!channel&gt;", want: []string{"&lt;!channel&gt;"}, notWant: []string{"<!channel>"}},
		{name: "status", text: "status 3", respType: slack.ResponseTypeEphemeral, want: []string{"SSO setup #3 for App 3"}},
		{name: "status public", text: "status 3 public", respType: slack.ResponseTypeEphemeral, want: []string{"Sharing run #3 in this channel…"}},
		{name: "status public elsewhere", text: "status 3 public", channel: "C2", respType: slack.ResponseTypeEphemeral,
			want: []string{"Run #3 belongs to <#C1>, so only you see it here; to share it, type `/sso-setup status 3 public` there", "SSO setup #3"}},
		{name: "status unknown", text: "status 99", want: []string{"There is no run #99; `/sso-setup list` shows the recent ones"}},
		{name: "list", text: "list", want: []string{"*The 10 most recent runs*", "`#12` App 12 · :raised_hand: Awaiting approval (authentik) · <@U1>", "`#3` App 3"}, notWant: []string{"`#2`", "`#1`"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.channel == "" {
				tt.channel = "C1"
			}
			r := h.command("U1", tt.channel, tt.text)
			if tt.respType == "" {
				tt.respType = slack.ResponseTypeEphemeral
			}
			if r.ResponseType != tt.respType {
				t.Errorf("response_type %q; want %q", r.ResponseType, tt.respType)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.Text, w) {
					t.Errorf("reply lacks %q:\n%s", w, r.Text)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(r.Text, w) {
					t.Errorf("reply has %q:\n%s", w, r.Text)
				}
			}
			if bad := bareControl(r.Text); bad != "" {
				t.Errorf("reply has a bare < or >, which Slack reads as markup: %q", bad)
			}
		})
	}
	t.Run("list is newest first", func(t *testing.T) {
		text := h.command("U1", "C1", "list").Text
		if i, j := strings.Index(text, "`#12`"), strings.Index(text, "`#11`"); i < 0 || j < 0 || i > j {
			t.Fatalf("list order wrong:\n%s", text)
		}
		if n := strings.Count(text, "\n"); n != 10 {
			t.Fatalf("list has %d run lines; want 10", n)
		}
	})
	t.Run("status shows the run without buttons", func(t *testing.T) {
		cmd := h.slack.NewSlashCommand("/sso-setup", "status 3", "U1", "C1")
		_, body := h.post("/slack/commands", slacktest.SlashCommandForm(cmd))
		for _, want := range []string{`"type":"header"`, "Approval to create the authentik provider and application (0 of 1)", "*Steps*"} {
			if !strings.Contains(body, want) {
				t.Errorf("status lacks %q:\n%s", want, body)
			}
		}
		if strings.Contains(body, `"action_id":"approve"`) {
			t.Errorf("status carries buttons:\n%s", body)
		}
	})
	if calls := h.slack.Calls(); len(calls) != 0 {
		t.Fatalf("commands called Slack on the request path:\n%s", callList(calls))
	}
	// Then the public status posts the card in the channel.
	close(hold.release)
	if card := h.sharedCard(0); !strings.Contains(card.Text, "SSO setup #3") || !strings.Contains(string(card.Blocks), "@requester") {
		t.Errorf("shared card %+v", card)
	}
}

// TestListCounts: list's title fits what it shows, one run or none seen.
func TestListCounts(t *testing.T) {
	h, eng := newHandlerHarness(t)
	h.slack.AddChannel("C2", "random", true)
	eng.put(sampleRun(workflow.GateAuthentik, workflow.StepWaiting, workflow.StateAwaitingApproval))
	if got := h.command("U1", "C1", "list").Text; !strings.HasPrefix(got, "*The most recent run*\n`#42`") {
		t.Errorf("one run: %q", got)
	}
	if got := h.command("U3", "C2", "list").Text; got != "*No runs to show here*\n_Runs started in other channels are listed there._" {
		t.Errorf("only others' runs from another channel: %q", got)
	}
}

func TestCommandLimits(t *testing.T) {
	h, eng := newHandlerHarness(t, func(c *Config) {
		c.AllowedChannels = []string{"C1"}
		c.AllowedRequesters = []string{"U1"}
	})
	h.slack.AddChannel("C2", "random", true)
	if r := h.command("U1", "C2", "new Grafana"); !strings.Contains(r.Text, "ssobot starts runs only in <#C1>") {
		t.Fatalf("other channel: %q", r.Text)
	}
	if r := h.command("U1", "C2", ""); !strings.Contains(r.Text, "ssobot starts runs only in <#C1>") {
		t.Fatalf("other channel, form: %q", r.Text)
	}
	// Reading and controlling a run by number follow the run's own rules
	// wherever they are typed: help, and status of an unknown run, answer.
	if r := h.command("U1", "D1", "help"); !strings.Contains(r.Text, "*Usage*") {
		t.Fatalf("help in a DM: %q", r.Text)
	}
	if r := h.command("U1", "D1", "status 9"); !strings.Contains(r.Text, "There is no run #9") {
		t.Fatalf("status in a DM: %q", r.Text)
	}
	if r := h.command("U3", "C1", "new Grafana"); r.Text != requesterRefusal {
		t.Fatalf("other requester: %q", r.Text)
	}
	if r := h.command("U3", "C1", ""); r.Text != requesterRefusal {
		t.Fatalf("other requester, form: %q", r.Text)
	}
	if r := h.command("U3", "C1", "help"); !strings.Contains(r.Text, "*Usage*") {
		t.Fatalf("help for anyone: %q", r.Text)
	}
	if r := h.command("U1", "C1", "new Grafana"); !strings.Contains(r.Text, "Run #1 started") {
		t.Fatalf("allowed requester: %q", r.Text)
	}
	if eng.run(1) == nil || eng.run(2) != nil {
		t.Fatal("want exactly the allowed request to start a run")
	}
}

func TestCommandWithoutEngine(t *testing.T) {
	h := newHarness(t, nil)
	if r := h.command("U1", "C1", "new Grafana"); !strings.Contains(r.Text, "starting up") {
		t.Fatalf("reply %q", r.Text)
	}
}

func TestCancelAndRetryAnswerPrivatelyOffThePath(t *testing.T) {
	h, eng := newHandlerHarness(t)
	eng.put(sampleRun(workflow.GateAuthentik, workflow.StepWaiting, workflow.StateAwaitingApproval))
	tests := []struct {
		user, text, ack, final string
	}{
		{"U3", "cancel 42", "Cancelling run #42…", ":no_entry: Only the requester or an approver may do that."},
		{"U1", "retry 42", "Retrying run #42…", ":no_entry: Run #42 is waiting for approval; only failed or expired runs can be retried."},
		{"U1", "cancel 42 wrong name", "Cancelling run #42…", ":heavy_minus_sign: Run #42 is cancelled."},
		{"U1", "cancel 7", "Cancelling run #7…", "There is no run #7."},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			before := len(h.slack.Calls(slacktest.MethodResponseURL))
			if r := h.command(tt.user, "C1", tt.text); r.Text != tt.ack {
				t.Fatalf("ack %q; want %q", r.Text, tt.ack)
			}
			calls := h.waitCalls("the private answer", func(c []slacktest.Call) bool {
				return countMethod(c, slacktest.MethodResponseURL) > before
			})
			got := responseTexts(calls)[before]
			if got != tt.final {
				t.Fatalf("answer %q; want %q", got, tt.final)
			}
		})
	}
	if c := eng.Cancels(); len(c) != 3 || c[1] != "42|U1|wrong name" {
		t.Fatalf("cancels = %v", c)
	}
}

func TestSlashWithNoTextOpensTheForm(t *testing.T) {
	h, _ := newHandlerHarness(t)
	cmd := h.slack.NewSlashCommand("/sso-setup", "", "U1", "C1")
	status, body := h.post("/slack/commands", slacktest.SlashCommandForm(cmd))
	if status != http.StatusOK || strings.TrimSpace(body) != "" {
		t.Fatalf("status %d body %q; want an empty 200", status, body)
	}
	h.waitCalls("views.open", func(c []slacktest.Call) bool { return len(okCalls(c, "views.open")) == 1 })
	views := h.slack.Views()
	if len(views) != 1 {
		t.Fatalf("%d views opened", len(views))
	}
	call := okCalls(h.slack.Calls(), "views.open")[0]
	if call.Param("trigger_id") != cmd.TriggerID {
		t.Fatalf("views.open with trigger %q; want %q", call.Param("trigger_id"), cmd.TriggerID)
	}
	for _, want := range []string{ModalCallbackID, BlockAppName, BlockAppSlug, BlockTeamDomain, BlockLoginMethod, `\"channel\":\"C1\"`} {
		if !strings.Contains(call.Param("view"), want) {
			t.Errorf("view lacks %q: %s", want, call.Param("view"))
		}
	}
}

func TestFormThatCannotOpenIsExplained(t *testing.T) {
	h, _ := newHandlerHarness(t)
	h.slack.FailNext("views.open", 1, "expired_trigger_id")
	h.command("U1", "C1", "")
	calls := h.waitCalls("an apology", func(c []slacktest.Call) bool { return countMethod(c, slacktest.MethodResponseURL) == 1 })
	if got := responseTexts(calls); !anyContains(got, "I could not open the form") {
		t.Fatalf("private answers %q", got)
	}
}

// TestFormWhileBackgroundWorkIsBusy: the form's trigger dies 3 s after the
// command, so its wait for a background slot counts: with every slot held
// (slow eligibility look-ups, say), the person is told at the deadline
// instead of the form failing long after.
func TestFormWhileBackgroundWorkIsBusy(t *testing.T) {
	defer func(d time.Duration) { modalTimeout = d }(modalTimeout)
	modalTimeout = 10 * time.Millisecond
	h, _ := newHandlerHarness(t)
	for range cap(h.bot.bgSlots) {
		h.bot.bgSlots <- struct{}{}
	}
	defer func() {
		for range cap(h.bot.bgSlots) {
			<-h.bot.bgSlots
		}
	}()
	h.command("U1", "C1", "")
	calls := h.waitCalls("an apology", func(c []slacktest.Call) bool { return countMethod(c, slacktest.MethodResponseURL) == 1 })
	if got := responseTexts(calls); !anyContains(got, "I could not open the form; type `/sso-setup new &lt;application name&gt;` instead.") {
		t.Fatalf("private answers %q", got)
	}
}

func submission(h *harness, user string, meta string, values map[string]string) url.Values {
	st := map[string]map[string]slacktest.StateValue{}
	for block, v := range values {
		st[block] = map[string]slacktest.StateValue{ModalActionValue: {Type: "plain_text_input", Value: v}}
	}
	return slacktest.ViewSubmissionPayload(slacktest.ViewSubmission{UserID: user, TeamID: h.slack.TeamID(), ViewID: "V1",
		CallbackID: ModalCallbackID, PrivateMetadata: meta, Values: st})
}

func TestViewSubmission(t *testing.T) {
	h, eng := newHandlerHarness(t)
	meta := `{"channel":"C1"}`
	tests := []struct {
		name     string
		meta     string
		values   map[string]string
		wantErrs map[string]string // block -> substring; nil: accepted
	}{
		{"empty name", meta, map[string]string{BlockAppName: " "}, map[string]string{BlockAppName: "The application name is empty"}},
		{"bad fields", meta, map[string]string{BlockAppName: "Grafana", BlockAppSlug: "Not A Slug", BlockTeamDomain: "bad_team", BlockLoginMethod: strings.Repeat("x", 101)},
			map[string]string{BlockAppSlug: "may contain only", BlockTeamDomain: "is not a team domain", BlockLoginMethod: "longer than 100"}},
		{"reserved slug", meta, map[string]string{BlockAppName: "Token", BlockAppSlug: "token"}, map[string]string{BlockAppSlug: "reserved"}},
		{"slug not derivable from letters", meta, map[string]string{BlockAppName: "日本語"}, map[string]string{BlockAppSlug: "No slug can be made from this name"}},
		{"slug not derivable from punctuation", meta, map[string]string{BlockAppName: "!!!"}, map[string]string{BlockAppSlug: "No slug can be made from this name"}},
		{"no slug needed when given", meta, map[string]string{BlockAppName: "!!!", BlockAppSlug: "bad slug"}, map[string]string{BlockAppSlug: "may contain only"}},
		{"no channel", "", map[string]string{BlockAppName: "Grafana"}, map[string]string{BlockAppName: "cannot be started from this channel"}},
		{"accepted", meta, map[string]string{BlockAppName: "Grafana", BlockTeamDomain: "Company.CloudflareAccess.com"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := h.post("/slack/interactions", submission(h, "U1", tt.meta, tt.values))
			if status != http.StatusOK {
				t.Fatalf("status %d", status)
			}
			if tt.wantErrs == nil {
				if strings.TrimSpace(body) != "" {
					t.Fatalf("body %q; want empty (close the form)", body)
				}
				return
			}
			var resp slack.ViewSubmissionResponse
			if err := json.Unmarshal([]byte(body), &resp); err != nil {
				t.Fatalf("decode %q: %v", body, err)
			}
			if resp.ResponseAction != slack.RAErrors || len(resp.Errors) != len(tt.wantErrs) {
				t.Fatalf("response %+v; want errors on %v", resp, tt.wantErrs)
			}
			for block, want := range tt.wantErrs {
				if !strings.Contains(resp.Errors[block], want) {
					t.Errorf("error on %s = %q; want %q", block, resp.Errors[block], want)
				}
			}
		})
	}
	run := eng.run(1)
	if run == nil || run.Request.ApplicationName != "Grafana" || run.Request.Channel != "C1" || run.Request.TeamDomain != "company.cloudflareaccess.com" || run.Request.RequestedBy != "U1" {
		t.Fatalf("run %+v", run)
	}
	if eng.run(2) != nil {
		t.Fatal("a refused submission started a run")
	}
	// A name pasted from a run's message, which carries Escape's
	// zero-width spaces, is the name that was shown.
	if _, body := h.post("/slack/interactions", submission(h, "U1", meta, map[string]string{BlockAppName: "my\u200b_\u200bapp"})); strings.TrimSpace(body) != "" {
		t.Fatalf("pasted name refused: %s", body)
	}
	if run := eng.run(2); run == nil || run.Request.ApplicationName != "my_app" {
		t.Fatalf("pasted name: run %+v; want my_app", run)
	}
	// The form has no quoting rules: quotes, backslashes, &, < and > in its
	// values reach the run as they arrive.
	const name, login = `My <App> & "Co" \ 'x'`, `Okta "SSO" \"`
	if _, body := h.post("/slack/interactions", submission(h, "U1", meta, map[string]string{BlockAppName: name, BlockLoginMethod: login})); strings.TrimSpace(body) != "" {
		t.Fatalf("name with quotes refused: %s", body)
	}
	if run := eng.run(3); run == nil || run.Request.ApplicationName != name || run.Request.LoginMethodName != login {
		t.Fatalf("name with quotes: run %+v; want %q and %q", run, name, login)
	}
}

func click(h *harness, user, action, value string) url.Values {
	return slacktest.BlockActionsPayload(slacktest.BlockAction{UserID: user, TeamID: h.slack.TeamID(), ChannelID: "C1", MessageTS: "1.000001",
		ActionID: action, BlockID: BlockGate, Value: value, ResponseURL: h.slack.NewResponseURLFor("C1", "", user), TriggerID: h.slack.NewTriggerID()})
}

func TestBlockActions(t *testing.T) {
	h, eng := newHandlerHarness(t)
	run := sampleRun(workflow.GateAuthentik, workflow.StepWaiting, workflow.StateAwaitingApproval)
	run.Approvals = []workflow.Approval{{Gate: workflow.GateCloudflare, User: "U2", Decision: workflow.Approve, At: t0}}
	eng.put(run)
	eng.decideFn = func(d workflow.DecisionRequest) (*workflow.Run, error) {
		switch d.User {
		case "U2":
			return run, nil
		case "U1":
			return nil, &workflow.RefusedError{Reason: "you requested run #42, so another approver must decide", Kind: workflow.RefusedOwnRun}
		case "U7":
			return nil, &workflow.RefusedError{Reason: "gate expired", Kind: workflow.RefusedExpired, At: t0}
		case "U8":
			return nil, &workflow.RefusedError{Reason: "you already approved", Kind: workflow.RefusedRepeat, At: t0, Decision: workflow.Approve}
		case "U9":
			return nil, &workflow.RefusedError{Reason: "run #42 is already succeeded", Kind: workflow.RefusedRunState, State: workflow.StateSucceeded}
		case "U10":
			return nil, &workflow.RefusedError{Reason: "run #42 is already cancelled", Kind: workflow.RefusedRunState, State: workflow.StateCancelled}
		case "U4":
			return nil, &workflow.RefusedError{Reason: "gate was decided", DecidedBy: "U2"}
		case "U5":
			return nil, fmt.Errorf("decide: %w", workflow.ErrNotFound)
		}
		return nil, errBoom
	}
	tests := []struct {
		name, user, action, value, want string
	}{
		{"approve", "U2", ActionApprove, "42|authentik|nonce-authentik", ":ballot_box_with_check: You approved *Approval to create the authentik provider and application* of run #42."},
		{"reject", "U2", ActionReject, "42|authentik|nonce-authentik", ":ballot_box_with_check: You rejected"},
		{"self approval", "U1", ActionApprove, "42|authentik|nonce-authentik", ":no_entry: You requested run #42, so another approver must decide. To stop it, type `/sso-setup cancel 42`."},
		{"expired", "U7", ActionApprove, "42|authentik|n", ":no_entry: *Approval to create the authentik provider and application* of run #42 expired <!date^" + itoa(t0.Unix())},
		{"repeat", "U8", ActionApprove, "42|authentik|n", ":no_entry: You already approved *Approval to create the authentik provider and application* of run #42 (<!date^" + itoa(t0.Unix())},
		{"run over", "U9", ActionApprove, "42|authentik|n", ":no_entry: Run #42 has succeeded."},
		{"run cancelled", "U10", ActionApprove, "42|authentik|n", ":no_entry: Run #42 was cancelled."},
		{"already decided names who and when", "U4", ActionApprove, "42|cloudflare|n", ":no_entry: Already approved by <@U2> at <!date^" + itoa(t0.Unix())},
		{"gone", "U5", ActionApprove, "42|authentik|n", "There is no run #42."},
		{"engine failure", "U6", ActionApprove, "42|authentik|n", "I could not record your decision"},
		{"damaged value", "U2", ActionApprove, "garbage", "This button is not one I know"},
		{"unknown action", "U2", "launch_missiles", "x", "I don't know that action."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(h.slack.Calls(slacktest.MethodResponseURL))
			status, body := h.post("/slack/interactions", click(h, tt.user, tt.action, tt.value))
			if status != http.StatusOK || strings.TrimSpace(body) != "" {
				t.Fatalf("status %d body %q; want an empty 200", status, body)
			}
			calls := h.waitCalls("the private answer", func(c []slacktest.Call) bool {
				return countMethod(c, slacktest.MethodResponseURL) > before
			})
			if got := responseTexts(calls)[before]; !strings.HasPrefix(got, tt.want) {
				t.Fatalf("answer %q; want prefix %q", got, tt.want)
			}
		})
	}
	eng.mu.Lock()
	defer eng.mu.Unlock()
	// The clicked message goes along, for the engine to compare with the run's.
	if d := eng.decides[0]; d != (workflow.DecisionRequest{RunID: 42, Gate: workflow.GateAuthentik, Nonce: "nonce-authentik", User: "U2", Decision: workflow.Approve, MessageRef: "C1|1.000001"}) {
		t.Fatalf("first decision %+v", d)
	}
	if d := eng.decides[1]; d.Decision != workflow.Reject {
		t.Fatalf("second decision %+v", d)
	}
}

func TestPrivateAnswerFallsBackToEphemeral(t *testing.T) {
	h, eng := newHandlerHarness(t)
	eng.decideFn = func(d workflow.DecisionRequest) (*workflow.Run, error) {
		return nil, &workflow.RefusedError{Reason: "you are not an approver: ask <@U2>"}
	}
	form := slacktest.BlockActionsPayload(slacktest.BlockAction{UserID: "U3", ChannelID: "C1", MessageTS: "1.1", ActionID: ActionApprove, BlockID: BlockGate, Value: "1|authentik|n"})
	h.post("/slack/interactions", form)
	calls := h.waitCalls("chat.postEphemeral", func(c []slacktest.Call) bool { return len(okCalls(c, "chat.postEphemeral")) == 1 })
	c := okCalls(calls, "chat.postEphemeral")[0]
	if c.Param("user") != "U3" || c.Param("channel") != "C1" || c.Param("text") != ":no_entry: You are not an approver: ask <@U2>." {
		t.Fatalf("ephemeral %s", c)
	}
}

func TestUnknownInteractionGetsAPrivateReply(t *testing.T) {
	h, _ := newHandlerHarness(t)
	payload := fmt.Sprintf(`{"type":"shortcut","callback_id":"x","user":{"id":"U1"},"response_url":%q}`, h.slack.NewResponseURL())
	status, _ := h.post("/slack/interactions", url.Values{"payload": {payload}})
	if status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	calls := h.waitCalls("the reply", func(c []slacktest.Call) bool { return countMethod(c, slacktest.MethodResponseURL) == 1 })
	if got := responseTexts(calls); got[0] != "I don't know that action." {
		t.Fatalf("reply %q", got)
	}
	// Unreadable payloads are acknowledged too: never a 500.
	for _, form := range []url.Values{{}, {"payload": {"{"}}, {"payload": {`{"type":7}`}}} {
		if status, _ := h.post("/slack/interactions", form); status != http.StatusOK {
			t.Fatalf("payload %v: status %d", form, status)
		}
	}
}

type panickyEngine struct{ *fakeEngine }

func (panickyEngine) Get(context.Context, int64) (*workflow.Run, error) { panic("bug") }

// panicky panics in Decide and Cancel, off the request path, with a
// credential in the panic value.
type panicky struct{ *fakeEngine }

const panicToken = "xoxb-panic-token-1234"

func (panicky) Decide(context.Context, workflow.DecisionRequest) (*workflow.Run, error) {
	panic(fmt.Errorf("decide with token %v", workflow.NewSecret(panicToken)))
}

func (panicky) Cancel(context.Context, int64, string, string) (*workflow.Run, error) {
	panic(fmt.Sprintf("cancel with token %s", workflow.NewSecret(panicToken)))
}

func TestPanicIsNot500(t *testing.T) {
	h := newHarness(t, nil)
	h.bot.Attach(panickyEngine{newFakeEngine(h.clock)})
	r := h.command("U1", "C1", "status 1")
	if !strings.Contains(r.Text, "Something went wrong") {
		t.Fatalf("reply %q", r.Text)
	}
}

func TestPanicOffTheRequestPathIsContained(t *testing.T) {
	h := newHarness(t, nil)
	h.bot.Attach(panicky{newFakeEngine(h.clock)})
	if status, _ := h.post("/slack/interactions", click(h, "U2", ActionApprove, "1|authentik|n")); status != http.StatusOK {
		t.Fatalf("click status %d", status)
	}
	if r := h.command("U1", "C1", "cancel 1"); !strings.Contains(r.Text, "Cancelling run #1") {
		t.Fatalf("cancel ack %q", r.Text)
	}
	h.bot.wg.Wait() // returns: the panicking goroutines ended
	logs := h.logBuf.String()
	if n := strings.Count(logs, "panic in background work"); n != 2 {
		t.Fatalf("%d panics logged; want 2:\n%s", n, logs)
	}
	if strings.Contains(logs, panicToken) {
		t.Fatal("the panic value's credential reached the logs")
	}
	// The bot still answers.
	if r := h.command("U1", "C1", "help"); !strings.Contains(r.Text, "*Usage*") {
		t.Fatalf("help after panics: %q", r.Text)
	}
}

// refusingTransport fails every request: fuzzed payloads carry arbitrary
// response URLs that must not reach the network.
type refusingTransport struct{}

func (refusingTransport) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("no network in this test")
}

func FuzzInteraction(f *testing.F) {
	for _, s := range []string{
		string(slacktest.BlockActionsJSON(slacktest.BlockAction{UserID: "U2", ActionID: ActionApprove, BlockID: BlockGate, Value: "1|authentik|n", ChannelID: "C1", MessageTS: "1.1", ResponseURL: "http://127.0.0.1:1/r"})),
		string(slacktest.BlockActionsJSON(slacktest.BlockAction{UserID: "U2", ActionID: ActionReject, BlockID: BlockGate, Value: "x|y", ChannelID: "C1"})),
		string(slacktest.BlockActionsJSON(slacktest.BlockAction{UserID: "U2", ActionID: ActionApprove, BlockID: BlockGate, Value: "1|authentik|n", ViewID: "V1"})),
		string(slacktest.BlockActionsJSON(slacktest.BlockAction{UserID: "U2", ActionID: ActionApprove, BlockID: BlockGate, Value: "1|<!channel>|n", ChannelID: "C1", MessageTS: "1.1", IsEphemeral: true})),
		string(slacktest.ViewSubmissionJSON(slacktest.ViewSubmission{UserID: "U1", CallbackID: ModalCallbackID, PrivateMetadata: `{"channel":"C1"}`,
			Values: map[string]map[string]slacktest.StateValue{BlockAppName: {ModalActionValue: {Type: "plain_text_input", Value: "Grafana"}}}})),
		`{"type":"view_submission","view":{"callback_id":"sso_setup_new","state":{"values":{"app_name":{"value":{"value":""}}}}}}`,
		`{"type":"view_submission","view":{"callback_id":"sso_setup_new","private_metadata":"{\"channel\":\"C1\"}","state":{"values":{"app_name":{"value":{"value":"Graf` + "\xff" + `ana"}}}}}}`,
		"{\"type\":\"block_actions\",\"user\":{\"id\":\"U\xff\"},\"actions\":[{\"action_id\":\"approve\",\"block_id\":\"gate\",\"value\":\"1|authentik|n\"}]}",
		`{"type":"view_closed"}`, `{"type":"shortcut","response_url":"http://127.0.0.1:1/x"}`, `{`, ``, `null`, `{"type":"block_actions","actions":[null]}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		// A bot per input: nothing one input leaves behind (queued runs,
		// remembered signatures) changes how the next is handled.
		clock := newTestClock()
		eng := newFakeEngine(clock)
		eng.decideFn = func(d workflow.DecisionRequest) (*workflow.Run, error) {
			return nil, &workflow.RefusedError{Reason: "no"}
		}
		b, err := New(Config{
			Client:        slack.New("xoxb-fuzz", slack.OptionAPIURL("http://127.0.0.1:1/api/"), slack.OptionHTTPClient(&http.Client{Transport: refusingTransport{}})),
			SigningSecret: workflow.NewSecret(testSecret),
			Clock:         clock,
			Logger:        slog.New(slog.DiscardHandler),
		})
		if err != nil {
			t.Fatal(err)
		}
		b.Attach(eng)
		body := url.Values{"payload": {payload}}.Encode()
		req := slacktest.SignedRequest("http://bot/slack/interactions", testSecret, []byte(body), clock.Now())
		rec := httptest.NewRecorder()
		b.Handler().ServeHTTP(rec, req)
		b.wg.Wait()
		if rec.Code != http.StatusOK {
			t.Fatalf("status %d for payload %q", rec.Code, payload)
		}
		if out := rec.Body.String(); strings.TrimSpace(out) != "" {
			var v slack.ViewSubmissionResponse
			if err := json.Unmarshal([]byte(out), &v); err != nil || v.ResponseAction != slack.RAErrors || len(v.Errors) == 0 {
				t.Fatalf("answer %q is not a view_submission errors response", out)
			}
		}
		// Whatever reached the engine is well formed: valid UTF-8, a gate
		// of the plan, and the message clicked, so a click is never taken
		// without its message being checked.
		eng.mu.Lock()
		defer eng.mu.Unlock()
		if len(eng.decides) > 0 && !utf8.ValidString(payload) {
			t.Fatalf("a payload of invalid UTF-8 reached the engine: %q", payload)
		}
		for _, d := range eng.decides {
			if !isGate(d.Gate) || d.MessageRef == "" || d.RunID <= 0 || !utf8.ValidString(d.User+d.Nonce+d.MessageRef) {
				t.Fatalf("engine asked to decide %+v", d)
			}
		}
		for _, r := range eng.runs {
			if !utf8.ValidString(r.Request.ApplicationName + r.Request.ApplicationSlug + r.Request.LoginMethodName + r.Request.TeamDomain + r.Request.RequestedBy + r.Request.Channel) {
				t.Fatalf("run started from invalid UTF-8: %+v", r.Request)
			}
		}
	})
}

func TestStartFailureIsExplained(t *testing.T) {
	h, eng := newHandlerHarness(t)
	eng.startErr = errBoom
	r := h.command("U1", "C1", "new Grafana")
	if r.ResponseType != slack.ResponseTypeEphemeral || !strings.Contains(r.Text, "I could not start the run") || strings.Contains(r.Text, "boom") {
		t.Fatalf("reply %+v", r)
	}
	if !strings.Contains(h.logBuf.String(), "boom") {
		t.Fatal("the failure was not logged")
	}
}

// TestDrainWaitsForAcknowledgedWork: a click is answered at once and
// decided in the background; Drain, which shutdown calls before stopping
// the engine, returns only once that decision was made.
func TestDrainWaitsForAcknowledgedWork(t *testing.T) {
	h, eng := newHandlerHarness(t)
	run := sampleRun(workflow.GateAuthentik, workflow.StepWaiting, workflow.StateAwaitingApproval)
	eng.put(run)
	entered, release := make(chan struct{}), make(chan struct{})
	var decided atomic.Bool
	eng.decideFn = func(d workflow.DecisionRequest) (*workflow.Run, error) {
		close(entered)
		<-release
		decided.Store(true)
		return run, nil
	}
	if status, _ := h.post("/slack/interactions", click(h, "U2", ActionApprove, "42|authentik|nonce-authentik")); status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	<-entered
	expired, cancel := context.WithCancel(context.Background())
	cancel()
	if err := h.bot.Drain(expired); err == nil || !strings.Contains(err.Error(), "background work for Slack requests: 1:") {
		t.Errorf("Drain with the decision still running = %v; want it to say one piece is left", err)
	}
	close(release)
	ctx, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	if err := h.bot.Drain(ctx); err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if !decided.Load() {
		t.Error("Drain returned before the acknowledged click was decided")
	}
}

// TestUnapprovableRequester: with approvers listed by ID only and no
// self-approval, an approver whose run no one else could approve is told
// so at once, by the command and by the form, instead of the run waiting
// for its gate to expire.
func TestUnapprovableRequester(t *testing.T) {
	tests := []struct {
		name      string
		users     []string
		groups    []string
		required  int
		self      bool
		requester string
		refused   bool
	}{
		{"sole approver requests", []string{"U2"}, nil, 1, false, "U2", true},
		{"two approvers, two required", []string{"U1", "U2"}, nil, 2, false, "U2", true},
		{"non-approver requests", []string{"U2"}, nil, 1, false, "U1", false},
		{"another approver is left", []string{"U1", "U2"}, nil, 1, false, "U2", false},
		{"self-approval allowed", []string{"U2"}, nil, 1, true, "U2", false},
		{"a group may hold others", []string{"U2"}, []string{"S1"}, 1, false, "U2", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, eng := newHandlerHarness(t, func(c *Config) {
				c.ApproverUsers, c.ApproverGroups, c.ApprovalsRequired, c.AllowSelfApproval = tt.users, tt.groups, tt.required, tt.self
			})
			r := h.command(tt.requester, "C1", "new Grafana")
			refused := strings.Contains(r.Text, "You may not approve your own runs")
			if refused != tt.refused {
				t.Errorf("reply %q; refused = %v, want %v", r.Text, refused, tt.refused)
			}
			if started := slices.Contains(eng.Calls(), "Start"); started == tt.refused {
				t.Errorf("Start called = %v, want %v", started, !tt.refused)
			}
			if tt.refused && !strings.Contains(r.Text, "SSOBOT_APPROVERS") {
				t.Errorf("reply %q does not say what to change", r.Text)
			}
			// The form says it too, in plain text (no emoji code).
			_, body := h.post("/slack/interactions", submission(h, tt.requester, `{"channel":"C1"}`, map[string]string{BlockAppName: "Wiki"}))
			var resp slack.ViewSubmissionResponse
			_ = json.Unmarshal([]byte(body), &resp)
			if got := resp.Errors[BlockAppName]; tt.refused != strings.HasPrefix(got, "You may not approve your own runs") {
				t.Errorf("form: error %q; refused = %v", got, tt.refused)
			}
		})
	}
}

// TestRunsOfOtherChannelsStayThere: a run started in a private channel is
// shown to its requester and the listed approvers anywhere, and to others
// only in its channel; list leaves it out for them.
func TestRunsOfOtherChannelsStayThere(t *testing.T) {
	h, eng := newHandlerHarness(t)
	here := sampleRun(workflow.GateAuthentik, workflow.StepWaiting, workflow.StateAwaitingApproval)
	here.ID, here.Request.ApplicationName = 1, "Wiki"
	secret := sampleRun(workflow.GateAuthentik, workflow.StepWaiting, workflow.StateAwaitingApproval)
	secret.ID, secret.Request.Channel, secret.Request.ApplicationName, secret.Params.ApplicationName = 2, "G9", "Payroll", "Payroll"
	eng.put(here)
	eng.put(secret)

	if r := h.command("U3", "C1", "status 2"); strings.Contains(r.Text, "Payroll") || !strings.Contains(r.Text, "started in another channel") {
		t.Errorf("a bystander elsewhere asked for the private run: %q", r.Text)
	}
	if r := h.command("U3", "G9", "status 2"); !strings.Contains(r.Text, "Payroll") {
		t.Errorf("in the run's own channel: %q", r.Text)
	}
	for _, who := range []string{"U1", "U2"} { // the requester, an approver
		if r := h.command(who, "C1", "status 2"); !strings.Contains(r.Text, "Payroll") {
			t.Errorf("%s asked elsewhere: %q", who, r.Text)
		}
	}
	list := h.command("U3", "C1", "list").Text
	if strings.Contains(list, "Payroll") || !strings.Contains(list, "`#1`") || !strings.Contains(list, "listed there") {
		t.Errorf("a bystander's list:\n%s", list)
	}
	if list := h.command("U2", "C1", "list").Text; !strings.Contains(list, "Payroll") {
		t.Errorf("an approver's list:\n%s", list)
	}
}

// sharedRun is a cancelled run with a requester (U1), approvals of both
// gates (U2, U4) and a cancel (U5), for the tests of a public status.
func sharedRun() *workflow.Run {
	r := sampleRun(workflow.StepCloudflareLoginMethod, workflow.StepCancelled, workflow.StateCancelled)
	r.Approvals = []workflow.Approval{
		{Gate: workflow.GateAuthentik, User: "U2", Decision: workflow.Approve, At: t0, Reason: "<@U9> looks right"},
		{Gate: workflow.GateCloudflare, User: "U4", Decision: workflow.Approve, At: t0.Add(time.Minute)},
	}
	r.Error = "cancelled by U5: wrong team"
	return r
}

// addSharedRunPeople adds the people of sharedRun to the fake workspace,
// but U5 if gone; U2 chose a display name meant to mention everyone.
func addSharedRunPeople(srv *slacktest.Server, gone bool) {
	srv.AddUser(slacktest.User{ID: "U1", Name: "alice", RealName: "Alice Liddell", DisplayName: "Alice"})
	srv.AddUser(slacktest.User{ID: "U2", Name: "bob", RealName: "Bob", DisplayName: "<!channel> *Bob* <@U9>"})
	srv.AddUser(slacktest.User{ID: "U4", Name: "carol", RealName: "Carol Jones"})
	if !gone {
		srv.AddUser(slacktest.User{ID: "U5", Name: "dave"})
	}
}

// replyTexts are the text and every string in the blocks of a reply,
// decoded, so that JSON's \u003c cannot hide a mention.
func replyTexts(t *testing.T, r testReply) []string {
	t.Helper()
	out := []string{r.Text}
	var blocks any
	if err := json.Unmarshal(r.Blocks, &blocks); err != nil {
		t.Fatalf("blocks: %v", err)
	}
	texts(blocks, &out)
	return out
}

// notifying returns the first markup in texts that would notify someone
// (a user's or a group's mention, @channel and the like), or "". Dates
// (<!date^…>) notify no one.
func notifying(texts []string) string {
	for _, s := range texts {
		if i := strings.Index(s, "<@"); i >= 0 {
			return s[i:min(len(s), i+30)]
		}
		for i := strings.Index(s, "<!"); i >= 0; i = strings.Index(s, "<!") {
			if !strings.HasPrefix(s[i:], "<!date^") {
				return s[i:min(len(s), i+30)]
			}
			s = s[i+2:]
		}
	}
	return ""
}

// TestPublicStatusNotifiesNoOne: `status N public` is acknowledged at once,
// privately, and the card then posted in the channel through the command's
// response URL names its people without mentioning them, in verbatim text;
// privately, where a mention notifies no one, it mentions them as before.
func TestPublicStatusNotifiesNoOne(t *testing.T) {
	h, eng := newHandlerHarness(t)
	h.slack.AddChannel("C2", "random", true)
	addSharedRunPeople(h.slack, false)
	run := sharedRun()
	eng.put(run)
	private := blocksJSON(t, renderRun(run, h.bot.links(), false, "", mention))
	tests := []struct {
		name, user, channel, text string
		shared                    bool // posts the card in the channel
		want                      []string
	}{
		{name: "public", user: "U3", channel: "C1", text: "status 42 public", shared: true,
			want: []string{"*Requested by*\n@Alice", "@&lt;!channel&gt; \u200b*\u200bBob\u200b*\u200b &lt;@U9&gt; approved _authentik_",
				"@Carol Jones approved _Cloudflare_", "cancelled by @dave: wrong team", "&lt;@U9&gt; looks right"}},
		{name: "private", user: "U3", channel: "C1", text: "status 42",
			want: []string{"*Requested by*\n<@U1>", "<@U2> approved _authentik_", "<@U4> approved _Cloudflare_", "cancelled by <@U5>: wrong team"}},
		{name: "public from another channel", user: "U1", channel: "C2", text: "status 42 public",
			want: []string{"Run #42 belongs to <#C1>, so only you see it here", "*Requested by*\n<@U1>", "cancelled by <@U5>: wrong team"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(h.slack.Calls())
			r := h.command(tt.user, tt.channel, tt.text)
			if r.ResponseType != slack.ResponseTypeEphemeral {
				t.Fatalf("response_type %q; want ephemeral", r.ResponseType)
			}
			if !tt.shared {
				if calls := h.slack.Calls()[before:]; len(calls) != 0 {
					t.Errorf("a private status called Slack:\n%s", callList(calls))
				}
				var blocks []json.RawMessage
				if err := json.Unmarshal(r.Blocks, &blocks); err != nil {
					t.Fatal(err)
				}
				all := strings.Join(replyTexts(t, r), "\n")
				for _, w := range tt.want {
					if !strings.Contains(all, w) {
						t.Errorf("reply lacks %q:\n%s", w, all)
					}
				}
				// Privately nothing changed: the card is the one rendered with mentions.
				card, _ := json.Marshal(blocks[len(blocks)-len(renderRun(run, h.bot.links(), false, "", mention)):])
				if !jsonEqual(t, card, []byte(private)) {
					t.Errorf("private card changed:\n%s\nwant\n%s", card, private)
				}
				return
			}
			if r.Text != "Sharing run #42 in this channel…" || len(r.Blocks) != 0 {
				t.Errorf("acknowledgement %+v", r)
			}
			card := h.sharedCard(before)
			got := replyTexts(t, card)
			all := strings.Join(got, "\n")
			for _, w := range tt.want {
				if !strings.Contains(all, w) {
					t.Errorf("card lacks %q:\n%s", w, all)
				}
			}
			if bad := notifying(got); bad != "" {
				t.Errorf("the public card would notify: %q in\n%s", bad, all)
			}
			if strings.Contains(all, "Slack user") {
				t.Errorf("a name was not found:\n%s", all)
			}
			if n, bad := notVerbatim(t, card.Blocks); n == 0 || bad != 0 {
				t.Errorf("%d of the card's %d mrkdwn texts are not verbatim:\n%s", bad, n, card.Blocks)
			}
			var lookups []string
			for _, c := range h.slack.Calls("users.info") {
				lookups = append(lookups, c.Param("user"))
			}
			slices.Sort(lookups)
			if want := []string{"U1", "U2", "U4", "U5"}; !slices.Equal(lookups, want) {
				t.Errorf("looked up %v; want %v", lookups, want)
			}
		})
	}
}

// TestPublicStatusUsesTheCache: a run shared again names its people from
// the cache eligibility keeps, without asking Slack.
func TestPublicStatusUsesTheCache(t *testing.T) {
	h, eng := newHandlerHarness(t)
	addSharedRunPeople(h.slack, false)
	eng.put(sharedRun())
	for i, user := range []string{"U3", "U1"} {
		before := len(h.slack.Calls())
		h.command(user, "C1", "status 42 public")
		all := strings.Join(replyTexts(t, h.sharedCard(before)), "\n")
		if !strings.Contains(all, "*Requested by*\n@Alice") || !strings.Contains(all, "cancelled by @dave: wrong team") {
			t.Errorf("share %d lacks the names:\n%s", i+1, all)
		}
		if n := countMethod(h.slack.Calls()[before:], "users.info"); (i == 0) != (n == 4) || (i == 1) != (n == 0) {
			t.Errorf("share %d looked up %d names", i+1, n)
		}
	}
}

// sharedCard waits, within waitCalls' bound, for the card a public status
// posts in the channel through its command's response URL (a call after
// the first since), and decodes it.
func (h *harness) sharedCard(since int) testReply {
	h.t.Helper()
	find := func(calls []slacktest.Call) *slacktest.Call {
		for i := since; i < len(calls); i++ {
			if calls[i].Method == slacktest.MethodResponseURL && calls[i].Param("response_type") == slack.ResponseTypeInChannel {
				return &calls[i]
			}
		}
		return nil
	}
	c := find(h.waitCalls("the card posted in the channel", func(calls []slacktest.Call) bool { return find(calls) != nil }))
	if c.Status != http.StatusOK || c.Error != "" {
		h.t.Fatalf("the card was refused: %s", c)
	}
	return testReply{ResponseType: c.Param("response_type"), Text: c.Param("text"), Blocks: json.RawMessage(c.Param("blocks"))}
}

// notVerbatim counts the mrkdwn text objects in blocks, and those of them
// not marked verbatim, which Slack parses for bare URLs, #channels and
// @names.
func notVerbatim(t *testing.T, blocks json.RawMessage) (n, bad int) {
	t.Helper()
	var v any
	if err := json.Unmarshal(blocks, &v); err != nil {
		t.Fatalf("blocks: %v", err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			if x["type"] == slack.MarkdownType {
				n++
				if x["verbatim"] != true {
					bad++
				}
			}
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	return n, bad
}

func jsonEqual(t *testing.T, a, b []byte) bool {
	t.Helper()
	var x, y any
	if err := json.Unmarshal(a, &x); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &y); err != nil {
		t.Fatal(err)
	}
	return reflect.DeepEqual(x, y)
}

// failUser is a transport to the fake Slack that fails or holds the
// users.info lookups of one user, as a Slack outage or a slow answer would.
type failUser struct {
	user string
	hold bool // hold the lookup until its context ends, instead of failing it
}

var errHeldTooLong = errors.New("held too long: nothing cut the call off")

func (f failUser) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, "/users.info") {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return nil, err
		}
		form, _ := url.ParseQuery(string(body))
		if form.Get("user") == f.user {
			if f.hold {
				// Bounded, so that a lookup nothing cuts off fails the
				// test (see errHeldTooLong) instead of hanging it.
				select {
				case <-r.Context().Done():
					return nil, r.Context().Err()
				case <-time.After(5 * time.Second):
					return nil, errHeldTooLong
				}
			}
			return nil, errors.New("connection reset")
		}
		r.Body = io.NopCloser(strings.NewReader(string(body)))
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestPublicStatusLookupFailures: whoever cannot be looked up, for any
// reason, is shown by user ID, never mentioned; the others by name.
func TestPublicStatusLookupFailures(t *testing.T) {
	tests := []struct {
		name      string
		transport http.RoundTripper
		gone      bool   // U5 is not in the workspace (user_not_found)
		limited   string // users.info answers this user 429, Retry-After 5 s
		want      string
		logged    string
	}{
		{name: "user not found", gone: true, want: "cancelled by Slack user U5: wrong team", logged: "user_not_found"},
		{name: "lookup fails", transport: failUser{user: "U2"}, want: "Slack user U2 approved _authentik_", logged: "connection reset"},
		{name: "lookup too slow", transport: failUser{user: "U1", hold: true}, want: "*Requested by*\nSlack user U1", logged: "context deadline exceeded"},
		{name: "another lookup fails", transport: failUser{user: "U4"}, want: "Slack user U4 approved _Cloudflare_", logged: "connection reset"},
		{name: "rate limited", limited: "U4", want: "Slack user U4 approved _Cloudflare_", logged: "rate limit"},
	}
	names := map[string]string{"U1": "@Alice", "U2": "@&lt;!channel&gt;", "U4": "@Carol Jones", "U5": "@dave"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := namesTimeout
			namesTimeout = 200 * time.Millisecond // the held lookup ends with it
			t.Cleanup(func() { namesTimeout = old })
			h, eng := newHandlerHarness(t, func(c *Config) {
				if tt.transport != nil {
					slack.OptionHTTPClient(&http.Client{Transport: tt.transport})(c.Client)
				}
			})
			addSharedRunPeople(h.slack, tt.gone)
			if tt.limited != "" {
				// The others are looked up first, from the cache.
				limitU4(t, h)
			}
			eng.put(sharedRun())
			before := len(h.slack.Calls())
			h.command("U3", "C1", "status 42 public")
			got := replyTexts(t, h.sharedCard(before))
			all := strings.Join(got, "\n")
			if bad := notifying(got); bad != "" {
				t.Errorf("the public card would notify: %q in\n%s", bad, all)
			}
			if !strings.Contains(all, tt.want) {
				t.Errorf("card lacks %q:\n%s", tt.want, all)
			}
			for user, name := range names {
				if shown := strings.Contains(all, name); shown == strings.Contains(tt.want, user) {
					t.Errorf("%s shown by name: %v; want only the one who failed by ID:\n%s", user, shown, all)
				}
			}
			if n := strings.Count(all, "Slack user "); n != 1 {
				t.Errorf("%d users shown by ID; want 1:\n%s", n, all)
			}
			if logs := h.logBuf.String(); !strings.Contains(logs, "some names were not found") || !strings.Contains(logs, tt.logged) {
				t.Errorf("the failed lookup was not logged with %q:\n%s", tt.logged, logs)
			}
			if tt.limited != "" {
				// One attempt: the wait Slack asks for is not waited out.
				if n := countMethod(h.slack.Calls()[before:], "users.info"); n != 1 {
					t.Errorf("%d lookups of %s; want 1", n, tt.limited)
				}
				if waits := h.clock.Waits(); len(waits) != 0 {
					t.Errorf("waited %v for the rate limit", waits)
				}
			}
		})
	}
}

// limitU4 caches the people of sharedRun but U4, whose lookup, the only
// one left, then answers 429 with Retry-After 5 s.
func limitU4(t *testing.T, h *harness) {
	t.Helper()
	for _, u := range []string{"U1", "U2", "U5"} {
		if _, err := h.bot.appr.userInfo(context.Background(), u); err != nil {
			t.Fatal(err)
		}
	}
	h.slack.RateLimitNext("users.info", 1, 5)
}

// TestPublicStatusRemembersFailures: a user Slack does not know is
// remembered as unknown like a known one, and after a 429 no lookup calls
// users.info before its Retry-After has passed.
func TestPublicStatusRemembersFailures(t *testing.T) {
	tests := []struct {
		name    string
		gone    bool // U5 is not in the workspace (user_not_found)
		limited bool // the lookup of U4, the only one not cached, answers 429 with Retry-After 5 s
		after   time.Duration
		calls   []int  // users.info calls of the first, second and third share
		want    string // on the second share's card
	}{
		{name: "user not found", gone: true, after: DefaultGroupCacheTTL, calls: []int{4, 0, 4}, want: "cancelled by Slack user U5: wrong team"},
		{name: "rate limited", limited: true, after: 5 * time.Second, calls: []int{1, 0, 1}, want: "Slack user U4 approved _Cloudflare_"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, eng := newHandlerHarness(t)
			addSharedRunPeople(h.slack, tt.gone)
			if tt.limited {
				limitU4(t, h)
			}
			eng.put(sharedRun())
			for i, calls := range tt.calls {
				if i == 2 {
					h.clock.Advance(tt.after)
				}
				before := len(h.slack.Calls())
				h.command("U3", "C1", "status 42 public")
				all := strings.Join(replyTexts(t, h.sharedCard(before)), "\n")
				if n := countMethod(h.slack.Calls()[before:], "users.info"); n != calls {
					t.Errorf("share %d: %d users.info calls; want %d", i+1, n, calls)
				}
				if i == 1 && !strings.Contains(all, tt.want) {
					t.Errorf("share %d lacks %q:\n%s", i+1, tt.want, all)
				}
			}
			if waits := h.clock.Waits(); len(waits) != 0 {
				t.Errorf("a share waited %v", waits)
			}
		})
	}
}

// TestPublicStatusCardRefused: when Slack does not take the card, the
// person who asked is told so privately, and the failure is logged without
// the response URL, which would let whoever reads the logs post.
func TestPublicStatusCardRefused(t *testing.T) {
	h, eng := newHandlerHarness(t)
	addSharedRunPeople(h.slack, false)
	eng.put(sharedRun())
	h.slack.FailNext(slacktest.MethodResponseURL, 1, "expired_url")
	cmd := h.slack.NewSlashCommand("/sso-setup", "status 42 public", "U3", "C1")
	if status, body := h.post("/slack/commands", slacktest.SlashCommandForm(cmd)); status != http.StatusOK || !strings.Contains(body, "Sharing run #42") {
		t.Fatalf("acknowledgement %d %s", status, body)
	}
	calls := h.waitCalls("the private note", func(c []slacktest.Call) bool { return len(okCalls(c, "chat.postEphemeral")) == 1 })
	note := okCalls(calls, "chat.postEphemeral")[0]
	if note.Param("channel") != "C1" || note.Param("user") != "U3" || !strings.Contains(note.Param("text"), "I could not post run #42 in this channel") {
		t.Errorf("private note %s", note)
	}
	if n := countMethod(calls, slacktest.MethodResponseURL); n != 1 {
		t.Errorf("%d posts to the response URL; want 1", n)
	}
	logs := h.logBuf.String()
	if !strings.Contains(logs, "could not post the run's card") || !strings.Contains(logs, "expired_url") {
		t.Errorf("the failure was not logged:\n%s", logs)
	}
	if strings.Contains(logs, cmd.ResponseURL) || strings.Contains(logs, "/response/") {
		t.Errorf("the response URL reached the logs:\n%s", logs)
	}
}

// TestPublicStatusHostileNames: a display name is the person's to choose;
// on the shared card it is inert text: no mention, link or channel, and no
// character that hides or reorders what follows.
func TestPublicStatusHostileNames(t *testing.T) {
	tests := []struct{ name, shown string }{
		{"here", "@here"},
		{"channel", "@channel"},
		{"everyone", "@everyone"},
		{"https://evil.example/login", "@https://evil.example/login"},
		{"#general", "@#general"},
		{"alice", "@alice"},
		{"<!here> <@U2> <#C1> <https://evil.example|Log in>", "@&lt;!here&gt; &lt;@U2&gt; &lt;#C1&gt; &lt;https://evil.example|Log in&gt;"},
		{"\u202enigol/elpmaxe.live//:sptth", "@nigol/elpmaxe.live//:sptth"},
		{"ad\x00min\u200b\u2066", "@admin"},
	}
	for _, tt := range tests {
		t.Run(strconv.Quote(tt.name), func(t *testing.T) {
			h, eng := newHandlerHarness(t)
			h.slack.AddUser(slacktest.User{ID: "U7", Name: "mallory", DisplayName: tt.name})
			run := sampleRun(workflow.GateAuthentik, workflow.StepWaiting, workflow.StateAwaitingApproval)
			run.Request.RequestedBy = "U7"
			eng.put(run)
			before := len(h.slack.Calls())
			h.command("U3", "C1", "status 42 public")
			card := h.sharedCard(before)
			got := replyTexts(t, card)
			all := strings.Join(got, "\n")
			if !slices.Contains(got, "*Requested by*\n"+tt.shown) {
				t.Errorf("card lacks %q:\n%s", "*Requested by*\n"+tt.shown, all)
			}
			if bad := notifying(got); bad != "" {
				t.Errorf("the card would notify: %q", bad)
			}
			for _, bad := range []string{"<#", "<https://evil", "<http://evil", "\u202e", "\u2066", "\x00", "\u200b"} {
				if strings.Contains(all, bad) {
					t.Errorf("the card has %q:\n%s", bad, all)
				}
			}
			if n, bad := notVerbatim(t, card.Blocks); n == 0 || bad != 0 {
				t.Errorf("%d of the card's %d mrkdwn texts are not verbatim", bad, n)
			}
		})
	}
}

// TestWriteJSONReply: a reply is written as encoding/json writes it
// through its MarshalJSON, whether it carries its encoding or not.
func TestWriteJSONReply(t *testing.T) {
	card := &reply{ResponseType: slack.ResponseTypeEphemeral, Text: "Run #1 <b> & \u2028",
		Blocks: []slack.Block{slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, "*x* <y>", false, false), nil, nil)}}
	encoded, err := json.Marshal(card)
	if err != nil {
		t.Fatal(err)
	}
	for name, r := range map[string]*reply{
		"private": private("Run #12 started: I'll post the plan in this channel."),
		"escapes": private("a <b> & \"c\" \u2028 \x01"),
		"blocks":  card,
		"encoded": {encoded: encoded},
		"no text": {},
	} {
		t.Run(name, func(t *testing.T) {
			var want strings.Builder
			if err := json.NewEncoder(&want).Encode(r); err != nil {
				t.Fatal(err)
			}
			w := httptest.NewRecorder()
			writeJSON(w, r)
			if got := w.Body.String(); got != want.String() && got+"\n" != want.String() {
				t.Errorf("body %q, want %q", got, want.String())
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		})
	}
}
