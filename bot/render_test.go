package bot

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/ssobot/ssobot/bot/slacktest"
	"github.com/ssobot/ssobot/workflow"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// sampleRun is a run of Grafana at the given point of its plan: steps
// before upto succeeded, upto has status st.
func sampleRun(upto workflow.StepName, st workflow.StepStatus, state workflow.State) *workflow.Run {
	r := &workflow.Run{
		ID: 42, State: state, Version: 3,
		Request: workflow.Request{ApplicationName: "Grafana", RequestedBy: "U1", Channel: "C1"},
		Params: workflow.Params{ApplicationName: "Grafana", ApplicationSlug: "grafana", ProviderName: "Provider for Grafana",
			TeamDomain: "company.cloudflareaccess.com", LoginMethodName: "authentik", ClientID: "cid-1",
			AuthentikURL: "https://auth.example.com", AccountID: "acc123"},
		CreatedAt: t0, UpdatedAt: t0.Add(time.Minute),
	}
	reached := false
	for _, p := range workflow.Plan {
		s := workflow.Step{Name: p.Name, Kind: p.Kind, Status: workflow.StepPending}
		switch {
		case p.Name == upto:
			s.Status, reached = st, true
		case !reached:
			s.Status = workflow.StepSucceeded
		}
		if p.Kind == workflow.KindGate {
			s.Required, s.Nonce, s.Deadline = 1, "nonce-"+string(p.Name), t0.Add(24*time.Hour)
		}
		r.Steps = append(r.Steps, s)
	}
	return r
}

func blocksJSON(t *testing.T, blocks []slack.Block) string {
	t.Helper()
	j, err := json.Marshal(blocks)
	if err != nil {
		t.Fatal(err)
	}
	return string(j)
}

func buttonsOf(blocks []slack.Block) []*slack.ButtonBlockElement {
	var out []*slack.ButtonBlockElement
	for _, b := range blocks {
		if a, ok := b.(*slack.ActionBlock); ok {
			for _, e := range a.Elements.ElementSet {
				if btn, ok := e.(*slack.ButtonBlockElement); ok {
					out = append(out, btn)
				}
			}
		}
	}
	return out
}

