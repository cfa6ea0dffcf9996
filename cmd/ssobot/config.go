package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ssobot/ssobot/workflow"
)

// Config is the configuration of `ssobot serve`, read from the environment.
type Config struct {
	SlackBotToken      workflow.Secret
	SlackSigningSecret workflow.Secret // empty in Socket Mode
	SlackAppToken      workflow.Secret // set: Socket Mode
	SlackAPIURL        string          // "" for Slack's; otherwise ends with "/"

	AuthentikURL   string // public https URL, no trailing slash
	AuthentikToken workflow.Secret

	CloudflareAPIToken  workflow.Secret
	CloudflareAccountID string
	CloudflareBaseURL   string // "" for Cloudflare's

	ApproverUsers     []string
	ApproverGroups    []string
	ApprovalsRequired int
	AllowSelfApproval bool
	ApprovalTTL       time.Duration
	ApprovalReminder  time.Duration // before the deadline; 0: none
	Channels          []string
	Requesters        []string
	// APITimeout bounds one call to Slack, authentik or Cloudflare (0:
	// defaultAPITimeout; see apiTimeout).
	APITimeout time.Duration

	AuthorizationFlow string
	InvalidationFlow  string
	SigningKey        string

	DBPath      string
	Listen      string
	AdminListen string
	AdminHosts  []string // host names the admin API answers to beyond the built-in ones; lower case
	LogFormat   string   // "json" or "text"
	LogLevel    slog.Level

	// Warnings are doubts about values that may yet be right, for serve
	// to log; they never quote a secret.
	Warnings []string
}

// apiTimeout is how long one API call may take.
func (c Config) apiTimeout() time.Duration {
	if c.APITimeout > 0 {
		return c.APITimeout
	}
	return defaultAPITimeout
}

// SocketMode reports whether the bot connects to Slack over Socket Mode
// instead of receiving HTTP requests.
func (c Config) SocketMode() bool { return !c.SlackAppToken.IsZero() }

// ConfigError lists every problem found in the configuration, each naming
// the variable to set.
type ConfigError struct {
	Problems []string
}

func (e *ConfigError) Error() string {
	return "invalid configuration:\n  - " + strings.Join(e.Problems, "\n  - ")
}

// Defaults of the optional variables.
const (
	defaultDB          = "ssobot.db"
	defaultListen      = ":8080"
	defaultAdminListen = "127.0.0.1:9090"
	defaultApprovalTTL = 24 * time.Hour
	defaultAPITimeout  = 30 * time.Second
	// An API call may take at most what one attempt of a step may (the
	// engine's AttemptTimeout), which the stop timing in the README counts.
	maxAPITimeout = 60 * time.Second
)

// envVar documents one variable; the list drives `ssobot serve -h`.
type envVar struct {
	Name     string
	Secret   bool // also accepted as NAME_FILE
	Required string
	Default  string
	Help     string
}

