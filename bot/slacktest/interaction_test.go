package slacktest_test

import (
	"io"
	"net/url"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/ssobot/ssobot/bot/slacktest"
)

// Slack's documented example (field guide section 4).
func TestSignMatchesSlackVector(t *testing.T) {
	const (
		secret = "8f742231b10e8888abcd99yyyzzz85a5"
		body   = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
		want   = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
	)
	if got := slacktest.Sign(secret, time.Unix(1531420618, 0), []byte(body)); got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

func TestSignedRequestVerifies(t *testing.T) {
	const secret = "s3cr3t"
	body := []byte(slacktest.SlashCommandForm(slacktest.SlashCommand{Command: "/sso-setup", Text: "new Grafana"}).Encode())
	tests := []struct {
		name   string
		secret string
		ok     bool
	}{
		{"same secret", secret, true},
		{"other secret", "other", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := slacktest.SignedRequest("http://bot.invalid/slack/commands", tt.secret, body, time.Now())
			sv, err := slack.NewSecretsVerifier(req.Header, secret)
			if err != nil {
				t.Fatalf("verifier: %v", err)
			}
			got, err := io.ReadAll(req.Body)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := sv.Write(got); err != nil {
				t.Fatal(err)
			}
			if err := sv.Ensure(); (err == nil) != tt.ok {
				t.Fatalf("Ensure() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestSlashCommandFormParses(t *testing.T) {
	srv, _ := newServer(t)
	cmd := srv.NewSlashCommand("/sso-setup", "new Grafana", "U1", "C1")
	req := slacktest.SignedRequest("http://bot.invalid/", "x", []byte(slacktest.SlashCommandForm(cmd).Encode()), time.Now())
	got, err := slack.SlashCommandParse(req)
	if err != nil {
		t.Fatal(err)
	}
	want := slack.SlashCommand{
		Command: "/sso-setup", Text: "new Grafana", UserID: "U1", UserName: "alice", ChannelID: "C1", ChannelName: "sso",
		TeamID: srv.TeamID(), TeamDomain: "slacktest", ResponseURL: cmd.ResponseURL, TriggerID: cmd.TriggerID, APIAppID: srv.AppID(),
	}
	if got != want {
		t.Fatalf("parsed = %+v\nwant     %+v", got, want)
	}
	if cmd.ResponseURL == "" || cmd.TriggerID == "" {
		t.Fatalf("cmd = %+v", cmd)
	}
}

func TestBlockActionsPayloadParses(t *testing.T) {
	a := slacktest.BlockAction{
		UserID: "U1", UserName: "alice", TeamID: "T1", APIAppID: "A1",
		ChannelID: "C1", MessageTS: "1700000000.000100", ThreadTS: "1700000000.000050",
		ActionID: "approve", BlockID: "gate", Value: "run-1:v3", Text: "Approve",
		ResponseURL: "http://fake/response/1", TriggerID: "trig",
	}
	body := []byte(slacktest.BlockActionsPayload(a).Encode())
	req := slacktest.SignedRequest("http://bot.invalid/", "x", body, time.Now())
	cb, err := slack.InteractionCallbackParse(req)
	if err != nil {
		t.Fatal(err)
	}
	if cb.Type != slack.InteractionTypeBlockActions || cb.User.ID != "U1" || cb.Channel.ID != "C1" ||
		cb.Container.MessageTs != a.MessageTS || cb.Container.ThreadTs != a.ThreadTS || cb.Container.ChannelID != "C1" ||
		cb.ResponseURL != a.ResponseURL || cb.TriggerID != "trig" || cb.APIAppID != "A1" || cb.Team.ID != "T1" ||
		cb.Message.Timestamp != a.MessageTS {
		t.Fatalf("callback = %+v", cb)
	}
	acts := cb.ActionCallback.BlockActions
	if len(acts) != 1 || acts[0].ActionID != "approve" || acts[0].BlockID != "gate" || acts[0].Value != "run-1:v3" || acts[0].Type != "button" {
		t.Fatalf("actions = %+v", acts)
	}
}

func TestViewSubmissionPayloadParses(t *testing.T) {
	srv, api := newServer(t)
	resp, err := api.OpenView(srv.NewTriggerID(), modalRequest("New SSO app"))
	if err != nil {
		t.Fatal(err)
	}
	sub, err := srv.SubmitView(resp.View.ID, "U1", map[string]map[string]slacktest.StateValue{
		"name": {"name_input": {Type: "plain_text_input", Value: "Grafana"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	form := slacktest.ViewSubmissionPayload(sub)
	req := slacktest.SignedRequest("http://bot.invalid/", "x", []byte(form.Encode()), time.Now())
	cb, err := slack.InteractionCallbackParse(req)
	if err != nil {
		t.Fatal(err)
	}
	if cb.Type != slack.InteractionTypeViewSubmission || cb.User.ID != "U1" || cb.View.ID != resp.View.ID ||
		cb.View.CallbackID != "sso_new" || cb.View.Hash != resp.View.Hash || len(cb.View.Blocks.BlockSet) != 1 {
		t.Fatalf("callback = %+v", cb)
	}
	if v := cb.View.State.Values["name"]["name_input"].Value; v != "Grafana" {
		t.Fatalf("state value = %q", v)
	}
	if _, err := srv.SubmitView("V404", "U1", nil); err == nil {
		t.Fatal("SubmitView on an unknown view succeeded")
	}
	if got := (url.Values{"payload": {string(slacktest.ViewSubmissionJSON(sub))}}); got.Encode() != form.Encode() {
		t.Fatal("ViewSubmissionPayload is not payload=ViewSubmissionJSON")
	}
}

func TestTypedText(t *testing.T) {
	tests := []struct{ typed, delivered string }{
		{"new Grafana", "new Grafana"},
		{`new "My <App> & \"Co\""`, `new "My &lt;App&gt; &amp; \"Co\""`},
		{"&amp; stays typed", "&amp;amp; stays typed"},
	}
	for _, tt := range tests {
		if got := slacktest.TypedText(tt.typed); got != tt.delivered {
			t.Errorf("TypedText(%q) = %q; want %q", tt.typed, got, tt.delivered)
		}
	}
}
