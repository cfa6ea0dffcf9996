package bot

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/ssobot/ssobot/workflow"
)

// Delivery retry policy for failures other than rate limits.
const (
	deliveryBackoffBase = time.Second
	deliveryBackoffMax  = time.Minute
	deliveryLoudAfter   = 8 // failures in a row before an error is logged
	// flushTimeout bounds the delivery of what is left when Run stops.
	flushTimeout = 5 * time.Second
	// catchUpRecent is how many of the newest runs are looked at on start
	// for finished runs whose end the process stopped before delivering.
	catchUpRecent = 200
)

// RunChanged implements workflow.Notifier. It only queues: the delivery
// worker started by Run talks to Slack.
func (b *Bot) RunChanged(_ context.Context, run *workflow.Run, events []workflow.Event) {
	if run == nil {
		return
	}
	b.queue.push(run, slices.Clone(events))
}

// msgRef is where a run's root message is.
type msgRef struct{ channel, ts string }

func (m msgRef) String() string { return m.channel + "|" + m.ts }
func (m msgRef) zero() bool     { return m.channel == "" || m.ts == "" }

func parseMsgRef(s string) msgRef {
	ch, ts, ok := strings.Cut(s, "|")
	if !ok {
		return msgRef{}
	}
	return msgRef{channel: ch, ts: ts}
}

// runState is what the worker remembers about a run's message between
// deliveries. Only the worker goroutine touches it.
type runState struct {
	ref        msgRef
	lastSeq    uint64            // last event posted to the thread
	called     uint64            // last call of a gate's approvers Slack took
	calledGate workflow.StepName // and its gate
	hash       [32]byte          // of the root message last sent, to skip no-op updates
	dead       bool              // the channel is unreachable: deliver nothing more
}

// Run is the delivery worker: it posts and updates run messages and thread
// replies, retrying rate-limited and failed calls without holding up the
// engine. On start it re-syncs the messages of open runs. When ctx ends it
// delivers what it can within a few seconds and returns nil.
func (b *Bot) Run(ctx context.Context) error {
	if b.eng() == nil {
		return errors.New("bot: no engine attached")
	}
	states := map[int64]*runState{}
	b.catchUp(ctx)
	for {
		if ctx.Err() != nil {
			b.flush(context.WithoutCancel(ctx), states)
			return nil
		}
		w, ok, wait := b.queue.take(b.clock.Now())
		if ok {
			b.process(ctx, states, w)
			continue
		}
		var timer <-chan time.Time
		if wait > 0 {
			timer = b.clock.After(wait)
		}
		select {
		case <-ctx.Done():
		case <-b.queue.wake:
		case <-timer:
		}
	}
}

func (b *Bot) flush(ctx context.Context, states map[int64]*runState) {
	ctx, cancel := context.WithTimeout(ctx, flushTimeout)
	defer cancel()
	for ctx.Err() == nil {
		w, ok, _ := b.queue.take(b.clock.Now())
		if !ok {
			return
		}
		b.process(ctx, states, w)
	}
	if n := b.queue.pending(); n > 0 {
		b.log.Warn("stopping with undelivered Slack updates", slog.Int("runs", n))
	}
}

// catchUp queues the runs whose messages may be out of date after a restart.
func (b *Bot) catchUp(ctx context.Context) {
	e := b.eng()
	open, err := e.List(ctx, workflow.ListOptions{States: []workflow.State{workflow.StatePending, workflow.StateAwaitingApproval, workflow.StateRunning}})
	if err != nil {
		b.log.Error("list open runs for catch-up", slog.Any(workflow.KeyError, err))
	}
	recent, err := e.List(ctx, workflow.ListOptions{Limit: catchUpRecent})
	if err != nil {
		b.log.Error("list recent runs for catch-up", slog.Any(workflow.KeyError, err))
	}
	seen := map[int64]bool{}
	for _, r := range open {
		seen[r.ID] = true
		var call []workflow.Event
		if b.closedNote(r) == "" { // else the reply calls no one: nothing to record or repeat
			call = b.undeliveredCall(ctx, r)
		}
		b.queue.push(r, call)
	}
	for _, r := range recent {
		// Delivered is the last event known to be in Slack that had to be
		// (an outcome, or an open gate's call): a run with a later outcome
		// (never delivered, or retried and finished again) needs its
		// message and outcome brought up to date.
		if seen[r.ID] || !r.State.Terminal() || r.MessageRef == "" {
			continue
		}
		if evs := b.undeliveredOutcome(ctx, r); r.Delivered == 0 || len(evs) > 0 {
			b.queue.push(r, evs)
		}
	}
}