var envVars = []envVar{
	{"SLACK_BOT_TOKEN", true, "yes", "", "bot token, xoxb-..."},
	{"SLACK_SIGNING_SECRET", true, "HTTP mode", "", "signing secret of the Slack app"},
	{"SLACK_APP_TOKEN", true, "no", "", "app-level token xapp-... with connections:write: switches to Socket Mode"},
	{"SLACK_API_URL", false, "no", "https://slack.com/api/", "Slack Web API base URL"},
	{"AUTHENTIK_URL", false, "yes", "", "authentik's public https URL"},
	{"AUTHENTIK_TOKEN", true, "yes", "", "authentik API token (intent API, no expiry)"},
	{"CLOUDFLARE_API_TOKEN", true, "yes", "", `token with "Access: Organizations, Identity Providers, and Groups Write"`},
	{"CLOUDFLARE_ACCOUNT_ID", false, "yes", "", "Cloudflare account ID (32 hex characters)"},
	{"CLOUDFLARE_BASE_URL", false, "no", "https://api.cloudflare.com/client/v4", "Cloudflare API base URL"},
	{"SSOBOT_APPROVERS", false, "yes", "", "comma-separated Slack user IDs (U..., W...) and user group IDs (S...)"},
	{"SSOBOT_APPROVALS_REQUIRED", false, "no", "1", "approvals needed on each gate"},
	{"SSOBOT_ALLOW_SELF_APPROVAL", false, "no", "false", "whether the requester may approve their own run"},
	{"SSOBOT_APPROVAL_TTL", false, "no", "24h", "how long a gate waits for approvals"},
	{"SSOBOT_APPROVAL_REMINDER", false, "no", "a quarter of the TTL", "how long before a gate expires its approvers are reminded in the thread; shorter than the TTL (0: never)"},
	{"SSOBOT_API_TIMEOUT", false, "no", "30s", "how long one call to Slack, authentik or Cloudflare may take, and how long a login method create left unanswered is given before ssobot looks for it (1s to 60s)"},
	{"SSOBOT_CHANNELS", false, "no", "", "channel IDs where runs may be started and resumed (empty: any)"},
	{"SSOBOT_REQUESTERS", false, "no", "", "user IDs allowed to request (empty: anyone)"},
	{"SSOBOT_AUTHORIZATION_FLOW", false, "no", "default-provider-authorization-explicit-consent", "authentik authorization flow slug"},
	{"SSOBOT_INVALIDATION_FLOW", false, "no", "default-provider-invalidation-flow", "authentik invalidation flow slug"},
	{"SSOBOT_SIGNING_KEY", false, "no", "authentik Self-signed Certificate", "authentik certificate name signing the tokens"},
	{"SSOBOT_DB", false, "no", defaultDB, "bbolt database file"},
	{"SSOBOT_LISTEN", false, "no", defaultListen, "address of the Slack endpoints (HTTP mode)"},
	{"SSOBOT_ADMIN_LISTEN", false, "no", defaultAdminListen, "address of /healthz, /readyz, /metrics, /api"},
	{"SSOBOT_ADMIN_HOSTS", false, "no", "", "comma-separated host names the admin API answers to besides IP addresses, localhost and the host of SSOBOT_ADMIN_LISTEN; when unset, a listener beyond loopback also answers single-label and Kubernetes .svc names"},
	{"SSOBOT_LOG_FORMAT", false, "no", "json", "json or text"},
	{"SSOBOT_LOG_LEVEL", false, "no", "info", "debug, info, warn or error"},
}

var (
	userIDPattern    = regexp.MustCompile(`^[UW][A-Z0-9]{2,}$`)
	groupIDPattern   = regexp.MustCompile(`^S[A-Z0-9]{2,}$`)
	channelIDPattern = regexp.MustCompile(`^[CGD][A-Z0-9]{2,}$`)
	accountIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)
)

