package bot

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/ssobot/ssobot/bot/slacktest"
	"github.com/ssobot/ssobot/workflow"
)

func TestSocketMode(t *testing.T) {
	h, eng := newHandlerHarness(t)
	eng.decideFn = func(d workflow.DecisionRequest) (*workflow.Run, error) {
		return nil, &workflow.RefusedError{Reason: "you are not an approver: ask <@U2>"}
	}
	if h.bot.SocketConnected() {
		t.Error("SocketConnected before Socket Mode started")
	}
	ctx := startSocketMode(t, h.bot, h.slack)

	send := func(typ string, payload any) json.RawMessage {
		t.Helper()
		id, err := h.slack.SendEnvelope(ctx, typ, payload)
		if err != nil {
			t.Fatal(err)
		}
		ack, err := h.slack.WaitAck(ctx, id)
		if err != nil {
			t.Fatalf("no ack for %s: %v", typ, err)
		}
		return ack
	}

	t.Run("slash command answers in the ack", func(t *testing.T) {
		ack := send(slacktest.EnvelopeSlashCommands, h.slack.NewSlashCommand("/sso-setup", "new Grafana", "U1", "C1"))
		var r testReply
		if err := json.Unmarshal(ack, &r); err != nil || r.Text != "Run #1 started: I'll post the plan in this channel." || r.ResponseType != "ephemeral" {
			t.Fatalf("ack %s (%v)", ack, err)
		}
		if eng.run(1) == nil {
			t.Fatal("no run started")
		}
		// The loop handled "connected" before this envelope.
		if !h.bot.SocketConnected() {
			t.Error("SocketConnected is false while envelopes are answered")
		}
	})
	t.Run("a command delivered twice starts one run", func(t *testing.T) {
		cmd := h.slack.NewSlashCommand("/sso-setup", "new Wiki", "U1", "C1")
		first := send(slacktest.EnvelopeSlashCommands, cmd)
		again := send(slacktest.EnvelopeSlashCommands, cmd) // a new envelope, the same action
		if !strings.Contains(string(first), "Run #2 started") || !strings.Contains(string(again), "already handled") {
			t.Fatalf("acks %s then %s", first, again)
		}
		if eng.run(3) != nil {
			t.Fatal("the redelivered command started a second run")
		}
	})
	t.Run("help", func(t *testing.T) {
		ack := send(slacktest.EnvelopeSlashCommands, h.slack.NewSlashCommand("/sso-setup", "help", "U3", "C1"))
		if !strings.Contains(string(ack), "*Usage*") {
			t.Fatalf("ack %s", ack)
		}
	})
	t.Run("view submission errors in the ack", func(t *testing.T) {
		v := slacktest.ViewSubmissionJSON(slacktest.ViewSubmission{UserID: "U1", CallbackID: ModalCallbackID, PrivateMetadata: `{"channel":"C1"}`,
			Values: map[string]map[string]slacktest.StateValue{
				BlockAppName: {ModalActionValue: {Type: "plain_text_input", Value: "Grafana"}},
				BlockAppSlug: {ModalActionValue: {Type: "plain_text_input", Value: "token"}},
			}})
		ack := send(slacktest.EnvelopeInteractive, v)
		var resp struct {
			ResponseAction string            `json:"response_action"`
			Errors         map[string]string `json:"errors"`
		}
		if err := json.Unmarshal(ack, &resp); err != nil || resp.ResponseAction != "errors" || !strings.Contains(resp.Errors[BlockAppSlug], "reserved") {
			t.Fatalf("ack %s (%v)", ack, err)
		}
	})
	t.Run("click is acked empty and answered privately", func(t *testing.T) {
		a := slacktest.BlockActionsJSON(slacktest.BlockAction{UserID: "U3", ChannelID: "C1", MessageTS: "1.1", ActionID: ActionApprove,
			BlockID: BlockGate, Value: "1|authentik|n", ResponseURL: h.slack.NewResponseURLFor("C1", "", "U3")})
		if ack := send(slacktest.EnvelopeInteractive, a); len(ack) != 0 && string(ack) != "null" {
			t.Fatalf("ack payload %s; want none", ack)
		}
		calls := h.waitCalls("the private answer", func(c []slacktest.Call) bool { return countMethod(c, slacktest.MethodResponseURL) == 1 })
		if got := responseTexts(calls)[0]; got != ":no_entry: You are not an approver: ask <@U2>." {
			t.Fatalf("answer %q", got)
		}
	})
	t.Run("events are acked too", func(t *testing.T) {
		send(slacktest.EnvelopeEventsAPI, map[string]any{"type": "event_callback", "event": map[string]any{"type": "app_mention"}})
	})
}