// undeliveredOutcome returns the events that end a run (and mention its
// requester) when the process stopped before posting them: Delivered is
// written once they are in the thread.
func (b *Bot) undeliveredOutcome(ctx context.Context, r *workflow.Run) []workflow.Event {
	events, err := b.eng().Events(ctx, r.ID)
	if err != nil {
		b.log.Error("read events for catch-up", slog.Int64(workflow.KeyRunID, r.ID), slog.Any(workflow.KeyError, err))
		return nil
	}
	var out []workflow.Event
	for _, ev := range events {
		if ev.Seq > r.Delivered && endsRun(ev.Type) {
			out = append(out, ev)
		}
	}
	return out
}

// undeliveredCall returns the last reply calling the approvers of the
// run's open gate when the process stopped before it was recorded as
// posted (see deliver): it is posted again, since a duplicate call costs
// less than approvers who never hear of the gate.
func (b *Bot) undeliveredCall(ctx context.Context, r *workflow.Run) []workflow.Event {
	if r.OpenGate() == nil {
		return nil
	}
	events, err := b.eng().Events(ctx, r.ID)
	if err != nil {
		b.log.Error("read events for catch-up", slog.Int64(workflow.KeyRunID, r.ID), slog.Any(workflow.KeyError, err))
		return nil
	}
	for _, ev := range slices.Backward(events) {
		if callsApprovers(r, ev) {
			if ev.Seq > r.Delivered {
				return []workflow.Event{ev}
			}
			return nil
		}
	}
	return nil
}

func endsRun(t workflow.EventType) bool {
	switch t {
	case workflow.EventSucceeded, workflow.EventFailed, workflow.EventCancelled, workflow.EventGateRejected, workflow.EventGateExpired:
		return true
	}
	return false
}

func (b *Bot) process(ctx context.Context, states map[int64]*runState, w work) {
	id := w.run.ID
	st := states[id]
	if st == nil {
		st = &runState{}
		states[id] = st
	}
	if st.ref.zero() {
		st.ref = parseMsgRef(w.run.MessageRef)
	}
	if w.dropped > 0 {
		b.log.Warn("dropped thread replies while Slack was unreachable", slog.Int64(workflow.KeyRunID, id), slog.Int("events", w.dropped))
	}
	err := b.deliver(ctx, st, w)
	if err == nil {
		if b.queue.done(w, false, time.Time{}, false) && w.run.State.Terminal() {
			// Nothing more comes for a finished run unless it is retried,
			// and then its message reference is on the run: remembering
			// every run ever delivered would grow without end.
			delete(states, id)
		}
		b.tracked.Store(int64(len(states)))
		return
	}
	if ctx.Err() != nil {
		// Stopping: not Slack's fault; the flush tries again at once.
		b.queue.done(w, true, time.Time{}, false)
		return
	}
	failures := b.queue.failures(id) + 1
	delay, rateLimited := retryDelay(err, failures)
	log := b.log.With(slog.Int64(workflow.KeyRunID, id), slog.Any(workflow.KeyError, err))
	// Never given up: the update may be the message with the run's buttons,
	// which nothing else would post. A run's queued work is bounded, and
	// the backoff is capped, so an outage costs a call a minute per run.
	if !rateLimited && failures == deliveryLoudAfter {
		log.Error("Slack updates for a run keep failing; still trying", slog.Int("failures", failures), slog.Duration("every", deliveryBackoffMax))
	} else {
		log.Warn("Slack update failed; will retry", slog.Duration("in", delay))
	}
	b.queue.done(w, true, b.clock.Now().Add(delay), !rateLimited)
}