// LoadConfig reads the configuration through getenv and readFile (for the
// NAME_FILE form of secrets). It reports every problem at once in a
// *ConfigError, never the value of a secret.
func LoadConfig(getenv func(string) string, readFile func(string) ([]byte, error)) (Config, error) {
	l := loader{getenv: getenv, readFile: readFile}
	var c Config

	c.SlackBotToken = l.secret("SLACK_BOT_TOKEN", true, "xoxb-", "a bot token")
	c.SlackAppToken = l.secret("SLACK_APP_TOKEN", false, "xapp-", "an app-level token")
	c.SlackSigningSecret = l.secret("SLACK_SIGNING_SECRET", false, "", "the app's signing secret (Basic Information → Signing Secret)")
	if c.SlackAppToken.IsZero() && c.SlackSigningSecret.IsZero() && !l.failed("SLACK_SIGNING_SECRET") && !l.failed("SLACK_APP_TOKEN") {
		l.problem("SLACK_SIGNING_SECRET is required in HTTP mode: set it (or SLACK_SIGNING_SECRET_FILE) to the app's signing secret, or set SLACK_APP_TOKEN to use Socket Mode")
	}
	if !c.SlackSigningSecret.IsZero() {
		if why := signingSecretShape(c.SlackSigningSecret.Reveal()); why != "" {
			c.Warnings = append(c.Warnings, fmt.Sprintf("SLACK_SIGNING_SECRET does not look like the secrets Slack issues today (32 characters 0-9 and a-f; %s): if Slack's requests are refused as \"without a valid Slack signature\", copy it again from Basic Information → Signing Secret (not the Client Secret or Verification Token)", why))
		}
	}
	if u := l.url(urlSetting{name: "SLACK_API_URL", example: "https://slack.com/api/", userWhy: tokenInHeaders}, false); u != "" {
		c.SlackAPIURL = strings.TrimSuffix(u, "/") + "/" // slack-go joins with the method name
	}

	c.AuthentikURL = l.url(urlSetting{name: "AUTHENTIK_URL", example: "https://auth.example.com",
		httpsWhy: "Cloudflare only talks to identity providers over https", userWhy: tokenInHeaders}, true)
	if p := strings.TrimSuffix(c.AuthentikURL, "/"); strings.HasSuffix(p, "/api/v3") {
		// The API path is ssobot's to add; with it twice every call is a 404.
		l.fail("AUTHENTIK_URL", fmt.Sprintf("AUTHENTIK_URL is authentik's public URL, not its API's: drop the /api/v3 (use %q)", strings.TrimSuffix(p, "/api/v3")))
		c.AuthentikURL = ""
	}
	c.AuthentikToken = l.secret("AUTHENTIK_TOKEN", true, "", "an authentik API token")

	c.CloudflareAPIToken = l.secret("CLOUDFLARE_API_TOKEN", true, "", "a Cloudflare API token")
	if c.CloudflareAccountID = strings.TrimSpace(getenv("CLOUDFLARE_ACCOUNT_ID")); c.CloudflareAccountID == "" {
		l.problem("CLOUDFLARE_ACCOUNT_ID is required: set it to the account ID shown in the Cloudflare dashboard (32 hex characters)")
	} else if !accountIDPattern.MatchString(c.CloudflareAccountID) {
		l.problem(accountIDProblem(c.CloudflareAccountID))
	}
	c.CloudflareBaseURL = l.url(urlSetting{name: "CLOUDFLARE_BASE_URL", example: "https://api.cloudflare.com/client/v4", userWhy: tokenInHeaders}, false)

	l.approvers(&c)
	c.ApprovalsRequired = l.positiveInt("SSOBOT_APPROVALS_REQUIRED", 1)
	if n := len(c.ApproverUsers); len(c.ApproverGroups) == 0 && n > 0 && c.ApprovalsRequired > n {
		// Each approver decides a gate once: no gate could ever open.
		l.problem(fmt.Sprintf("SSOBOT_APPROVALS_REQUIRED is %d but SSOBOT_APPROVERS lists %d user%s and no user group, so no gate could ever be approved: lower it or add approvers", c.ApprovalsRequired, n, plural(n)))
	}
	c.AllowSelfApproval = l.bool("SSOBOT_ALLOW_SELF_APPROVAL", false)
	c.ApprovalTTL = l.duration("SSOBOT_APPROVAL_TTL", defaultApprovalTTL)
	c.ApprovalReminder = l.reminder(c.ApprovalTTL)
	c.APITimeout = l.duration("SSOBOT_API_TIMEOUT", defaultAPITimeout)
	if d := c.APITimeout; (d < time.Second || d > maxAPITimeout) && !l.failed("SSOBOT_API_TIMEOUT") {
		l.fail("SSOBOT_API_TIMEOUT", fmt.Sprintf("SSOBOT_API_TIMEOUT %q must be between 1s and 60s (one attempt of a step is cut at 60s)", strings.TrimSpace(l.getenv("SSOBOT_API_TIMEOUT"))))
	}
	c.Channels = l.ids("SSOBOT_CHANNELS", channelIDPattern, "channel IDs (C..., G...)", channelIDHint)
	c.Requesters = l.ids("SSOBOT_REQUESTERS", userIDPattern, "user IDs (U..., W...)", memberIDHint)

	c.AuthorizationFlow = strings.TrimSpace(getenv("SSOBOT_AUTHORIZATION_FLOW"))
	c.InvalidationFlow = strings.TrimSpace(getenv("SSOBOT_INVALIDATION_FLOW"))
	c.SigningKey = strings.TrimSpace(getenv("SSOBOT_SIGNING_KEY"))
	for _, v := range []struct{ name, val string }{
		{"SSOBOT_AUTHORIZATION_FLOW", c.AuthorizationFlow},
		{"SSOBOT_INVALIDATION_FLOW", c.InvalidationFlow},
	} {
		if v.val != "" && workflow.ValidateSlug(v.val) != nil {
			l.problem(fmt.Sprintf("%s %q is not a flow slug: use lowercase letters, digits and dashes, e.g. default-provider-authorization-explicit-consent", v.name, v.val))
		}
	}

	c.DBPath = l.str("SSOBOT_DB", defaultDB)
	c.Listen = l.addr("SSOBOT_LISTEN", defaultListen)
	c.AdminListen = l.addr("SSOBOT_ADMIN_LISTEN", defaultAdminListen)
	c.AdminHosts = l.adminHosts("SSOBOT_ADMIN_HOSTS")
	switch c.LogFormat = strings.ToLower(l.str("SSOBOT_LOG_FORMAT", "json")); c.LogFormat {
	case "json", "text":
	default:
		l.problem(fmt.Sprintf("SSOBOT_LOG_FORMAT %q is not a log format: set it to json or text", c.LogFormat))
	}
	if v := strings.TrimSpace(getenv("SSOBOT_LOG_LEVEL")); v != "" {
		if err := c.LogLevel.UnmarshalText([]byte(v)); err != nil {
			l.problem(fmt.Sprintf("SSOBOT_LOG_LEVEL %q is not a log level: set it to debug, info, warn or error", v))
		}
	}

	if len(l.problems) > 0 {
		return Config{}, &ConfigError{Problems: l.problems}
	}
	return c, nil
}

