package bot

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/slack-go/slack"

	"github.com/ssobot/ssobot/workflow"
)

// Slack's limits on Block Kit text.
const (
	MaxSectionText = 3000
	MaxFieldText   = 2000
	MaxHeaderText  = 150
	MaxButtonValue = 2000
	// MaxMessageText bounds thread replies and fallback texts; Slack allows
	// more, people read less.
	MaxMessageText = 3000
)

const truncatedMark = "… (truncated)"

// Action and block IDs of the run message and the modal. They are part of
// the interface with Slack: clicks on old messages carry them.
const (
	ActionApprove = "approve"
	ActionReject  = "reject"

	BlockGate = "gate"

	ModalCallbackID  = "sso_setup_new"
	BlockAppName     = "app_name"
	BlockAppSlug     = "app_slug"
	BlockTeamDomain  = "team_domain"
	BlockLoginMethod = "login_method"
	ModalActionValue = "value"
)

// Truncate shortens s to at most limit characters (Slack's limits count
// characters, not bytes), saying so visibly. It never leaves half a link,
// mention or entity behind; a bare & (plain text) is not an entity.
func Truncate(s string, limit int) string { return truncateWith(s, limit, truncatedMark) }

// truncateWith is Truncate ending in mark.
func truncateWith(s string, limit int, mark string) string {
	if utf8.RuneCountInString(s) <= limit {
		return s
	}
	keep := max(limit-utf8.RuneCountInString(mark), 0)
	cut, n := len(s), 0
	for i := range s {
		if n == keep {
			cut = i
			break
		}
		n++
	}
	if i := strings.LastIndexByte(s[:cut], '<'); i >= 0 && !strings.Contains(s[i:cut], ">") {
		cut = i
	}
	if i := strings.LastIndexByte(s[:cut], '&'); i >= 0 && partialEntity(s[i+1:cut]) {
		cut = i
	}
	return s[:cut] + mark
}

