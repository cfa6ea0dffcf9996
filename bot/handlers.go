package bot

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/slack-go/slack"
	"github.com/tidwall/gjson"

	"github.com/ssobot/ssobot/workflow"
)

// Timeouts of work done off the request path.
var modalTimeout = 3 * time.Second // a trigger_id lives 3 s; a variable for tests

// namesTimeout bounds the lookups of the names a public status shows, in
// the background: whoever is not found by then is shown by user ID, and the
// card is posted. A variable for tests.
var namesTimeout = 3 * time.Second

const (
	responseTimeout = 30 * time.Second
	listLimit       = 10
)

// reply answers a slash command: the HTTP response body, or the Socket Mode
// acknowledgement's payload.
type reply struct {
	ResponseType string        `json:"response_type,omitempty"`
	Text         string        `json:"text"`
	Blocks       []slack.Block `json:"blocks,omitempty"`
	// encoded, when set, is the whole reply already encoded (a status card
	// from statusCards), and the fields above are empty.
	encoded []byte
}

// replyFields is reply's encoding without its MarshalJSON.
type replyFields reply

// MarshalJSON encodes the reply, or writes the encoding it carries.
func (r *reply) MarshalJSON() ([]byte, error) {
	if r.encoded != nil {
		return r.encoded, nil
	}
	return json.Marshal((*replyFields)(r))
}

func private(text string) *reply {
	return &reply{ResponseType: slack.ResponseTypeEphemeral, Text: Truncate(text, MaxMessageText)}
}

// serveCommand handles POST /slack/commands.
func (b *Bot) serveCommand(w http.ResponseWriter, r *http.Request) {
	defer b.recoverTo200(w)
	body, ok := b.readVerified(w, r)
	if !ok {
		return
	}
	defer b.cfg.Foreground.Begin()()
	cmd, err := slashForm(body)
	if errors.Is(err, errFormNotUTF8) {
		b.log.Warn("refused a slash command that is not valid UTF-8")
		writeJSON(w, private("I could not read that command: it is not valid UTF-8. Please type it again."))
		return
	}
	if err != nil {
		writeJSON(w, private("I could not read that command; please try again."))
		return
	}
	resp := b.command(r.Context(), cmd)
	if resp == nil {
		w.WriteHeader(http.StatusOK)
		return
	}
	writeJSON(w, resp)
}