type loader struct {
	getenv   func(string) string
	readFile func(string) ([]byte, error)
	problems []string
	bad      map[string]bool
}

func (l *loader) problem(p string) { l.problems = append(l.problems, p) }

func (l *loader) fail(name, p string) {
	if l.bad == nil {
		l.bad = map[string]bool{}
	}
	l.bad[name] = true
	l.problem(p)
}

func (l *loader) failed(name string) bool { return l.bad[name] }

// secret reads NAME or the file named by NAME_FILE. Problems describe the
// value's shape, never the value.
func (l *loader) secret(name string, required bool, prefix, kind string) workflow.Secret {
	v, file := l.getenv(name), strings.TrimSpace(l.getenv(name+"_FILE"))
	switch {
	case v != "" && file != "":
		l.fail(name, fmt.Sprintf("%s and %s_FILE are both set: set only one", name, name))
		return workflow.Secret{}
	case file != "":
		b, err := l.readFile(file)
		if err != nil {
			l.fail(name, fmt.Sprintf("%s_FILE: cannot read %s: %v", name, file, unwrapPathError(err)))
			return workflow.Secret{}
		}
		v = string(b)
		// Files written by editors and `echo` end with one newline.
		v = strings.TrimSuffix(v, "\n")
		v = strings.TrimSuffix(v, "\r")
		if v == "" {
			l.fail(name, fmt.Sprintf("%s_FILE: %s is empty", name, file))
			return workflow.Secret{}
		}
	case v == "":
		if required {
			l.fail(name, fmt.Sprintf("%s is required: set it or %s_FILE (a file holding it)", name, name))
		}
		return workflow.Secret{}
	}
	if scheme, _, ok := strings.Cut(v, " "); ok && strings.EqualFold(scheme, "Bearer") {
		// Copied from an Authorization header or a curl example.
		l.fail(name, fmt.Sprintf("%s starts with \"Bearer \": drop it and set %s to the value after it alone", name, name))
		return workflow.Secret{}
	}
	if strings.ContainsFunc(v, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		l.fail(name, fmt.Sprintf("%s contains spaces or control characters: check for stray quotes or line breaks", name))
		return workflow.Secret{}
	}
	st, isSlack := slackTokenKind(v)
	switch {
	case prefix != "" && !strings.HasPrefix(v, prefix):
		hint := ""
		if isSlack {
			hint = fmt.Sprintf(" (this value looks like %s)", st.whose())
		}
		l.fail(name, fmt.Sprintf("%s must be %s starting with %s%s", name, kind, prefix, hint))
		return workflow.Secret{}
	case prefix == "" && isSlack:
		// Refused before any call: the token would be sent to authentik
		// or Cloudflare, or compared with Slack's signatures in vain.
		l.fail(name, fmt.Sprintf("%s starts with %s, like %s: set %s to %s", name, st.prefix, st.whose(), name, kind))
		return workflow.Secret{}
	}
	return workflow.NewSecret(v)
}

