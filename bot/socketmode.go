package bot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/ssobot/ssobot/workflow"
)

// RunSocketMode serves slash commands and interactions over Socket Mode with
// the app-level token (xapp-…), through the same handlers as HTTP mode.
// Every envelope is acknowledged; slash commands and view submissions carry
// their answer in the acknowledgement. It returns when ctx ends (nil) or the
// connection cannot be re-established.
func (b *Bot) RunSocketMode(ctx context.Context, appToken workflow.Secret) error {
	if appToken.IsZero() {
		return errors.New("socket mode: no app-level token")
	}
	smc := socketmode.New(b.appClient(appToken))

	// The connection and the handlers outlive ctx a little: the envelope
	// being handled when it ends, and those already received, are answered
	// and acknowledged (as HTTP's graceful shutdown lets requests in flight
	// finish); then the connection closes.
	conn, closeConn := context.WithCancel(context.WithoutCancel(ctx))
	defer closeConn()
	stopAfter := context.AfterFunc(ctx, func() { time.AfterFunc(socketDrainTimeout, closeConn) })
	defer stopAfter()
	errc := make(chan error, 1)
	go func() { errc <- smc.RunContext(conn) }()

	for {
		select {
		case <-ctx.Done():
			b.drainSocket(conn, smc)
			closeConn()
			<-errc
			return nil
		case err := <-errc:
			if ctx.Err() != nil {
				return nil
			}
			return err
		case evt := <-smc.Events:
			b.socketEvent(conn, smc, evt)
		}
	}
}

// appClient is a copy of the bot's client with the app-level token added,
// which apps.connections.open needs.
func (b *Bot) appClient(appToken workflow.Secret) *slack.Client {
	api := *b.client
	slack.OptionAppLevelToken(appToken.Reveal())(&api)
	return &api
}

// SocketConnected reports whether Socket Mode holds a connection to Slack
// (false in HTTP mode): for the readiness check.
func (b *Bot) SocketConnected() bool { return b.socketUp.Load() }

// CheckAppToken asks Slack for a Socket Mode connection URL with the
// app-level token, as connecting does first: a start-up check of
// SLACK_APP_TOKEN and its connections:write scope. The URL is not used.
func (b *Bot) CheckAppToken(ctx context.Context, appToken workflow.Secret) error {
	_, url, err := b.appClient(appToken).StartSocketModeContext(ctx)
	switch {
	case err != nil:
		return fmt.Errorf("apps.connections.open: %w", err)
	case url == "":
		// Slack grants a connection with its URL; a stub answering
		// {"ok":true} to everything does not.
		return fmt.Errorf("apps.connections.open: %w", ErrNoSocketURL)
	}
	return nil
}

// ErrNoSocketURL: apps.connections.open answered ok with no connection URL,
// which Slack always gives: the answer is not Slack's.
var ErrNoSocketURL = errors.New("the answer has no url")

// socketDrainTimeout bounds the answers given after Socket Mode is told to
// stop: Slack waits 3 s for each acknowledgement.
const socketDrainTimeout = 3 * time.Second

// socketFlushGrace is how long the connection stays open after the last
// envelope answered at a stop (bounded in all by socketDrainTimeout).
const socketFlushGrace = 500 * time.Millisecond

// drainSocket answers the envelopes received until the connection has
// been quiet for socketFlushGrace: slack-go queues an acknowledgement for
// its writer and returns, with no way to wait for the write, and Slack may
// still deliver to this connection meanwhile.
func (b *Bot) drainSocket(conn context.Context, smc *socketmode.Client) {
	quiet := time.NewTimer(socketFlushGrace)
	defer quiet.Stop()
	for {
		select {
		case evt := <-smc.Events:
			b.socketEvent(conn, smc, evt)
			quiet.Reset(socketFlushGrace)
		case <-quiet.C:
			return
		case <-conn.Done():
			return
		}
	}
}

func (b *Bot) socketEvent(ctx context.Context, smc *socketmode.Client, evt socketmode.Event) {
	defer b.cfg.Foreground.Begin()()
	var payload any
	switch evt.Type {
	case socketmode.EventTypeSlashCommand:
		cmd, ok := evt.Data.(slack.SlashCommand)
		if !ok {
			break
		}
		if b.redelivered("command", cmd.TriggerID) {
			payload = private("This request was already handled.")
			break
		}
		payload = b.guard(func() any {
			if r := b.command(ctx, cmd); r != nil {
				return r
			}
			return nil
		})
	case socketmode.EventTypeInteractive:
		cb, ok := evt.Data.(slack.InteractionCallback)
		if !ok || b.redelivered("interaction", cb.TriggerID) {
			break
		}
		payload = b.guard(func() any { return b.interaction(ctx, cb) })
	case socketmode.EventTypeConnecting:
		// Also on each reconnect (after Slack's disconnect or a dropped
		// connection): nothing reaches the bot until it is connected again.
		b.socketUp.Store(false)
		b.log.Info("socket mode: connecting")
		return
	case socketmode.EventTypeConnected:
		b.socketUp.Store(true)
		b.log.Info("socket mode: connected")
		return
	case socketmode.EventTypeConnectionError:
		b.socketUp.Store(false)
		if e, ok := evt.Data.(*slack.ConnectionErrorEvent); ok {
			b.log.Warn("socket mode: connection error; trying again", slog.Int("attempt", e.Attempt), slog.Duration("in", e.Backoff), slog.Any(workflow.KeyError, e.ErrorObj))
		} else {
			b.log.Warn("socket mode: connection error; trying again")
		}
	case socketmode.EventTypeIncomingError:
		if e, ok := evt.Data.(*slack.IncomingEventError); ok {
			b.log.Warn("socket mode: "+string(evt.Type), slog.Any(workflow.KeyError, e.ErrorObj))
		} else {
			b.log.Warn("socket mode: " + string(evt.Type))
		}
	case socketmode.EventTypeInvalidAuth, socketmode.EventTypeErrorBadMessage, socketmode.EventTypeErrorWriteFailed:
		if evt.Type == socketmode.EventTypeInvalidAuth {
			b.socketUp.Store(false)
		}
		b.log.Warn("socket mode: " + string(evt.Type))
	}
	if evt.Request == nil || evt.Request.EnvelopeID == "" {
		return
	}
	if err := smc.AckCtx(ctx, evt.Request.EnvelopeID, payload); err != nil {
		b.log.Error("socket mode: acknowledge", slog.String("type", string(evt.Type)), slog.Any(workflow.KeyError, err))
	}
}

// redelivered tells whether Socket Mode brought this slash command or
// interaction before (Slack may deliver an envelope again when its
// acknowledgement was lost with a connection): each person's action has
// its own trigger_id, and a second "new" would start a second run. Over
// HTTP the replay guard keys on the signed request instead.
func (b *Bot) redelivered(kind, triggerID string) bool {
	if triggerID == "" {
		return false
	}
	if b.replays.seen(replayKey("socket "+kind, []byte(triggerID))) {
		b.log.Warn("dropped a Slack request delivered twice over Socket Mode", slog.String("kind", kind))
		return true
	}
	return false
}

// guard runs a handler of an envelope. A panic is logged and answered with
// an apology, as over HTTP, and never ends the connection's event loop.
func (b *Bot) guard(handle func() any) (payload any) {
	defer func() {
		if v := recover(); v != nil {
			b.log.Error("panic while handling a Slack request", slog.Any("panic", v))
			payload = private("Something went wrong on my side; please try again.")
		}
	}()
	return handle()
}