// serveInteraction handles POST /slack/interactions.
func (b *Bot) serveInteraction(w http.ResponseWriter, r *http.Request) {
	defer b.recoverTo200(w)
	body, ok := b.readVerified(w, r)
	if !ok {
		return
	}
	defer b.cfg.Foreground.Begin()()
	payload, err := interactionPayload(body)
	if err != nil {
		b.unreadableInteraction(err)
		w.WriteHeader(http.StatusOK)
		return
	}
	// A click is answered with an empty 200 whatever it holds, so it is
	// read where it is decided, in the background: decoding its payload
	// (the whole run message) was most of what its acknowledgement cost.
	// Slack writes "type" first, so telling a click apart reads a few bytes.
	if gjson.Get(payload, "type").Str == string(slack.InteractionTypeBlockActions) {
		b.async(responseTimeout, func(ctx context.Context) {
			cb, err := decodeInteraction(payload)
			if err == nil && cb.Type != slack.InteractionTypeBlockActions {
				err = errNotBlockActions
			}
			if err != nil {
				b.unreadableInteraction(err)
				return
			}
			b.blockActions(ctx, cb)
		})
		w.WriteHeader(http.StatusOK)
		return
	}
	cb, err := decodeInteraction(payload)
	if err != nil {
		b.unreadableInteraction(err)
		w.WriteHeader(http.StatusOK)
		return
	}
	if resp := b.interaction(r.Context(), cb); resp != nil {
		writeJSON(w, resp)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// errNotBlockActions: a payload whose "type" read as a click's on the
// request path decoded as something else (the key given twice).
var errNotBlockActions = errors.New("decode payload: type is not block_actions")

// unreadableInteraction logs an interaction that is answered with nothing
// because its payload cannot be read.
func (b *Bot) unreadableInteraction(err error) {
	b.log.Warn("unreadable interaction payload", slog.Any(workflow.KeyError, err))
}

// interactionPayload is the form field payload of an interaction body, the
// JSON that decodeInteraction reads.
func interactionPayload(body []byte) (string, error) {
	payload, _, err := formValue(body, "payload")
	if err != nil {
		return "", fmt.Errorf("parse form: %w", err)
	}
	if payload == "" {
		return "", errors.New("no payload")
	}
	// encoding/json would replace invalid bytes with U+FFFD and carry on.
	if !utf8.ValidString(payload) {
		return "", errors.New("payload is not valid UTF-8")
	}
	return payload, nil
}

// decodeInteraction decodes an interaction's payload.
//
// A click's payload carries the whole message it was on (every block of the
// run's message), and the bot reads a dozen fields of it: one pass over
// the top level with gjson (after one validating pass) skips the message
// without building it, and only the small parts the bot needs whole (the
// actions, a submitted view) go through encoding/json.
func decodeInteraction(payload string) (slack.InteractionCallback, error) {
	if !gjson.Valid(payload) {
		return slack.InteractionCallback{}, errors.New("decode payload: not valid JSON")
	}
	top := gjson.Parse(payload)
	if !top.IsObject() {
		return slack.InteractionCallback{}, errors.New("decode payload: not an object")
	}
	var (
		cb        slack.InteractionCallback
		actions   gjson.Result
		view      gjson.Result
		decodeErr error
		str       = func(name string, v gjson.Result, dst *string) {
			switch v.Type {
			case gjson.Null: // absent or null: left empty, as encoding/json would
			case gjson.String:
				*dst = v.Str
			default:
				decodeErr = cmp.Or(decodeErr, fmt.Errorf("decode payload: %s is not a string", name))
			}
		}
		obj = func(name string, v gjson.Result, fields map[string]*string) {
			if v.Type == gjson.Null {
				return
			}
			if !v.IsObject() {
				decodeErr = cmp.Or(decodeErr, fmt.Errorf("decode payload: %s is not an object", name))
				return
			}
			v.ForEach(func(k, v gjson.Result) bool {
				if dst, ok := fields[k.Str]; ok {
					str(name+"."+k.Str, v, dst)
				}
				return true
			})
		}
	)
	top.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "type":
			str("type", v, (*string)(&cb.Type))
		case "response_url":
			str("response_url", v, &cb.ResponseURL)
		case "trigger_id":
			str("trigger_id", v, &cb.TriggerID)
		case "user":
			obj("user", v, map[string]*string{"id": &cb.User.ID, "name": &cb.User.Name})
		case "channel":
			obj("channel", v, map[string]*string{"id": &cb.Channel.ID})
		case "container":
			obj("container", v, map[string]*string{"type": &cb.Container.Type, "view_id": &cb.Container.ViewID,
				"message_ts": &cb.Container.MessageTs, "channel_id": &cb.Container.ChannelID})
			switch e := v.Get("is_ephemeral"); e.Type {
			case gjson.Null:
			case gjson.True, gjson.False:
				cb.Container.IsEphemeral = e.Bool()
			default:
				decodeErr = cmp.Or(decodeErr, errors.New("decode payload: container.is_ephemeral is not a boolean"))
			}
		case "actions":
			actions = v
		case "view":
			view = v
		}
		return true
	})
	if decodeErr != nil {
		return slack.InteractionCallback{}, decodeErr
	}
	if actions.Type != gjson.Null {
		var list []*slack.BlockAction
		if err := json.Unmarshal([]byte(actions.Raw), &list); err != nil {
			return slack.InteractionCallback{}, fmt.Errorf("decode payload: actions: %w", err)
		}
		for _, a := range list {
			if a != nil {
				cb.ActionCallback.BlockActions = append(cb.ActionCallback.BlockActions, a)
			}
		}
	}
	if cb.Type == slack.InteractionTypeViewSubmission && view.Type != gjson.Null {
		if err := json.Unmarshal([]byte(view.Raw), &cb.View); err != nil {
			return slack.InteractionCallback{}, fmt.Errorf("decode view: %w", err)
		}
	}
	return cb, nil
}

// readVerified reads a bounded body and checks its signature. On failure it
// answers (413 or 401) and nothing else happens.
func (b *Bot) readVerified(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, b.cfg.MaxBodyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return nil, false
		}
		http.Error(w, "cannot read request body", http.StatusBadRequest)
		return nil, false
	}
	sig, err := verify(r.Header, body, b.cfg.SigningSecret, b.clock.Now())
	if err != nil {
		b.log.Warn("refused a request without a valid Slack signature", slog.String("path", r.URL.Path), slog.Any(workflow.KeyError, err))
		http.Error(w, "invalid signature", http.StatusUnauthorized)
		return nil, false
	}
	if b.replays.seen(sig) {
		// Slack never sends the same signed request twice; a copy inside the
		// window is a replay. A copied click would be refused by the engine,
		// but a copied `new` would start a second run.
		b.log.Warn("dropped a replayed Slack request", slog.String("path", r.URL.Path))
		if r.URL.Path == "/slack/commands" {
			writeJSON(w, private("This request was already handled."))
		} else {
			w.WriteHeader(http.StatusOK)
		}
		return nil, false
	}
	return body, true
}

// replayKey identifies what Socket Mode delivered (a request over HTTP is
// identified by its signature: see verify).
func replayKey(ts string, body []byte) replayID {
	h := sha256.New()
	h.Write([]byte(ts))
	h.Write([]byte(":"))
	h.Write(body)
	var id replayID
	h.Sum(id[:0])
	return id
}

// replayID is a replayKey or a request's signature: a fixed-size array, so
// that the guard's maps hold no pointers for the collector to trace (a busy
// workspace sends hundreds of thousands of requests in a window).
type replayID [sha256.Size]byte