func TestRenderRun(t *testing.T) {
	succeeded := sampleRun("", "", workflow.StateSucceeded)
	succeeded.Resources = workflow.Resources{AuthentikProviderID: 5, AuthentikApplicationSlug: "grafana", CloudflareIdentityProviderID: "idp-9"}
	succeeded.Approvals = []workflow.Approval{
		{Gate: workflow.GateAuthentik, User: "U2", Decision: workflow.Approve, At: t0.Add(time.Hour)},
		{Gate: workflow.GateCloudflare, User: "U2", Decision: workflow.Approve, At: t0.Add(2 * time.Hour)},
	}
	succeeded.DashboardURL = "https://one.dash.cloudflare.com/acc123/settings/authentication"

	failed := sampleRun(workflow.StepAuthentikProvider, workflow.StepFailed, workflow.StateFailed)
	failed.Steps[2].Attempts = 3
	failed.Steps[2].Errors = []workflow.AttemptError{{Attempt: 3, Error: "authentik: create provider: 403 Forbidden"}}

	retrying := sampleRun(workflow.StepAuthentikProvider, workflow.StepRunning, workflow.StateRunning)
	retrying.Steps[2].Attempts = 2
	retrying.Steps[2].NextAttemptAt = t0.Add(time.Minute)

	rejected := sampleRun(workflow.GateAuthentik, workflow.StepRejected, workflow.StateRejected)
	rejected.Approvals = []workflow.Approval{{Gate: workflow.GateAuthentik, User: "U2", Decision: workflow.Reject, At: t0, Reason: "not now"}}
	rejected.Error = "rejected by U2 at gate authentik: not now"

	preflightFailed := sampleRun(workflow.StepPreflight, workflow.StepFailed, workflow.StateFailed)
	preflightFailed.Problems = []string{"the signing key \"authentik Self-signed Certificate\" does not exist"}

	tests := []struct {
		name    string
		run     *workflow.Run
		buttons bool
		want    []string
		notWant []string
	}{
		{name: "pending", run: sampleRun(workflow.StepPreflight, workflow.StepRunning, workflow.StatePending),
			want: []string{"SSO setup #42: Grafana", ":mag: Preflight running", "<@U1>", "`grafana`", "company.cloudflareaccess.com",
				":hourglass_flowing_sand: Preflight checks", ":white_circle: Create the authentik application", "client ID `cid-1`"},
			notWant: []string{"Approve", "*Approvals*", "*Created*", "*Last error*"}},
		{name: "awaiting authentik approval", run: sampleRun(workflow.GateAuthentik, workflow.StepWaiting, workflow.StateAwaitingApproval), buttons: true,
			want: []string{":raised_hand: Awaiting approval", ":white_check_mark: Preflight checks", ":raised_hand: Approval to create the authentik provider and application (0 of 1)",
				"expires <!date^", `"style":"danger"`, `"confirm"`, "Reject this run?"}},
		{name: "retrying", run: retrying,
			want: []string{":hourglass_flowing_sand: Create the authentik OAuth2/OpenID provider (attempt 2, next <!date^"}},
		{name: "failed", run: failed,
			want: []string{":x: Failed", ":x: Create the authentik OAuth2/OpenID provider (after 3 attempt(s))", "*Last error*", "403 Forbidden"}},
		{name: "preflight problems", run: preflightFailed,
			want: []string{"*Preflight found*", "• the signing key"}},
		{name: "rejected", run: rejected,
			want: []string{":no_entry_sign: Rejected", ":no_entry_sign: <@U2> rejected _authentik_", "not now"}},
		{name: "succeeded", run: succeeded,
			want: []string{":white_check_mark: Succeeded", ":white_check_mark: Verify the login method",
				"<@U2> approved _authentik_ <!date^" + itoa(t0.Add(time.Hour).Unix()) + "^{date_short_pretty} {time}|2026-03-01 13:00 UTC>",
				"<@U2> approved _Cloudflare_",
				"<https://auth.example.com/if/admin/#/core/providers/5|#5>",
				"<https://auth.example.com/if/admin/#/core/applications/grafana|grafana>",
				"<https://one.dash.cloudflare.com/acc123/settings/authentication|idp-9>",
				"Test the login method"},
			notWant: []string{"Approve", "*Last error*"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blocks := RenderRun(tt.run)
			j := blocksJSON(t, blocks)
			for _, w := range tt.want {
				if !strings.Contains(j, w) && !strings.Contains(j, jsonText(w)) {
					t.Errorf("rendered run lacks %q\n%s", w, j)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(j, w) || strings.Contains(j, jsonText(w)) {
					t.Errorf("rendered run has %q\n%s", w, j)
				}
			}
			btns := buttonsOf(blocks)
			if !tt.buttons {
				if len(btns) != 0 {
					t.Fatalf("got %d buttons; want none", len(btns))
				}
				return
			}
			if len(btns) != 2 || btns[0].ActionID != ActionApprove || btns[1].ActionID != ActionReject {
				t.Fatalf("buttons = %+v; want approve and reject", btns)
			}
			if btns[0].Confirm != nil || btns[1].Confirm == nil {
				t.Errorf("only Reject should ask for confirmation")
			}
			for _, btn := range btns {
				id, gate, nonce, err := ParseButtonValue(btn.Value)
				if err != nil || id != 42 || gate != workflow.GateAuthentik || nonce != "nonce-authentik" {
					t.Errorf("button value %q = %d %q %q %v", btn.Value, id, gate, nonce, err)
				}
			}
		})
	}
}

// jsonText is how s appears inside a JSON string.
func jsonText(s string) string {
	j, _ := json.Marshal(s)
	return string(j[1 : len(j)-1])
}

func itoa(n int64) string { j, _ := json.Marshal(n); return string(j) }

func TestRenderEscapesUserText(t *testing.T) {
	evil := "<!channel> <@U999> *bold* _it_ ~s~ `code` & <https://evil.example|click>"
	r := sampleRun(workflow.GateAuthentik, workflow.StepWaiting, workflow.StateAwaitingApproval)
	r.Request.ApplicationName, r.Params.ApplicationName = evil, evil
	r.Params.LoginMethodName = evil
	r.Problems = []string{evil}
	r.Error = evil
	blocks := RenderRun(r)
	h, ok := blocks[0].(*slack.HeaderBlock)
	if !ok || strings.ContainsAny(h.Text.Text, "<>") {
		t.Errorf("header %+v keeps angle brackets", blocks[0])
	}
	// Formatting does not apply in the plain_text header: check the rest.
	j := blocksJSON(t, blocks[1:])
	for _, bad := range []string{"<!channel>", "<@U999>", "<https://evil", "*bold*", "_it_", "~s~", "`code`"} {
		if strings.Contains(j, jsonText(bad)) {
			t.Errorf("user text %q survived unescaped:\n%s", bad, j)
		}
	}
	if !strings.Contains(j, jsonText("&lt;!channel&gt; &lt;@U999&gt;")) || !strings.Contains(j, "\\u0026amp;") && !strings.Contains(j, "&amp;") {
		t.Errorf("escaped text missing:\n%s", j)
	}
	if got := FallbackText(r); strings.Contains(got, "<!channel>") {
		t.Errorf("fallback text %q is not escaped", got)
	}
	ev := workflow.Event{Type: workflow.EventAttemptFailed, Step: workflow.StepAuthentikProvider, Message: evil}
	txt, ok := EventText(r, ev)
	if !ok || strings.Contains(txt, "<!channel>") || strings.Contains(txt, "<@U999>") {
		t.Errorf("event text %q is not escaped", txt)
	}
}

func TestEscape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Grafana", "Grafana"},
		{"a & b", "a &amp; b"},
		{"<!channel>", "&lt;!channel&gt;"},
		{"<@U1>", "&lt;@U1&gt;"},
		{"*x*", "\u200b*\u200bx\u200b*\u200b"},
		{"&amp;", "&amp;amp;"},
	}
	for _, tt := range tests {
		if got := Escape(tt.in); got != tt.want {
			t.Errorf("Escape(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestTruncate(t *testing.T) {
	long := strings.Repeat("é", 4000) // 2 bytes each
	tests := []struct {
		name string
		in   string
		max  int
	}{
		{"short", "hello", 3000},
		{"exact", strings.Repeat("a", 3000), 3000},
		{"long ascii", strings.Repeat("a", 5000), 3000},
		{"long multibyte", long, 3000},
		{"cut inside a link", strings.Repeat("a", 2980) + "<https://example.com|x>", 3000},
		{"cut inside an entity", strings.Repeat("a", 2986) + "&amp;&amp;&amp;&amp;", 3000},
		{"long cyrillic", strings.Repeat("ж", 3001), 3000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Truncate(tt.in, tt.max)
			if n := utf8.RuneCountInString(got); n > tt.max || !utf8.ValidString(got) {
				t.Fatalf("Truncate gave %d characters, valid UTF-8 %v", n, utf8.ValidString(got))
			}
			if utf8.RuneCountInString(tt.in) <= tt.max {
				if got != tt.in {
					t.Fatalf("Truncate changed a short text")
				}
				return
			}
			if !strings.HasSuffix(got, "… (truncated)") {
				t.Fatalf("Truncate did not mark the cut: %q", got[len(got)-20:])
			}
			rest := strings.TrimSuffix(got, "… (truncated)")
			if strings.Count(rest, "<") != strings.Count(rest, ">") {
				t.Errorf("Truncate left half a link: %q", rest[len(rest)-30:])
			}
			if i := strings.LastIndex(rest, "&"); i >= 0 && !strings.Contains(rest[i:], ";") {
				t.Errorf("Truncate left half an entity: %q", rest[len(rest)-10:])
			}
		})
	}
	// Slack counts characters: a name within the limit is kept whole, and a
	// bare & of plain text is not taken for half an entity.
	for _, name := range []string{strings.Repeat("日", 100), "R&D Платформа " + strings.Repeat("д", 60)} {
		header := fmt.Sprintf("SSO setup #42: %s", name)
		if got := Truncate(header, MaxHeaderText); got != header {
			t.Errorf("Truncate(%q, %d) = %q; want it whole (%d characters)", header, MaxHeaderText, got, utf8.RuneCountInString(header))
		}
	}
	if got := Truncate("R&D "+strings.Repeat("x", 200), 150); !strings.HasPrefix(got, "R&D xxx") {
		t.Errorf("a bare & cut the text back: %q", got)
	}
}

// TestRenderLapsedApproval: an approval that no longer counts is not
// counted on the card and says why in the approvals list: its approver is
// not one any more, or it was set aside when the gate was opened again.
func TestRenderLapsedApproval(t *testing.T) {
	tests := []struct {
		name string
		mod  func(a *workflow.Approval)
		why  string
	}{
		{"lapsed", func(a *workflow.Approval) { a.Lapsed = true }, "(no longer counts: not an approver any more)"},
		{"set aside", func(a *workflow.Approval) { a.SetAside = true }, "(no longer counts: given before the gate expired and was opened again)"},
		{"both", func(a *workflow.Approval) { a.Lapsed, a.SetAside = true, true }, "(no longer counts: given before the gate expired and was opened again)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := sampleRun(workflow.GateAuthentik, workflow.StepWaiting, workflow.StateAwaitingApproval)
			r.Step(workflow.GateAuthentik).Required = 2
			r.Approvals = []workflow.Approval{
				{Gate: workflow.GateAuthentik, User: "U2", Decision: workflow.Approve, At: t0},
				{Gate: workflow.GateAuthentik, User: "U4", Decision: workflow.Approve, At: t0},
			}
			tt.mod(&r.Approvals[0])
			var text strings.Builder
			for _, b := range RenderRun(r) {
				if s, ok := b.(*slack.SectionBlock); ok && s.Text != nil {
					text.WriteString(s.Text.Text + "\n")
				}
			}
			for _, want := range []string{"(1 of 2)", "1 of 2 approval(s)", ":heavy_minus_sign: <@U2> approved _authentik_", tt.why} {
				if !strings.Contains(text.String(), want) {
					t.Errorf("card lacks %q:\n%s", want, text.String())
				}
			}
			if strings.Contains(text.String(), "2 of 2") || strings.Count(text.String(), "no longer counts") != 1 {
				t.Errorf("card counts the approval that does not, or gives more than one reason:\n%s", text.String())
			}
		})
	}
}