// slackToken is a kind of Slack token, known by its prefix.
type slackToken struct {
	prefix, what string
	variable     string // where ssobot takes it; "" if it uses none
}

// whose says what the token is and where it belongs.
func (t slackToken) whose() string {
	if t.variable == "" {
		return t.what + ", which ssobot does not use"
	}
	return t.what + ", which belongs in " + t.variable
}

// slackTokens are the prefixes of Slack's tokens, separator included:
// authentik's and Cloudflare's tokens and Slack's signing secrets, of
// letters and digits (and Cloudflare's also - and _), do not start so in
// practice.
var slackTokens = []slackToken{
	{"xoxb-", "a Slack bot token", "SLACK_BOT_TOKEN"},
	{"xapp-", "a Slack app-level token", "SLACK_APP_TOKEN"},
	{"xoxp-", "a Slack user token", ""},
	{"xoxe.", "a Slack rotating token", ""},
	{"xoxe-", "a Slack refresh token", ""},
	{"xoxa-", "a Slack workspace token", ""},
	{"xoxr-", "a Slack refresh token", ""},
	{"xoxs-", "a Slack session token", ""},
}

// slackTokenKind reports which kind of Slack token v looks like.
func slackTokenKind(v string) (slackToken, bool) {
	for _, t := range slackTokens {
		if strings.HasPrefix(v, t.prefix) {
			return t, true
		}
	}
	return slackToken{}, false
}

func unwrapPathError(err error) error {
	if u := errors.Unwrap(err); u != nil {
		return u
	}
	return err
}

func (l *loader) str(name, def string) string {
	if v := strings.TrimSpace(l.getenv(name)); v != "" {
		return v
	}
	return def
}

// url reads and checks a URL variable (see checkURL).
func (l *loader) url(set urlSetting, required bool) string {
	v := strings.TrimSpace(l.getenv(set.name))
	if v == "" {
		if required {
			l.fail(set.name, fmt.Sprintf("%s is required: set it to an absolute https URL, e.g. %s", set.name, set.example))
		}
		return ""
	}
	u, problem := checkURL(set, v)
	if problem != "" {
		l.fail(set.name, problem)
		return ""
	}
	return u
}

// urlSetting is a URL ssobot is given, and what it accepts.
type urlSetting struct {
	name, example string
	// httpsWhy says why plain http is refused; when empty, plain http is
	// accepted for a loopback host, for testing.
	httpsWhy string
	// userWhy says why user info is refused.
	userWhy string
}

// Why ssobot's API URLs refuse what they refuse.
const (
	tokenInClear   = "ssobot's token would cross the network in clear (plain http is accepted only for a loopback address, for testing)"
	tokenInHeaders = "ssobot sends its tokens in headers"
)

// checkURL checks v, an absolute URL without user info, query or
// fragment, and https unless set allows plain http. It returns v without
// a trailing slash (SLACK_API_URL's caller adds one back), or a problem
// that quotes v without what may be secret (see shownURL).
func checkURL(set urlSetting, v string) (string, string) {
	u, err := url.Parse(v)
	shown := shownURL(v)
	switch {
	case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		return "", fmt.Sprintf("%s %s is not an absolute URL: use e.g. %s", set.name, shown, set.example)
	case u.User != nil:
		return "", fmt.Sprintf("%s must not contain user info %s: %s", set.name, shown, set.userWhy)
	case u.Scheme != "https" && set.httpsWhy != "":
		return "", fmt.Sprintf("%s %s must use https: %s", set.name, shown, set.httpsWhy)
	case u.Scheme != "https" && !isLoopback(u.Hostname()):
		return "", fmt.Sprintf("%s %s must use https: %s", set.name, shown, tokenInClear)
	case hasQueryOrFragment(u, v):
		return "", fmt.Sprintf("%s %s must not contain a query or fragment: give the URL up to its path", set.name, shown)
	}
	return strings.TrimSuffix(v, "/"), ""
}