func TestSocketModeSurvivesAPanic(t *testing.T) {
	h := newHarness(t, nil)
	h.bot.Attach(panickyEngine{newFakeEngine(h.clock)})
	ctx := startSocketMode(t, h.bot, h.slack)
	for _, text := range []string{"status 1", "help"} { // Get panics; help still works after
		id, err := h.slack.SendEnvelope(ctx, slacktest.EnvelopeSlashCommands, h.slack.NewSlashCommand("/sso-setup", text, "U1", "C1"))
		if err != nil {
			t.Fatal(err)
		}
		ack, err := h.slack.WaitAck(ctx, id)
		if err != nil {
			t.Fatalf("%q: no ack: %v", text, err)
		}
		want := map[string]string{"status 1": "Something went wrong", "help": "*Usage*"}[text]
		if !strings.Contains(string(ack), want) {
			t.Fatalf("%q: ack %s; want %q", text, ack, want)
		}
	}
}

// startSocketMode runs b in Socket Mode against sl until the test ends,
// once it is connected; the context it returns bounds the test's waits.
func startSocketMode(t *testing.T, b *Bot, sl *slacktest.Server) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- b.RunSocketMode(runCtx, workflow.NewSecret(sl.AppToken())) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("RunSocketMode: %v", err)
		}
		cancel()
	})
	if err := sl.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	return ctx
}

func TestSocketModeNeedsAToken(t *testing.T) {
	h, _ := newHandlerHarness(t)
	if err := h.bot.RunSocketMode(context.Background(), workflow.Secret{}); err == nil {
		t.Fatal("RunSocketMode without a token did not fail")
	}
}

// TestSocketModeStopAnswersWhatItReceives: a command being handled when
// Socket Mode is told to stop still gets its answer in the
// acknowledgement, as an HTTP request in flight does at a graceful
// shutdown, and so does an envelope Slack delivers while it stops.
func TestSocketModeStopAnswersWhatItReceives(t *testing.T) {
	h, eng := newHandlerHarness(t)
	entered, release := make(chan struct{}), make(chan struct{})
	eng.startHook = func(ctx context.Context) error {
		close(entered)
		<-release
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- h.bot.RunSocketMode(runCtx, workflow.NewSecret(h.slack.AppToken())) }()
	if err := h.slack.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	first, err := h.slack.SendEnvelope(ctx, slacktest.EnvelopeSlashCommands, h.slack.NewSlashCommand("/sso-setup", "new Grafana", "U1", "C1"))
	if err != nil {
		t.Fatal(err)
	}
	<-entered
	stop()
	close(release)
	if ack, err := h.slack.WaitAck(ctx, first); err != nil || !strings.Contains(string(ack), "Run #1 started") {
		t.Fatalf("the command in flight: %s, %v; want the run started", ack, err)
	}
	late, err := h.slack.SendEnvelope(ctx, slacktest.EnvelopeSlashCommands, h.slack.NewSlashCommand("/sso-setup", "help", "U1", "C1"))
	if err != nil {
		t.Fatal(err)
	}
	ack, err := h.slack.WaitAck(ctx, late)
	if err != nil || !strings.Contains(string(ack), "*Usage*") {
		t.Fatalf("the envelope delivered while stopping: %s, %v", ack, err)
	}
	if err := <-done; err != nil {
		t.Errorf("RunSocketMode: %v", err)
	}
}

// TestSocketReadinessFollowsTheConnection: readiness is lost while Socket
// Mode connects again (after Slack's disconnect or a dropped connection),
// when nothing reaches the bot, and comes back once connected.
func TestSocketReadinessFollowsTheConnection(t *testing.T) {
	h, _ := newHandlerHarness(t)
	ctx := context.Background()
	for _, step := range []struct {
		evt  socketmode.EventType
		want bool
	}{
		{socketmode.EventTypeConnecting, false},
		{socketmode.EventTypeConnected, true},
		{socketmode.EventTypeConnecting, false}, // a reconnect
		{socketmode.EventTypeConnected, true},
		{socketmode.EventTypeConnectionError, false},
	} {
		h.bot.socketEvent(ctx, nil, socketmode.Event{Type: step.evt})
		if got := h.bot.SocketConnected(); got != step.want {
			t.Fatalf("after %s: SocketConnected = %v, want %v", step.evt, got, step.want)
		}
	}
}

