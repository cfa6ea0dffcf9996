package bot

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/slack-go/slack"

	"github.com/ssobot/ssobot/bot/slacktest"
	"github.com/ssobot/ssobot/workflow"
)

// clickOnRunMessage is an Approve click as Slack sends it: the payload
// carries the whole message the button is on.
func clickOnRunMessage(t testing.TB) slacktest.BlockAction {
	r := sampleRun(workflow.GateAuthentik, workflow.StepWaiting, workflow.StateAwaitingApproval)
	msg, err := json.Marshal(map[string]any{"type": "message", "ts": "1700000000.000100", "text": "Grafana",
		"blocks": renderRun(r, links{}, true, "", mention)})
	if err != nil {
		t.Fatal(err)
	}
	return slacktest.BlockAction{
		UserID: "U0APPROVER", UserName: "bob", TeamID: "T1", APIAppID: "A1",
		ChannelID: "C1", MessageTS: "1700000000.000100",
		ActionID: ActionApprove, BlockID: "gate", Value: "42|authentik|nonce-authentik", Text: "Approve",
		ResponseURL: "https://hooks.slack.com/actions/T1/1/abc", TriggerID: "1.2.trigger",
		Message: msg,
	}
}

func TestParseInteraction(t *testing.T) {
	click := clickOnRunMessage(t)
	form := func(payload string) []byte { return []byte(url.Values{"payload": {payload}}.Encode()) }
	tests := []struct {
		name    string
		body    []byte
		wantErr string
		check   func(t *testing.T, cb slack.InteractionCallback)
	}{
		{name: "click on the run's message", body: []byte(slacktest.BlockActionsPayload(click).Encode()),
			check: func(t *testing.T, cb slack.InteractionCallback) {
				if cb.Type != slack.InteractionTypeBlockActions || cb.User.ID != "U0APPROVER" || cb.User.Name != "bob" ||
					cb.Channel.ID != "C1" || cb.ResponseURL != click.ResponseURL || cb.TriggerID != click.TriggerID {
					t.Errorf("callback = %+v", cb)
				}
				if cb.Container.MessageTs != click.MessageTS || cb.Container.ChannelID != "C1" || cb.Container.Type != "message" {
					t.Errorf("container = %+v", cb.Container)
				}
				acts := cb.ActionCallback.BlockActions
				if len(acts) != 1 || acts[0].ActionID != ActionApprove || acts[0].Value != click.Value || acts[0].BlockID != "gate" {
					t.Fatalf("actions = %+v", acts)
				}
			}},
		{name: "click in a modal", body: func() []byte {
			c := click
			c.ViewID, c.Message = "V1", nil
			return []byte(slacktest.BlockActionsPayload(c).Encode())
		}(), check: func(t *testing.T, cb slack.InteractionCallback) {
			if cb.Container.Type != "view" || cb.Container.ViewID != "V1" {
				t.Errorf("container = %+v", cb.Container)
			}
		}},
		{name: "modal submission", body: []byte(slacktest.ViewSubmissionPayload(slacktest.ViewSubmission{
			UserID: "U1", ViewID: "V9", CallbackID: "sso-setup", PrivateMetadata: "C1",
			Values: map[string]map[string]slacktest.StateValue{"name": {"name": {Type: "plain_text_input", Value: "Grafana"}}},
		}).Encode()), check: func(t *testing.T, cb slack.InteractionCallback) {
			if cb.Type != slack.InteractionTypeViewSubmission || cb.View.ID != "V9" || cb.View.CallbackID != "sso-setup" ||
				cb.View.PrivateMetadata != "C1" || cb.View.State.Values["name"]["name"].Value != "Grafana" {
				t.Errorf("view = %+v", cb.View)
			}
		}},
		{name: "no payload", body: []byte("token=x"), wantErr: "no payload"},
		{name: "not a form", body: []byte("payload=%zz"), wantErr: "parse form"},
		{name: "not JSON", body: form(`{"type":"block_actions",`), wantErr: "decode payload"},
		{name: "type not a string", body: form(`{"type":5}`), wantErr: "decode payload"},
		{name: "user ID not a string", body: form(`{"type":"block_actions","user":{"id":["U1"]}}`), wantErr: "decode payload"},
		{name: "actions not a list", body: form(`{"type":"block_actions","actions":{"action_id":"approve"}}`), wantErr: "decode payload"},
		{name: "invalid UTF-8", body: form("{\"type\":\"block_actions\",\"user\":{\"id\":\"U\xff\"}}"), wantErr: "UTF-8"},
		{name: "bad view", body: form(`{"type":"view_submission","view":{"id":5}}`), wantErr: "decode view"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cb, err := parseInteraction(tt.body)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, cb)
		})
	}
}

// BenchmarkParseInteraction is the part of a click's acknowledgement after
// the signature check: reading the payload of a click on a run's message.
func BenchmarkParseInteraction(b *testing.B) {
	body := []byte(slacktest.BlockActionsPayload(clickOnRunMessage(b)).Encode())
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := parseInteraction(body); err != nil {
			b.Fatal(err)
		}
	}
}

// parseInteraction decodes an interaction body as the handler does, in its
// two parts: the form on the request path, the payload where it is used.
func parseInteraction(body []byte) (slack.InteractionCallback, error) {
	payload, err := interactionPayload(body)
	if err != nil {
		return slack.InteractionCallback{}, err
	}
	return decodeInteraction(payload)
}
