package bot

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/slack-go/slack"

	"github.com/ssobot/ssobot/bot/slacktest"
	"github.com/ssobot/ssobot/workflow"
)

// A status card is answered from the memo only while its run is unchanged:
// every change shows at once, and who may see it is checked every time.
func TestStatusFollowsTheRun(t *testing.T) {
	h, eng := newHandlerHarness(t)
	r := sampleRun(workflow.GateAuthentik, workflow.StepWaiting, workflow.StateAwaitingApproval)
	r.ID = 3
	eng.put(r)
	status := func(user, channel string) string {
		t.Helper()
		cmd := h.slack.NewSlashCommand("/sso-setup", "status 3", user, channel)
		code, body := h.post("/slack/commands", slacktest.SlashCommandForm(cmd))
		if code != http.StatusOK {
			t.Fatalf("status %d: %s", code, body)
		}
		return body
	}

	first := status("U1", "C1")
	var got testReply
	if err := json.Unmarshal([]byte(first), &got); err != nil {
		t.Fatalf("decode %q: %v", first, err)
	}
	if got.ResponseType != slack.ResponseTypeEphemeral || !strings.Contains(got.Text, "SSO setup #3") || !strings.Contains(string(got.Blocks), StateLabel(workflow.StateAwaitingApproval)) {
		t.Fatalf("first answer %s", first)
	}
	if again := status("U2", "C1"); again != first {
		t.Fatalf("the unchanged run answered differently:\n%s\nthen\n%s", first, again)
	}

	// Someone else in another channel does not see the run, card
	// remembered or not.
	if other := status("U9", "C2"); !strings.Contains(other, "Run #3 was started in another channel") || strings.Contains(other, "SSO setup #3") {
		t.Fatalf("from another channel: %s", other)
	}

	// The run moves on: the next answer shows where it is now.
	r.State = workflow.StateSucceeded
	for i := range r.Steps {
		r.Steps[i].Status = workflow.StepSucceeded
	}
	eng.put(r) // a write: its Version moves past the remembered one
	after := status("U1", "C1")
	if !strings.Contains(after, StateLabel(workflow.StateSucceeded)) || strings.Contains(after, StateLabel(workflow.StateAwaitingApproval)) {
		t.Fatalf("after the run succeeded: %s", after)
	}
}

// The memo keeps at most its bound, and a card pushed out is made again.
func TestStatusCardsBounded(t *testing.T) {
	c := newStatusCards(2)
	renders := 0
	render := func(r *workflow.Run) []slack.Block {
		renders++
		return renderRun(r, links{}, false, "", mention)
	}
	answer := func(id int64) string {
		t.Helper()
		r := sampleRun(workflow.GateAuthentik, workflow.StepWaiting, workflow.StateAwaitingApproval)
		r.ID, r.Version = id, 1
		resp, err := c.reply(r, render)
		if err != nil {
			t.Fatal(err)
		}
		b, err := json.Marshal(resp)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("SSO setup #%d", id); !strings.Contains(string(b), want) {
			t.Fatalf("run %d: %s", id, b)
		}
		return string(b)
	}
	for id := int64(1); id <= 3; id++ {
		answer(id)
	}
	if c.len() != 2 || renders != 3 {
		t.Fatalf("%d cards kept after 3 runs (bound 2), %d rendered", c.len(), renders)
	}
	// Asked again, at least one card is made anew (which ones depends on
	// which the memo let go), and the bound still holds.
	for id := int64(1); id <= 3; id++ {
		answer(id)
	}
	if c.len() != 2 || renders < 4 || renders > 6 {
		t.Fatalf("%d cards kept, %d renders for three runs asked twice with room for two", c.len(), renders)
	}
}

// Over Socket Mode the status card goes out in the acknowledgement, encoded
// the same way as over HTTP.
func TestSocketModeStatusCard(t *testing.T) {
	h, eng := newHandlerHarness(t)
	r := sampleRun(workflow.GateAuthentik, workflow.StepWaiting, workflow.StateAwaitingApproval)
	r.ID = 5
	eng.put(r)
	ctx := startSocketMode(t, h.bot, h.slack)
	for range 2 { // the second answer comes from the memo
		id, err := h.slack.SendEnvelope(ctx, slacktest.EnvelopeSlashCommands, h.slack.NewSlashCommand("/sso-setup", "status 5", "U1", "C1"))
		if err != nil {
			t.Fatal(err)
		}
		ack, err := h.slack.WaitAck(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		var got testReply
		if err := json.Unmarshal(ack, &got); err != nil || got.ResponseType != slack.ResponseTypeEphemeral || !strings.Contains(got.Text, "SSO setup #5") || !strings.Contains(string(got.Blocks), `"type":"header"`) {
			t.Fatalf("ack %s (%v)", ack, err)
		}
	}
}