func TestRenderTruncatesLongSections(t *testing.T) {
	r := sampleRun(workflow.StepVerify, workflow.StepFailed, workflow.StateFailed)
	r.Error = strings.Repeat("x", 10_000)
	for _, b := range RenderRun(r) {
		s, ok := b.(*slack.SectionBlock)
		if !ok {
			continue
		}
		if s.Text != nil && utf8.RuneCountInString(s.Text.Text) > MaxSectionText {
			t.Errorf("section %s has %d characters", s.BlockID, utf8.RuneCountInString(s.Text.Text))
		}
		if s.BlockID == "error" && !strings.HasSuffix(s.Text.Text, "… (truncated)") {
			t.Errorf("error section not marked truncated")
		}
		for _, f := range s.Fields {
			if utf8.RuneCountInString(f.Text) > MaxFieldText {
				t.Errorf("field of %s has %d characters", s.BlockID, utf8.RuneCountInString(f.Text))
			}
		}
	}
}

// TestRenderIsValidBlockKit posts every rendering to the fake Slack, which
// checks Block Kit's rules and limits.
func TestRenderIsValidBlockKit(t *testing.T) {
	srv := slacktest.NewServer()
	defer srv.Close()
	srv.AddChannel("C1", "sso", true)
	api := slack.New(srv.BotToken(), slack.OptionAPIURL(srv.APIURL()))
	long := sampleRun(workflow.StepVerify, workflow.StepFailed, workflow.StateFailed)
	name := strings.Repeat("Ω", 100)
	long.Request.ApplicationName, long.Params.ApplicationName = name, name
	long.Error = strings.Repeat("<&>", 5000)
	long.Problems = []string{strings.Repeat("p", 4000), strings.Repeat("q", 4000)}
	runs := []*workflow.Run{
		sampleRun(workflow.StepPreflight, workflow.StepRunning, workflow.StatePending),
		sampleRun(workflow.GateCloudflare, workflow.StepWaiting, workflow.StateAwaitingApproval),
		long,
	}
	for _, r := range runs {
		if _, _, err := api.PostMessage("C1", slack.MsgOptionBlocks(RenderRun(r)...), slack.MsgOptionText(FallbackText(r), false)); err != nil {
			t.Errorf("run in state %s: chat.postMessage: %v (%v)", r.State, err, srv.Calls("chat.postMessage"))
		}
		if _, _, err := api.PostMessage("C1", slack.MsgOptionBlocks(renderCompact(r, true, "")...), slack.MsgOptionText(FallbackText(r), false)); err != nil {
			t.Errorf("compact run in state %s: chat.postMessage: %v", r.State, err)
		}
	}
	// The status answer (no buttons) and the form must be valid too.
	if _, err := api.OpenView(srv.NewTriggerID(), NewRunModal("C1")); err != nil {
		t.Errorf("views.open: %v", err)
	}
}

