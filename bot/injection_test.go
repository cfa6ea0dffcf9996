package bot

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/ssobot/ssobot/bot/slacktest"
	"github.com/ssobot/ssobot/workflow"
)

// liveMarkup is what people typed that must never reach Slack as markup:
// special mentions, the mention of a user, a channel or a group that the
// bot did not put there itself, and links.
var liveMarkup = []string{"<!channel", "<!here", "<!everyone", "<@U0EVIL", "<#C0EVIL", "<!subteam^S0EVIL", "<https://evil", "<http://evil", "<mailto:"}

// texts collects every string in v, decoding strings that hold JSON (blocks,
// views) so that escapes like \u003c cannot hide markup.
func texts(v any, out *[]string) {
	switch x := v.(type) {
	case string:
		*out = append(*out, x)
		var inner any
		if t := strings.TrimSpace(x); (strings.HasPrefix(t, "{") || strings.HasPrefix(t, "[")) && json.Unmarshal([]byte(t), &inner) == nil {
			texts(inner, out)
		}
	case []any:
		for _, e := range x {
			texts(e, out)
		}
	case map[string]any:
		for _, e := range x {
			texts(e, out)
		}
	case []string:
		for _, e := range x {
			texts(e, out)
		}
	case json.RawMessage:
		texts(string(x), out)
	case map[string][]string:
		for _, e := range x {
			texts(e, out)
		}
	}
}

// sentTexts is every text the bot sent to Slack for people to read.
func sentTexts(calls []slacktest.Call) []string {
	var out []string
	for _, c := range calls {
		switch c.Method {
		case "chat.postMessage", "chat.update", "chat.postEphemeral", "views.open", "views.update", slacktest.MethodResponseURL:
			texts(map[string][]string(c.Form), &out)
			texts(c.JSON, &out)
		}
	}
	return out
}