// replayGuard remembers the verified requests (by replayKey) for as long as
// their timestamps stay inside the window: at least keep, at most twice
// that. It keeps two generations of keys and drops the older one whole when
// the newer one is keep old, so no request waits for a sweep of the others.
type replayGuard struct {
	clock    workflow.Clock
	keep     time.Duration
	mu       sync.Mutex
	cur, old map[replayID]struct{}
	rotateAt time.Time // when cur becomes old
}

// replayKeep is how long a request is remembered at least: its timestamp
// may be a window ahead of the clock or a window behind it.
const replayKeep = 2 * SignatureWindow

func newReplayGuard(c workflow.Clock) *replayGuard {
	return &replayGuard{clock: c, keep: replayKeep, cur: map[replayID]struct{}{}, rotateAt: c.Now().Add(replayKeep)}
}

// seen records key and reports whether it was already recorded.
func (g *replayGuard) seen(key replayID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if now := g.clock.Now(); !now.Before(g.rotateAt) {
		g.old = g.cur
		if now.Sub(g.rotateAt) >= g.keep {
			g.old = nil // nothing came for a whole generation: cur is that old too
		}
		// A fresh map, not the dropped one cleared: the memory a burst
		// took goes back once its keys are forgotten.
		g.cur = map[replayID]struct{}{}
		g.rotateAt = now.Add(g.keep)
	}
	if _, ok := g.cur[key]; ok {
		return true
	}
	if _, ok := g.old[key]; ok {
		return true
	}
	g.cur[key] = struct{}{}
	return false
}