func TestEventText(t *testing.T) {
	r := sampleRun(workflow.GateCloudflare, workflow.StepWaiting, workflow.StateAwaitingApproval)
	r.Approvals = []workflow.Approval{{Gate: workflow.GateAuthentik, User: "U2", Decision: workflow.Approve, At: t0}}
	done := sampleRun("", "", workflow.StateSucceeded)
	tests := []struct {
		name string
		run  *workflow.Run
		ev   workflow.Event
		want string // "" when the event stays in the audit log
	}{
		{"created", r, workflow.Event{Type: workflow.EventCreated}, ""},
		{"refused decision is private", r, workflow.Event{Type: workflow.EventDecisionRefused, Actor: "U3"}, ""},
		{"intent", r, workflow.Event{Type: workflow.EventStepIntent}, ""},
		{"step started", r, workflow.Event{Type: workflow.EventStepStarted, Step: workflow.StepAuthentikProvider}, ":arrow_forward: Started *Create the authentik OAuth2/OpenID provider*"},
		{"step succeeded with IDs", r, workflow.Event{Type: workflow.EventStepSucceeded, Step: workflow.StepAuthentikProvider, Data: map[string]string{"provider_id": "5"}},
			":white_check_mark: *Create the authentik OAuth2/OpenID provider* done\n_provider ID: `5`_"},
		{"attempt failed", r, workflow.Event{Type: workflow.EventAttemptFailed, Step: workflow.StepVerify, Message: "jwks empty"}, ":warning: *Verify the login method*: attempt failed: jwks empty"},
		{"gate opened", r, workflow.Event{Type: workflow.EventGateOpened, Step: workflow.GateCloudflare}, ":raised_hand: Waiting for approval: *Approval to add the Cloudflare login method*, expires <!date^"},
		{"reminder", r, workflow.Event{Type: workflow.EventGateReminder, Step: workflow.GateCloudflare, Data: map[string]string{"missing": "1", "deadline": "x"}},
			":hourglass_flowing_sand: Still waiting for approval: *Approval to add the Cloudflare login method*. It expires <!date^"},
		{"decision", r, workflow.Event{Type: workflow.EventDecisionAccepted, Step: workflow.GateAuthentik, Actor: "U2"}, ":ballot_box_with_check: <@U2> approved *Approval to create the authentik provider and application*"},
		{"succeeded mentions requester", done, workflow.Event{Type: workflow.EventSucceeded}, "<@U1> :tada: Run #42 succeeded."},
		{"failed mentions requester", r, workflow.Event{Type: workflow.EventFailed, Message: "verify failed"}, "<@U1> :x: Run #42 failed: verify failed. Fix the cause, then type `/sso-setup retry 42` in the channel."},
		{"failed on a sentence", r, workflow.Event{Type: workflow.EventFailed, Message: "create application: 403 Forbidden: You do not have permission to perform this action."},
			"<@U1> :x: Run #42 failed: create application: 403 Forbidden: You do not have permission to perform this action. Fix the cause, then type `/sso-setup retry 42` in the channel."},
		{"failed preflight says when a new run is the fix", r, workflow.Event{Type: workflow.EventFailed, Step: workflow.StepPreflight, Message: "preflight found 1 problem(s); nothing was created"},
			"<@U1> :x: Run #42 failed: preflight found 1 problem(s); nothing was created. Fix the cause, then type `/sso-setup retry 42` in the channel. A retry keeps this run's slug, names and team domain: if one of those is the problem, start a new run with other options instead (`/sso-setup help`)."},
		{"expired mentions requester", r, workflow.Event{Type: workflow.EventGateExpired, Step: workflow.GateCloudflare}, "<@U1> :alarm_clock:"},
		{"cancelled mentions requester", r, workflow.Event{Type: workflow.EventCancelled, Message: "cancelled by ssobot"}, "<@U1> :heavy_minus_sign: Run #42 was cancelled by ssobot"},
		{"cancelled for another reason", r, workflow.Event{Type: workflow.EventCancelled, Message: "the channel is gone"}, "<@U1> :heavy_minus_sign: Run #42 was cancelled: the channel is gone"},
		// People are named by mention, which Slack shows as their names.
		{"cancelled by a person", r, workflow.Event{Type: workflow.EventCancelled, Actor: "U07ABCDEF12", Message: "cancelled by U07ABCDEF12: wrong team"},
			"<@U1> :heavy_minus_sign: Run #42 was cancelled by <@U07ABCDEF12>: wrong team"},
		{"rejected by a person", r, workflow.Event{Type: workflow.EventGateRejected, Actor: "U2", Message: "rejected by U2 at gate authentik"},
			"<@U1> :no_entry_sign: Run #42 was rejected by <@U2> at gate authentik"},
		{"lapsed approval", r, workflow.Event{Type: workflow.EventNote, Actor: "U2", Message: "the approval of U2 does not count: they are no longer an approver"},
			":memo: the approval of <@U2> does not count"},
		{"a typed reason mentions no one", r, workflow.Event{Type: workflow.EventCancelled, Actor: "U2", Message: "cancelled by U2: cancelled by U0EVIL"},
			"<@U1> :heavy_minus_sign: Run #42 was cancelled by <@U2>: cancelled by U0EVIL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := EventText(tt.run, tt.ev)
			if tt.want == "" {
				if ok {
					t.Fatalf("EventText = %q; want no thread reply", got)
				}
				return
			}
			if !ok || !strings.HasPrefix(got, tt.want) {
				t.Fatalf("EventText = %q, %v; want prefix %q", got, ok, tt.want)
			}
		})
	}
}

