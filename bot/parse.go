package bot

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/ssobot/ssobot/workflow"
)

// CommandKind is what a slash command asks for.
type CommandKind string

const (
	CmdModal  CommandKind = "modal" // no text: open the form
	CmdNew    CommandKind = "new"
	CmdStatus CommandKind = "status"
	CmdList   CommandKind = "list"
	CmdCancel CommandKind = "cancel"
	CmdRetry  CommandKind = "retry"
	CmdHelp   CommandKind = "help"
)

// Command is a parsed slash command.
type Command struct {
	Kind CommandKind

	// For new.
	Name  string
	Slug  string
	Team  string
	Login string

	// For status, cancel and retry.
	RunID int64
	// Public asks status to answer in the channel.
	Public bool
	// Reason is the free text after a cancel's run ID.
	Reason string
}

// UsageError says what is wrong with a command, in words for the person who
// typed it.
type UsageError struct{ Problem string }

func (e *UsageError) Error() string { return e.Problem }

func usageErr(format string, args ...any) *UsageError {
	return &UsageError{Problem: fmt.Sprintf(format, args...)}
}

// Options of new, in the order they are listed to people.
var commandOptions = []string{"slug", "team", "login"}

// DefaultCommand is the slash command the app manifest installs. Hints
// that answer no command (thread replies, clicks) name it.
const DefaultCommand = "/sso-setup"

// slashName is the slash command as typed (DefaultCommand when unknown),
// ready for mrkdwn.
func slashName(cmd string) string {
	if cmd == "" {
		cmd = DefaultCommand
	}
	return escapeEntities(cmd)
}

// Usage is the help text for the slash command named cmd (e.g. "/sso-setup").
func Usage(cmd string) string {
	cmd = slashName(cmd)
	return strings.Join([]string{
		"*Usage*",
		fmt.Sprintf("• `%s new %s [slug=%s] [team=%s] [login=%s]`: start a setup; quote names with spaces or keep them plain: `%[1]s new \"My App\" slug=my-app`; inside quotes, `\\\"` is a quote and `\\\\` a backslash", cmd, placeholder("application name"), placeholder("slug"), placeholder("team domain"), placeholder("login method name")),
		fmt.Sprintf("• `%s`: open the form", cmd),
		fmt.Sprintf("• `%s status %s [public]`: show a run (privately unless `public`, in the run's own channel, where it names people without notifying them)", cmd, placeholder("run")),
		fmt.Sprintf("• `%s list`: the 10 most recent runs", cmd),
		fmt.Sprintf("• `%s cancel %s [reason]`: cancel a run (requester or approver)", cmd, placeholder("run")),
		fmt.Sprintf("• `%s retry %s`: retry a failed run from its failed step, or ask again at the gate of an expired one (requester or approver)", cmd, placeholder("run")),
		fmt.Sprintf("• `%s help`: this text", cmd),
		"`team` accepts `company` or `company.cloudflareaccess.com`.",
	}, "\n")
}

// placeholder is a word to replace, written <word> in mrkdwn: Slack reads a
// bare < as the start of a link or mention, so the brackets are entities.
func placeholder(word string) string { return "&lt;" + word + "&gt;" }

// ParseCommand parses the text of a slash command. It is a pure function:
// errors are *UsageError telling what was wrong.
func ParseCommand(text string) (Command, error) {
	if !utf8.ValidString(text) {
		return Command{}, usageErr("the command is not valid UTF-8; please type it again")
	}
	// Only the subcommand is read as a word here: what follows it is read
	// by each subcommand's own rules, and a cancel's reason is prose.
	rs := []rune(cleanSlackText(text))
	unclosed := len(rs)
	first, next, err := readToken(rs, 0, &unclosed)
	if err != nil {
		return Command{}, err
	}
	if next < 0 {
		return Command{Kind: CmdModal}, nil
	}
	sub, rest := strings.ToLower(first.text), string(rs[next:])
	switch CommandKind(sub) {
	case CmdNew:
		return parseNew(rest)
	case CmdStatus:
		return parseStatus(rest)
	case CmdCancel, CmdRetry:
		return parseControl(CommandKind(sub), rest)
	case CmdList:
		if strings.TrimSpace(rest) != "" {
			return Command{}, usageErr("`list` takes no arguments")
		}
		return Command{Kind: CmdList}, nil
	case CmdHelp:
		return Command{Kind: CmdHelp}, nil
	}
	return Command{}, usageErr("I don't know the subcommand %s", quoteUser(first.text))
}