// partialEntity reports whether s, what follows an & up to a cut, is the
// start of an entity like &amp; or &#60; cut before its ;.
func partialEntity(s string) bool {
	for _, c := range s {
		if !(c == '#' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

var mrkdwnEscaper = strings.NewReplacer(
	"&", "&amp;", "<", "&lt;", ">", "&gt;",
	// Slack has no escape for formatting characters; a zero-width space on
	// either side keeps them from pairing up into bold, italics, strike or code.
	"*", "\u200b*\u200b", "_", "\u200b_\u200b", "~", "\u200b~\u200b", "`", "\u200b`\u200b",
)

// Escape makes text typed by a person safe inside mrkdwn: it cannot mention
// (<!channel>, <@U1>), link or format.
func Escape(s string) string { return mrkdwnEscaper.Replace(s) }

// identifier finds names a reader copies into a shell, a manifest or
// authentik's role editor (SSOBOT_SIGNING_KEY, view_flow,
// authentik_providers_oauth2.add_oauth2provider). Escape would put
// zero-width spaces around their underscores, and a copy keeps those.
// A URL with such characters (a slug like my_app in its path) is one too.
var identifier = regexp.MustCompile("https?://[^\\s<>\"'`]*[^\\s<>\"'`.,:;)]|\\b[A-Za-z][A-Za-z0-9.]*(?:_[A-Za-z0-9.]+)+\\b")

// escapeMessage is Escape for the engine's sentences, with identifiers in
// code spans, which need no zero-width spaces.
func escapeMessage(s string) string {
	var b strings.Builder
	last := 0
	for _, m := range identifier.FindAllStringIndex(s, -1) {
		b.WriteString(Escape(s[last:m[0]]))
		if id := s[m[0]:m[1]]; strings.ContainsAny(id, "*_~") {
			b.WriteString(code(id))
		} else {
			b.WriteString(Escape(id)) // a plain URL, which Slack links
		}
		last = m[1]
	}
	b.WriteString(Escape(s[last:]))
	return b.String()
}

// plainSafe keeps angle brackets out of plain_text, where Slack's handling
// of entities is not documented: look-alikes cannot form a mention or link.
func plainSafe(s string) string { return angleLookalikes.Replace(s) }

var angleLookalikes = strings.NewReplacer("<", "‹", ">", "›")

var entityEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// escapeEntities escapes only what Slack requires, for text inside code spans
// and link targets.
func escapeEntities(s string) string { return entityEscaper.Replace(s) }

// actorID finds the Slack user ID the engine starts some sentences with
// ("rejected by U…", "cancelled by U…", "the approval of U…"). Only at the
// start: a reason a person typed after it stays plain text, so it cannot
// mention anyone.
var actorID = regexp.MustCompile(`^(rejected by|cancelled by|the approval of) ([UW][A-Z0-9]+)\b`)

// mentionActors shows those IDs as mentions, which Slack renders as names.
func mentionActors(s string) string { return showActors(s, mention) }

// showActors shows those IDs with who (mention, or names.person). s is
// already escaped; an ID has nothing to escape.
func showActors(s string, who func(user string) string) string {
	m := actorID.FindStringSubmatchIndex(s)
	if m == nil {
		return s
	}
	return s[:m[3]] + " " + who(s[m[4]:m[5]]) + s[m[5]:]
}

var (
	slackUserID  = regexp.MustCompile(`^[UW][A-Z0-9]+$`)
	slackGroupID = regexp.MustCompile(`^S[A-Z0-9]+$`)
)

// mention renders a Slack user ID as a mention; anything else (an admin API
// user, the engine itself) as escaped text.
func mention(user string) string {
	switch {
	case user == workflow.SystemActor:
		return "ssobot"
	case slackUserID.MatchString(user):
		return "<@" + user + ">"
	case user == "":
		return "someone"
	}
	return Escape(user)
}

// names are the display names of Slack users by ID, for a message everyone
// in a channel reads (see Bot.status): a mention there would notify each
// person it names every time someone shares it. An ID missing could not
// be looked up.
type names map[string]string

// person shows user by name as plain text, which notifies no one, the way
// Slack shows a mention; without the name, by the user's ID, never as a
// mention.
func (n names) person(user string) string {
	if !slackUserID.MatchString(user) {
		return mention(user) // not a Slack user: plain text already
	}
	if name := n[user]; name != "" {
		return truncateWith("@"+Escape(name), maxShownName, "…")
	}
	return "Slack user " + user // a user ID has nothing to escape
}

// maxNameRunes bounds a name shown, so that no name crowds out the card;
// maxShownName bounds it once escaped (an & is 5 characters then, a * 3).
const (
	maxNameRunes = 80
	maxShownName = 100
)

// displayName is the name Slack shows for a user: the display name, else
// the full name, else the username, on one line, without the characters
// that would not show (see invisible); "" when there is none.
func displayName(u slack.User) string {
	for _, name := range []string{u.Profile.DisplayName, u.Profile.RealName, u.RealName, u.Name} {
		if name = strings.Join(strings.Fields(strings.Map(dropInvisible, name)), " "); name != "" {
			return truncateRunes(name, maxNameRunes)
		}
	}
	return ""
}

// dropInvisible drops the characters of a name that do not show as
// themselves: controls (NUL, escape), format characters (bidi overrides
// like U+202E that reverse the text after them, zero-width spaces, soft
// hyphens) but the zero-width joiner emoji sequences need, and the Hangul
// fillers that pass for blank names. Any space (a line break, a tab)
// becomes a space.
func dropInvisible(r rune) rune {
	switch {
	case unicode.IsSpace(r):
		return ' '
	case r == '\u200d':
		return r
	case unicode.Is(unicode.Cc, r), unicode.Is(unicode.Cf, r),
		r == '\u115f', r == '\u1160', r == '\u3164', r == '\uffa0':
		return -1
	}
	return r
}

// verbatim marks the mrkdwn text of blocks verbatim, so that Slack turns
// nothing in it into a link or a mention by itself: not a URL, a #channel,
// an @name nor @here, which a name a person chose may spell. Explicit
// markup (<https://…|text>, <!date^…>) still renders.
func verbatim(blocks []slack.Block) []slack.Block {
	mark := func(t *slack.TextBlockObject) {
		if t != nil && t.Type == slack.MarkdownType {
			t.Verbatim = true
		}
	}
	for _, b := range blocks {
		switch b := b.(type) {
		case *slack.SectionBlock:
			mark(b.Text)
			for _, f := range b.Fields {
				mark(f)
			}
		case *slack.ContextBlock:
			for _, e := range b.ContextElements.Elements {
				if t, ok := e.(*slack.TextBlockObject); ok {
					mark(t)
				}
			}
		}
	}
	return blocks
}

// cardPeople are the Slack users run r's card shows (see renderRun), each
// once.
func cardPeople(r *workflow.Run) []string {
	var ids []string
	add := func(user string) {
		if slackUserID.MatchString(user) && !slices.Contains(ids, user) {
			ids = append(ids, user)
		}
	}
	add(r.Request.RequestedBy)
	for _, a := range r.Approvals {
		add(a.User)
	}
	if m := actorID.FindStringSubmatch(r.LastError()); m != nil {
		add(m[2])
	}
	return ids
}

// FormatDate renders a time that each reader sees in their own time zone.
func FormatDate(t time.Time) string {
	return fmt.Sprintf("<!date^%d^{date_short_pretty} {time}|%s>", t.Unix(), t.UTC().Format("2006-01-02 15:04 UTC"))
}

func code(s string) string {
	return "`" + strings.ReplaceAll(escapeEntities(s), "`", "'") + "`"
}

func link(url, label string) string {
	if url == "" {
		return label
	}
	return "<" + strings.ReplaceAll(escapeEntities(url), "|", "%7C") + "|" + label + ">"
}

// StepLabel names a step or gate for people.
func StepLabel(name workflow.StepName) string {
	switch name {
	case workflow.StepPreflight:
		return "Preflight checks"
	case workflow.GateAuthentik:
		return "Approval to create the authentik provider and application"
	case workflow.StepAuthentikProvider:
		return "Create the authentik OAuth2/OpenID provider"
	case workflow.StepAuthentikApplication:
		return "Create the authentik application"
	case workflow.GateCloudflare:
		return "Approval to add the Cloudflare login method"
	case workflow.StepCloudflareLoginMethod:
		return "Add the Cloudflare Access login method"
	case workflow.StepVerify:
		return "Verify the login method"
	}
	return Escape(string(name))
}

// StateLabel describes a run's state with its emoji.
func StateLabel(s workflow.State) string {
	switch s {
	case workflow.StatePending:
		return ":mag: Preflight running"
	case workflow.StateAwaitingApproval:
		return ":raised_hand: Awaiting approval"
	case workflow.StateRunning:
		return ":gear: Running"
	case workflow.StateSucceeded:
		return ":white_check_mark: Succeeded"
	case workflow.StateFailed:
		return ":x: Failed"
	case workflow.StateRejected:
		return ":no_entry_sign: Rejected"
	case workflow.StateExpired:
		return ":alarm_clock: Expired"
	case workflow.StateCancelled:
		return ":heavy_minus_sign: Cancelled"
	}
	return Escape(string(s))
}

func stepEmoji(s workflow.StepStatus) string {
	switch s {
	case workflow.StepRunning:
		return ":hourglass_flowing_sand:"
	case workflow.StepWaiting:
		return ":raised_hand:"
	case workflow.StepSucceeded:
		return ":white_check_mark:"
	case workflow.StepFailed:
		return ":x:"
	case workflow.StepRejected:
		return ":no_entry_sign:"
	case workflow.StepExpired:
		return ":alarm_clock:"
	case workflow.StepCancelled:
		return ":heavy_minus_sign:"
	}
	return ":white_circle:"
}

// links builds the admin URLs of a run's resources.
type links struct {
	authentikURL string
	accountID    string
}

func (l links) withRun(r *workflow.Run) links {
	if r.Params.AuthentikURL != "" {
		l.authentikURL = r.Params.AuthentikURL
	}
	if r.Params.AccountID != "" {
		l.accountID = r.Params.AccountID
	}
	l.authentikURL = strings.TrimRight(l.authentikURL, "/")
	return l
}

func (l links) provider(id int) string {
	if l.authentikURL == "" {
		return ""
	}
	return fmt.Sprintf("%s/if/admin/#/core/providers/%d", l.authentikURL, id)
}

func (l links) application(slug string) string {
	if l.authentikURL == "" {
		return ""
	}
	return l.authentikURL + "/if/admin/#/core/applications/" + slug
}

func (l links) dashboard(r *workflow.Run) string {
	if r.DashboardURL != "" {
		return r.DashboardURL
	}
	if l.accountID == "" {
		return ""
	}
	return "https://one.dash.cloudflare.com/" + l.accountID + "/settings/authentication"
}

// planText says what approving sets up, once preflight has resolved it:
// what a security review of an identity provider looks for (who the client
// is, where tokens go, how they are signed, what they carry), from the same
// functions the steps create it with.
func planText(p workflow.Params) string {
	if p.SigningKeyID == "" || p.CallbackURL == "" {
		return ""
	}
	prov, app, lm := workflow.PlannedProvider(p), workflow.PlannedApplication(p, 0), workflow.PlannedLoginMethod(p)
	redirects := make([]string, 0, len(prov.RedirectURIs))
	for _, u := range prov.RedirectURIs {
		redirects = append(redirects, code(u.URL)+" ("+Escape(u.MatchingMode)+" match)")
	}
	pkce := "off"
	if lm.PKCEEnabled {
		pkce = "on"
	}
	scopes := Escape(strings.Join(lm.Scopes, ", "))
	authentik := fmt.Sprintf("• *authentik* %s: provider %s, a %s client with ID %s; redirect URI %s; authorization flow %s; ID tokens signed with the key of %s, with the claims of scopes %s. Application %s, policy engine mode %s",
		code(p.AuthentikURL), Escape(strconv.Quote(prov.Name)), Escape(prov.ClientType), code(prov.ClientID), strings.Join(redirects, ", "),
		code(p.AuthorizationFlowSlug), Escape(strconv.Quote(p.SigningKeyName)), scopes, code(app.Slug), Escape(app.PolicyEngineMode))
	// The authorize and token endpoints are authentik's, under its URL
	// above; the keys are what Cloudflare checks the signatures with.
	cloudflare := fmt.Sprintf("• *Cloudflare Access* %s: OpenID Connect login method %s, PKCE %s, scopes %s, email claim %s, signing keys from %s",
		code(p.TeamDomain), Escape(strconv.Quote(p.LoginMethodName)), pkce, scopes, code(lm.EmailClaimName), code(lm.CertsURL))
	return "*What approving sets up*\n" + authentik + "\n" + cloudflare
}

// RenderRun renders a run's message: title, requester, parameters, the
// checklist of steps, approvals, created resources, the last error and, at an
// open gate, the Approve and Reject buttons. It is a pure function of the run.
func RenderRun(r *workflow.Run) []slack.Block {
	return renderRun(r, links{}, true, "", mention)
}

// renderRun is RenderRun with the bot's links, the gate's buttons only if
// buttons, closed, when not empty, saying why the run may not go on in its
// channel (Bot.closedNote): the gate then offers Reject only, and people
// shown by who (mention, or names.person for cardPeople).
func renderRun(r *workflow.Run, l links, buttons bool, closed string, who func(user string) string) []slack.Block {
	l = l.withRun(r)
	p := r.Params
	name := p.ApplicationName
	if name == "" {
		name = r.Request.ApplicationName
	}
	blocks := []slack.Block{
		slack.NewHeaderBlock(plain(Truncate(fmt.Sprintf("SSO setup #%d: %s", r.ID, plainSafe(name)), MaxHeaderText)), slack.HeaderBlockOptionBlockID("header")),
	}

	fields := []*slack.TextBlockObject{
		mrkdwnField("*State*\n" + StateLabel(r.State)),
		mrkdwnField("*Requested by*\n" + who(r.Request.RequestedBy)),
		mrkdwnField("*Application*\n" + Escape(name)),
	}
	if slug := firstNonEmpty(p.ApplicationSlug, r.Request.ApplicationSlug); slug != "" {
		fields = append(fields, mrkdwnField("*Slug*\n"+code(slug)))
	}
	if team := firstNonEmpty(p.TeamDomain, r.Request.TeamDomain); team != "" {
		fields = append(fields, mrkdwnField("*Team domain*\n"+Escape(team)))
	} else {
		fields = append(fields, mrkdwnField("*Team domain*\n_from the Cloudflare account_"))
	}
	if login := firstNonEmpty(p.LoginMethodName, r.Request.LoginMethodName); login != "" {
		fields = append(fields, mrkdwnField("*Login method*\n"+Escape(login)))
	}
	if p.ProviderName != "" {
		fields = append(fields, mrkdwnField("*Provider*\n"+Escape(p.ProviderName)))
	}
	blocks = append(blocks, slack.NewSectionBlock(nil, fields, nil, slack.SectionBlockOptionBlockID("summary")))
	if plan := planText(p); plan != "" {
		blocks = append(blocks, section("plan", plan))
	}

	var steps []string
	for i := range r.Steps {
		steps = append(steps, stepLine(r, &r.Steps[i]))
	}
	if len(steps) > 0 {
		blocks = append(blocks, section("steps", "*Steps*\n"+strings.Join(steps, "\n")))
	}

	if len(r.Approvals) > 0 {
		var lines []string
		for _, a := range r.Approvals {
			emoji := ":white_check_mark:"
			if a.Decision == workflow.Reject {
				emoji = ":no_entry_sign:"
			}
			line := fmt.Sprintf("%s %s %s _%s_ %s", emoji, who(a.User), pastTense(a.Decision), gateShort(a.Gate), FormatDate(a.At))
			if a.Reason != "" {
				line += ": " + Escape(a.Reason)
			}
			// Why it does not count, so its approver knows to approve again.
			if why := a.NotCounted(); why != "" {
				line = ":heavy_minus_sign:" + strings.TrimPrefix(line, emoji) + " (no longer counts: " + why + ")"
			}
			lines = append(lines, line)
		}
		blocks = append(blocks, section("approvals", "*Approvals*\n"+strings.Join(lines, "\n")))
	}

	if res := resourceLines(r, l); len(res) > 0 {
		blocks = append(blocks, section("resources", "*Created*\n"+strings.Join(res, "\n")))
	}

	if len(r.Problems) > 0 {
		var lines []string
		for _, pr := range r.Problems {
			lines = append(lines, "• "+escapeMessage(pr))
		}
		blocks = append(blocks, section("problems", "*Preflight found*\n"+strings.Join(lines, "\n")))
	}

	if e := r.LastError(); e != "" {
		blocks = append(blocks, section("error", "*Last error*\n"+showActors(escapeMessage(e), who)))
	}

	if r.State == workflow.StateSucceeded {
		if u := l.dashboard(r); u != "" {
			blocks = append(blocks, section("test", ":point_right: Test the login method in the "+link(u, "Cloudflare dashboard")+" (Authentication → Login methods → Test)."))
		}
	}

	if g := r.OpenGate(); g != nil && buttons {
		blocks = append(blocks, gateBlocks(r, g, closed)...)
	}

	footer := fmt.Sprintf("Run #%d", r.ID)
	if p.ClientID != "" {
		footer += " · client ID " + code(p.ClientID)
	}
	if !r.UpdatedAt.IsZero() {
		footer += " · updated " + FormatDate(r.UpdatedAt)
	}
	blocks = append(blocks, slack.NewDividerBlock(), slack.NewContextBlock("footer", mrkdwn(Truncate(footer, MaxSectionText))))
	return blocks
}

// renderCompact is the run's message cut to what a person must see and
// click: for when Slack refuses the full one (blocks it finds invalid or
// too long), so that a run never waits behind a card nobody can see.
func renderCompact(r *workflow.Run, buttons bool, closed string) []slack.Block {
	name := firstNonEmpty(r.Params.ApplicationName, r.Request.ApplicationName)
	blocks := []slack.Block{
		slack.NewHeaderBlock(plain(fmt.Sprintf("SSO setup #%d", r.ID)), slack.HeaderBlockOptionBlockID("header")),
		section("summary", Truncate(fmt.Sprintf("*%s* · %s · requested by %s", Escape(truncateRunes(name, 100)), StateLabel(r.State), mention(r.Request.RequestedBy)), MaxSectionText)),
	}
	if g := r.OpenGate(); g != nil && buttons {
		blocks = append(blocks, gateBlocks(r, g, closed)...)
	}
	return append(blocks, slack.NewContextBlock("footer", mrkdwn(fmt.Sprintf("Run #%d · the details are in the thread, and in `%s status %d`", r.ID, slashName(""), r.ID))))
}

// gateBlocks are the open gate's line and buttons; with closed (see
// renderRun) no Approve button, which would only be refused, and a line
// saying why and how the run still ends.
func gateBlocks(r *workflow.Run, g *workflow.Step, closed string) []slack.Block {
	got := r.CountingApprovals(g.Name)
	text := fmt.Sprintf(":raised_hand: *%s*: %d of %d approval(s)", StepLabel(g.Name), got, max(g.Required, 1))
	if !g.Deadline.IsZero() {
		text += ", expires " + FormatDate(g.Deadline)
	}
	value := ButtonValue(r.ID, g.Name, g.Nonce)
	approve := slack.NewButtonBlockElement(ActionApprove, value, plain("Approve")).WithStyle(slack.StylePrimary)
	reject := slack.NewButtonBlockElement(ActionReject, value, plain("Reject")).WithStyle(slack.StyleDanger).
		WithConfirm(slack.NewConfirmationBlockObject(
			plain("Reject this run?"),
			mrkdwn(Truncate(fmt.Sprintf("Run #%d will end as rejected and nothing more will be created.", r.ID), MaxSectionText)),
			plain("Reject"), plain("Keep it")).WithStyle(slack.StyleDanger))
	if closed != "" {
		return []slack.Block{
			section("gate_info", text),
			section("gate_closed", ":no_entry: This gate can no longer be approved: "+closed+" "+endsRunText(r.ID)),
			slack.NewActionBlock(BlockGate, reject),
		}
	}
	return []slack.Block{
		section("gate_info", text),
		slack.NewActionBlock(BlockGate, approve, reject),
	}
}

// ButtonValue is the value of a gate's buttons: the run, the gate and its
// nonce, so a click on a stale message is refused by the engine.
func ButtonValue(id int64, gate workflow.StepName, nonce string) string {
	return fmt.Sprintf("%d|%s|%s", id, gate, nonce)
}

// ParseButtonValue reverses ButtonValue.
func ParseButtonValue(v string) (id int64, gate workflow.StepName, nonce string, err error) {
	parts := strings.SplitN(v, "|", 3)
	if len(parts) != 3 {
		return 0, "", "", fmt.Errorf("button value has %d parts, want 3", len(parts))
	}
	id, err = strconv.ParseInt(parts[0], 10, 64)
	if err != nil || id <= 0 {
		return 0, "", "", fmt.Errorf("button value: bad run id")
	}
	gate = workflow.StepName(parts[1])
	// Only gates of the plan: the engine echoes the gate in its refusals,
	// so a forged value must not carry text of its own.
	if !isGate(gate) {
		return 0, "", "", fmt.Errorf("button value: unknown gate")
	}
	return id, gate, parts[2], nil
}

func isGate(name workflow.StepName) bool {
	for _, p := range workflow.Plan {
		if p.Name == name && p.Kind == workflow.KindGate {
			return true
		}
	}
	return false
}

func stepLine(r *workflow.Run, s *workflow.Step) string {
	line := stepEmoji(s.Status) + " " + StepLabel(s.Name)
	switch {
	case s.Kind == workflow.KindGate && s.Status == workflow.StepWaiting:
		line += fmt.Sprintf(" (%d of %d)", r.CountingApprovals(s.Name), max(s.Required, 1))
	case s.Status == workflow.StepRunning && s.Attempts > 1:
		line += fmt.Sprintf(" (attempt %d", s.Attempts)
		if !s.NextAttemptAt.IsZero() {
			line += ", next " + FormatDate(s.NextAttemptAt)
		}
		line += ")"
	case s.Status == workflow.StepFailed && s.Attempts > 0:
		line += fmt.Sprintf(" (after %d attempt(s))", s.Attempts)
	}
	return line
}

func resourceLines(r *workflow.Run, l links) []string {
	var lines []string
	res := r.Resources
	if res.AuthentikProviderID != 0 {
		lines = append(lines, "• authentik provider "+link(l.provider(res.AuthentikProviderID), fmt.Sprintf("#%d", res.AuthentikProviderID)))
	}
	if res.AuthentikApplicationSlug != "" {
		lines = append(lines, "• authentik application "+link(l.application(res.AuthentikApplicationSlug), Escape(res.AuthentikApplicationSlug)))
	}
	if res.CloudflareIdentityProviderID != "" {
		lines = append(lines, "• Cloudflare login method "+link(l.dashboard(r), Escape(res.CloudflareIdentityProviderID)))
	}
	return lines
}

func gateShort(g workflow.StepName) string {
	switch g {
	case workflow.GateAuthentik:
		return "authentik"
	case workflow.GateCloudflare:
		return "Cloudflare"
	}
	return Escape(string(g))
}

// stateVerb says what a run's state is in a sentence: "run #4 has succeeded".
func stateVerb(s workflow.State) string {
	switch s {
	case workflow.StatePending:
		return "is running its preflight checks"
	case workflow.StateAwaitingApproval:
		return "is waiting for approval"
	case workflow.StateRunning:
		return "is running"
	case workflow.StateRejected, workflow.StateCancelled:
		return "was " + string(s)
	}
	return "has " + string(s)
}

func pastTense(d workflow.Decision) string {
	if d == workflow.Reject {
		return "rejected"
	}
	return "approved"
}

// FallbackText is the message's plain text, for notifications and clients
// without Block Kit.
func FallbackText(r *workflow.Run) string {
	name := firstNonEmpty(r.Params.ApplicationName, r.Request.ApplicationName)
	return Truncate(fmt.Sprintf("SSO setup #%d for %s: %s", r.ID, Escape(name), StateLabel(r.State)), MaxMessageText)
}

// EventText renders an event as a thread reply; false for events that stay in
// the audit log only (refusals are explained privately).
func EventText(r *workflow.Run, ev workflow.Event) (string, bool) {
	return eventText(r, ev, links{}, "")
}

// eventText is EventText with the bot's links and closed, when not empty,
// saying why the run may not go on in its channel (see renderRun): no reply
// then asks for an approval, which would be refused.
func eventText(r *workflow.Run, ev workflow.Event, l links, closed string) (string, bool) {
	l = l.withRun(r)
	step := StepLabel(ev.Step)
	var s string
	switch ev.Type {
	case workflow.EventPlanned:
		s = ":clipboard: Preflight passed: the plan is ready for approval."
		if closed != "" {
			s = ":clipboard: Preflight passed: the plan is ready."
		}
	case workflow.EventStepStarted:
		s = fmt.Sprintf(":arrow_forward: Started *%s*", step)
		if a := ev.Data["attempt"]; a != "" && a != "1" {
			s += " (attempt " + Escape(a) + ")"
		}
	case workflow.EventStepSucceeded:
		if ev.Step == workflow.StepPreflight {
			return "", false // the plan reply says it
		}
		s = fmt.Sprintf(":white_check_mark: *%s* done", step)
	case workflow.EventResourceFound:
		s = ":mag: Found from an earlier attempt: " + escapeMessage(ev.Message)
	case workflow.EventAttemptFailed:
		s = fmt.Sprintf(":warning: *%s*: attempt failed: %s", step, escapeMessage(ev.Message))
	case workflow.EventStepFailed:
		s = fmt.Sprintf(":x: *%s* failed: %s", step, escapeMessage(ev.Message))
	case workflow.EventGateOpened:
		var deadline time.Time
		if g := r.Step(ev.Step); g != nil {
			deadline = g.Deadline
		}
		if closed != "" {
			// The requester, not the approvers (the bot calls them
			// after this reply otherwise): see closedGateText.
			s = closedGateText(r, ":raised_hand:", ev.Step, deadline, closed)
			break
		}
		s = fmt.Sprintf(":raised_hand: Waiting for approval: *%s*", step)
		if !deadline.IsZero() {
			s += ", expires " + FormatDate(deadline)
		}
	case workflow.EventGateReminder:
		g := r.OpenGate()
		if g == nil || g.Name != ev.Step {
			// Decided, expired or cancelled since (the reply was held up,
			// by a Slack outage say): calling the approvers now would mislead.
			return "", false
		}
		if closed != "" {
			s = closedGateText(r, ":hourglass_flowing_sand:", g.Name, g.Deadline, closed)
			break
		}
		s = fmt.Sprintf(":hourglass_flowing_sand: Still waiting for approval: *%s*", step)
		if g.Required > 1 {
			s += fmt.Sprintf(" (%d of %d approvals given)", r.CountingApprovals(g.Name), g.Required)
		}
		s += ". It expires " + FormatDate(g.Deadline) + ", and the run ends with it."
	case workflow.EventDecisionAccepted:
		s = fmt.Sprintf(":ballot_box_with_check: %s: %s", mention(ev.Actor), Escape(ev.Message))
		if d := decisionOf(r, ev); d != "" {
			s = fmt.Sprintf(":ballot_box_with_check: %s %s *%s*", mention(ev.Actor), pastTense(d), step)
		}
		if reason := ev.Data["reason"]; reason != "" {
			s += ": " + Escape(reason)
		}
	case workflow.EventGateRejected:
		s = fmt.Sprintf("%s :no_entry_sign: Run #%d %s", mention(r.Request.RequestedBy), r.ID, wasEnded("rejected", ev.Message))
	case workflow.EventGateExpired:
		s = fmt.Sprintf("%s :alarm_clock: *%s* expired without a decision; run #%d has ended.", mention(r.Request.RequestedBy), step, r.ID)
		if closed != "" {
			// Read in the run's channel, where status shows it.
			s += " " + cannotRetryText(r.ID, closed, true)
			break
		}
		s += fmt.Sprintf(" To ask again, type `%s retry %d` in the channel.", slashName(""), r.ID)
	case workflow.EventCancelled:
		s = fmt.Sprintf("%s :heavy_minus_sign: Run #%d %s", mention(r.Request.RequestedBy), r.ID, wasEnded("cancelled", ev.Message))
	case workflow.EventRetried:
		s = fmt.Sprintf(":repeat: %s retried the run from *%s*", mention(ev.Actor), step)
		if r.Step(ev.Step) != nil && r.Step(ev.Step).Kind == workflow.KindGate {
			s = fmt.Sprintf(":repeat: %s opened *%s* again", mention(ev.Actor), step)
		}
	case workflow.EventSucceeded:
		s = fmt.Sprintf("%s :tada: Run #%d succeeded.", mention(r.Request.RequestedBy), r.ID)
		if u := l.dashboard(r); u != "" {
			s += " Test the login method in the " + link(u, "Cloudflare dashboard") + "."
		}
	case workflow.EventFailed:
		// Slash commands do not work in threads, where this is posted.
		s = fmt.Sprintf("%s :x: Run #%d failed: %s.", mention(r.Request.RequestedBy), r.ID, escapeMessage(strings.TrimRight(ev.Message, ". ")))
		if closed != "" {
			// The advice is a new run already: no word on a retry.
			s += " " + cannotRetryText(r.ID, closed, true)
			break
		}
		s += fmt.Sprintf(" Fix the cause, then type `%s retry %d` in the channel.", slashName(""), r.ID)
		if ev.Step == workflow.StepPreflight {
			// A retry keeps the request: a taken name or a wrong team
			// domain is fixed by a new run, not by a retry.
			s += fmt.Sprintf(" A retry keeps this run's slug, names and team domain: if one of those is the problem, start a new run with other options instead (`%s help`).", slashName(""))
		}
	case workflow.EventNote:
		s = ":memo: " + mentionActors(escapeMessage(ev.Message))
	default:
		// Created, state changes, intents, resources created (the step's
		// "done" reply carries their IDs), gates approved (the decision
		// reply says it) and refusals: audit log only, to keep threads short.
		return "", false
	}
	if d := dataText(ev.Data); d != "" {
		s += "\n" + d
	}
	s += leftBehind(r, ev.Type, l, closed != "")
	return Truncate(s, MaxMessageText), true
}

// closedGateText says, in run r's thread when its gate opens or is about
// to expire, that the gate can no longer be approved, why (closed: see
// renderRun), and how the run ends. It calls the requester, not the
// approvers: an approval would be refused, and the run ends by itself when
// the gate expires, so nothing is asked of them (a group mention would
// notify a whole team for nothing), while the requester learns that their
// setup will not go on here and is to be started again elsewhere; the run
// is theirs to cancel at once if they like. Not Reject, which the engine
// refuses the requester (see endsRunText for the card's readers).
func closedGateText(r *workflow.Run, emoji string, gate workflow.StepName, deadline time.Time, closed string) string {
	s := fmt.Sprintf("%s %s *%s* can no longer be approved: %s", mention(r.Request.RequestedBy), emoji, StepLabel(gate), closed)
	if !deadline.IsZero() {
		s += " It expires " + FormatDate(deadline) + ", and the run ends with it."
	}
	// Slash commands do not work in threads, where this is posted.
	return s + fmt.Sprintf(" To end it now, type `%s cancel %d` in the channel.", slashName(""), r.ID)
}

// leftBehind lists, in the reply saying a run ended without success, what
// the run created: ssobot deletes nothing, so whoever gives the run up
// needs to know what to remove by hand, and the retry of a failed or
// expired run goes on from it, unless the run is closed (see renderRun).
func leftBehind(r *workflow.Run, t workflow.EventType, l links, closed bool) string {
	var intro string
	switch {
	case (t == workflow.EventFailed || t == workflow.EventGateExpired) && closed:
		intro = "Left in place, since ssobot deletes nothing; delete them by hand before a new run uses the same names:"
	case t == workflow.EventFailed, t == workflow.EventGateExpired:
		intro = "A retry reuses these; if you do not retry, delete them by hand:"
	case t == workflow.EventCancelled, t == workflow.EventGateRejected:
		intro = "Left in place, since ssobot deletes nothing; delete them by hand if they are not wanted:"
	default:
		return ""
	}
	lines := resourceLines(r, l)
	if len(lines) == 0 {
		return ""
	}
	return "\n" + intro + "\n" + strings.Join(lines, "\n")
}

// decisionOf finds the decision an accepted-decision event recorded.
func decisionOf(r *workflow.Run, ev workflow.Event) workflow.Decision {
	for i := len(r.Approvals) - 1; i >= 0; i-- {
		if a := r.Approvals[i]; a.Gate == ev.Step && a.User == ev.Actor {
			return a.Decision
		}
	}
	return ""
}

// shownElsewhere are event data keys the reply's text already covers.
var shownElsewhere = map[string]bool{"reason": true, "attempt": true, "deadline": true, "required": true, "missing": true, "dashboard_url": true}

// wasEnded says how a run ended: "was cancelled by <@U2>: wrong team" for
// the engine's "cancelled by U2: wrong team", not "was cancelled: cancelled by".
func wasEnded(verb, msg string) string {
	if strings.HasPrefix(msg, verb+" by ") {
		return "was " + mentionActors(escapeMessage(msg))
	}
	return "was " + verb + ": " + mentionActors(escapeMessage(msg))
}

// dataLabels word the data keys of the steps' results for people.
var dataLabels = map[string]string{
	"provider_id":          "provider ID",
	"client_id":            "client ID",
	"application_slug":     "application slug",
	"identity_provider_id": "login method ID",
	"provider_name":        "provider name",
	"login_method":         "login method",
	"team_domain":          "team domain",
	"id":                   "ID",
}

func dataLabel(k string) string {
	if l, ok := dataLabels[k]; ok {
		return l
	}
	return Escape(strings.ReplaceAll(k, "_", " "))
}

// dataText lists an event's data (IDs of created objects), skipping keys
// shown elsewhere.
func dataText(data map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(data)) {
		if shownElsewhere[k] || data[k] == "" {
			continue
		}
		parts = append(parts, dataLabel(k)+": "+code(data[k]))
	}
	if len(parts) == 0 {
		return ""
	}
	return "_" + strings.Join(parts, " · ") + "_"
}

func plain(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.PlainTextType, s, true, false)
}

func mrkdwn(s string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.MarkdownType, s, false, false)
}

func mrkdwnField(s string) *slack.TextBlockObject { return mrkdwn(Truncate(s, MaxFieldText)) }

func section(id, text string) *slack.SectionBlock {
	return slack.NewSectionBlock(mrkdwn(Truncate(text, MaxSectionText)), nil, nil, slack.SectionBlockOptionBlockID(id))
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