// retryDelay is how long to wait after a failed Slack call: Slack's
// Retry-After for rate limits, otherwise exponential backoff.
func retryDelay(err error, failures int) (time.Duration, bool) {
	var rl *slack.RateLimitedError
	if errors.As(err, &rl) {
		return max(rl.RetryAfter, time.Second), true
	}
	d := deliveryBackoffBase << min(failures-1, 10)
	return min(d, deliveryBackoffMax), false
}

// permanent reports whether retrying a failed Slack call cannot help.
func permanent(err error) bool {
	var rl *slack.RateLimitedError
	if errors.As(err, &rl) {
		return false
	}
	var sc slack.StatusCodeError
	if errors.As(err, &sc) {
		return sc.Code < 500
	}
	var re *workflow.RedirectError
	if errors.As(err, &re) {
		return true // not followed, and asking again gets the same one
	}
	switch slackCode(err) {
	case "":
		return false // network or context error
	case "internal_error", "fatal_error", "service_unavailable", "request_timeout", "ratelimited":
		return false
	}
	return true
}

// blocksRefused tells whether Slack refused a message for its blocks.
func blocksRefused(err error) bool {
	switch slackCode(err) {
	case "invalid_blocks", "invalid_blocks_format", "msg_blocks_too_long", "msg_too_long":
		return true
	}
	return false
}

// deliver brings a run's Slack presence up to date: the root message exists
// and shows the snapshot, and every event is in its thread. A returned error
// is worth retrying; permanent failures are logged and skipped.
func (b *Bot) deliver(ctx context.Context, st *runState, w work) error {
	run := w.run
	log := b.log.With(slog.Int64(workflow.KeyRunID, run.ID))
	if st.dead || run.Request.Channel == "" {
		return nil // not ours (no channel), or the channel is unreachable
	}
	// Rendered with the configuration of now: a run whose channel was
	// taken off SSOBOT_CHANNELS loses its Approve button at the first
	// delivery after the restart (catchUp queues every open run).
	closed := b.closedNote(run)
	blocks := renderRun(run, b.links(), true, closed, mention)
	text := FallbackText(run)
	hash := hashMessage(blocks, text)

	if st.ref.zero() {
		if err := b.postRoot(ctx, st, run, blocks, text, closed); err != nil {
			if permanent(err) {
				log.Error("post run message", slog.Any(workflow.KeyError, err))
				return nil
			}
			return err
		}
		if st.dead {
			return nil
		}
		st.hash = hash
	} else if hash != st.hash {
		_, _, _, err := b.client.UpdateMessageContext(ctx, st.ref.channel, st.ref.ts,
			slack.MsgOptionBlocks(blocks...), slack.MsgOptionText(text, false))
		if blocksRefused(err) {
			// Else the message would keep its old buttons, which the
			// engine refuses, and nobody could decide the run.
			log.Error("Slack refused the run's message; showing a compact one", slog.Any(workflow.KeyError, err))
			_, _, _, err = b.client.UpdateMessageContext(ctx, st.ref.channel, st.ref.ts,
				slack.MsgOptionBlocks(renderCompact(run, true, closed)...), slack.MsgOptionText(text, false))
		}
		switch {
		case slackCode(err) == errCodeMessageNotFound:
			// Someone deleted the root message: post a new one.
			log.Info("run message was deleted; posting it again")
			if err := b.postRoot(ctx, st, run, blocks, text, closed); err != nil {
				if permanent(err) {
					log.Error("post run message again", slog.Any(workflow.KeyError, err))
					return nil
				}
				return err
			}
			if st.dead {
				return nil
			}
		case err != nil && permanent(err):
			log.Error("update run message", slog.Any(workflow.KeyError, err))
		case err != nil:
			return err
		}
		st.hash = hash
	}

	events := slices.Clone(w.events)
	slices.SortStableFunc(events, func(a, b workflow.Event) int { return cmp.Compare(a.Seq, b.Seq) })
	for _, ev := range events {
		if ev.Seq != 0 && ev.Seq <= st.lastSeq {
			continue // already posted before a retry
		}
		if reply, ok := eventText(run, ev, b.links(), closed); ok {
			if (ev.Type == workflow.EventGateOpened || ev.Type == workflow.EventGateReminder) && closed == "" {
				// An edit notifies no one: the approvers are called here
				// (not to approve what would be refused: closedGateText).
				reply += b.approverCall(run, ev.Step)
			}
			_, _, err := b.client.PostMessageContext(ctx, st.ref.channel,
				slack.MsgOptionText(reply, false), slack.MsgOptionTS(st.ref.ts), slack.MsgOptionDisableLinkUnfurl())
			if err != nil && !permanent(err) {
				return err
			}
			if err != nil {
				log.Error("post thread reply", slog.String("event", string(ev.Type)), slog.Any(workflow.KeyError, err))
			} else if closed == "" && callsApprovers(run, ev) && ev.Seq > st.called {
				st.called, st.calledGate = ev.Seq, ev.Step
			}
		}
		st.lastSeq = max(st.lastSeq, ev.Seq)
	}
	// A write for each reply a restart must not lose: a finished run's
	// outcome (it mentions the requester) and the call of the gate still
	// open (it mentions the approvers, and nothing else would before the
	// reminder). A call whose gate was decided meanwhile needs none, and a
	// call Slack refused is not recorded: the next start tries it again.
	outcome := run.State.Terminal() && slices.ContainsFunc(events, func(ev workflow.Event) bool { return endsRun(ev.Type) })
	gate := run.OpenGate()
	call := !outcome && gate != nil && gate.Name == st.calledGate && st.called > run.Delivered
	if call {
		// The snapshot may be older than the run: a gate approved at once
		// (the engine does not wait for Slack) needs no record.
		now, err := b.eng().Get(ctx, run.ID)
		call = err != nil || (now.OpenGate() != nil && now.OpenGate().Name == gate.Name)
	}
	if st.lastSeq > run.Delivered && (outcome || call) {
		if _, err := b.eng().SetDelivered(ctx, run.ID, st.lastSeq); err != nil {
			log.Error("record delivered events", slog.Any(workflow.KeyError, err))
		}
	}
	return nil
}