func TestInjectedMarkupStaysInert(t *testing.T) {
	e := newE2E(t)
	var answers []string // the bot's answers on the request path
	command := func(user, text string) testReply {
		t.Helper()
		r := e.command(user, "C1", text)
		answers = append(answers, r.Text, string(r.Blocks))
		return r
	}

	// What Slack sends when people type mentions and links (markup) and when
	// they type the characters themselves (entities).
	const (
		typedName  = "&lt;!channel&gt; &lt;@U0EVIL&gt; <!here> <@U0EVIL|evil> *b* _i_"
		typedLogin = "&lt;https://evil.example|click&gt; &lt;!everyone&gt;"
		typedName2 = "<https://evil.example/x|x> &lt;#C0EVIL&gt; &lt;mailto:a@evil.example&gt;"
		typedWhy   = "&lt;!channel&gt; <!here> &lt;@U0EVIL&gt; &lt;http://evil.example|why&gt;"
		typedName3 = "&lt;!subteam^S0EVIL&gt; ~s~ `c`"
	)

	// Run 1 succeeds: its name and login method are in the root message,
	// in thread replies (resources created) and in private answers.
	if r := command("U1", `new `+typedName+` slug=inj-a login="`+typedLogin+`"`); !strings.Contains(r.Text, "Run #1 started") {
		t.Fatalf("start: %q", r.Text)
	}
	if got, _ := e.clickAs(e.gateOf(1, workflow.GateAuthentik), ActionApprove, "U3"); !strings.Contains(got, "not an approver") {
		t.Fatalf("refusal %q", got)
	}
	for _, g := range []workflow.StepName{workflow.GateAuthentik, workflow.GateCloudflare} {
		e.clickAs(e.gateOf(1, g), ActionApprove, "U2")
	}
	root1 := e.rootOf(1, "run 1 to succeed", textHas("Succeeded"))
	e.replyIn(root1, "Run #1 succeeded")

	// Run 2 is cancelled with a hostile reason.
	command("U1", "new "+typedName2+" slug=inj-b")
	e.gateOf(2, workflow.GateAuthentik)
	if got := e.control("U1", "cancel 2 "+typedWhy); !strings.Contains(got, "Run #2 is cancelled") {
		t.Fatalf("cancel: %q", got)
	}
	root2 := e.rootOf(2, "run 2 to be cancelled", textHas("Cancelled"))
	e.replyIn(root2, "Run #2 was cancelled")

	// Run 3 is rejected.
	command("U1", "new "+typedName3+" slug=inj-c")
	e.clickAs(e.gateOf(3, workflow.GateAuthentik), ActionReject, "U2")
	e.replyIn(e.rootOf(3, "run 3 to be rejected", textHas("Rejected")), "Run #3 was rejected")

	// Usage and validation errors quote what was typed.
	for _, text := range []string{
		"new Grafana slug=&lt;!channel&gt;",
		"new Grafana team=&lt;@U0EVIL&gt;",
		"new Grafana team=&lt;https://evil.example|x&gt;",
		"&lt;!here&gt;",
		"<!everyone> now",
		"status &lt;!channel&gt;",
		"cancel <@U0EVIL|evil>",
		"new Grafana login=&lt;#C0EVIL&gt; team=&lt;#C0EVIL&gt;",
		"status 1", "status 2 public", "list",
	} {
		command("U3", text)
	}

	// The form: typed text arrives as is in plain_text inputs.
	cmd := e.slack.NewSlashCommand("/sso-setup", "", "U1", "C1")
	e.post("/slack/commands", slacktest.SlashCommandForm(cmd))
	e.waitCalls("views.open", func(c []slacktest.Call) bool { return len(okCalls(c, "views.open")) == 1 })
	view := e.slack.Views()[0]
	field := func(v string) map[string]slacktest.StateValue {
		return map[string]slacktest.StateValue{ModalActionValue: {Type: "plain_text_input", Value: v}}
	}
	bad, err := e.slack.SubmitView(view.ID, "U1", map[string]map[string]slacktest.StateValue{
		BlockAppName:     field("<!channel> <@U0EVIL>"),
		BlockAppSlug:     field("<!here>"),
		BlockTeamDomain:  field("<https://evil.example|x>"),
		BlockLoginMethod: field("<!everyone>\x07"),
	})
	if err != nil {
		t.Fatal(err)
	}
	status, out := e.post("/slack/interactions", slacktest.ViewSubmissionPayload(bad))
	if status != http.StatusOK || !strings.Contains(out, `"response_action":"errors"`) {
		t.Fatalf("form errors: %d %s", status, out)
	}
	answers = append(answers, out)
	var formErrs struct {
		Errors map[string]string `json:"errors"`
	}
	if err := json.Unmarshal([]byte(out), &formErrs); err != nil || len(formErrs.Errors) != 3 {
		t.Fatalf("form errors %s (%v); want slug, team and login", out, err)
	}
	good := bad
	good.Values = map[string]map[string]slacktest.StateValue{BlockAppName: field("<!channel> <@U0EVIL> <https://evil.example|x>"), BlockAppSlug: field("inj-d")}
	if _, out := e.post("/slack/interactions", slacktest.ViewSubmissionPayload(good)); strings.TrimSpace(out) != "" {
		t.Fatalf("form refused: %s", out)
	}
	root4 := e.gateOf(4, workflow.GateAuthentik)
	if r := e.run(4); r.Request.ApplicationName != "<!channel> <@U0EVIL> <https://evil.example|x>" {
		t.Fatalf("run 4 is named %q; the name must be kept as typed", r.Request.ApplicationName)
	}

	calls := e.slack.Calls()
	all := sentTexts(calls)
	texts(answers, &all)
	for _, s := range all {
		for _, bad := range liveMarkup {
			if strings.Contains(s, bad) {
				t.Errorf("live %q reached Slack in:\n%s", bad, s)
			}
		}
	}
	for _, c := range calls {
		if p := c.Param("parse"); p == "full" || c.Param("link_names") == "true" || c.Param("link_names") == "1" {
			t.Errorf("%s asks Slack to turn plain @names into mentions: %s", c.Method, c)
		}
	}

	// The text is there, escaped: the checks above looked at the right things.
	joined := strings.Join(all, "\n")
	for _, want := range []string{
		"&lt;!channel&gt; &lt;@U0EVIL&gt; @here evil",                     // run 1's name in mrkdwn
		"‹!channel› ‹@U0EVIL› @here",                                      // in the plain_text header
		"&lt;https://evil.example|click&gt; &lt;!everyone&gt;",            // run 1's login method
		"cancelled by <@U1>: &lt;!channel&gt; @here &lt;@U0EVIL&gt;",      // the cancel reason
		"&lt;!subteam^S0EVIL&gt;",                                         // run 3's name
		"&lt;!channel&gt; &lt;@U0EVIL&gt; &lt;https://evil.example|x&gt;", // run 4's name from the form
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("nothing sent shows %q", want)
		}
	}
	for _, root := range []slacktest.Message{root1, root2, root4} {
		if !strings.Contains(string(root.BlocksJSON), "\\u0026lt;") && !strings.Contains(string(root.BlocksJSON), "&lt;") {
			t.Errorf("root %s shows no escaped text: %s", root.TS, root.BlocksJSON)
		}
	}
}
