package bot

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"

	"github.com/slack-go/slack"

	"github.com/ssobot/ssobot/workflow"
)

// modalMeta is what the modal remembers between opening and submission.
type modalMeta struct {
	Channel string `json:"channel"`
}

// NewRunModal is the form `/sso-setup` opens; its block IDs are stable so
// that validation errors land on the right field.
func NewRunModal(channel string) slack.ModalViewRequest {
	meta, _ := json.Marshal(modalMeta{Channel: channel})
	input := func(block, label, hint, placeholder string, optional bool, maxLen int) *slack.InputBlock {
		el := slack.NewPlainTextInputBlockElement(plain(placeholder), ModalActionValue).WithMaxLength(maxLen)
		var h *slack.TextBlockObject
		if hint != "" {
			h = plain(hint)
		}
		return slack.NewInputBlock(block, plain(label), h, el).WithOptional(optional)
	}
	return slack.ModalViewRequest{
		Type:            slack.VTModal,
		CallbackID:      ModalCallbackID,
		Title:           plain("New SSO setup"),
		Submit:          plain("Start"),
		Close:           plain("Cancel"),
		PrivateMetadata: string(meta),
		Blocks: slack.Blocks{BlockSet: []slack.Block{
			input(BlockAppName, "Application name", "As people will see it in authentik.", "Grafana", false, workflow.MaxNameLength),
			input(BlockAppSlug, "Slug", "Lowercase letters, digits and dashes; derived from the name when empty.", "grafana", true, workflow.MaxSlugLength),
			input(BlockTeamDomain, "Cloudflare team domain", "company or company.cloudflareaccess.com; the account's own when empty.", "company", true, 100),
			input(BlockLoginMethod, "Login method name", "The name of the login method in Cloudflare; “authentik (<application name>)” when empty.", "authentik (Grafana)", true, workflow.MaxNameLength),
		}},
	}
}

func (b *Bot) openModal(ctx context.Context, slash, trigger, channel, user, responseURL string) {
	if _, err := b.client.OpenViewContext(ctx, trigger, NewRunModal(channel)); err != nil {
		b.log.Error("open the new-run form", slog.String(workflow.KeyUser, user), slog.Any(workflow.KeyError, err))
		// The trigger's 3 s are spent; the apology gets its own time.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), responseTimeout)
		defer cancel()
		msg := "I could not open the form; type `" + slash + " new " + placeholder("application name") + "` instead."
		if responseURL != "" && b.respond(ctx, responseURL, msg) == nil {
			return
		}
		b.tellPrivately(ctx, 0, user, channel, msg)
	}
}

// modalFields reads the submitted form.
func modalFields(v slack.View) map[string]string {
	out := map[string]string{}
	if v.State == nil {
		return out
	}
	for _, block := range []string{BlockAppName, BlockAppSlug, BlockTeamDomain, BlockLoginMethod} {
		out[block] = strings.TrimSpace(unescapeFormatting(v.State.Values[block][ModalActionValue].Value))
	}
	return out
}

// ValidateModal checks each field of the form on its own, so an error lands
// on the field that caused it. The keys are block IDs.
func ValidateModal(f map[string]string) map[string]string {
	errs := map[string]string{}
	if err := workflow.ValidateName("application name", f[BlockAppName]); err != nil {
		errs[BlockAppName] = plainMessage(err)
	}
	switch s := f[BlockAppSlug]; {
	case s != "":
		if err := workflow.ValidateSlug(strings.ToLower(s)); err != nil {
			errs[BlockAppSlug] = plainMessage(err)
		}
	case errs[BlockAppName] == "" && workflow.Slugify(f[BlockAppName]) == "":
		// Names like "日本語" or "!!!" leave nothing to derive a slug from.
		errs[BlockAppSlug] = "No slug can be made from this name; enter one (lowercase letters, digits and dashes)."
	}
	if t := f[BlockTeamDomain]; t != "" {
		if _, err := workflow.NormalizeTeamDomain(t); err != nil {
			errs[BlockTeamDomain] = plainMessage(err)
		}
	}
	if l := f[BlockLoginMethod]; l != "" {
		if err := workflow.ValidateName("login method name", l); err != nil {
			errs[BlockLoginMethod] = plainMessage(err)
		}
	}
	return errs
}

// plainMessage is a validation error for a plain-text place (modal errors).
func plainMessage(err error) string {
	msg := err.Error()
	prefix := workflow.ErrInvalidRequest.Error() + ": "
	if i := strings.Index(msg, prefix); i >= 0 {
		msg = msg[i+len(prefix):]
	}
	return truncateRunes(capitalize(plainSafe(msg)), 150)
}

// viewSubmission validates the form inline and starts the run. It returns
// the response_action errors payload, or nil to close the form.
func (b *Bot) viewSubmission(ctx context.Context, cb slack.InteractionCallback) any {
	if cb.View.CallbackID != ModalCallbackID {
		return nil
	}
	e := b.eng()
	if e == nil {
		return slack.NewErrorsViewSubmissionResponse(map[string]string{BlockAppName: "ssobot is starting up; try again in a minute."})
	}
	var meta modalMeta
	_ = json.Unmarshal([]byte(cb.View.PrivateMetadata), &meta) // absent: no channel, refused below
	user := cb.User.ID
	unapprovable := b.unapprovable(user)
	switch {
	case meta.Channel == "" || !b.channelAllowed(meta.Channel):
		return slack.NewErrorsViewSubmissionResponse(map[string]string{BlockAppName: "Runs cannot be started from this channel."})
	case !b.requesterAllowed(user):
		return slack.NewErrorsViewSubmissionResponse(map[string]string{BlockAppName: requesterRefusal})
	case unapprovable != "":
		// The form shows plain text: no emoji code.
		return slack.NewErrorsViewSubmissionResponse(map[string]string{BlockAppName: strings.TrimPrefix(unapprovable, ":no_entry: ")})
	}
	f := modalFields(cb.View)
	if errs := ValidateModal(f); len(errs) > 0 {
		return slack.NewErrorsViewSubmissionResponse(errs)
	}
	req := workflow.Request{
		ApplicationName: f[BlockAppName],
		ApplicationSlug: f[BlockAppSlug],
		TeamDomain:      f[BlockTeamDomain],
		LoginMethodName: f[BlockLoginMethod],
		RequestedBy:     user,
		Channel:         meta.Channel,
	}
	log := b.log.With(slog.String(workflow.KeyUser, user))
	req, err := e.Validate(req)
	if err == nil {
		var run *workflow.Run
		run, err = e.Start(ctx, req)
		if err == nil {
			b.queue.push(run, nil)
			log.Info("run started from the form", slog.Int64(workflow.KeyRunID, run.ID))
			return nil
		}
	}
	if errors.Is(err, workflow.ErrInvalidRequest) {
		return slack.NewErrorsViewSubmissionResponse(map[string]string{BlockAppName: plainMessage(err)})
	}
	log.Error("start run from the form", slog.Any(workflow.KeyError, err))
	return slack.NewErrorsViewSubmissionResponse(map[string]string{BlockAppName: "Something went wrong on my side; try again in a minute."})
}