// callsApprovers tells whether ev's reply calls the approvers of the gate
// open in run: its opening, or its reminder.
func callsApprovers(run *workflow.Run, ev workflow.Event) bool {
	g := run.OpenGate()
	return g != nil && g.Name == ev.Step && (ev.Type == workflow.EventGateOpened || ev.Type == workflow.EventGateReminder)
}

// postRoot posts the run's root message and stores its reference. When the
// bot cannot post in the channel, the requester is told privately and the
// run is cancelled, so no run goes on without a message.
func (b *Bot) postRoot(ctx context.Context, st *runState, run *workflow.Run, blocks []slack.Block, text, closed string) error {
	ch, ts, err := b.client.PostMessageContext(ctx, run.Request.Channel,
		slack.MsgOptionBlocks(blocks...), slack.MsgOptionText(text, false), slack.MsgOptionDisableLinkUnfurl())
	if blocksRefused(err) {
		b.log.Error("Slack refused the run's message; posting a compact one", slog.Int64(workflow.KeyRunID, run.ID), slog.Any(workflow.KeyError, err))
		ch, ts, err = b.client.PostMessageContext(ctx, run.Request.Channel,
			slack.MsgOptionBlocks(renderCompact(run, true, closed)...), slack.MsgOptionText(text, false), slack.MsgOptionDisableLinkUnfurl())
	}
	if err != nil && permanent(err) {
		// Not only "not in the channel": a workspace setting (restricted_action,
		// a read-only or thread-only channel) refuses it just as surely, and
		// a run whose buttons nobody sees could only expire.
		st.dead = true
		b.unreachable(ctx, run, err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("post run message: %w", err)
	}
	st.ref = msgRef{channel: ch, ts: ts}
	if _, err := b.eng().SetMessageRef(ctx, run.ID, st.ref.String()); err != nil {
		// The message exists; the worker keeps its reference in memory.
		b.log.Error("store run message reference", slog.Int64(workflow.KeyRunID, run.ID), slog.Any(workflow.KeyError, err))
	}
	return nil
}

// unreachable handles a channel where Slack refused the run's message for
// good (postErr): the run is cancelled and the requester told privately.
func (b *Bot) unreachable(ctx context.Context, run *workflow.Run, postErr error) {
	code := slackCode(postErr)
	log := b.log.With(slog.Int64(workflow.KeyRunID, run.ID), slog.String("channel", run.Request.Channel), slog.Any(workflow.KeyError, postErr))
	if run.State == workflow.StateCancelled {
		// Cancelled already: here, when an earlier snapshot met the same
		// refusal and the requester was told, or by a person. Telling them
		// again would only repeat it.
		log.Info("cannot post the message of a cancelled run")
		return
	}
	log.Warn("cannot post the run message; cancelling the run")
	notMember := code == errCodeNotInChannel || code == errCodeChannelNotFound || code == errCodeIsArchived
	// A workspace policy on the channel; anything else (the bot's token or
	// scopes, a message Slack finds malformed) would fail in every channel.
	channelPolicy := strings.HasPrefix(code, "restricted_action") || code == "ekm_access_denied"
	if code == "" {
		code = "error"
	}
	reason := "ssobot is not in the channel; invite it with /invite @ssobot and start again"
	switch {
	case notMember && strings.HasPrefix(run.Request.Channel, "D"):
		reason = "started in a direct message between people, where ssobot cannot post; start again from a channel ssobot is in"
	case channelPolicy:
		reason = fmt.Sprintf("Slack refused the run's message in the channel (%s); start again from a channel where ssobot can post", code)
	case !notMember:
		log.Error("Slack refused the run message for a reason no channel would change: check the bot's token, scopes and logs")
		reason = fmt.Sprintf("Slack refused the run's message (%s), a fault of ssobot or its Slack app, not of the channel; an administrator should check its logs", code)
	}
	outcome := "was cancelled"
	if _, err := b.eng().Cancel(ctx, run.ID, workflow.SystemActor, reason); err != nil {
		log.Error("cancel run without a message", slog.Any(workflow.KeyError, err))
		outcome = "cannot be followed there"
	}
	msg := fmt.Sprintf(":warning: I can't post in <#%s>, so run #%d (%s) %s. Invite me there with `/invite @ssobot` and start again.",
		run.Request.Channel, run.ID, Escape(run.Request.ApplicationName), outcome)
	switch {
	case notMember && strings.HasPrefix(run.Request.Channel, "D"):
		// A direct message between people: no bot can be invited there.
		msg = fmt.Sprintf(":warning: I can't post in a direct message between people, so run #%d (%s) %s. Start it again from a channel I am in (`/invite @ssobot` there first).",
			run.ID, Escape(run.Request.ApplicationName), outcome)
	case channelPolicy:
		msg = fmt.Sprintf(":warning: Slack refused my message in <#%s> (`%s`), so run #%d (%s) %s. Start it again from a channel where I can post, or ask a workspace admin whether apps may post in that one.",
			run.Request.Channel, code, run.ID, Escape(run.Request.ApplicationName), outcome)
	case !notMember:
		msg = fmt.Sprintf(":warning: Slack refused my message for run #%d (%s) with `%s`, so the run %s. This is a fault of ssobot or its Slack app (its token or scopes), not of the channel: ask an administrator of ssobot to check its logs.",
			run.ID, Escape(run.Request.ApplicationName), code, outcome)
	}
	b.tellPrivately(ctx, run.ID, run.Request.RequestedBy, run.Request.Channel, msg)
}

// tellPrivately reaches a person by the command's response URL, else an
// ephemeral message in the channel, else a direct message.
func (b *Bot) tellPrivately(ctx context.Context, runID int64, user, channel, text string) {
	if u := b.notices.lookup(runID, user, channel); u != "" {
		if err := b.respond(ctx, u, text); err == nil {
			return
		}
	}
	if channel != "" {
		if _, err := b.withRetry(ctx, func(ctx context.Context) (string, error) {
			return b.client.PostEphemeralContext(ctx, channel, user, slack.MsgOptionText(text, false))
		}); err == nil {
			return
		}
	}
	if _, err := b.withRetry(ctx, func(ctx context.Context) (string, error) {
		_, ts, err := b.client.PostMessageContext(ctx, user, slack.MsgOptionText(text, false))
		return ts, err
	}); err != nil {
		b.log.Error("could not reach the user privately", slog.Int64(workflow.KeyRunID, runID), slog.String(workflow.KeyUser, user), slog.Any(workflow.KeyError, err))
	}
}

// respond answers through an interaction's or command's response URL,
// privately, without replacing the original message.
func (b *Bot) respond(ctx context.Context, responseURL, text string) error {
	return b.respondBlocks(ctx, responseURL, slack.ResponseTypeEphemeral, text, nil)
}

// respondBlocks posts a message, with blocks if any, through a response
// URL: responseType in_channel posts it for the whole channel. Its error
// never carries the URL (see withoutURL).
func (b *Bot) respondBlocks(ctx context.Context, responseURL, responseType, text string, blocks []slack.Block) error {
	opts := []slack.MsgOption{
		slack.MsgOptionResponseURL(responseURL, responseType),
		slack.MsgOptionText(Truncate(text, MaxMessageText), false),
	}
	if len(blocks) > 0 {
		opts = append(opts, slack.MsgOptionBlocks(blocks...))
	}
	_, err := b.withRetry(ctx, func(ctx context.Context) (string, error) {
		_, _, err := b.client.PostMessageContext(ctx, "", opts...)
		return "", err
	})
	return withoutURL(err)
}

// withoutURL drops the URL from an HTTP client's error: a response URL
// lets whoever holds it post in the channel, so it stays out of the logs.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

// withRetry retries a Slack call on 429 as Slack asks, a few times.
func (b *Bot) withRetry(ctx context.Context, call func(context.Context) (string, error)) (string, error) {
	var v string
	err := retryRateLimited(ctx, b.clock, 3, 0, func() (err error) {
		v, err = call(ctx)
		return err
	})
	return v, err
}

// retryRateLimited calls call again when Slack rate-limits it, after the
// wait Slack asks for (a second at least), attempts times in all. A wait
// longer than maxWait (0: no limit) is not waited out.
func retryRateLimited(ctx context.Context, clock workflow.Clock, attempts int, maxWait time.Duration, call func() error) error {
	for i := 1; ; i++ {
		err := call()
		var rl *slack.RateLimitedError
		if err == nil || !errors.As(err, &rl) || i == attempts || (maxWait > 0 && rl.RetryAfter > maxWait) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-clock.After(max(rl.RetryAfter, time.Second)):
		}
	}
}