// TestOutcomeSaysWhatIsLeft: the reply saying a run ended without success
// lists, with links, what it created, since ssobot deletes nothing; a
// success or a run that created nothing says nothing of the kind.
func TestOutcomeSaysWhatIsLeft(t *testing.T) {
	created := sampleRun(workflow.GateCloudflare, workflow.StepWaiting, workflow.StateCancelled)
	created.Resources = workflow.Resources{AuthentikProviderID: 5, AuthentikApplicationSlug: "grafana"}
	nothing := sampleRun(workflow.GateAuthentik, workflow.StepWaiting, workflow.StateCancelled)
	const (
		left     = "Left in place, since ssobot deletes nothing; delete them by hand if they are not wanted:"
		soFar    = "A retry reuses these; if you do not retry, delete them by hand:"
		provider = "• authentik provider <https://auth.example.com/if/admin/#/core/providers/5|#5>"
		app      = "• authentik application <https://auth.example.com/if/admin/#/core/applications/grafana|grafana>"
	)
	tests := []struct {
		name string
		run  *workflow.Run
		ev   workflow.EventType
		want string // "" when nothing is listed
	}{
		{"cancelled", created, workflow.EventCancelled, left},
		{"rejected", created, workflow.EventGateRejected, left},
		{"expired", created, workflow.EventGateExpired, soFar},
		{"failed", created, workflow.EventFailed, soFar},
		{"succeeded", created, workflow.EventSucceeded, ""},
		{"cancelled before anything was created", nothing, workflow.EventCancelled, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := EventText(tt.run, workflow.Event{Type: tt.ev, Step: workflow.GateCloudflare, Message: "x"})
			if !ok {
				t.Fatal("no reply")
			}
			if tt.want == "" {
				if strings.Contains(got, "by hand") || strings.Contains(got, "• authentik") {
					t.Errorf("reply %q; want no list of resources", got)
				}
				return
			}
			if !strings.HasSuffix(got, "\n"+tt.want+"\n"+provider+"\n"+app) {
				t.Errorf("reply %q;\nwant it to end with %q and the provider and application, linked", got, tt.want)
			}
		})
	}
}