// hasQueryOrFragment reports a query or fragment in v, even an empty one
// (https://host/? or https://host/#), which url.URL does not keep.
func hasQueryOrFragment(u *url.URL, v string) bool {
	return u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(v, "#")
}

// shownURL is v quoted for a problem, without what may be secret: user
// info may hold a password, and a query or fragment a token
// (?token=...). What was left out is named instead; a value whose @
// cannot be placed is not shown at all.
func shownURL(v string) string {
	bare, left, user := v, []string(nil), false
	if u, err := url.Parse(v); err == nil && u.Host != "" {
		b := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
		if u.User != nil {
			left, user = append(left, "something@ before the host"), true
		}
		if u.RawQuery != "" || u.ForceQuery {
			left = append(left, "a query")
		}
		if u.Fragment != "" || strings.Contains(v, "#") {
			left = append(left, "a fragment")
		}
		bare = b.String()
	} else if i := strings.IndexAny(v, "?#"); i >= 0 {
		bare, left = v[:i], []string{"a query or fragment"}
	}
	switch {
	// An @ the parser did not take for user info (a password with an
	// unescaped # or ? cuts the host short) may still follow one, and with
	// two @ the parser may have split the password at the first.
	case strings.Contains(bare, "@"), strings.Contains(v, "@") && (!user || strings.Count(v, "@") > 1):
		return "(not shown: it has an @, so it may hold a password)"
	case len(left) == 0:
		return strconv.Quote(v)
	}
	what := left[len(left)-1]
	if n := len(left); n > 1 {
		what = strings.Join(left[:n-1], ", ") + " and " + what
	}
	return fmt.Sprintf("(%q with %s)", bare, what)
}

// isLoopback reports whether host names this machine.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (l *loader) approvers(c *Config) {
	v := strings.TrimSpace(l.getenv("SSOBOT_APPROVERS"))
	if v == "" {
		l.problem("SSOBOT_APPROVERS is required: set it to comma-separated Slack user IDs (U..., W...) and user group IDs (S...) of the people who approve")
		return
	}
	var bad []string
	var lower idCase
	for _, id := range splitList(v) {
		switch {
		case userIDPattern.MatchString(id):
			c.ApproverUsers = append(c.ApproverUsers, id)
		case groupIDPattern.MatchString(id):
			c.ApproverGroups = append(c.ApproverGroups, id)
		case lower.add(id, userIDPattern, groupIDPattern):
		default:
			bad = append(bad, strconv.Quote(id))
		}
	}
	lower.report(l, "SSOBOT_APPROVERS")
	switch {
	case len(bad) > 0:
		l.problem(fmt.Sprintf("SSOBOT_APPROVERS: %s not Slack user IDs (U..., W...) or user group IDs (S...)%s", strings.Join(bad, ", ")+isAre(len(bad)), memberIDHint))
	case len(lower.typed) == 0 && len(c.ApproverUsers)+len(c.ApproverGroups) == 0:
		l.problem("SSOBOT_APPROVERS is empty: list at least one Slack user or user group ID")
	}
}

// Hints for names given where IDs are wanted.
const (
	memberIDHint  = "; names and @handles do not work, copy the ID from the profile's \"Copy member ID\""
	channelIDHint = "; names such as #general do not work: open the channel's details (click its name) and copy the Channel ID at the bottom"
)

// idCase collects IDs typed in lower case (u012ab3cd), which Slack never
// writes, to say which ID to use instead.
type idCase struct{ typed, fixed []string }

// add reports whether id is an ID of one of patterns typed in lower case:
// in upper case it matches, and, unlike a name such as user1 or general,
// it is nine characters or more with a digit after the prefix letter, as
// Slack's IDs are.
func (c *idCase) add(id string, patterns ...*regexp.Regexp) bool {
	up := strings.ToUpper(id)
	if up == id || len(id) < 9 || id[1] < '0' || id[1] > '9' {
		return false
	}
	for _, p := range patterns {
		if p.MatchString(up) {
			c.typed = append(c.typed, strconv.Quote(id))
			c.fixed = append(c.fixed, strconv.Quote(up))
			return true
		}
	}
	return false
}