// maxCalledApprovers bounds the mentions in a gate's call: a long list
// would bury the reply, and the approvers' groups are named whole.
const maxCalledApprovers = 10

// approverCall mentions, for a gate that opened or is about to expire, the
// people who may decide it: the approver groups and listed users (not the
// requester, unless they may approve their own run, nor those whose
// approval of the gate already counts).
func (b *Bot) approverCall(run *workflow.Run, gate workflow.StepName) string {
	var who []string
	for _, g := range b.cfg.ApproverGroups {
		if slackGroupID.MatchString(g) {
			who = append(who, "<!subteam^"+g+">")
		}
	}
	users := 0
	for _, u := range b.cfg.ApproverUsers {
		if u == run.Request.RequestedBy && !b.cfg.AllowSelfApproval {
			continue
		}
		if approvedGate(run, gate, u) {
			continue // a reminder need not call those who have approved
		}
		if users++; users <= maxCalledApprovers {
			who = append(who, mention(u))
		}
	}
	if len(who) == 0 {
		return ""
	}
	s := "\nApprovers: " + strings.Join(who, " ")
	if more := users - maxCalledApprovers; more > 0 {
		s += fmt.Sprintf(" and %d more", more)
	}
	return s
}

// approvedGate reports whether user's approval of gate counts.
func approvedGate(run *workflow.Run, gate workflow.StepName, user string) bool {
	for _, a := range run.Approvals {
		if a.User == user && a.Counts(gate) {
			return true
		}
	}
	return false
}

func (b *Bot) links() links {
	return links{authentikURL: b.cfg.AuthentikURL, accountID: b.cfg.CloudflareAccountID}
}

func hashMessage(blocks []slack.Block, text string) [32]byte {
	j, _ := json.Marshal(blocks)
	return sha256.Sum256(append(j, text...))
}