// TestReminderText: a reminder gives the deadline and, on a gate that
// needs several approvals, how many it has; a reminder of a gate that is
// no longer open is not posted, even when the next gate is open by then.
func TestReminderText(t *testing.T) {
	waiting := func(required int, approvers ...string) *workflow.Run {
		r := sampleRun(workflow.GateCloudflare, workflow.StepWaiting, workflow.StateAwaitingApproval)
		r.Steps[4].Required = required
		for _, u := range approvers {
			r.Approvals = append(r.Approvals, workflow.Approval{Gate: workflow.GateCloudflare, User: u, Decision: workflow.Approve, At: t0})
		}
		return r
	}
	decided := sampleRun(workflow.StepCloudflareLoginMethod, workflow.StepRunning, workflow.StateRunning)
	expired := sampleRun(workflow.GateCloudflare, workflow.StepExpired, workflow.StateExpired)
	const head = ":hourglass_flowing_sand: Still waiting for approval: *Approval to add the Cloudflare login method*"
	tests := []struct {
		name string
		run  *workflow.Run
		gate workflow.StepName // reminded; "" for the Cloudflare gate
		want string            // prefix; "" for no reply
	}{
		{"one approval needed", waiting(1), "", head + ". It expires <!date^"},
		{"one of two given", waiting(2, "U2"), "", head + " (1 of 2 approvals given). It expires <!date^"},
		{"decided since", decided, "", ""},
		{"expired since", expired, "", ""},
		// The authentik gate's reminder, held up while it was approved and
		// the Cloudflare gate opened, would name the wrong gate's deadline.
		{"decided since, the next gate open", waiting(1), workflow.GateAuthentik, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.run.Steps[4].Name != workflow.GateCloudflare {
				t.Fatalf("step 4 is %s", tt.run.Steps[4].Name)
			}
			gate := tt.gate
			if gate == "" {
				gate = workflow.GateCloudflare
			}
			got, ok := EventText(tt.run, workflow.Event{Type: workflow.EventGateReminder, Step: gate,
				Data: map[string]string{"missing": "1", "deadline": "2026-11-29T12:00:00Z"}})
			if tt.want == "" {
				if ok {
					t.Fatalf("reminder posted: %q", got)
				}
				return
			}
			if !ok || !strings.HasPrefix(got, tt.want) || !strings.HasSuffix(got, ", and the run ends with it.") || strings.Contains(got, "2026-11-29T12") {
				t.Errorf("reminder %q; want prefix %q, the end of the run said, no raw data", got, tt.want)
			}
		})
	}
}

func TestButtonValueRoundTrip(t *testing.T) {
	v := ButtonValue(7, workflow.GateCloudflare, "n|once")
	id, gate, nonce, err := ParseButtonValue(v)
	if err != nil || id != 7 || gate != workflow.GateCloudflare || nonce != "n|once" {
		t.Fatalf("ParseButtonValue(%q) = %d %q %q %v", v, id, gate, nonce, err)
	}
	for _, bad := range []string{"", "7", "7|gate", "x|gate|n", "0|gate|n", "-1|gate|n", "7||n"} {
		if _, _, _, err := ParseButtonValue(bad); err == nil {
			t.Errorf("ParseButtonValue(%q) accepted", bad)
		}
	}
}

func TestMention(t *testing.T) {
	for in, want := range map[string]string{"U123": "<@U123>", "W9ABC": "<@W9ABC>", "admin@example.com": "admin@example.com", "<!here>": "&lt;!here&gt;", workflow.SystemActor: "ssobot", "": "someone"} {
		if got := mention(in); got != want {
			t.Errorf("mention(%q) = %q; want %q", in, got, want)
		}
	}
}

// TestVerbatim: the shared card's mrkdwn text is verbatim in the JSON sent
// to Slack, its text unchanged (explicit links and dates still render);
// the header stays plain text, and other cards are parsed as before.
func TestVerbatim(t *testing.T) {
	r := sampleRun(workflow.GateCloudflare, workflow.StepRejected, workflow.StateRejected)
	r.Approvals = []workflow.Approval{{Gate: workflow.GateAuthentik, User: "U2", Decision: workflow.Approve, At: t0}}
	r.Error = "rejected by U2 at gate cloudflare"
	n := names{"U1": "https://evil.example/login", "U2": "#general"}
	plainCard := blocksJSON(t, renderRun(r, links{}, false, "", n.person))
	shared := blocksJSON(t, verbatim(renderRun(r, links{}, false, "", n.person)))
	if strings.Contains(plainCard, `"verbatim"`) {
		t.Errorf("a card not shared is verbatim:\n%s", plainCard)
	}
	if total, bad := notVerbatim(t, json.RawMessage(shared)); total < 3 || bad != 0 {
		t.Errorf("%d of %d mrkdwn texts not verbatim:\n%s", bad, total, shared)
	}
	if strings.Count(shared, `"verbatim":true`) != strings.Count(shared, `"type":"mrkdwn"`) {
		t.Errorf("verbatim on other than mrkdwn text:\n%s", shared)
	}
	// Only the flag differs: the same text, with its explicit markup.
	if got := strings.ReplaceAll(shared, `,"verbatim":true`, ""); got != plainCard {
		t.Errorf("text changed:\n%s\nwant\n%s", got, plainCard)
	}
	if !strings.Contains(shared, `\u003c!date^`) || !strings.Contains(shared, "@https://evil.example/login") || !strings.Contains(shared, "@#general") {
		t.Errorf("the card lacks its date or names:\n%s", shared)
	}
}

