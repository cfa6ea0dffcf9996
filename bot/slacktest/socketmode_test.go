package slacktest_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/ssobot/ssobot/bot/slacktest"
)

// runSocketClient runs slack-go's Socket Mode client against srv. It acks
// slash commands with {"text":"got <text>"} and interactions with no
// payload, and reports the connection count of each hello.
func runSocketClient(t *testing.T, srv *slacktest.Server) {
	t.Helper()
	api := slack.New(srv.BotToken(), slack.OptionAppLevelToken(srv.AppToken()), slack.OptionAPIURL(srv.APIURL()))
	client := socketmode.New(api)
	ctx, cancel := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- client.RunContext(ctx) }()
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case evt := <-client.Events:
				switch evt.Type {
				case socketmode.EventTypeSlashCommand:
					cmd, _ := evt.Data.(slack.SlashCommand)
					_ = client.Ack(*evt.Request, map[string]string{"text": "got " + cmd.Text})
				case socketmode.EventTypeInteractive:
					_ = client.Ack(*evt.Request)
				}
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-runDone; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("socket mode client: %v", err)
		}
	})
}

func TestSocketMode(t *testing.T) {
	srv, _ := newServer(t)
	runSocketClient(t, srv)
	ctx := testCtx(t)

	if err := srv.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}

	cmd := srv.NewSlashCommand("/sso-setup", "new Grafana", "U1", "C1")
	id, err := srv.SendEnvelope(ctx, slacktest.EnvelopeSlashCommands, cmd)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := srv.WaitAck(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ Text string }
	if err := json.Unmarshal(payload, &got); err != nil || got.Text != "got new Grafana" {
		t.Fatalf("ack payload = %s (%v)", payload, err)
	}

	a := slacktest.BlockAction{UserID: "U1", ChannelID: "C1", MessageTS: "1.000100", ActionID: "approve", BlockID: "gate", Value: "v"}
	id2, err := srv.SendEnvelope(ctx, slacktest.EnvelopeInteractive, slacktest.BlockActionsJSON(a))
	if err != nil {
		t.Fatal(err)
	}
	if payload, err := srv.WaitAck(ctx, id2); err != nil || payload != nil {
		t.Fatalf("interactive ack = %s, %v", payload, err)
	}
	if _, err := srv.WaitAck(ctx, "no-such-envelope"); !errors.Is(err, slacktest.ErrNotFound) {
		t.Fatalf("unknown envelope: %v", err)
	}

	env := srv.Calls(slacktest.MethodEnvelope)
	acks := srv.Calls(slacktest.MethodAck)
	if len(env) != 2 || len(acks) != 2 || env[0].Param("envelope_id") != id || acks[0].Param("envelope_id") != id || acks[0].Error != "" {
		t.Fatalf("envelopes = %v\nacks = %v", env, acks)
	}
}

func TestSocketModeReconnectsOnDisconnect(t *testing.T) {
	srv, _ := newServer(t)
	runSocketClient(t, srv)
	ctx := testCtx(t)
	if err := srv.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	if err := srv.SendDisconnect("refresh_requested"); err != nil {
		t.Fatal(err)
	}
	// The client opens a new connection, and envelopes flow again.
	if _, err := srv.WaitFor(ctx, func(cs []slacktest.Call) bool {
		return len(slacktest.FilterCalls(cs, slacktest.MethodHello)) == 2
	}); err != nil {
		t.Fatal(err)
	}
	id, err := srv.SendEnvelope(ctx, slacktest.EnvelopeSlashCommands, slacktest.SlashCommand{Command: "/sso-setup", Text: "list"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv.WaitAck(ctx, id); err != nil {
		t.Fatal(err)
	}
}

func TestAppsConnectionsOpenNeedsAppToken(t *testing.T) {
	srv, _ := newServer(t)
	api := slack.New(srv.BotToken(), slack.OptionAppLevelToken(srv.BotToken()), slack.OptionAPIURL(srv.APIURL()))
	if _, _, err := api.StartSocketModeContext(testCtx(t)); slackErr(err) != "not_allowed_token_type" {
		t.Fatalf("err = %v", err)
	}
}
