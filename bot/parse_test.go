package bot

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestParseCommand(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    Command
		wantErr string // substring of the usage error
	}{
		{name: "empty opens the form", text: "", want: Command{Kind: CmdModal}},
		{name: "blank opens the form", text: "  \t ", want: Command{Kind: CmdModal}},
		{name: "new plain", text: "new Grafana", want: Command{Kind: CmdNew, Name: "Grafana"}},
		{name: "new words", text: "new  My   Grafana ", want: Command{Kind: CmdNew, Name: "My Grafana"}},
		{name: "subcommand case", text: "NEW Grafana", want: Command{Kind: CmdNew, Name: "Grafana"}},
		{name: "new quoted", text: `new "My  App"`, want: Command{Kind: CmdNew, Name: "My  App"}},
		{name: "new smart quotes", text: "new “My App” slug=my-app", want: Command{Kind: CmdNew, Name: "My App", Slug: "my-app"}},
		{name: "new reversed smart quotes", text: "new ”My App” team=acme", want: Command{Kind: CmdNew, Name: "My App", Team: "acme"}},
		{name: "new single quotes", text: "new 'My App'", want: Command{Kind: CmdNew, Name: "My App"}},
		{name: "apostrophe in name", text: "new Bob's Grafana", want: Command{Kind: CmdNew, Name: "Bob's Grafana"}},
		{name: "leading unclosed apostrophe is literal", text: "new 'Til Tuesday", want: Command{Kind: CmdNew, Name: "'Til Tuesday"}},
		{name: "options before and after the name", text: "new slug=graf team=company.cloudflareaccess.com Grafana Prod login=SSO",
			want: Command{Kind: CmdNew, Name: "Grafana Prod", Slug: "graf", Team: "company.cloudflareaccess.com", Login: "SSO"}},
		{name: "a word after an unquoted login value", text: "new Grafana login=Okta SSO",
			wantErr: "“SSO” comes right after `login=`: quote a login method name with spaces, like `login=\"Okta SSO\"`, or put the options after the name"},
		// A backslash before a space, as in a shell: refused (the backslash
		// would stay in the name), with what a shell would have meant.
		{name: "shell-escaped space in login", text: `new Grafana login=Okta\ SSO`,
			wantErr: "“login=Okta\\” ends in a backslash before a space: quote a name with spaces instead, like `login=\"Okta SSO\"`; inside double quotes"},
		{name: "shell-escaped spaces in login", text: `new Grafana login=Okta\ Single\ Sign\ On team=acme`, wantErr: "like `login=\"Okta Single Sign On\"`;"},
		// Every plain word up to the next option: quoting only the first
		// would leave the rest in the application's name, silently.
		{name: "words after an unquoted login value", text: "new Grafana login=Okta SSO Prod team=acme",
			wantErr: "“SSO” comes right after `login=`: quote a login method name with spaces, like `login=\"Okta SSO Prod\"`, or put"},
		{name: "words after login, some shell-escaped", text: `new Grafana login=Okta Single\ Sign On`, wantErr: "like `login=\"Okta Single Sign On\"`, or put"},
		{name: "shell-escaped space after a login word", text: `new Grafana login=Okta SSO\ Prod`,
			wantErr: "“SSO\\” comes right after `login=`: quote a login method name with spaces, like `login=\"Okta SSO Prod\"`, or put"},
		{name: "shell-escaped space in a name", text: `new My\ App slug=my-app`,
			wantErr: "“My\\” ends in a backslash before a space: quote a name with spaces instead, like `\"My App\"`; inside double quotes, type `\\\"` for a quote and `\\\\` for a backslash"},
		{name: "shell-escaped space in an option", text: `new Grafana team=acme\ corp`, wantErr: "like `team=\"acme corp\"`;"},
		{name: "escaped backslash before a space is a backslash", text: `new My\\ App`, want: Command{Kind: CmdNew, Name: `My\ App`}},
		{name: "escaped backslash before a space in login", text: `new Grafana login=Okta\\ SSO`, wantErr: "like `login=\"Okta\\\\ SSO\"`, or put"},
		{name: "a backslash before a space inside quotes stays", text: `new "My\ App"`, want: Command{Kind: CmdNew, Name: `My\ App`}},
		{name: "a trailing backslash before trailing space stays", text: "new App\\  ", want: Command{Kind: CmdNew, Name: `App\`}},
		{name: "a word after a quoted login value", text: `new login="Okta SSO" Grafana`, want: Command{Kind: CmdNew, Name: "Grafana", Login: "Okta SSO"}},
		{name: "the form's example typed", text: "new Grafana login=authentik (Grafana)", wantErr: "“(Grafana)” comes right after `login=`"},
		{name: "a word after slug", text: "new Grafana slug=graf Prod", want: Command{Kind: CmdNew, Name: "Grafana Prod", Slug: "graf"}},
		{name: "option keys any case", text: "new Grafana SLUG=graf", want: Command{Kind: CmdNew, Name: "Grafana", Slug: "graf"}},
		{name: "quoted option value", text: `new Grafana login="Company SSO"`, want: Command{Kind: CmdNew, Name: "Grafana", Login: "Company SSO"}},
		{name: "smart quoted option value", text: "new Grafana login=“Company SSO”", want: Command{Kind: CmdNew, Name: "Grafana", Login: "Company SSO"}},
		{name: "quoted key=value is part of the name", text: `new "a=b" app`, want: Command{Kind: CmdNew, Name: "a=b app"}},
		{name: "equals without key is a word", text: "new =x Grafana", want: Command{Kind: CmdNew, Name: "=x Grafana"}},
		{name: "a name copied from a run's message", text: "new my\u200b_\u200bapp login=\u200b*\u200bSSO\u200b*\u200b", want: Command{Kind: CmdNew, Name: "my_app", Login: "*SSO*"}},
		{name: "a lone zero-width space stays (the engine refuses it)", text: "new Graf\u200bana", want: Command{Kind: CmdNew, Name: "Graf\u200bana"}},
		{name: "slack escapes are undone", text: "new Tom &amp; Jerry &lt;3", want: Command{Kind: CmdNew, Name: "Tom & Jerry <3"}},
		{name: "slack link markup", text: "new Grafana team=<http://company.cloudflareaccess.com|company.cloudflareaccess.com>",
			want: Command{Kind: CmdNew, Name: "Grafana", Team: "company.cloudflareaccess.com"}},
		{name: "bare link", text: "new Grafana team=<https://company.cloudflareaccess.com>", want: Command{Kind: CmdNew, Name: "Grafana", Team: "https://company.cloudflareaccess.com"}},
		{name: "channel mention becomes inert text", text: "new <!channel> app", want: Command{Kind: CmdNew, Name: "@channel app"}},
		{name: "unknown option", text: "new Grafana color=blue", wantErr: "unknown option `color=`; the options are `slug=`, `team=` and `login=`"},
		{name: "duplicate option", text: "new Grafana slug=a slug=b", wantErr: "`slug=` is given twice"},
		{name: "duplicate option any case", text: "new Grafana slug=a Slug=b", wantErr: "given twice"},
		{name: "empty option", text: "new Grafana slug=", wantErr: "`slug=` needs a value"},
		{name: "no name", text: "new slug=x", wantErr: "give the application name"},
		{name: "new alone", text: "new", wantErr: "give the application name"},
		{name: "unclosed double quote", text: `new "My App`, wantErr: "a quote is not closed"},
		{name: "unclosed smart quote", text: "new “My App", wantErr: "a quote is not closed"},
		// Quotes and backslashes in names: what goes to authentik and
		// Cloudflare is what was meant, or the command is refused.
		{name: "escaped quotes inside quotes", text: `new "A \"B\""`, want: Command{Kind: CmdNew, Name: `A "B"`}},
		{name: "escaped backslash inside quotes", text: `new "C:\\share"`, want: Command{Kind: CmdNew, Name: `C:\share`}},
		{name: "a name ending in a backslash", text: `new "App\\"`, want: Command{Kind: CmdNew, Name: `App\`}},
		{name: "other backslashes stay", text: `new "C:\temp" DOMAIN\apps`, want: Command{Kind: CmdNew, Name: `C:\temp DOMAIN\apps`}},
		{name: "a trailing backslash stays", text: `new App\`, want: Command{Kind: CmdNew, Name: `App\`}},
		{name: "escaped quotes outside quotes", text: `new A \"B\"`, want: Command{Kind: CmdNew, Name: `A "B"`}},
		{name: "escaped smart quotes", text: "new “A \\”B\\”” login=“x \\“y\\””", want: Command{Kind: CmdNew, Name: "A ”B”", Login: "x “y”"}},
		{name: "escaped quotes in an option", text: `new Grafana login="Okta \"SSO\""`, want: Command{Kind: CmdNew, Name: "Grafana", Login: `Okta "SSO"`}},
		{name: "the review's name as Slack sends it", text: `new "My &lt;App&gt; &amp; \"Co\""`, want: Command{Kind: CmdNew, Name: `My <App> & "Co"`}},
		{name: "apostrophe inside single quotes", text: "new 'Bob's App' slug=bob", want: Command{Kind: CmdNew, Name: "Bob's App", Slug: "bob"}},
		{name: "escaped apostrophe", text: `new Bob\'s`, want: Command{Kind: CmdNew, Name: "Bob's"}},
		{name: "single quotes inside double quotes", text: `new "'Til Tuesday"`, want: Command{Kind: CmdNew, Name: "'Til Tuesday"}},
		{name: "text after a closing quote", text: `new "A "B""`, wantErr: "a closing quote is followed by “B\"\"”: end the word there; inside double quotes, type `\\\"` for a quote and `\\\\` for a backslash"},
		{name: "a comma after a closing quote", text: `new "My App",`,
			wantErr: "a closing quote is followed by “,”: end the word there, like `\"My App\"`, or type `\"My App,\"` if “,” is part of the name; inside double quotes"},
		{name: "a full stop after a closing smart quote", text: "new Grafana login=“Okta SSO”.",
			wantErr: "a closing quote is followed by “.”: end the word there, like `login=\"Okta SSO\"`, or type `login=\"Okta SSO.\"` if “.” is part of the name;"},
		{name: "punctuation after a closing quote, as Slack sends it", text: `new "Tom &amp; Jerry")`,
			wantErr: "like `\"Tom &amp; Jerry\"`, or type `\"Tom &amp; Jerry)\"` if “)” is part of the name;"},
		{name: "a letter after a closing quote", text: `new "My App"s`, wantErr: "a closing quote is followed by “s”"},
		// Single quotes too: "'My App'." is a quoted name and a full stop,
		// not a name with quotes in it; inside a word they are apostrophes.
		{name: "a full stop after a closing single quote", text: "new 'My App'.",
			wantErr: "a closing quote is followed by “.”: end the word there, like `\"My App\"`, or type `\"My App.\"` if “.” is part of the name;"},
		{name: "a comma after a closing smart single quote", text: "new ‘My App’, slug=my-app", wantErr: "like `\"My App\"`, or type `\"My App,\"` if “,” is part of the name;"},
		{name: "a full stop after a single-quoted login", text: "new Grafana login='Okta SSO'.",
			wantErr: "like `login=\"Okta SSO\"`, or type `login=\"Okta SSO.\"` if “.” is part of the name;"},
		{name: "punctuation after an apostrophe inside single quotes", text: "new 'Bob's App'!", wantErr: "like `\"Bob\\'s App\"`, or type"},
		{name: "an apostrophe and punctuation inside a word", text: "new O'Reilly's. Books", want: Command{Kind: CmdNew, Name: "O'Reilly's. Books"}},
		{name: "an apostrophe before a letter inside single quotes", text: "new 'Bob's' App", want: Command{Kind: CmdNew, Name: "Bob's App"}},
		{name: "an escaped backslash before a quote", text: `new "A \\"B"`, wantErr: "a closing quote is followed by “B\"”"},
		{name: "a quote inside a word", text: `new 12" Pizza`, wantErr: "“12\"” has a quote inside a word: put the name between double quotes; inside double quotes"},
		{name: "a smart quote inside a word", text: "new 12” Pizza", wantErr: "has a quote inside a word"},
		{name: "a quote inside an option", text: `new Grafana slug=a"b`, wantErr: "has a quote inside a word"},
		{name: "the last quote escaped", text: `new "A \"B\"`, wantErr: "a quote is not closed"},
		{name: "refusals point to the form", text: `new "A "B""`, wantErr: "or use the form (the command with nothing after it)"},
		{name: "status", text: "status 42", want: Command{Kind: CmdStatus, RunID: 42}},
		{name: "status hash", text: "status #42", want: Command{Kind: CmdStatus, RunID: 42}},
		{name: "status public", text: "status 42 public", want: Command{Kind: CmdStatus, RunID: 42, Public: true}},
		{name: "status public first", text: "status PUBLIC 7", want: Command{Kind: CmdStatus, RunID: 7, Public: true}},
		{name: "status no id", text: "status", wantErr: "takes one run number"},
		{name: "status two ids", text: "status 1 2", wantErr: "takes one run number"},
		{name: "status bad id", text: "status abc", wantErr: "is not a run number"},
		{name: "status zero", text: "status 0", wantErr: "is not a run number"},
		{name: "status negative", text: "status -3", wantErr: "is not a run number"},
		{name: "status public twice", text: "status 1 public public", wantErr: "`public` is given twice"},
		{name: "list", text: "list", want: Command{Kind: CmdList}},
		{name: "list extra", text: "list all", wantErr: "`list` takes no arguments"},
		{name: "cancel", text: "cancel 3", want: Command{Kind: CmdCancel, RunID: 3}},
		{name: "cancel reason", text: "cancel 3 wrong   name", want: Command{Kind: CmdCancel, RunID: 3, Reason: "wrong name"}},
		{name: "cancel no id", text: "cancel", wantErr: "needs a run number"},
		{name: "cancel bad id", text: "cancel abc because", wantErr: "“abc” is not a run number"},
		{name: "cancel run number is a plain word", text: `cancel "42"`, wantErr: "“\"42\"” is not a run number"},
		// A cancel's reason is prose, kept as typed: the quoting rules for
		// names do not apply to it.
		{name: "reason with a quoted word and a full stop", text: `cancel 42 wrong app, should be "Grafana".`,
			want: Command{Kind: CmdCancel, RunID: 42, Reason: `wrong app, should be "Grafana".`}},
		{name: "reason with a quote in parentheses", text: `cancel 42 wrong team (should be "acme")`,
			want: Command{Kind: CmdCancel, RunID: 42, Reason: `wrong team (should be "acme")`}},
		{name: "reason with an inch mark", text: `cancel 42 the 27" monitor team`, want: Command{Kind: CmdCancel, RunID: 42, Reason: `the 27" monitor team`}},
		{name: "reason with smart quotes and an apostrophe", text: "cancel 42 it’s the “wrong” one", want: Command{Kind: CmdCancel, RunID: 42, Reason: "it’s the “wrong” one"}},
		{name: "reason with an unclosed quote", text: `cancel 42 "oops`, want: Command{Kind: CmdCancel, RunID: 42, Reason: `"oops`}},
		{name: "reason backslashes kept", text: `cancel 42 C:\temp \"x\" a\ b`, want: Command{Kind: CmdCancel, RunID: 42, Reason: `C:\temp \"x\" a\ b`}},
		{name: "reason wholly quoted loses the quotes", text: `cancel 42 "wrong app"`, want: Command{Kind: CmdCancel, RunID: 42, Reason: "wrong app"}},
		{name: "reason wholly smart quoted", text: "cancel 42  “ wrong app ” ", want: Command{Kind: CmdCancel, RunID: 42, Reason: "wrong app"}},
		{name: "reason with two quoted words keeps them", text: `cancel 42 "Grafana" is wrong, use "Loki"`,
			want: Command{Kind: CmdCancel, RunID: 42, Reason: `"Grafana" is wrong, use "Loki"`}},
		{name: "reason in single quotes keeps them", text: "cancel 42 'wrong app'", want: Command{Kind: CmdCancel, RunID: 42, Reason: "'wrong app'"}},
		{name: "reason with single quotes and a full stop", text: "cancel 42 not ‘My App’.", want: Command{Kind: CmdCancel, RunID: 42, Reason: "not ‘My App’."}},
		{name: "reason of empty quotes", text: `cancel 42 ""`, want: Command{Kind: CmdCancel, RunID: 42}},
		{name: "reason white space", text: "cancel #42\t wrong\u00a0 app\t", want: Command{Kind: CmdCancel, RunID: 42, Reason: "wrong app"}},
		{name: "reason: slack escapes undone once", text: "cancel 42 a &amp;lt; b &lt;c&gt; &amp; d", want: Command{Kind: CmdCancel, RunID: 42, Reason: "a &lt; b <c> & d"}},
		{name: "reason: slack markup", text: "cancel 42 see <https://wiki.example/x|the doc>, <!here>", want: Command{Kind: CmdCancel, RunID: 42, Reason: "see the doc, @here"}},
		{name: "quoted subcommand, reason as typed", text: `"cancel" 42 x"y`, want: Command{Kind: CmdCancel, RunID: 42, Reason: `x"y`}},
		{name: "retry", text: "retry #9", want: Command{Kind: CmdRetry, RunID: 9}},
		{name: "retry extra", text: "retry 9 now", wantErr: "takes only a run number"},
		{name: "retry extra with a quote", text: `retry 9 "now`, wantErr: "`retry` takes only a run number"},
		{name: "retry trailing space", text: "retry 9 ", want: Command{Kind: CmdRetry, RunID: 9}},
		{name: "list extra with a quote", text: `list "all`, wantErr: "`list` takes no arguments"},
		{name: "help", text: "help", want: Command{Kind: CmdHelp}},
		{name: "help extra ignored", text: "Help me", want: Command{Kind: CmdHelp}},
		{name: "help extra with quotes ignored", text: `help with "quotes`, want: Command{Kind: CmdHelp}},
		{name: "unknown subcommand, not its arguments", text: `deploy "prod`, wantErr: "I don't know the subcommand “deploy”"},
		{name: "unknown subcommand", text: "deploy prod", wantErr: "I don't know the subcommand “deploy”"},
		{name: "unknown subcommand escaped", text: "<!here>", wantErr: "“@here”"},
		{name: "unknown subcommand with markup is escaped", text: "*bold*", wantErr: "“\u200b*\u200bbold\u200b*\u200b”"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCommand(tt.text)
			if tt.wantErr != "" {
				var ue *UsageError
				if !errors.As(err, &ue) {
					t.Fatalf("ParseCommand(%q) = %+v, %v; want a UsageError containing %q", tt.text, got, err, tt.wantErr)
				}
				if !strings.Contains(ue.Problem, tt.wantErr) {
					t.Fatalf("ParseCommand(%q) error %q; want it to contain %q", tt.text, ue.Problem, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCommand(%q): %v", tt.text, err)
			}
			if got != tt.want {
				t.Fatalf("ParseCommand(%q) = %+v; want %+v", tt.text, got, tt.want)
			}
		})
	}
}

// TestHintsParseBack: what a refusal says to type, typed in place of the
// word or words refused (as Slack sends it: entities and all), means what
// was meant.
func TestHintsParseBack(t *testing.T) {
	tests := []struct {
		text  string
		fixed string // the command with the hint for %s
		want  Command
		or    bool // the second hint (`or type`), not the first (`like`)
	}{
		{`new Grafana login=Okta\ SSO`, "new Grafana %s", Command{Kind: CmdNew, Name: "Grafana", Login: "Okta SSO"}, false},
		{`new Grafana login=Okta\ Single\ Sign\ On team=acme`, "new Grafana %s team=acme", Command{Kind: CmdNew, Name: "Grafana", Login: "Okta Single Sign On", Team: "acme"}, false},
		{`new Grafana login=Okta SSO\ Prod`, "new Grafana %s", Command{Kind: CmdNew, Name: "Grafana", Login: "Okta SSO Prod"}, false},
		{`new Grafana login=Okta\ SSO Prod`, "new Grafana %s", Command{Kind: CmdNew, Name: "Grafana", Login: "Okta SSO Prod"}, false},
		{"new Grafana login=Okta SSO", "new Grafana %s", Command{Kind: CmdNew, Name: "Grafana", Login: "Okta SSO"}, false},
		{"new Grafana login=Okta SSO Prod", "new Grafana %s", Command{Kind: CmdNew, Name: "Grafana", Login: "Okta SSO Prod"}, false},
		{`new Grafana login=Okta Single\ Sign On slug=graf`, "new Grafana %s slug=graf", Command{Kind: CmdNew, Name: "Grafana", Login: "Okta Single Sign On", Slug: "graf"}, false},
		{`new Grafana login=Tom\ &amp;\ Jerry's\ \"SSO\"`, "new Grafana %s", Command{Kind: CmdNew, Name: "Grafana", Login: `Tom & Jerry's "SSO"`}, false},
		{`new My\ App slug=my-app`, "new %s slug=my-app", Command{Kind: CmdNew, Name: "My App", Slug: "my-app"}, false},
		{`new Big\ &lt;Co&gt;\ App`, "new %s", Command{Kind: CmdNew, Name: "Big <Co> App"}, false},
		{`new "My App", slug=my-app`, "new %s slug=my-app", Command{Kind: CmdNew, Name: "My App", Slug: "my-app"}, false},
		{`new "My App", slug=my-app`, "new %s slug=my-app", Command{Kind: CmdNew, Name: "My App,", Slug: "my-app"}, true},
		{"new Grafana login=“Okta SSO”.", "new Grafana %s", Command{Kind: CmdNew, Name: "Grafana", Login: "Okta SSO"}, false},
		{"new Grafana login=“Okta SSO”.", "new Grafana %s", Command{Kind: CmdNew, Name: "Grafana", Login: "Okta SSO."}, true},
		{`new "Tom &amp; \"J\" &lt;3")`, "new %s", Command{Kind: CmdNew, Name: `Tom & "J" <3`}, false},
		{`new "Tom &amp; \"J\" &lt;3")`, "new %s", Command{Kind: CmdNew, Name: `Tom & "J" <3)`}, true},
		{"new 'My App'.", "new %s", Command{Kind: CmdNew, Name: "My App"}, false},
		{"new ‘My App’, slug=my-app", "new %s slug=my-app", Command{Kind: CmdNew, Name: "My App,", Slug: "my-app"}, true},
		{"new Grafana login='Okta SSO'.", "new Grafana %s", Command{Kind: CmdNew, Name: "Grafana", Login: "Okta SSO"}, false},
		{"new Grafana login='Okta SSO'.", "new Grafana %s", Command{Kind: CmdNew, Name: "Grafana", Login: "Okta SSO."}, true},
		{"new 'Bob's App'!", "new %s", Command{Kind: CmdNew, Name: "Bob's App"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			_, err := ParseCommand(tt.text)
			if err == nil {
				t.Fatalf("ParseCommand(%q) accepted; want a refusal with a hint", tt.text)
			}
			marker := "like `"
			if tt.or {
				marker = "or type `"
			}
			_, hint, ok := strings.Cut(err.Error(), marker)
			hint, _, ok2 := strings.Cut(hint, "`")
			if !ok || !ok2 {
				t.Fatalf("ParseCommand(%q) error %q has no hint", tt.text, err)
			}
			fixed := fmt.Sprintf(tt.fixed, hint)
			got, err := ParseCommand(fixed)
			if err != nil || got != tt.want {
				t.Fatalf("the hint typed: ParseCommand(%q) = %+v, %v; want %+v", fixed, got, err, tt.want)
			}
		})
	}
}

// TestQuoteArgRoundTrip: what the demo types, and the hints suggest, is
// read back as the name it was made from once Slack has escaped &, < and >.
func TestQuoteArgRoundTrip(t *testing.T) {
	tests := []struct{ name, quoted string }{
		{"Grafana", "Grafana"},
		{"My App", `"My App"`},
		{`My <App> & "Co"`, `"My <App> & \"Co\""`},
		{`A \B\""`, `"A \\B\\\"\""`},
		{`"`, `"\""`},
		{`\`, `"\\"`},
		{`\"`, `"\\\""`},
		{`C:\temp`, `"C:\\temp"`},
		{"Bob's", `"Bob\'s"`},
		{"'Til", `"\'Til"`},
		{"“smart” ‘quotes’ „low“ «guillemets»", `"\“smart\” \‘quotes\’ \„low\“ \«guillemets\»"`},
		{"a=b", `"a=b"`},
		{"slug=x", `"slug=x"`},
		{"&amp; &lt;b&gt;", `"&amp; &lt;b&gt;"`},
		{"<!channel> <@U1>", `"<!channel> <@U1>"`},
		{"日本語", "日本語"},
		{"tab\tand  two spaces", "\"tab\tand  two spaces\""},
		{"new", "new"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := QuoteArg(tt.name); got != tt.quoted {
				t.Errorf("QuoteArg(%q) = %s; want %s", tt.name, got, tt.quoted)
			}
			typed := "new " + QuoteArg(tt.name) + " login=" + QuoteArg(tt.name)
			texts := []string{escapeEntities(typed)} // as Slack delivers it
			if !strings.ContainsAny(tt.name, "&<>") {
				texts = append(texts, typed) // the same, with nothing to escape
			}
			for _, text := range texts {
				c, err := ParseCommand(text)
				if err != nil || c.Name != tt.name || c.Login != tt.name {
					t.Errorf("ParseCommand(%q) = name %q, login %q, %v; want %q for both", text, c.Name, c.Login, err, tt.name)
				}
			}
		})
	}
}

// FuzzQuoteArg: any name the parser can carry at all (trimmed, without the
// zero-width spaces the engine refuses) survives QuoteArg and Slack's
// escaping.
func FuzzQuoteArg(f *testing.F) {
	for _, s := range []string{"Grafana", `My <App> & "Co"`, `A \"B\""`, `\`, "'Til", "“x”", "a=b", "&amp;"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if !utf8.ValidString(name) || name == "" || name != strings.TrimSpace(name) || strings.Contains(name, "\u200b") {
			return
		}
		text := escapeEntities("new " + QuoteArg(name))
		c, err := ParseCommand(text)
		if err != nil || c.Name != name {
			t.Fatalf("ParseCommand(%q) = %q, %v; want %q", text, c.Name, err, name)
		}
	})
}

func TestUsageNamesTheCommand(t *testing.T) {
	u := Usage("/sso")
	for _, want := range []string{"`/sso new &lt;application name&gt;", "`/sso status &lt;run&gt; [public]`", "`/sso list`", "`/sso cancel", "`/sso retry", "`/sso help`"} {
		if !strings.Contains(u, want) {
			t.Errorf("Usage lacks %q:\n%s", want, u)
		}
	}
	if !strings.Contains(Usage(""), "/sso-setup new") {
		t.Error("Usage without a command name should default to /sso-setup")
	}
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"", "new Grafana", `new "My App" slug=my-app team=acme login=SSO`, "new “A” slug=“b”",
		"status 1 public", "cancel 2 because", "retry #3", "list", "help", "new 'x", `new "x`, "new a=b=c", "new <!channel>", "new &amp;&lt;&gt;",
		`new "A \"B\""`, `new "A "B""`, `new 12" x`, `new "C:\\x\"`, "new 'Bob's App'", `new \"x\"`,
		`cancel 42 wrong app, should be "Grafana".`, `cancel 42 "wrong app"`, `help "x`} {
		f.Add(s)
	}
	for _, s := range []string{"new Graf\xffana", "new 日本語", "new !!!", "cancel 1 \xc3\x28", "new <!channel> <@U1|x> <https://e.example|e>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		// Whatever follows a cancel's run number is its reason, on one line.
		if utf8.ValidString(text) {
			c, err := ParseCommand("cancel 7 " + text)
			if err != nil || c.Kind != CmdCancel || c.RunID != 7 || c.Reason != strings.Join(strings.Fields(c.Reason), " ") {
				t.Fatalf("ParseCommand(%q) = %+v, %v; want a cancel of run 7 with a one-line reason", "cancel 7 "+text, c, err)
			}
		}
		c, err := ParseCommand(text)
		if err == nil && !utf8.ValidString(text) {
			t.Fatalf("ParseCommand accepted invalid UTF-8 %q", text)
		}
		if !utf8.ValidString(c.Name + c.Slug + c.Team + c.Login + c.Reason) {
			t.Fatalf("ParseCommand(%q) gave invalid UTF-8 %+v", text, c)
		}
		again, err2 := ParseCommand(text)
		if c != again || (err == nil) != (err2 == nil) {
			t.Fatalf("ParseCommand is not deterministic on %q", text)
		}
		if err != nil {
			var ue *UsageError
			if !errors.As(err, &ue) || ue.Problem == "" {
				t.Fatalf("ParseCommand(%q) error %v is not a UsageError with a problem", text, err)
			}
			return
		}
		switch c.Kind {
		case CmdNew:
			if c.Name == "" || c.Name != strings.TrimSpace(c.Name) {
				t.Fatalf("ParseCommand(%q) gave name %q", text, c.Name)
			}
			for _, v := range []string{c.Slug, c.Team, c.Login} {
				if v != strings.TrimSpace(v) {
					t.Fatalf("ParseCommand(%q) gave an untrimmed option %q", text, v)
				}
			}
		case CmdStatus, CmdCancel, CmdRetry:
			if c.RunID <= 0 {
				t.Fatalf("ParseCommand(%q) gave run %d", text, c.RunID)
			}
		case CmdModal:
			if strings.TrimFunc(cleanSlackText(text), unicode.IsSpace) != "" {
				t.Fatalf("ParseCommand(%q) opened the form for non-empty text", text)
			}
		case CmdList, CmdHelp:
		default:
			t.Fatalf("ParseCommand(%q) gave kind %q", text, c.Kind)
		}
	})
}

// BenchmarkParseCommandQuotes: single quotes, each a possible closing
// quote, are read in linear time: a word of thousands of them took 32 ms
// at 4,000 when each candidate scanned the rest of the word, and words that
// each open one ('a 'a …) took 2.25 s at 64 KiB when each read to the end.
func BenchmarkParseCommandQuotes(b *testing.B) {
	for _, shape := range []string{"'", "'a "} {
		for _, n := range []int{1000, 4000} {
			text := "new " + strings.Repeat(shape, n)
			b.Run(strconv.Quote(shape)+"×"+strconv.Itoa(n), func(b *testing.B) {
				for b.Loop() {
					_, _ = ParseCommand(text)
				}
			})
		}
	}
}