// TestSocketModePublicStatusDoesNotHoldTheLoop: Socket Mode handles one
// envelope at a time, so a public status must not wait for Slack before it
// is acknowledged: here users.info does not answer until the end, and the
// next envelope is still acknowledged (each wait is bounded: a regression
// fails instead of hanging).
func TestSocketModePublicStatusDoesNotHoldTheLoop(t *testing.T) {
	old := namesTimeout
	namesTimeout = time.Minute // longer than any wait below
	t.Cleanup(func() { namesTimeout = old })
	hold := newHoldSlack()
	lookups := heldMethod{method: "users.info", hold: hold}
	h, eng := newHandlerHarness(t, func(c *Config) { slack.OptionHTTPClient(&http.Client{Transport: lookups})(c.Client) })
	eng.put(sampleRun(workflow.GateAuthentik, workflow.StepWaiting, workflow.StateAwaitingApproval))
	// The click's decision asks users.info whether U2 may approve, as the
	// engine's does, and stays in the held lookup until the release.
	deciding, decided := make(chan struct{}), make(chan struct{})
	eng.decideFn = func(d workflow.DecisionRequest) (*workflow.Run, error) {
		close(deciding)
		defer close(decided)
		_, _, err := h.bot.appr.Eligible(context.Background(), d.User)
		return nil, &workflow.RefusedError{Reason: fmt.Sprintf("eligibility checked (%v)", err)}
	}
	ctx := startSocketMode(t, h.bot, h.slack)
	release := sync.OnceFunc(func() { close(hold.release) })
	defer release()
	before := len(h.slack.Calls())
	status, err := h.slack.SendEnvelope(ctx, slacktest.EnvelopeSlashCommands, h.slack.NewSlashCommand("/sso-setup", "status 42 public", "U3", "C1"))
	if err != nil {
		t.Fatal(err)
	}
	next, err := h.slack.SendEnvelope(ctx, slacktest.EnvelopeSlashCommands, h.slack.NewSlashCommand("/sso-setup", "help", "U1", "C1"))
	if err != nil {
		t.Fatal(err)
	}
	// A click too, whose decision waits for users.info as well: it is
	// acknowledged at once, with no payload.
	click, err := h.slack.SendEnvelope(ctx, slacktest.EnvelopeInteractive, slacktest.BlockActionsJSON(slacktest.BlockAction{UserID: "U2", ChannelID: "C1",
		MessageTS: "1.1", ActionID: ActionApprove, BlockID: BlockGate, Value: "42|authentik|n", ResponseURL: h.slack.NewResponseURLFor("C1", "", "U2")}))
	if err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{status: "Sharing run #42 in this channel", next: "*Usage*", click: ""} {
		ack, err := h.slack.WaitAck(ctx, id)
		if err != nil || !strings.Contains(string(ack), want) || (want == "" && len(ack) != 0 && string(ack) != "null") {
			t.Fatalf("ack %s, %v; want %q", ack, err, want)
		}
	}
	select {
	case <-deciding:
	case <-ctx.Done():
		t.Fatal("the click was never decided")
	}
	select {
	case <-decided:
		t.Fatal("the decision's lookup answered while held")
	default:
	}
	if n := countMethod(h.slack.Calls()[before:], "users.info"); n != 0 {
		t.Fatalf("%d lookups answered while held", n)
	}
	// Once Slack answers, the card is posted in the channel.
	release()
	if card := h.sharedCard(before); !strings.Contains(string(card.Blocks), "@requester") {
		t.Errorf("shared card %s", card.Blocks)
	}
}

// heldMethod holds the calls of one Web API method (see holdSlack) and
// lets the others through.
type heldMethod struct {
	method string
	hold   holdSlack
}

func (h heldMethod) RoundTrip(r *http.Request) (*http.Response, error) {
	if strings.HasSuffix(r.URL.Path, "/"+h.method) {
		return h.hold.RoundTrip(r)
	}
	return http.DefaultTransport.RoundTrip(r)
}