func (c *idCase) report(l *loader, name string) {
	if len(c.typed) > 0 {
		l.problem(fmt.Sprintf("%s: %s in lower case, and Slack's IDs are upper case: use %s", name, strings.Join(c.typed, ", ")+isAre(len(c.typed)), strings.Join(c.fixed, ", ")))
	}
}

// signingSecretShape says how v differs from the signing secrets Slack
// issues today, 32 lowercase hex characters, or "" if it does not. Slack
// documents no format (its own example has a y and a z), so a difference
// is only warned of: refusing it would stop every start if Slack changed
// its secrets, while a wrong secret shows at the first request anyway.
// It describes, never quotes.
func signingSecretShape(v string) string {
	switch {
	case len(v) == 24:
		return "it has 24 characters, like the app's Verification Token, which ssobot does not use"
	case len(v) != 32:
		return fmt.Sprintf("it has %d characters", len(v))
	case strings.ContainsFunc(v, func(r rune) bool { return !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') }):
		return "it has other characters"
	}
	return ""
}

// accountIDProblem describes a wrong CLOUDFLARE_ACCOUNT_ID without
// quoting it: the API token, from the same dashboard page, is an easy
// value to paste there instead.
func accountIDProblem(v string) string {
	hint := ""
	switch {
	case len(v) == 32 && strings.ToLower(v) == v:
		hint = "; it has characters other than 0-9 and a-f"
	case len(v) == 32:
		hint = "; use lowercase"
	case len(v) == 40:
		hint = "; 40 characters is the length of an API token: were CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_API_TOKEN swapped?"
	}
	return fmt.Sprintf("CLOUDFLARE_ACCOUNT_ID is not an account ID (it has %d characters%s): expected the 32 lowercase hex characters shown in the Cloudflare dashboard", len(v), hint)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func isAre(n int) string {
	if n == 1 {
		return " is"
	}
	return " are"
}

func (l *loader) ids(name string, pattern *regexp.Regexp, what, hint string) []string {
	var out, bad []string
	var lower idCase
	for _, id := range splitList(l.getenv(name)) {
		switch {
		case pattern.MatchString(id):
			out = append(out, id)
		case lower.add(id, pattern):
		default:
			bad = append(bad, strconv.Quote(id))
		}
	}
	lower.report(l, name)
	if len(bad) > 0 {
		l.problem(fmt.Sprintf("%s: %s not %s%s", name, strings.Join(bad, ", ")+isAre(len(bad)), what, hint))
	}
	return out
}

// splitList splits a comma- or space-separated list, dropping empty items
// and duplicates.
func splitList(v string) []string {
	var out []string
	seen := map[string]bool{}
	for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' }) {
		if !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	return out
}

func (l *loader) positiveInt(name string, def int) int {
	v := strings.TrimSpace(l.getenv(name))
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		l.problem(fmt.Sprintf("%s %q must be a whole number of at least 1", name, v))
		return def
	}
	return n
}

func (l *loader) bool(name string, def bool) bool {
	v := strings.TrimSpace(l.getenv(name))
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		l.problem(fmt.Sprintf("%s %q must be true or false", name, v))
		return def
	}
	return b
}

func (l *loader) duration(name string, def time.Duration) time.Duration {
	v := strings.TrimSpace(l.getenv(name))
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		l.fail(name, fmt.Sprintf("%s %q must be a positive duration such as 24h, 90m or 3600s", name, v))
		return def
	}
	return d
}

// reminder reads SSOBOT_APPROVAL_REMINDER: by default a quarter of the
// gate's lifetime, so that a request nobody has looked at is raised again
// while there is still time to decide it.
func (l *loader) reminder(ttl time.Duration) time.Duration {
	const name = "SSOBOT_APPROVAL_REMINDER"
	v := strings.TrimSpace(l.getenv(name))
	if v == "" {
		return ttl / 4
	}
	d, err := time.ParseDuration(v)
	switch {
	case err != nil || d < 0:
		l.problem(fmt.Sprintf("%s %q must be a duration before the deadline such as 2h or 30m, or 0 for no reminder", name, v))
		return 0
	case d >= ttl && !l.failed("SSOBOT_APPROVAL_TTL"):
		l.problem(fmt.Sprintf("%s %q is not shorter than SSOBOT_APPROVAL_TTL (%s), so the reminder would be due as soon as the gate opens: lower it, or set 0 for no reminder", name, v, ttl))
		return 0
	}
	return d
}