// TestNamesPerson: a name is plain escaped text, which notifies no one; a
// Slack user without one is shown by ID, never mentioned.
func TestNamesPerson(t *testing.T) {
	n := names{"U1": "Alice Liddell", "U2": "<!channel> <@U9> *x*", "W3": "Émile"}
	for in, want := range map[string]string{
		"U1":                 "@Alice Liddell",
		"U2":                 "@&lt;!channel&gt; &lt;@U9&gt; \u200b*\u200bx\u200b*\u200b",
		"W3":                 "@Émile",
		"U4":                 "Slack user U4",
		"admin@example.com":  "admin@example.com",
		"<!here>":            "&lt;!here&gt;",
		workflow.SystemActor: "ssobot",
		"":                   "someone",
	} {
		if got := n.person(in); got != want {
			t.Errorf("person(%q) = %q; want %q", in, got, want)
		}
	}
	// Escaped, a name grows (& is &amp;): what is shown stays short, and
	// no entity is cut in half.
	for _, name := range []string{strings.Repeat("&", maxNameRunes), strings.Repeat("*", maxNameRunes), "x" + strings.Repeat("<", maxNameRunes-1)} {
		got := names{"U1": name}.person("U1")
		if utf8.RuneCountInString(got) > maxShownName || !strings.HasSuffix(got, "…") {
			t.Errorf("person shows %d characters: %q", utf8.RuneCountInString(got), got)
		}
		if bad := strings.TrimRight(strings.TrimSuffix(got, "…"), "\u200b*"); strings.Count(bad, "&") != strings.Count(bad, ";") {
			t.Errorf("person cuts an entity: %q", got)
		}
	}
	if got := names(nil).person("U1"); got != "Slack user U1" {
		t.Errorf("no names: person(U1) = %q", got)
	}
}

func TestDisplayName(t *testing.T) {
	long := strings.Repeat("é", maxNameRunes+5)
	tests := []struct {
		name string
		u    slack.User
		want string
	}{
		{"display name first", slack.User{Name: "alice", RealName: "Alice Liddell", Profile: slack.UserProfile{DisplayName: "Ali", RealName: "Alice Liddell"}}, "Ali"},
		{"then the full name", slack.User{Name: "alice", Profile: slack.UserProfile{DisplayName: "  ", RealName: "Alice Liddell"}}, "Alice Liddell"},
		{"then the top-level full name", slack.User{Name: "alice", RealName: "Alice L"}, "Alice L"},
		{"then the username", slack.User{Name: "alice"}, "alice"},
		{"on one line", slack.User{Profile: slack.UserProfile{DisplayName: "Alice\n\tLiddell "}}, "Alice Liddell"},
		{"bounded", slack.User{Profile: slack.UserProfile{DisplayName: long}}, strings.Repeat("é", maxNameRunes) + "…"},
		{"no bidi override", slack.User{Profile: slack.UserProfile{DisplayName: "\u202enimda\u202c"}}, "nimda"},
		{"no controls", slack.User{Profile: slack.UserProfile{DisplayName: "a\x00b\x1b[31m\x7f"}}, "ab[31m"},
		{"no zero-width or soft hyphen", slack.User{Profile: slack.UserProfile{DisplayName: "\u200bad\u200cmi\u00adn\ufeff\u2060"}}, "admin"},
		{"the joiner of an emoji kept", slack.User{Profile: slack.UserProfile{DisplayName: "👩\u200d💻 Dev"}}, "👩\u200d💻 Dev"},
		{"any space one space", slack.User{Profile: slack.UserProfile{DisplayName: "Alice\u00a0\u2028Liddell"}}, "Alice Liddell"},
		{"a blank filler is no name", slack.User{Name: "alice", Profile: slack.UserProfile{DisplayName: "\u3164\u200b", RealName: "\u115f\u202e"}}, "alice"},
		{"none", slack.User{ID: "U1"}, ""},
	}
	for _, tt := range tests {
		if got := displayName(tt.u); got != tt.want {
			t.Errorf("%s: displayName = %q; want %q", tt.name, got, tt.want)
		}
	}
}

// TestShowActors: the engine's sentences name their actor with who; an ID
// a person typed later in the sentence stays text.
func TestShowActors(t *testing.T) {
	n := names{"U2": "Bob"}
	tests := []struct{ in, mentioned, named string }{
		{"cancelled by U2: wrong team", "cancelled by <@U2>: wrong team", "cancelled by @Bob: wrong team"},
		{"rejected by U2 at gate authentik", "rejected by <@U2> at gate authentik", "rejected by @Bob at gate authentik"},
		{"the approval of U7 does not count", "the approval of <@U7> does not count", "the approval of Slack user U7 does not count"},
		{"cancelled by U2: ask U3", "cancelled by <@U2>: ask U3", "cancelled by @Bob: ask U3"},
		{"timeout: cancelled by U2", "timeout: cancelled by U2", "timeout: cancelled by U2"},
	}
	for _, tt := range tests {
		if got := mentionActors(tt.in); got != tt.mentioned {
			t.Errorf("mentionActors(%q) = %q; want %q", tt.in, got, tt.mentioned)
		}
		if got := showActors(tt.in, n.person); got != tt.named {
			t.Errorf("showActors(%q, names) = %q; want %q", tt.in, got, tt.named)
		}
	}
}