func parseStatus(rest string) (Command, error) {
	args, err := tokenize(rest)
	if err != nil {
		return Command{}, err
	}
	c := Command{Kind: CmdStatus}
	var ids []token
	for _, t := range args {
		if !t.quoted && strings.EqualFold(t.text, "public") {
			if c.Public {
				return Command{}, usageErr("`public` is given twice")
			}
			c.Public = true
			continue
		}
		ids = append(ids, t)
	}
	if len(ids) != 1 {
		return Command{}, usageErr("`status` takes one run number, like `status 42`, and optionally `public`")
	}
	id, err := parseRunID(ids[0].text)
	if err != nil {
		return Command{}, err
	}
	c.RunID = id
	return c, nil
}

// parseControl reads what follows cancel or retry: a run number, as one
// plain word, and for cancel a reason.
func parseControl(kind CommandKind, rest string) (Command, error) {
	word, reason := cutWord(rest)
	if word == "" {
		return Command{}, usageErr("`%s` needs a run number, like `%s 42`", kind, kind)
	}
	id, err := parseRunID(word)
	if err != nil {
		return Command{}, err
	}
	c := Command{Kind: kind, RunID: id}
	if kind == CmdRetry && strings.TrimSpace(reason) != "" {
		return Command{}, usageErr("`retry` takes only a run number, like `retry 42`")
	}
	if kind == CmdCancel {
		c.Reason = cancelReason(reason)
	}
	return c, nil
}

// cutWord splits off the first word of s, after any white space.
func cutWord(s string) (word, rest string) {
	s = strings.TrimLeftFunc(s, unicode.IsSpace)
	if i := strings.IndexFunc(s, unicode.IsSpace); i >= 0 {
		return s[:i], s[i:]
	}
	return s, ""
}

// cancelReason is a cancel's reason: free text that names nothing created
// anywhere, so it is kept as typed, quotes and backslashes included, and
// never refused (`wrong app, should be "Grafana".` is prose, not a badly
// quoted name). White space runs become one space, for the one-line
// message it ends up in. A reason wholly between one pair of double quotes,
// with no other double quote, loses that pair, as quoted words do.
func cancelReason(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	rs := []rune(s)
	if len(rs) < 2 || !isDoubleQuote(rs[0]) || !strings.ContainsRune(quoteClosers[rs[0]], rs[len(rs)-1]) {
		return s
	}
	inner := string(rs[1 : len(rs)-1])
	if strings.ContainsFunc(inner, isDoubleQuote) {
		return s // "Grafana" is wrong, should be "Loki": two quoted words
	}
	return strings.TrimSpace(inner)
}

func parseNew(rest string) (Command, error) {
	args, err := tokenize(rest)
	if err != nil {
		return Command{}, err
	}
	c := Command{Kind: CmdNew}
	seen := map[string]bool{}
	var words []string
	var afterLogin *token // an unquoted login= option, just before
	for i, t := range args {
		// A login method name may have spaces: "login=Okta SSO" would
		// otherwise name the application "Grafana SSO" and the login
		// method "Okta", silently. (Slugs and domains have none.)
		if !t.option && afterLogin != nil {
			return Command{}, usageErr("%s comes right after `login=`: quote a login method name with spaces, like %s, or put the options after the name",
				quoteUser(t.text), suggest("login=", afterLogin.value+" "+spaced(args, i, true)))
		}
		// My\ App is how a shell keeps a space in a word, but here the
		// backslash would stay in the name, as it does in DOMAIN\apps.
		if t.shellEscape {
			prefix := ""
			if t.option {
				prefix = t.key + "="
			}
			// A login method name takes the plain words after it too, as
			// the hint for an unquoted login= does.
			login := t.option && strings.EqualFold(t.key, "login")
			return Command{}, usageErr("%s ends in a backslash before a space: quote a name with spaces instead, like %s; %s",
				quoteUser(t.text), suggest(prefix, spaced(args, i, login)), escapeHint)
		}
		if !t.option {
			words = append(words, t.text)
			continue
		}
		afterLogin = nil
		if strings.EqualFold(t.key, "login") && !t.quoted {
			afterLogin = &t
		}
		key := strings.ToLower(t.key)
		var dst *string
		switch key {
		case "slug":
			dst = &c.Slug
		case "team":
			dst = &c.Team
		case "login":
			dst = &c.Login
		default:
			return Command{}, usageErr("unknown option `%s=`; the options are %s", truncateRunes(t.key, 40), optionList())
		}
		if seen[key] {
			return Command{}, usageErr("`%s=` is given twice", key)
		}
		seen[key] = true
		v := strings.TrimSpace(t.value)
		if v == "" {
			return Command{}, usageErr("`%s=` needs a value, like `%s=%s`", key, key, optionExample(key))
		}
		*dst = v
	}
	c.Name = strings.TrimSpace(strings.Join(words, " "))
	if c.Name == "" {
		return Command{}, usageErr("give the application name: `new %s`", placeholder("application name"))
	}
	return c, nil
}

