package bot

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
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
		fmt.Sprintf("• `%s new %s [slug=%s] [team=%s] [login=%s]`: start a setup; quote names with spaces or keep them plain: `%[1]s new \"My App\" slug=my-app`", cmd, placeholder("application name"), placeholder("slug"), placeholder("team domain"), placeholder("login method name")),
		fmt.Sprintf("• `%s`: open the form", cmd),
		fmt.Sprintf("• `%s status %s [public]`: show a run (privately unless `public`, in the run's own channel)", cmd, placeholder("run")),
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
	toks, err := tokenize(cleanSlackText(text))
	if err != nil {
		return Command{}, err
	}
	if len(toks) == 0 {
		return Command{Kind: CmdModal}, nil
	}
	sub, args := strings.ToLower(toks[0].text), toks[1:]
	switch CommandKind(sub) {
	case CmdNew:
		return parseNew(args)
	case CmdStatus:
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
	case CmdList:
		if len(args) > 0 {
			return Command{}, usageErr("`list` takes no arguments")
		}
		return Command{Kind: CmdList}, nil
	case CmdCancel, CmdRetry:
		if len(args) == 0 {
			return Command{}, usageErr("`%s` needs a run number, like `%s 42`", sub, sub)
		}
		id, err := parseRunID(args[0].text)
		if err != nil {
			return Command{}, err
		}
		c := Command{Kind: CommandKind(sub), RunID: id}
		if c.Kind == CmdRetry && len(args) > 1 {
			return Command{}, usageErr("`retry` takes only a run number, like `retry 42`")
		}
		words := make([]string, 0, len(args)-1)
		for _, t := range args[1:] {
			words = append(words, t.text)
		}
		c.Reason = strings.TrimSpace(strings.Join(words, " "))
		return c, nil
	case CmdHelp:
		return Command{Kind: CmdHelp}, nil
	}
	return Command{}, usageErr("I don't know the subcommand %s", quoteUser(toks[0].text))
}

func parseNew(args []token) (Command, error) {
	c := Command{Kind: CmdNew}
	seen := map[string]bool{}
	var words []string
	var afterLogin *token // an unquoted login= option, just before
	for _, t := range args {
		if !t.option {
			// A login method name may have spaces: "login=Okta SSO" would
			// otherwise name the application "Grafana SSO" and the login
			// method "Okta", silently. (Slugs and domains have none.)
			if afterLogin != nil {
				return Command{}, usageErr("%s comes right after `login=`: quote a login method name with spaces, like %s, or put the options after the name",
					quoteUser(t.text), code(`login="`+truncateRunes(afterLogin.value+" "+t.text, 60)+`"`))
			}
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

// tokenize splits on white space. A quote opens at the start of a word or
// right after the = of key=value and runs to its closing quote. An unclosed
// single quote is an apostrophe; an unclosed double quote is an error.
func tokenize(s string) ([]token, error) {
	rs := []rune(s)
	var toks []token
	for i := 0; i < len(rs); {
		if unicode.IsSpace(rs[i]) {
			i++
			continue
		}
		var b []rune
		t := token{}
		eq := -1 // index in b of the key's '='
		for i < len(rs) && !unicode.IsSpace(rs[i]) {
			r := rs[i]
			closers, isQuote := quoteClosers[r]
			if isQuote && (len(b) == 0 && !t.quoted || eq >= 0 && len(b) == eq+1) {
				end := indexAny(rs, i+1, closers)
				if end >= 0 {
					b = append(b, rs[i+1:end]...)
					t.quoted = true
					i = end + 1
					continue
				}
				if !strings.ContainsRune("'‘’", r) {
					return nil, usageErr("a quote is not closed: put the name between two double quotes, like `\"My App\"`")
				}
			}
			if r == '=' && eq < 0 && !t.quoted {
				eq = len(b)
			}
			b = append(b, r)
			i++
		}
		t.text = string(b)
		if eq > 0 && optionKey.MatchString(string(b[:eq])) {
			t.option, t.key, t.value = true, string(b[:eq]), string(b[eq+1:])
		}
		toks = append(toks, t)
	}
	return toks, nil
}

func indexAny(rs []rune, from int, set string) int {
	for j := from; j < len(rs); j++ {
		if strings.ContainsRune(set, rs[j]) {
			return j
		}
	}
	return -1
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