func TestCardPeople(t *testing.T) {
	r := sampleRun(workflow.GateCloudflare, workflow.StepRejected, workflow.StateRejected)
	r.Approvals = []workflow.Approval{
		{Gate: workflow.GateAuthentik, User: "U2", Decision: workflow.Approve},
		{Gate: workflow.GateAuthentik, User: "U1", Decision: workflow.Approve},
		{Gate: workflow.GateCloudflare, User: "U4", Decision: workflow.Reject},
		{Gate: workflow.GateCloudflare, User: "admin@example.com", Decision: workflow.Reject},
	}
	r.Error = "rejected by U4 at gate cloudflare"
	if got, want := cardPeople(r), []string{"U1", "U2", "U4"}; !slices.Equal(got, want) {
		t.Errorf("cardPeople = %v; want %v", got, want)
	}
	r.Error = "cancelled by U5: ask U6"
	if got, want := cardPeople(r), []string{"U1", "U2", "U4", "U5"}; !slices.Equal(got, want) {
		t.Errorf("cardPeople = %v; want %v", got, want)
	}
}

// TestEscapeMessage: names a reader copies come out in code spans, without
// the zero-width spaces Escape puts around underscores; the rest is escaped.
func TestEscapeMessage(t *testing.T) {
	tests := []struct{ in, want string }{
		{"set SSOBOT_SIGNING_KEY to a certificate", "set `SSOBOT_SIGNING_KEY` to a certificate"},
		{"the token lacks permission view_flow.", "the token lacks permission `view_flow`."},
		{"needs authentik_providers_oauth2.add_oauth2provider: 403", "needs `authentik_providers_oauth2.add_oauth2provider`: 403"},
		{"GET https://auth.example.com/application/o/my_app/.well-known/openid-configuration: 404", "GET `https://auth.example.com/application/o/my_app/.well-known/openid-configuration`: 404"},
		{"at https://auth.example.com/x. Then", "at https://auth.example.com/x. Then"},
		{"*bold* <@U1> & _it_", "\u200b*\u200bbold\u200b*\u200b &lt;@U1&gt; &amp; \u200b_\u200bit\u200b_\u200b"},
		{"a `tick` in_name", "a \u200b`\u200btick\u200b`\u200b `in_name`"},
	}
	for _, tt := range tests {
		if got := escapeMessage(tt.in); got != tt.want {
			t.Errorf("escapeMessage(%q)\n = %q\nwant %q", tt.in, got, tt.want)
		}
	}
}

// TestCardShowsThePlan: once preflight has resolved the plan, the card
// shows approvers the settings a review looks for, from the same functions
// the steps create them with; before that it shows none.
func TestCardShowsThePlan(t *testing.T) {
	r := sampleRun(workflow.StepPreflight, workflow.StepRunning, workflow.StatePending)
	if j := blocksJSON(t, RenderRun(r)); strings.Contains(j, "What approving sets up") {
		t.Fatalf("plan shown before preflight resolved it: %s", j)
	}
	r = sampleRun(workflow.GateAuthentik, workflow.StepWaiting, workflow.StateAwaitingApproval)
	r.Params.AuthorizationFlowSlug, r.Params.SigningKeyName, r.Params.SigningKeyID = "default-provider-authorization-explicit-consent", "authentik Self-signed Certificate", "cert-1"
	r.Params.AuthURL, r.Params.TokenURL, r.Params.CertsURL = "https://auth.example.com/application/o/authorize/", "https://auth.example.com/application/o/token/", "https://auth.example.com/application/o/grafana/jwks/"
	r.Params.CallbackURL = "https://company.cloudflareaccess.com/cdn-cgi/access/callback"
	var plan string
	for _, b := range RenderRun(r) {
		if s, ok := b.(*slack.SectionBlock); ok && s.BlockID == "plan" {
			plan = s.Text.Text
		}
	}
	for _, want := range []string{
		"*What approving sets up*",
		"*authentik* `https://auth.example.com`: provider \"Provider for Grafana\", a confidential client with ID `cid-1`",
		"redirect URI `https://company.cloudflareaccess.com/cdn-cgi/access/callback` (strict match)",
		"authorization flow `default-provider-authorization-explicit-consent`",
		"ID tokens signed with the key of \"authentik Self-signed Certificate\", with the claims of scopes openid, email, profile",
		"Application `grafana`, policy engine mode any",
		"*Cloudflare Access* `company.cloudflareaccess.com`: OpenID Connect login method \"authentik\", PKCE on, scopes openid, email, profile, email claim `email`, signing keys from `https://auth.example.com/application/o/grafana/jwks/`",
	} {
		if !strings.Contains(plan, want) {
			t.Errorf("plan lacks %q:\n%s", want, plan)
		}
	}
}