// spaced is the word args[i] (its value, for an option) joined with the
// words a backslash before a space ties to it, as a shell would join them,
// without those backslashes: Okta\ SSO is "Okta SSO". With plain, it also
// takes every other word up to the next option: login=Okta SSO Prod means
// "Okta SSO Prod", and a hint of "Okta SSO" would leave Prod in the
// application's name.
func spaced(args []token, i int, plain bool) string {
	word := args[i].text
	if args[i].option {
		word = args[i].value
	}
	var words []string
	for ; i+1 < len(args) && (args[i].shellEscape || plain && !args[i+1].option); i++ {
		if args[i].shellEscape {
			word = strings.TrimSuffix(word, `\`)
		}
		words = append(words, word)
		word = args[i+1].text
	}
	return strings.Join(append(words, word), " ")
}

// suggest is what to type for an option (prefix key=) or a name, in a code
// span for a hint. A value longer than any name may be is cut.
func suggest(prefix, value string) string {
	return code(prefix + QuoteArg(truncateRunes(value, workflow.MaxNameLength)))
}

func optionList() string {
	parts := make([]string, len(commandOptions))
	for i, o := range commandOptions {
		parts[i] = "`" + o + "=`"
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}

func optionExample(key string) string {
	switch key {
	case "slug":
		return "my-app"
	case "team":
		return "company"
	}
	return "authentik"
}

func parseRunID(s string) (int64, error) {
	id, err := strconv.ParseInt(strings.TrimPrefix(s, "#"), 10, 64)
	if err != nil || id <= 0 {
		return 0, usageErr("%s is not a run number; runs are numbered like `42`", quoteUser(s))
	}
	return id, nil
}

// token is one word of a command, quotes removed.
type token struct {
	text   string
	quoted bool // some part was quoted: never an option
	// option is true for an unquoted key=value.
	option     bool
	key, value string
	// shellEscape: the word ends in a backslash, neither escaped nor
	// quoted, and another word follows (My\ App).
	shellEscape bool
}

var optionKey = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]*$`)

// quoteClosers maps an opening quote to the quotes that may close it. Slack
// clients turn straight quotes into typographic ones, in either direction.
var quoteClosers = map[rune]string{
	'"':  "\"“”",
	'“':  "”“\"",
	'”':  "”“\"",
	'„':  "“”\"",
	'«':  "»",
	'\'': "'’‘",
	'‘':  "’‘'",
	'’':  "’‘'",
}

// escapable reports the characters a backslash before them makes literal:
// every quote and the backslash itself. A backslash before anything else is
// kept, so a name like DOMAIN\apps needs no doubling; one before a space
// between words is refused by new (see token.shellEscape).
func escapable(r rune) bool {
	_, quote := quoteClosers[r]
	return quote || r == '»' || r == '\\'
}

func isSingleQuote(r rune) bool { return strings.ContainsRune("'‘’", r) }

// isDoubleQuote reports the quotes that are never an apostrophe.
func isDoubleQuote(r rune) bool {
	_, quote := quoteClosers[r]
	return (quote || r == '»') && !isSingleQuote(r)
}

// wordAt is the word that starts at rs[i], for messages.
func wordAt(rs []rune, i int) string {
	end := i
	for end < len(rs) && !unicode.IsSpace(rs[end]) {
		end++
	}
	return string(rs[i:end])
}

// QuoteArg writes s as one argument of a command the way a person would
// type it, so that ParseCommand reads s back: as is when it holds no white
// space, quote, backslash or =, else between double quotes with each quote
// and backslash after a backslash. (Slack delivers &, < and > as entities,
// which ParseCommand undoes.)
func QuoteArg(s string) string {
	if s != "" && !strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || r == '=' || escapable(r) }) {
		return s
	}
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		if escapable(r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	b.WriteByte('"')
	return b.String()
}

// escapeHint says how to write quotes and backslashes inside a name; the
// form takes any name as typed.
const escapeHint = "inside double quotes, type `\\\"` for a quote and `\\\\` for a backslash, like `new \"Bob \\\"Q\\\" Smith\"`; or use the form (the command with nothing after it)"

// tokenize splits on white space. A quote opens at the start of a word or
// right after the = of key=value and runs to its closing quote, which must
// end the word. A backslash before a quote or a backslash makes it literal,
// inside quotes or not. An unclosed single quote is an apostrophe, and so
// is a single quote inside a word; an unclosed double quote, text right
// after a closing double quote, or punctuation alone right after a closing
// single quote, is an error: guessing would put stray quotes and
// backslashes into the names created in authentik and Cloudflare.
func tokenize(s string) ([]token, error) {
	rs := []rune(s)
	var toks []token
	unclosed := len(rs) // see quoted
	for i := 0; ; {
		t, next, err := readToken(rs, i, &unclosed)
		if err != nil || next < 0 {
			return toks, err
		}
		toks = append(toks, t)
		i = next
	}
}

// readToken reads the word of rs that starts at or after i, by tokenize's
// rules, and returns it with the index after it, or next -1 when only
// white space is left. unclosed is quoted's, kept across the words of rs.
func readToken(rs []rune, i int, unclosed *int) (t token, next int, err error) {
	for i < len(rs) && unicode.IsSpace(rs[i]) {
		i++
	}
	if i == len(rs) {
		return token{}, -1, nil
	}
	start := i
	var b []rune
	eq := -1              // index in b of the key's '='
	rawBackslash := false // the last rune in b is a backslash as typed
	for i < len(rs) && !unicode.IsSpace(rs[i]) {
		r := rs[i]
		rawBackslash = false
		if r == '\\' && i+1 < len(rs) && escapable(rs[i+1]) {
			b = append(b, rs[i+1])
			i += 2
			continue
		}
		closers, isQuote := quoteClosers[r]
		if isQuote && (len(b) == 0 && !t.quoted || eq >= 0 && len(b) == eq+1) {
			inner, next, err := quoted(rs, i, closers, string(b), unclosed)
			if err != nil {
				return token{}, 0, err
			}
			if next >= 0 {
				b = append(b, inner...)
				t.quoted = true
				i = next
				continue
			}
			// An unclosed single quote is an apostrophe: read on.
		}
		if isDoubleQuote(r) {
			// 12" alone would read well, but "12" Pizza" could not:
			// a double quote delimits, or is typed as \".
			return token{}, 0, usageErr("%s has a quote inside a word: put the name between double quotes; %s", quoteUser(wordAt(rs, start)), escapeHint)
		}
		if r == '=' && eq < 0 && !t.quoted {
			eq = len(b)
		}
		b = append(b, r)
		rawBackslash = r == '\\'
		i++
	}
	t.text = string(b)
	if rawBackslash {
		for j := i; j < len(rs) && !t.shellEscape; j++ {
			t.shellEscape = !unicode.IsSpace(rs[j])
		}
	}
	if eq > 0 && optionKey.MatchString(string(b[:eq])) {
		t.option, t.key, t.value = true, string(b[:eq]), string(b[eq+1:])
	}
	return t, i, nil
}

// quoted reads the quoted text that opens at rs[open], after prefix (a
// key=, or nothing), and returns it unescaped with the index after its
// closing quote, or next -1 for a single quote that is not closed.
//
// *unclosed is the position of a single quote found not closed, or
// len(rs). Every single quote is closed by the same quotes, and a later one
// (which opens a word, so no backslash before it) is read on from the same
// point with the same state; so none opening after *unclosed closes
// either, and 'a 'a 'a … is read in linear time rather than each quote
// reading to the end.
func quoted(rs []rune, open int, closers, prefix string, unclosed *int) (inner []rune, next int, err error) {
	single := isSingleQuote(rs[open])
	if single && open > *unclosed {
		return nil, -1, nil
	}
	for j := open + 1; j < len(rs); j++ {
		r := rs[j]
		if r == '\\' && j+1 < len(rs) && escapable(rs[j+1]) {
			inner = append(inner, rs[j+1])
			j++
			continue
		}
		if !strings.ContainsRune(closers, r) {
			inner = append(inner, r)
			continue
		}
		if j+1 == len(rs) || unicode.IsSpace(rs[j+1]) {
			return inner, j + 1, nil
		}
		if single && !punctUntilSpace(rs, j+1) {
			// Bob's in 'Bob's App': an apostrophe, not the closing quote.
			inner = append(inner, r)
			continue
		}
		// 'My App'. is a quoted name and a full stop, as with double
		// quotes: read as apostrophes, the quotes would end up in the name.
		return nil, 0, afterClosingQuote(wordAt(rs, j+1), prefix, string(inner))
	}
	if single {
		*unclosed = min(*unclosed, open)
		return nil, -1, nil
	}
	return nil, 0, usageErr("a quote is not closed: put the name between two double quotes, like `\"My App\"`; %s", escapeHint)
}

// onlyPunct reports whether s is punctuation other than quotes, as a full
// stop or a comma after a closing quote is.
func onlyPunct(s string) bool {
	return !strings.ContainsFunc(s, notPunct)
}

// punctUntilSpace is onlyPunct of the rest of the word at rs[i:], read only
// up to its first rune that is not: a word of many single quotes is then
// read in linear time, not in time growing with the square of its length.
func punctUntilSpace(rs []rune, i int) bool {
	for ; i < len(rs) && !unicode.IsSpace(rs[i]); i++ {
		if notPunct(rs[i]) {
			return false
		}
	}
	return true
}

func notPunct(r rune) bool {
	_, quote := quoteClosers[r]
	return !unicode.IsPunct(r) || quote || r == '»'
}

// afterClosingQuote refuses text right after a closing quote that ended
// prefix"inner" (or prefix'inner', when only punctuation follows).
// Punctuation alone (`"My App",` or `login='SSO'.`) ends a sentence or the
// name, so the answer gives both as typed; anything else (`"A "B""`) gets
// how to type a quote inside a name.
func afterClosingQuote(after, prefix, inner string) *UsageError {
	if !onlyPunct(after) {
		return usageErr("a closing quote is followed by %s: end the word there; %s", quoteUser(after), escapeHint)
	}
	return usageErr("a closing quote is followed by %s: end the word there, like %s, or type %s if %s is part of the name; %s",
		quoteUser(after), suggest(prefix, inner), suggest(prefix, inner+after), quoteUser(after), escapeHint)
}

var slackMarkup = regexp.MustCompile(`<([^<>]*)>`)

// cleanSlackText undoes what Slack does to a command's text: links and
// mentions arrive as <url|label> or <!channel>, and &, <, > typed by a person
// arrive as HTML entities.
func cleanSlackText(s string) string {
	s = slackMarkup.ReplaceAllStringFunc(s, func(m string) string {
		inner := m[1 : len(m)-1]
		if _, label, ok := strings.Cut(inner, "|"); ok && label != "" {
			return label
		}
		if rest, ok := strings.CutPrefix(inner, "!"); ok {
			return "@" + rest
		}
		if rest, ok := strings.CutPrefix(inner, "mailto:"); ok {
			return rest
		}
		return inner
	})
	return unescapeFormatting(entityUnescaper.Replace(s))
}

// entityUnescaper undoes the only three escapes Slack applies to text.
var entityUnescaper = strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&")

// unescapeFormatting drops the zero-width spaces Escape puts around
// formatting characters, so that a name copied from a run's message (such
// as my_app) reads as typed. A zero-width space anywhere else stays, and
// is refused with the name.
func unescapeFormatting(s string) string { return formattingUnescaper.Replace(s) }

var formattingUnescaper = strings.NewReplacer("\u200b*\u200b", "*", "\u200b_\u200b", "_", "\u200b~\u200b", "~", "\u200b`\u200b", "`")

// quoteUser quotes text a person typed for a message: shortened and escaped.
func quoteUser(s string) string { return "“" + Escape(truncateRunes(s, 40)) + "”" }

func truncateRunes(s string, n int) string {
	rs := []rune(s)
	if len(rs) <= n {
		return s
	}
	return string(rs[:n]) + "…"
}