// recoverTo200 keeps a bug from answering 500 to Slack: the person gets a
// private apology instead.
func (b *Bot) recoverTo200(w http.ResponseWriter) {
	if v := recover(); v != nil {
		b.log.Error("panic while handling a Slack request", slog.Any("panic", v))
		writeJSON(w, private("Something went wrong on my side; please try again."))
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if r, ok := v.(*reply); ok {
		if r.encoded != nil {
			_, _ = w.Write(r.encoded) // the encoder would only check and copy it
			return
		}
		// Its fields directly: through MarshalJSON the encoder would
		// encode them, then check and copy the result.
		v = (*replyFields)(r)
	}
	_ = json.NewEncoder(w).Encode(v)
}

// command handles a slash command from either transport and returns the
// acknowledgement (nil: an empty one). It makes no Slack Web API call.
func (b *Bot) command(ctx context.Context, cmd slack.SlashCommand) *reply {
	e := b.eng()
	if e == nil {
		return private("ssobot is starting up; try again in a minute.")
	}
	if cmd.UserID == "" {
		return private("I could not tell who sent this command.")
	}
	c, err := ParseCommand(cmd.Text)
	if err != nil {
		var ue *UsageError
		if !errors.As(err, &ue) {
			ue = &UsageError{Problem: "I could not read that command"}
		}
		return private(":warning: " + capitalize(ue.Problem) + ".\n\n" + Usage(cmd.Command))
	}
	log := b.log.With(slog.String(workflow.KeyUser, cmd.UserID), slog.String("command", string(c.Kind)))
	switch c.Kind {
	case CmdHelp:
		return private(Usage(cmd.Command))
	case CmdModal:
		if !b.channelAllowed(cmd.ChannelID) {
			return private(b.channelRefusal())
		}
		if !b.requesterAllowed(cmd.UserID) {
			return private(requesterRefusal)
		}
		if why := b.unapprovable(cmd.UserID); why != "" {
			return private(why)
		}
		trigger, channel, user, responseURL, slash := cmd.TriggerID, cmd.ChannelID, cmd.UserID, cmd.ResponseURL, slashName(cmd.Command)
		b.asyncBy(modalTimeout, func(ctx context.Context) { b.openModal(ctx, slash, trigger, channel, user, responseURL) })
		return nil
	case CmdNew:
		// Runs start only where they are allowed; the other commands read
		// or control a run by number, under its own visibility and
		// control rules, wherever they are typed (a retry only of a run
		// whose channel is allowed: see closedRun).
		if !b.channelAllowed(cmd.ChannelID) {
			return private(b.channelRefusal())
		}
		return b.startFromCommand(ctx, cmd, c, log)
	case CmdStatus:
		return b.status(ctx, c, slashName(cmd.Command), cmd.UserID, cmd.ChannelID, cmd.ResponseURL, log)
	case CmdList:
		return b.list(ctx, slashName(cmd.Command), cmd.UserID, cmd.ChannelID, log)
	case CmdCancel, CmdRetry:
		// Eligibility may ask Slack (users.info, user groups): off the request path.
		user, channel, responseURL, slash := cmd.UserID, cmd.ChannelID, cmd.ResponseURL, slashName(cmd.Command)
		b.async(responseTimeout, func(ctx context.Context) {
			text := b.control(ctx, c, slash, user, channel, log)
			if responseURL != "" && b.respond(ctx, responseURL, text) == nil {
				return
			}
			b.tellPrivately(ctx, c.RunID, user, channel, text)
		})
		verb := "Cancelling"
		if c.Kind == CmdRetry {
			verb = "Retrying"
		}
		return private(fmt.Sprintf("%s run #%d…", verb, c.RunID))
	}
	return private(Usage(cmd.Command))
}

const requesterRefusal = "You are not allowed to start SSO setups here; ask an administrator of ssobot."

func (b *Bot) startFromCommand(ctx context.Context, cmd slack.SlashCommand, c Command, log *slog.Logger) *reply {
	if !b.requesterAllowed(cmd.UserID) {
		return private(requesterRefusal)
	}
	if why := b.unapprovable(cmd.UserID); why != "" {
		return private(why)
	}
	req := workflow.Request{
		ApplicationName: c.Name,
		ApplicationSlug: c.Slug,
		TeamDomain:      c.Team,
		LoginMethodName: c.Login,
		RequestedBy:     cmd.UserID,
		Channel:         cmd.ChannelID,
	}
	e := b.eng()
	req, err := e.Validate(req)
	if errors.Is(err, workflow.ErrInvalidRequest) {
		return private(":warning: " + userMessage(err) + ".\n\n" + Usage(cmd.Command))
	}
	if err != nil {
		log.Error("validate request", slog.Any(workflow.KeyError, err))
		return private("I could not check that request (something went wrong on my side); try again in a minute.")
	}
	b.notices.rememberRequest(cmd.UserID, cmd.ChannelID, cmd.ResponseURL)
	run, err := e.Start(ctx, req)
	if errors.Is(err, workflow.ErrInvalidRequest) {
		return private(":warning: " + userMessage(err) + ".")
	}
	if err != nil {
		log.Error("start run", slog.Any(workflow.KeyError, err))
		return private("I could not start the run (something went wrong on my side); try again in a minute.")
	}
	b.notices.rememberRun(run.ID, cmd.UserID, cmd.ResponseURL)
	b.queue.push(run, nil)
	log.Info("run started", slog.Int64(workflow.KeyRunID, run.ID))
	return private(fmt.Sprintf("Run #%d started: I'll post the plan in this channel.", run.ID))
}

// status shows a run to the person asking, or with public to the channel
// it was asked in, if that is the run's own channel: that card names its
// people, which takes calls to Slack, so it is posted in the background
// (see shareRun) and the command is acknowledged at once.
func (b *Bot) status(ctx context.Context, c Command, slash, user, channel, responseURL string, log *slog.Logger) *reply {
	run, err := b.eng().Get(ctx, c.RunID)
	if errors.Is(err, workflow.ErrNotFound) {
		return private(fmt.Sprintf("There is no run #%d; `%s list` shows the recent ones.", c.RunID, slash))
	}
	if err != nil {
		log.Error("get run", slog.Int64(workflow.KeyRunID, c.RunID), slog.Any(workflow.KeyError, err))
		return private("I could not read that run (something went wrong on my side); try again in a minute.")
	}
	if !b.visible(run, user, channel) {
		return private(fmt.Sprintf("Run #%d was started in another channel: ask for it there.", run.ID))
	}
	if c.Public && (run.Request.Channel == "" || run.Request.Channel == channel) {
		b.async(responseTimeout, func(ctx context.Context) { b.shareRun(ctx, run, slash, user, channel, responseURL, log) })
		return private(fmt.Sprintf("Sharing run #%d in this channel…", run.ID))
	}
	card := func(r *workflow.Run) []slack.Block { return renderRun(r, b.links(), false, "", mention) }
	if !c.Public {
		resp, err := b.cards.reply(run, card)
		if err != nil {
			log.Error("encode status", slog.Int64(workflow.KeyRunID, run.ID), slog.Any(workflow.KeyError, err))
			return private("I could not show that run (something went wrong on my side); try again in a minute.")
		}
		return resp
	}
	// The run's card names its application, team and people; a run from
	// another channel (perhaps a private one) is not posted here.
	note := fmt.Sprintf(":lock: Run #%d belongs to <#%s>, so only you see it here; to share it, type `%s status %d public` there.", run.ID, run.Request.Channel, slash, run.ID)
	return &reply{
		ResponseType: slack.ResponseTypeEphemeral,
		Text:         note + "\n" + FallbackText(run),
		Blocks:       append([]slack.Block{slack.NewContextBlock("", slack.NewTextBlockObject(slack.MarkdownType, note, false, false))}, card(run)...),
	}
}

// shareRun posts run r's card in the channel through the command's
// response URL, for `status N public`. Everyone in the channel reads it,
// and anyone may share it again: a mention would notify each person it
// names every time, so it names them as plain text (see cardNames), and
// its text is verbatim, so that Slack links no name nor URL a person
// chose. If it cannot be posted, the person who asked is told so.
func (b *Bot) shareRun(ctx context.Context, r *workflow.Run, slash, user, channel, responseURL string, log *slog.Logger) {
	blocks := verbatim(renderRun(r, b.links(), false, "", b.cardNames(ctx, r, log).person))
	err := errors.New("the command came without a response URL")
	if responseURL != "" {
		err = b.respondBlocks(ctx, responseURL, slack.ResponseTypeInChannel, FallbackText(r), blocks)
	}
	if err == nil {
		return
	}
	log.Error("public status: could not post the run's card in the channel", slog.Int64(workflow.KeyRunID, r.ID), slog.String("channel", channel), slog.Any(workflow.KeyError, err))
	b.tellPrivately(ctx, r.ID, user, channel, fmt.Sprintf(":warning: I could not post run #%d in this channel (Slack did not take the message). Try `%s status %d public` again in a minute; `%s status %d` shows it to you alone.", r.ID, slash, r.ID, slash, r.ID))
}

// cardNames looks up the names of the people run r's card shows, within
// namesTimeout, one attempt each. Whoever is not found in time is shown by
// user ID (see names.person): the card is not held back.
func (b *Bot) cardNames(ctx context.Context, r *workflow.Run, log *slog.Logger) names {
	ctx, cancel := context.WithTimeout(ctx, namesTimeout)
	defer cancel()
	n, err := b.appr.names(ctx, cardPeople(r))
	if err != nil {
		log.Warn("public status: some names were not found, so they are shown by user ID", slog.Int64(workflow.KeyRunID, r.ID), slog.Any(workflow.KeyError, err))
	}
	return n
}

func (b *Bot) list(ctx context.Context, slash, user, channel string, log *slog.Logger) *reply {
	// The most recent runs this person may see here, looking through a
	// bounded number of pages: runs of other channels are listed there.
	var runs []*workflow.Run
	hidden := false
	before := int64(0)
	for page := 0; page < listPages && len(runs) < listLimit; page++ {
		batch, err := b.eng().List(ctx, workflow.ListOptions{Limit: listPageSize, BeforeID: before})
		if err != nil {
			log.Error("list runs", slog.Any(workflow.KeyError, err))
			return private("I could not list the runs (something went wrong on my side); try again in a minute.")
		}
		for _, r := range batch {
			switch {
			case len(runs) == listLimit:
			case b.visible(r, user, channel):
				runs = append(runs, r)
			default:
				hidden = true
			}
		}
		if len(batch) < listPageSize {
			break
		}
		before = batch[len(batch)-1].ID
	}
	if len(runs) == 0 && !hidden {
		return private("No runs yet. Start one with `" + slash + " new " + placeholder("application name") + "`.")
	}
	var lines []string
	switch len(runs) {
	case 0:
		lines = append(lines, "*No runs to show here*")
	case 1:
		lines = append(lines, "*The most recent run*")
	default:
		lines = append(lines, fmt.Sprintf("*The %d most recent runs*", len(runs)))
	}
	for _, r := range runs {
		lines = append(lines, ListLine(r))
	}
	if hidden {
		lines = append(lines, "_Runs started in other channels are listed there._")
	}
	return private(strings.Join(lines, "\n"))
}

// Pages of runs list reads at most, looking for those the person may see.
const (
	listPageSize = 50
	listPages    = 10
)

// visible reports whether user may see run r when asking from channel: a
// run's card (application, team domain, people) is its channel's business,
// which may be private, and its requester's and the listed approvers'.
// Approvers in user groups only see it from the run's channel: knowing
// group membership would take a call to Slack on the request path.
func (b *Bot) visible(r *workflow.Run, user, channel string) bool {
	return r.Request.Channel == "" || r.Request.Channel == channel || r.Request.RequestedBy == user || slices.Contains(b.cfg.ApproverUsers, user)
}

// ListLine is one run in `list`.
func ListLine(r *workflow.Run) string {
	name := firstNonEmpty(r.Params.ApplicationName, r.Request.ApplicationName)
	line := fmt.Sprintf("`#%d` %s · %s", r.ID, Escape(truncateRunes(name, 60)), StateLabel(r.State))
	if g := r.OpenGate(); g != nil {
		line += " (" + gateShort(g.Name) + ")"
	}
	line += " · " + mention(r.Request.RequestedBy)
	if !r.CreatedAt.IsZero() {
		line += " · " + FormatDate(r.CreatedAt)
	}
	return line
}

// control runs a cancel or retry, typed by user in channel, and says how it
// went.
func (b *Bot) control(ctx context.Context, c Command, slash, user, channel string, log *slog.Logger) string {
	var (
		run *workflow.Run
		err error
	)
	if c.Kind == CmdCancel {
		_, err = b.eng().Cancel(ctx, c.RunID, user, c.Reason)
	} else {
		// A retry posts and acts in the run's thread: not in a channel
		// SSOBOT_CHANNELS no longer lists. A cancel stays allowed anywhere.
		// Only a retry the engine would act on is refused so: of a run in
		// any other state the engine's answer says what it is. (A run that
		// fails or expires between this read and Retry is retried, and goes
		// only as far as a running one goes here: up to its next gate,
		// which cannot be approved.)
		var closed *workflow.Run
		closed, err = b.closedRun(ctx, c.RunID)
		if closed != nil && closed.State.Retryable() {
			log.Info("retry refused: the run's channel is not allowed", slog.Int64(workflow.KeyRunID, c.RunID), slog.String("channel", closed.Request.Channel))
			return b.retryClosedText(closed, slash, user, channel)
		}
		if err == nil {
			run, err = b.eng().Retry(ctx, c.RunID, user)
		}
	}
	var ref *workflow.RefusedError
	switch {
	case errors.As(err, &ref) && ref.Kind == workflow.RefusedRunState && c.Kind == CmdRetry:
		return fmt.Sprintf(":no_entry: Run #%d %s; only failed or expired runs can be retried.", c.RunID, stateVerb(ref.State))
	case errors.As(err, &ref) && ref.Kind == workflow.RefusedRunState:
		return fmt.Sprintf(":no_entry: Run #%d %s already.", c.RunID, stateVerb(ref.State))
	case errors.As(err, &ref):
		return ":no_entry: " + capitalize(ref.Reason) + "."
	case errors.Is(err, workflow.ErrNotFound):
		return fmt.Sprintf("There is no run #%d.", c.RunID)
	case err != nil:
		log.Error(string(c.Kind)+" run", slog.Int64(workflow.KeyRunID, c.RunID), slog.Any(workflow.KeyError, err))
		return fmt.Sprintf("I could not %s run #%d (something went wrong on my side); try again in a minute.", c.Kind, c.RunID)
	case c.Kind == CmdCancel:
		return fmt.Sprintf(":heavy_minus_sign: Run #%d is cancelled.", c.RunID)
	}
	if g := run.OpenGate(); g != nil {
		return fmt.Sprintf(":repeat: *%s* of run #%d is open again, until %s; I've asked its approvers in the run's thread.", StepLabel(g.Name), c.RunID, FormatDate(g.Deadline))
	}
	return fmt.Sprintf(":repeat: Run #%d is running again from its failed step.", c.RunID)
}

// interaction handles an interaction from either transport and returns the
// acknowledgement's payload (nil: an empty one). Decisions run off the
// request path because eligibility may ask Slack.
func (b *Bot) interaction(ctx context.Context, cb slack.InteractionCallback) any {
	switch cb.Type {
	case slack.InteractionTypeBlockActions:
		b.async(responseTimeout, func(ctx context.Context) { b.blockActions(ctx, cb) })
		return nil
	case slack.InteractionTypeViewSubmission:
		return b.viewSubmission(ctx, cb)
	case slack.InteractionTypeViewClosed:
		return nil
	}
	b.async(responseTimeout, func(ctx context.Context) {
		b.replyTo(ctx, cb, "I don't know that action.")
	})
	return nil
}

func (b *Bot) blockActions(ctx context.Context, cb slack.InteractionCallback) {
	for _, a := range cb.ActionCallback.BlockActions {
		if a == nil {
			continue
		}
		var d workflow.Decision
		switch a.ActionID {
		case ActionApprove:
			d = workflow.Approve
		case ActionReject:
			d = workflow.Reject
		default:
			b.replyTo(ctx, cb, "I don't know that action.")
			continue
		}
		b.replyTo(ctx, cb, b.decide(ctx, cb.User.ID, d, a.Value, clickedMessage(cb)))
	}
}

// clickedMessage is the reference, in the form of Run.MessageRef, of the
// message holding a clicked button. The engine refuses a click whose
// message is not the run's root message, so a button value pasted into
// another run's message decides nothing. A click from no message (a modal)
// or from an ephemeral message gets the reference "|", which is no run's
// message: the bot never puts gate buttons anywhere but on the root.
func clickedMessage(cb slack.InteractionCallback) string {
	ref := msgRef{channel: firstNonEmpty(cb.Container.ChannelID, cb.Channel.ID), ts: cb.Container.MessageTs}
	if cb.Container.IsEphemeral || ref.zero() {
		return msgRef{}.String()
	}
	return ref.String()
}

// decide asks the engine to record a click on the message clicked and says
// how it went.
func (b *Bot) decide(ctx context.Context, user string, d workflow.Decision, value, clicked string) string {
	e := b.eng()
	if e == nil {
		return "ssobot is starting up; try again in a minute."
	}
	id, gate, nonce, err := ParseButtonValue(value)
	if err != nil {
		return "This button is not one I know; use the buttons on the run's latest message."
	}
	log := b.log.With(slog.Int64(workflow.KeyRunID, id), slog.String(workflow.KeyStep, string(gate)), slog.String(workflow.KeyUser, user))
	if d == workflow.Approve {
		// An approval resumes the run in its channel as a retry would, so
		// it is refused where a retry is (see closedRun), even on a gate
		// opened before the channel was taken off the list. Reject ends
		// the run, as cancel does, and stays allowed.
		closed, err := b.closedRun(ctx, id)
		switch {
		case closed != nil:
			log.Info("approval refused: the run's channel is not allowed", slog.String("channel", closed.Request.Channel))
			return b.approveClosedText(closed, user, parseMsgRef(clicked).channel)
		case errors.Is(err, workflow.ErrNotFound):
			return fmt.Sprintf("There is no run #%d.", id)
		case err != nil:
			log.Error("decide", slog.Any(workflow.KeyError, err))
			return "I could not record your decision (something went wrong on my side); try again in a minute."
		}
	}
	_, err = e.Decide(ctx, workflow.DecisionRequest{RunID: id, Gate: gate, Nonce: nonce, User: user, Decision: d, MessageRef: clicked})
	var ref *workflow.RefusedError
	switch {
	case errors.As(err, &ref):
		log.Info("decision refused", slog.String("reason", ref.Reason))
		return ":no_entry: " + b.refusalText(ctx, id, gate, ref, user, parseMsgRef(clicked).channel)
	case errors.Is(err, workflow.ErrNotFound):
		return fmt.Sprintf("There is no run #%d.", id)
	case err != nil:
		log.Error("decide", slog.Any(workflow.KeyError, err))
		return "I could not record your decision (something went wrong on my side); try again in a minute."
	}
	return fmt.Sprintf(":ballot_box_with_check: You %s *%s* of run #%d.", pastTense(d), StepLabel(gate), id)
}

// refusalText explains a refused click by user in channel where; when
// someone decided first it names them and when.
func (b *Bot) refusalText(ctx context.Context, id int64, gate workflow.StepName, ref *workflow.RefusedError, user, where string) string {
	slash := slashName("")
	switch ref.Kind {
	case workflow.RefusedOwnRun:
		return fmt.Sprintf("You requested run #%d, so another approver must decide. To stop it, type `%s cancel %d`.", id, slash, id)
	case workflow.RefusedExpired:
		text := fmt.Sprintf("*%s* of run #%d expired %s, before your click.", StepLabel(gate), id, FormatDate(ref.At))
		// Not the retry that would be refused (a Reject click: an
		// Approve one on such a run is refused before the engine).
		if closed, _ := b.closedRun(ctx, id); closed != nil {
			return text + " " + cannotRetryText(id, b.closedChannelText(closed, user, where), b.visible(closed, user, where))
		}
		return text + fmt.Sprintf(" To ask again, type `%s retry %d` in the channel.", slash, id)
	case workflow.RefusedRepeat:
		return fmt.Sprintf("You already %s *%s* of run #%d (%s).", pastTense(ref.Decision), StepLabel(gate), id, FormatDate(ref.At))
	case workflow.RefusedRunState:
		return fmt.Sprintf("Run #%d %s.", id, stateVerb(ref.State))
	}
	if ref.DecidedBy == "" {
		return capitalize(ref.Reason) + "."
	}
	if run, err := b.eng().Get(ctx, id); err == nil {
		as := run.ApprovalsFor(gate)
		for i := len(as) - 1; i >= 0; i-- {
			if as[i].User == ref.DecidedBy {
				return fmt.Sprintf("Already %s by %s at %s.", pastTense(as[i].Decision), mention(ref.DecidedBy), FormatDate(as[i].At))
			}
		}
	}
	return fmt.Sprintf("Already decided by %s.", mention(ref.DecidedBy))
}

// replyTo answers the person behind an interaction privately.
func (b *Bot) replyTo(ctx context.Context, cb slack.InteractionCallback, text string) {
	if cb.ResponseURL != "" && b.respond(ctx, cb.ResponseURL, text) == nil {
		return
	}
	channel := firstNonEmpty(cb.Channel.ID, cb.Container.ChannelID)
	if channel == "" || cb.User.ID == "" {
		return
	}
	if _, err := b.withRetry(ctx, func(ctx context.Context) (string, error) {
		return b.client.PostEphemeralContext(ctx, channel, cb.User.ID, slack.MsgOptionText(Truncate(text, MaxMessageText), false))
	}); err != nil {
		b.log.Error("reply to an interaction", slog.String(workflow.KeyUser, cb.User.ID), slog.Any(workflow.KeyError, err))
	}
}

func (b *Bot) channelAllowed(ch string) bool {
	return len(b.cfg.AllowedChannels) == 0 || slices.Contains(b.cfg.AllowedChannels, ch)
}

func (b *Bot) requesterAllowed(user string) bool {
	return len(b.cfg.AllowedRequesters) == 0 || slices.Contains(b.cfg.AllowedRequesters, user)
}

// unapprovable says why a run user starts could never be approved, or "":
// the requester may not approve their own run, and when approvers are
// listed by ID only, too few others may be left to make up a gate's
// approvals.
func (b *Bot) unapprovable(user string) string {
	need := max(b.cfg.ApprovalsRequired, 1)
	if b.cfg.AllowSelfApproval || len(b.cfg.ApproverGroups) > 0 || !slices.Contains(b.cfg.ApproverUsers, user) {
		return ""
	}
	others := 0
	for _, u := range b.cfg.ApproverUsers {
		if u != user {
			others++
		}
	}
	if others >= need {
		return ""
	}
	return fmt.Sprintf(":no_entry: You may not approve your own runs, and %d other approver%s could not make up the %d approval%s each gate needs, so a run of yours would only wait and expire. Ask an administrator of ssobot to add approvers (SSOBOT_APPROVERS) or to allow self-approval (SSOBOT_ALLOW_SELF_APPROVAL).",
		others, plural(others), need, plural(need))
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func (b *Bot) channelRefusal() string {
	var chs []string
	for _, c := range b.cfg.AllowedChannels {
		chs = append(chs, "<#"+escapeEntities(c)+">")
	}
	return "ssobot starts runs only in " + joinOr(chs) + "."
}

// closedRun returns run id when SSOBOT_CHANNELS is set and does not list
// the run's channel (the bot restarted with a shorter list), nil when the
// run may go on. Going on would post and act in that channel, which the
// operator took runs out of. A run's channel never changes, so checking it
// before the engine acts leaves no race.
func (b *Bot) closedRun(ctx context.Context, id int64) (*workflow.Run, error) {
	if len(b.cfg.AllowedChannels) == 0 {
		return nil, nil
	}
	run, err := b.eng().Get(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("read run %d: %w", id, err)
	}
	if !b.runClosed(run) {
		return nil, nil
	}
	return run, nil
}

// runClosed reports whether run r may not go on (see closedRun): a lookup
// in the configuration, no call, so that the card and thread replies can
// ask it on every delivery.
func (b *Bot) runClosed(r *workflow.Run) bool {
	// A run without a channel posts nowhere.
	return len(b.cfg.AllowedChannels) > 0 && r.Request.Channel != "" && !b.channelAllowed(r.Request.Channel)
}

// closedNote is closedChannelText for what is shown in run r's own card and
// thread, whose readers are in its channel; "" when the run may go on.
func (b *Bot) closedNote(r *workflow.Run) string {
	if !b.runClosed(r) {
		return ""
	}
	return b.closedChannelText(r, "", r.Request.Channel)
}

// closedChannelText says that run r's channel is closed to runs and where
// they may be started instead. The channel is named only to whom the run
// is visible from where they are: it may be a private one.
func (b *Bot) closedChannelText(r *workflow.Run, user, where string) string {
	ch := fmt.Sprintf("the channel of run #%d", r.ID)
	if b.visible(r, user, where) {
		ch = "<#" + escapeEntities(r.Request.Channel) + ">"
	}
	return "runs may no longer be started or resumed in " + ch + ", and " + b.channelRefusal()
}

// retryClosedText refuses the retry of run r, failed or expired, whose
// channel is closed, and says what may still be done (not cancel: the run
// has ended).
func (b *Bot) retryClosedText(r *workflow.Run, slash, user, where string) string {
	return fmt.Sprintf(":no_entry: Run #%d was not retried: %s%s", r.ID, b.closedChannelText(r, user, where), startAgainText(r.ID, slash, b.visible(r, user, where)))
}

// approveClosedText refuses an approval of run r, whose channel is closed,
// and says how the run may still be ended.
func (b *Bot) approveClosedText(r *workflow.Run, user, where string) string {
	text := fmt.Sprintf(":no_entry: Your approval of run #%d was not recorded: %s", r.ID, b.closedChannelText(r, user, where))
	if !r.State.Terminal() {
		text += " " + endsRunText(r.ID)
	}
	return text
}

// startAgainText follows closedChannelText, which names the channels where
// runs may be started, for a run that cannot be retried: what to do
// instead of the retry. Status shows the run where it is visible (see
// Bot.visible) to the reader: elsewhere they are sent to its channel,
// which closedChannelText did not name to them.
func startAgainText(id int64, slash string, visible bool) string {
	text := fmt.Sprintf(" To set it up again, type `%s new %s` there.", slash, placeholder("application name"))
	if !visible {
		return text + fmt.Sprintf(" Ask in the channel of run #%d what it created, if anything (`%s status %d` shows it there): delete that by hand before a new run uses the same names.", id, slash, id)
	}
	return text + fmt.Sprintf(" `%s status %d` still works and shows what run #%d created, if anything: delete that by hand before a new run uses the same names.", slash, id, id)
}

// cannotRetryText is what is said of run id instead of "type retry" when
// the run is closed: closed is closedChannelText (Bot.closedNote in its
// thread, whose readers see the run), visible whether the reader sees it.
func cannotRetryText(id int64, closed string, visible bool) string {
	return "It cannot be retried: " + closed + startAgainText(id, slashName(""), visible)
}

// endsRunText says how an open run that cannot be approved still ends, in
// words true for any reader (the card's, or whoever clicked Approve): the
// bot cannot tell an approver in a user group without asking Slack, and
// the engine refuses a requester's Reject and a bystander's cancel.
func endsRunText(id int64) string {
	return fmt.Sprintf("Approvers can still end the run with Reject, and the requester or an approver with `%s cancel %d`.", slashName(""), id)
}

// userMessage is an engine validation error in words for the person: the
// sentinel's prefix removed, user-typed text escaped.
func userMessage(err error) string {
	msg := err.Error()
	prefix := workflow.ErrInvalidRequest.Error() + ": "
	if i := strings.Index(msg, prefix); i >= 0 {
		msg = msg[i+len(prefix):]
	}
	return capitalize(Escape(msg))
}

func capitalize(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 || r == utf8.RuneError {
		return s
	}
	return string(unicode.ToUpper(r)) + s[n:]
}