func (l *loader) addr(name, def string) string {
	v := strings.TrimSpace(l.getenv(name))
	if v == "" {
		return def
	}
	_, port, err := net.SplitHostPort(v)
	if err == nil {
		var n int
		if n, err = strconv.Atoi(port); err == nil && (n < 0 || n > 65535) {
			err = errors.New("port out of range")
		}
	}
	if err != nil {
		l.problem(fmt.Sprintf("%s %q is not a listen address: use host:port, e.g. :8080 or 127.0.0.1:9090", name, v))
		return def
	}
	return v
}

// hostNamePattern is a DNS name in lower case: dot-separated labels of
// letters, digits, dashes and underscores.
var hostNamePattern = regexp.MustCompile(`^[a-z0-9_-]{1,63}(\.[a-z0-9_-]{1,63})*$`)

// adminHosts reads the host names the admin API answers to beyond the
// built-in ones (see adminHostAllowed). Only names: the check ignores the
// port, and a wildcard would let through names that no one listed. An IP
// address or range is refused, whatever its form: every IP address is
// answered already, and one listed suggests the list limits who may
// connect, which it does not.
func (l *loader) adminHosts(name string) []string {
	var out []string
	for _, v := range splitList(l.getenv(name)) {
		h := strings.ToLower(strings.TrimSuffix(v, "."))
		why, fix, instead := "", "", true // instead: a name to list instead
		switch {
		case adminHostIsRange(h):
			why, instead = "is an IP address range: the admin API checks the host name a request is for, not the address it comes from, and answers every IP address; leave it out", false
		case adminHostIsIP(h):
			why, instead = "is an IP address, which the admin API always answers: leave it out", false
		case strings.Contains(v, "://"):
			why = "is a URL: list the host name alone"
			if u, err := url.Parse(h); err == nil {
				fix = u.Hostname()
			}
		case strings.Contains(v, "/"):
			why = "has a path: list the host name alone"
			fix, _, _ = strings.Cut(h, "/")
		case strings.Contains(v, "*"):
			why = "has a wildcard, which is not supported: list each name"
		case strings.Contains(v, ":"):
			why = "has a port: list the name alone (any port is accepted)"
			fix, _, _ = net.SplitHostPort(h)
		case len(h) > 253 || !hostNamePattern.MatchString(h):
			why = "is not a host name: use letters, digits, dashes and dots"
		}
		if why != "" {
			shown := shownURL(v) // a URL's query may hold a token
			if strings.Contains(v, "@") {
				// As in url: what comes before an @ may be a password.
				shown, fix = "(not shown: it has an @, so it may hold a password)", ""
			}
			example := ""
			if instead {
				if !hostNamePattern.MatchString(fix) {
					fix = "ssobot-admin.internal.example.com"
				}
				example = fmt.Sprintf(", e.g. %s=%s", name, fix)
			}
			l.problem(fmt.Sprintf("%s: %s %s%s", name, shown, why, example))
			continue
		}
		if !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}

// adminHostIsIP reports whether v (lower case) is an IP address in a
// form someone might list: bare, in brackets, with a port, or as a URL's
// host with any path.
func adminHostIsIP(v string) bool {
	if _, rest, ok := strings.Cut(v, "://"); ok {
		v = rest[strings.LastIndex(rest, "@")+1:] // LastIndex -1 keeps it all
	}
	v, _, _ = strings.Cut(v, "/")
	if _, err := netip.ParseAddrPort(v); err == nil {
		return true
	}
	return isIPLiteral(strings.TrimSuffix(strings.TrimPrefix(v, "["), "]"))
}

// adminHostIsRange reports whether v is an IP address range in CIDR
// notation (10.0.0.0/8, fd00::/8).
func adminHostIsRange(v string) bool {
	_, err := netip.ParsePrefix(v)
	return err == nil
}

// isIPLiteral reports whether host is an IP address (without brackets).
func isIPLiteral(host string) bool {
	_, err := netip.ParseAddr(host)
	return err == nil
}
