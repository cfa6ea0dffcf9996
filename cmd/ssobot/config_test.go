package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slack-go/slack"
)

const testAccountID = "0123456789abcdef0123456789abcdef"

// validEnv is a complete HTTP-mode configuration.
func validEnv() map[string]string {
	return map[string]string{
		"SLACK_BOT_TOKEN":       "xoxb-1-2-abc",
		"SLACK_SIGNING_SECRET":  "8f742231b10e8888abcd99yyyzzz85a5",
		"AUTHENTIK_URL":         "https://auth.example.com/",
		"AUTHENTIK_TOKEN":       "ak-token",
		"CLOUDFLARE_API_TOKEN":  "cf-token",
		"CLOUDFLARE_ACCOUNT_ID": testAccountID,
		"SSOBOT_APPROVERS":      "U012AB3CD, S0614TZR7",
	}
}

type fakeFS map[string]string

func (f fakeFS) readFile(name string) ([]byte, error) {
	if v, ok := f[name]; ok {
		return []byte(v), nil
	}
	return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
}

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		name  string
		set   map[string]string // "" deletes
		files fakeFS
		check func(t *testing.T, c Config)
		// problems are substrings; each must appear in exactly one problem,
		// and the number of problems must match.
		problems []string
	}{
		{
			name: "defaults",
			check: func(t *testing.T, c Config) {
				want := Config{ApprovalsRequired: 1, ApprovalTTL: 24 * time.Hour, ApprovalReminder: 6 * time.Hour, DBPath: "ssobot.db", Listen: ":8080", AdminListen: "127.0.0.1:9090", LogFormat: "json", LogLevel: slog.LevelInfo}
				got := Config{ApprovalsRequired: c.ApprovalsRequired, ApprovalTTL: c.ApprovalTTL, ApprovalReminder: c.ApprovalReminder, DBPath: c.DBPath, Listen: c.Listen, AdminListen: c.AdminListen, LogFormat: c.LogFormat, LogLevel: c.LogLevel}
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("defaults = %+v, want %+v", got, want)
				}
				if c.AuthentikURL != "https://auth.example.com" {
					t.Errorf("AuthentikURL = %q, want the trailing slash trimmed", c.AuthentikURL)
				}
				if !slices.Equal(c.ApproverUsers, []string{"U012AB3CD"}) || !slices.Equal(c.ApproverGroups, []string{"S0614TZR7"}) {
					t.Errorf("approvers = %v / %v", c.ApproverUsers, c.ApproverGroups)
				}
				if c.SocketMode() || c.SlackAPIURL != "" || c.CloudflareBaseURL != "" || c.AllowSelfApproval || c.AdminHosts != nil {
					t.Errorf("unexpected non-default: %+v", c)
				}
				if c.SlackBotToken.Reveal() != "xoxb-1-2-abc" || c.AuthentikToken.Reveal() != "ak-token" || c.CloudflareAPIToken.Reveal() != "cf-token" {
					t.Error("secrets not carried")
				}
			},
		},
		{
			name: "every option set",
			set: map[string]string{
				"SLACK_API_URL":              "http://127.0.0.1:1234/api",
				"CLOUDFLARE_BASE_URL":        "http://127.0.0.1:5678/client/v4/",
				"SSOBOT_APPROVALS_REQUIRED":  "2",
				"SSOBOT_ALLOW_SELF_APPROVAL": "true",
				"SSOBOT_APPROVAL_TTL":        "90m",
				"SSOBOT_APPROVAL_REMINDER":   "15m",
				"SSOBOT_CHANNELS":            "C0123ABC,G0456DEF",
				"SSOBOT_REQUESTERS":          "U0AAA W0BBB U0AAA",
				"SSOBOT_AUTHORIZATION_FLOW":  "my-flow",
				"SSOBOT_INVALIDATION_FLOW":   "my-invalidation",
				"SSOBOT_SIGNING_KEY":         "My Key",
				"SSOBOT_DB":                  "/data/x.db",
				"SSOBOT_LISTEN":              "127.0.0.1:0",
				"SSOBOT_ADMIN_LISTEN":        "[::1]:9999",
				"SSOBOT_LOG_FORMAT":          "TEXT",
				"SSOBOT_LOG_LEVEL":           "debug",
			},
			check: func(t *testing.T, c Config) {
				if c.SlackAPIURL != "http://127.0.0.1:1234/api/" {
					t.Errorf("SlackAPIURL = %q, want a trailing slash", c.SlackAPIURL)
				}
				if c.CloudflareBaseURL != "http://127.0.0.1:5678/client/v4" {
					t.Errorf("CloudflareBaseURL = %q", c.CloudflareBaseURL)
				}
				if c.ApprovalsRequired != 2 || !c.AllowSelfApproval || c.ApprovalTTL != 90*time.Minute || c.ApprovalReminder != 15*time.Minute {
					t.Errorf("approval settings = %d %v %v %v", c.ApprovalsRequired, c.AllowSelfApproval, c.ApprovalTTL, c.ApprovalReminder)
				}
				if !slices.Equal(c.Channels, []string{"C0123ABC", "G0456DEF"}) || !slices.Equal(c.Requesters, []string{"U0AAA", "W0BBB"}) {
					t.Errorf("allow-lists = %v %v", c.Channels, c.Requesters)
				}
				if c.AuthorizationFlow != "my-flow" || c.InvalidationFlow != "my-invalidation" || c.SigningKey != "My Key" {
					t.Errorf("authentik overrides = %q %q %q", c.AuthorizationFlow, c.InvalidationFlow, c.SigningKey)
				}
				if c.DBPath != "/data/x.db" || c.Listen != "127.0.0.1:0" || c.AdminListen != "[::1]:9999" || c.LogFormat != "text" || c.LogLevel != slog.LevelDebug {
					t.Errorf("server settings = %q %q %q %q %v", c.DBPath, c.Listen, c.AdminListen, c.LogFormat, c.LogLevel)
				}
			},
		},
		{
			name:  "secrets from files, one trailing newline trimmed",
			set:   map[string]string{"SLACK_BOT_TOKEN": "", "SLACK_BOT_TOKEN_FILE": "/run/secrets/bot", "AUTHENTIK_TOKEN": "", "AUTHENTIK_TOKEN_FILE": "/run/secrets/ak", "CLOUDFLARE_API_TOKEN": "", "CLOUDFLARE_API_TOKEN_FILE": "/run/secrets/cf"},
			files: fakeFS{"/run/secrets/bot": "xoxb-from-file\n", "/run/secrets/ak": "ak-file\r\n", "/run/secrets/cf": "cf-file"},
			check: func(t *testing.T, c Config) {
				if c.SlackBotToken.Reveal() != "xoxb-from-file" || c.AuthentikToken.Reveal() != "ak-file" || c.CloudflareAPIToken.Reveal() != "cf-file" {
					t.Errorf("secrets = %q %q %q", c.SlackBotToken.Reveal(), c.AuthentikToken.Reveal(), c.CloudflareAPIToken.Reveal())
				}
			},
		},
		{
			name: "socket mode needs no signing secret",
			set:  map[string]string{"SLACK_SIGNING_SECRET": "", "SLACK_APP_TOKEN": "xapp-1-A-1-abc"},
			check: func(t *testing.T, c Config) {
				if !c.SocketMode() {
					t.Error("SocketMode() = false")
				}
			},
		},
		{
			name: "nothing set lists every required variable",
			set: map[string]string{"SLACK_BOT_TOKEN": "", "SLACK_SIGNING_SECRET": "", "AUTHENTIK_URL": "", "AUTHENTIK_TOKEN": "",
				"CLOUDFLARE_API_TOKEN": "", "CLOUDFLARE_ACCOUNT_ID": "", "SSOBOT_APPROVERS": ""},
			problems: []string{"SLACK_BOT_TOKEN is required", "SLACK_SIGNING_SECRET is required", "AUTHENTIK_URL is required", "AUTHENTIK_TOKEN is required",
				"CLOUDFLARE_API_TOKEN is required", "CLOUDFLARE_ACCOUNT_ID is required", "SSOBOT_APPROVERS is required"},
		},
		{
			name:     "both value and file",
			set:      map[string]string{"AUTHENTIK_TOKEN_FILE": "/x"},
			files:    fakeFS{"/x": "file-secret-value"},
			problems: []string{"AUTHENTIK_TOKEN and AUTHENTIK_TOKEN_FILE are both set"},
		},
		{
			name:     "unreadable and empty secret files",
			set:      map[string]string{"AUTHENTIK_TOKEN": "", "AUTHENTIK_TOKEN_FILE": "/missing", "CLOUDFLARE_API_TOKEN": "", "CLOUDFLARE_API_TOKEN_FILE": "/empty"},
			files:    fakeFS{"/empty": "\n"},
			problems: []string{"AUTHENTIK_TOKEN_FILE: cannot read /missing: file does not exist", "CLOUDFLARE_API_TOKEN_FILE: /empty is empty"},
		},
		{
			name: "wrong token kinds",
			set:  map[string]string{"SLACK_BOT_TOKEN": "xoxp-user-token", "SLACK_APP_TOKEN": "xoxb-bot"},
			problems: []string{"SLACK_BOT_TOKEN must be a bot token starting with xoxb- (this value looks like a Slack user token, which ssobot does not use)",
				"SLACK_APP_TOKEN must be an app-level token starting with xapp- (this value looks like a Slack bot token, which belongs in SLACK_BOT_TOKEN)"},
		},
		{
			name:     "Slack tokens swapped",
			set:      map[string]string{"SLACK_BOT_TOKEN": "xapp-1-A0-1-abc", "SLACK_APP_TOKEN": "xoxb-1-2-abc"},
			problems: []string{"SLACK_BOT_TOKEN must be a bot token starting with xoxb- (this value looks like a Slack app-level token, which belongs in SLACK_APP_TOKEN)", "SLACK_APP_TOKEN must be an app-level token starting with xapp- (this value looks like a Slack bot token, which belongs in SLACK_BOT_TOKEN)"},
		},
		{
			// Refused at load, before the token is sent to the wrong service.
			name: "Slack tokens in other services' variables",
			set: map[string]string{"AUTHENTIK_TOKEN": "xoxb-1-2-secretak", "CLOUDFLARE_API_TOKEN": "", "CLOUDFLARE_API_TOKEN_FILE": "/run/secrets/cf",
				"SLACK_SIGNING_SECRET": "xoxe.xoxp-1-secretsig"},
			files: fakeFS{"/run/secrets/cf": "xapp-1-A0-1-secretcf\n"},
			problems: []string{
				"AUTHENTIK_TOKEN starts with xoxb-, like a Slack bot token, which belongs in SLACK_BOT_TOKEN: set AUTHENTIK_TOKEN to an authentik API token",
				"CLOUDFLARE_API_TOKEN starts with xapp-, like a Slack app-level token, which belongs in SLACK_APP_TOKEN: set CLOUDFLARE_API_TOKEN to a Cloudflare API token",
				"SLACK_SIGNING_SECRET starts with xoxe., like a Slack rotating token, which ssobot does not use: set SLACK_SIGNING_SECRET to the app's signing secret (Basic Information → Signing Secret)",
			},
		},
		{
			// From an Authorization header: said, not "contains spaces".
			name:     "Bearer before a token",
			set:      map[string]string{"AUTHENTIK_TOKEN": "Bearer ak-secret", "CLOUDFLARE_API_TOKEN": "bearer cf-secret", "SLACK_SIGNING_SECRET": "Bearer 0123456789abcdef0123456789abcdef"},
			problems: []string{`AUTHENTIK_TOKEN starts with "Bearer ": drop it and set AUTHENTIK_TOKEN to the value after it alone`, `CLOUDFLARE_API_TOKEN starts with "Bearer "`, `SLACK_SIGNING_SECRET starts with "Bearer "`},
		},
		{
			name:     "a user token for the signing secret",
			set:      map[string]string{"SLACK_SIGNING_SECRET": "xoxp-1-2-3-secret"},
			problems: []string{"SLACK_SIGNING_SECRET starts with xoxp-, like a Slack user token, which ssobot does not use"},
		},
		{
			name:     "stray whitespace in a secret",
			set:      map[string]string{"CLOUDFLARE_API_TOKEN": "abc def"},
			problems: []string{"CLOUDFLARE_API_TOKEN contains spaces"},
		},
		{
			name:     "authentik over http",
			set:      map[string]string{"AUTHENTIK_URL": "http://auth.example.com"},
			problems: []string{"AUTHENTIK_URL \"http://auth.example.com\" must use https"},
		},
		{
			name:     "malformed URLs",
			set:      map[string]string{"AUTHENTIK_URL": "auth.example.com", "SLACK_API_URL": "ftp://x", "CLOUDFLARE_BASE_URL": "https://x/?a=b"},
			problems: []string{"AUTHENTIK_URL \"auth.example.com\" is not an absolute URL", "SLACK_API_URL \"ftp://x\" is not an absolute URL", `CLOUDFLARE_BASE_URL ("https://x/" with a query) must not contain a query or fragment: give the URL up to its path`},
		},
		{
			// A query or fragment may hold a token: never quoted, whatever
			// else is wrong with the URL.
			name: "URLs with a query or fragment never quote it",
			set: map[string]string{
				"AUTHENTIK_URL":       "https://auth.example.com/?token=hunter2pw",
				"SLACK_API_URL":       "https://slack.example.com/api/#hunter2pw",
				"CLOUDFLARE_BASE_URL": "api.cloudflare.com/client/v4?token=hunter2pw",
				"SSOBOT_ADMIN_HOSTS":  "https://admin.example.com/?token=hunter2pw",
			},
			problems: []string{
				`AUTHENTIK_URL ("https://auth.example.com/" with a query) must not contain a query or fragment`,
				`SLACK_API_URL ("https://slack.example.com/api/" with a fragment) must not contain a query or fragment`,
				`CLOUDFLARE_BASE_URL ("api.cloudflare.com/client/v4" with a query or fragment) is not an absolute URL`,
				`SSOBOT_ADMIN_HOSTS: ("https://admin.example.com/" with a query) is a URL: list the host name alone, e.g. SSOBOT_ADMIN_HOSTS=admin.example.com`,
			},
		},
		{
			name: "URLs with a query refused for another reason never quote it",
			set: map[string]string{
				"AUTHENTIK_URL":       "http://auth.example.com/?token=hunter2pw",
				"SLACK_API_URL":       "https://slack.example.com/api/?",
				"CLOUDFLARE_BASE_URL": "https://cf:hunter2pw@api.cloudflare.com/client/v4?token=hunter2pw#hunter2pw",
			},
			problems: []string{
				`AUTHENTIK_URL ("http://auth.example.com/" with a query) must use https`,
				`SLACK_API_URL ("https://slack.example.com/api/" with a query) must not contain a query or fragment`,
				`CLOUDFLARE_BASE_URL must not contain user info ("https://api.cloudflare.com/client/v4" with something@ before the host, a query and a fragment)`,
			},
		},
		{
			name: "URLs with user info never quote it",
			set: map[string]string{
				"AUTHENTIK_URL":       "https://admin:hunter2pw@auth.example.com",
				"SLACK_API_URL":       "https://bot:hunter2pw@slack.example.com/api/",
				"CLOUDFLARE_BASE_URL": "https://cf:hunter2pw@[::1/client/v4", // does not parse
			},
			problems: []string{
				`AUTHENTIK_URL must not contain user info ("https://auth.example.com" with something@ before the host)`,
				`SLACK_API_URL must not contain user info ("https://slack.example.com/api/"`,
				"CLOUDFLARE_BASE_URL (not shown: it has an @, so it may hold a password) is not an absolute URL",
			},
		},
		{
			// Values that parse, but not as URLs with user info.
			name: "other values with a password never quote it",
			set: map[string]string{
				"AUTHENTIK_URL":       "admin:hunter2pw@auth.example.com", // parses with scheme "admin"
				"SLACK_API_URL":       "ftp://bot:hunter2pw@slack.example.com/api/",
				"CLOUDFLARE_BASE_URL": "//cf:hunter2pw@api.cloudflare.com/client/v4",
			},
			problems: []string{
				"AUTHENTIK_URL (not shown: it has an @, so it may hold a password) is not an absolute URL",
				`SLACK_API_URL ("ftp://slack.example.com/api/" with something@ before the host) is not an absolute URL`,
				`CLOUDFLARE_BASE_URL ("//api.cloudflare.com/client/v4" with something@ before the host) is not an absolute URL`,
			},
		},
		{
			name:     "plain http only for loopback, and never for authentik",
			set:      map[string]string{"SLACK_API_URL": "http://slack.internal/api/", "CLOUDFLARE_BASE_URL": "http://localhost:8080/client/v4", "AUTHENTIK_URL": "http://127.0.0.1:9000"},
			problems: []string{`SLACK_API_URL "http://slack.internal/api/" must use https: ssobot's token would cross the network in clear`, `AUTHENTIK_URL "http://127.0.0.1:9000" must use https`},
		},
		{
			name:     "authentik's API URL instead of its public URL",
			set:      map[string]string{"AUTHENTIK_URL": "https://auth.example.com/api/v3/"},
			problems: []string{`AUTHENTIK_URL is authentik's public URL, not its API's: drop the /api/v3 (use "https://auth.example.com")`},
		},
		{
			name:     "each URL's example is its own",
			set:      map[string]string{"SLACK_API_URL": "slack.com/api", "CLOUDFLARE_BASE_URL": "api.cloudflare.com"},
			problems: []string{`SLACK_API_URL "slack.com/api" is not an absolute URL: use e.g. https://slack.com/api/`, `CLOUDFLARE_BASE_URL "api.cloudflare.com" is not an absolute URL: use e.g. https://api.cloudflare.com/client/v4`},
		},
		{
			name:     "malformed account and approvers",
			set:      map[string]string{"CLOUDFLARE_ACCOUNT_ID": "acme", "SSOBOT_APPROVERS": "U012AB3CD,@bob,alice"},
			problems: []string{"CLOUDFLARE_ACCOUNT_ID is not an account ID (it has 4 characters)", `SSOBOT_APPROVERS: "@bob", "alice" are not Slack user IDs`},
		},
		{
			// Lower-case IDs get the ID to use; names (user1, general: no
			// digit after the prefix letter) get how to find the ID.
			name: "IDs in lower case and names",
			set: map[string]string{"SSOBOT_APPROVERS": "U012AB3CD, u012ab3cd, s0614tzr7, user1, @bob",
				"SSOBOT_CHANNELS": "C0123ABCD, #general, c0123abcd, general", "SSOBOT_REQUESTERS": "W0123ABCD w0123abcd alice"},
			problems: []string{
				`SSOBOT_APPROVERS: "u012ab3cd", "s0614tzr7" are in lower case, and Slack's IDs are upper case: use "U012AB3CD", "S0614TZR7"`,
				`SSOBOT_APPROVERS: "user1", "@bob" are not Slack user IDs (U..., W...) or user group IDs (S...); names and @handles do not work, copy the ID from the profile's "Copy member ID"`,
				`SSOBOT_CHANNELS: "c0123abcd" is in lower case, and Slack's IDs are upper case: use "C0123ABCD"`,
				`SSOBOT_CHANNELS: "#general", "general" are not channel IDs (C..., G...); names such as #general do not work: open the channel's details (click its name) and copy the Channel ID at the bottom`,
				`SSOBOT_REQUESTERS: "w0123abcd" is in lower case, and Slack's IDs are upper case: use "W0123ABCD"`,
				`SSOBOT_REQUESTERS: "alice" is not user IDs (U..., W...); names and @handles do not work`,
			},
		},
		{
			name:     "approvers only in lower case",
			set:      map[string]string{"SSOBOT_APPROVERS": "u012ab3cd"},
			problems: []string{`SSOBOT_APPROVERS: "u012ab3cd" is in lower case, and Slack's IDs are upper case: use "U012AB3CD"`},
		},
		{
			// The token pasted as the account ID must not be printed.
			name:     "account ID and API token swapped",
			set:      map[string]string{"CLOUDFLARE_ACCOUNT_ID": "Xk3vQ9sLmN2pR7tY1wZ4aB6cD8eF0gH2iJ5kL7mN", "CLOUDFLARE_API_TOKEN": testAccountID},
			problems: []string{"were CLOUDFLARE_ACCOUNT_ID and CLOUDFLARE_API_TOKEN swapped?"},
		},
		{
			name:     "more approvals required than approvers",
			set:      map[string]string{"SSOBOT_APPROVERS": "U012AB3CD", "SSOBOT_APPROVALS_REQUIRED": "2"},
			problems: []string{"SSOBOT_APPROVALS_REQUIRED is 2 but SSOBOT_APPROVERS lists 1 user and no user group"},
		},
		{
			name: "the reminder follows the TTL",
			set:  map[string]string{"SSOBOT_APPROVAL_TTL": "2h"},
			check: func(t *testing.T, c Config) {
				if c.ApprovalReminder != 30*time.Minute {
					t.Errorf("ApprovalReminder = %v, want a quarter of the 2h TTL", c.ApprovalReminder)
				}
			},
		},
		{
			name: "no reminder",
			set:  map[string]string{"SSOBOT_APPROVAL_REMINDER": "0s"},
			check: func(t *testing.T, c Config) {
				if c.ApprovalReminder != 0 {
					t.Errorf("ApprovalReminder = %v, want 0", c.ApprovalReminder)
				}
			},
		},
		{
			name:     "a reminder due before the gate opens",
			set:      map[string]string{"SSOBOT_APPROVAL_TTL": "2h", "SSOBOT_APPROVAL_REMINDER": "2h"},
			problems: []string{`SSOBOT_APPROVAL_REMINDER "2h" is not shorter than SSOBOT_APPROVAL_TTL (2h0m0s)`},
		},
		{
			name:     "a reminder longer than the TTL",
			set:      map[string]string{"SSOBOT_APPROVAL_REMINDER": "30h"},
			problems: []string{`SSOBOT_APPROVAL_REMINDER "30h" is not shorter than SSOBOT_APPROVAL_TTL (24h0m0s)`},
		},
		{
			name:     "a negative reminder",
			set:      map[string]string{"SSOBOT_APPROVAL_REMINDER": "-1h"},
			problems: []string{`SSOBOT_APPROVAL_REMINDER "-1h" must be a duration before the deadline`},
		},
		{
			name:     "a reminder that is no duration",
			set:      map[string]string{"SSOBOT_APPROVAL_REMINDER": "soon"},
			problems: []string{`SSOBOT_APPROVAL_REMINDER "soon" must be a duration before the deadline`},
		},
		{
			// The reminder is not compared with a TTL that was refused.
			name:     "a reminder with a malformed TTL",
			set:      map[string]string{"SSOBOT_APPROVAL_TTL": "1d", "SSOBOT_APPROVAL_REMINDER": "30h"},
			problems: []string{`SSOBOT_APPROVAL_TTL "1d" must be a positive duration`},
		},
		{
			name: "the API timeout by default",
			check: func(t *testing.T, c Config) {
				if c.APITimeout != 30*time.Second {
					t.Errorf("APITimeout = %v, want 30s", c.APITimeout)
				}
			},
		},
		{
			name: "an API timeout",
			set:  map[string]string{"SSOBOT_API_TIMEOUT": "5s"},
			check: func(t *testing.T, c Config) {
				if c.APITimeout != 5*time.Second || c.apiTimeout() != 5*time.Second {
					t.Errorf("APITimeout = %v, want 5s", c.APITimeout)
				}
			},
		},
		{
			name:     "an API timeout too short",
			set:      map[string]string{"SSOBOT_API_TIMEOUT": "500ms"},
			problems: []string{`SSOBOT_API_TIMEOUT "500ms" must be between 1s and 60s`},
		},
		{
			name:     "an API timeout too long",
			set:      map[string]string{"SSOBOT_API_TIMEOUT": "2m"},
			problems: []string{`SSOBOT_API_TIMEOUT "2m" must be between 1s and 60s`},
		},
		{
			name:     "an API timeout that is no duration",
			set:      map[string]string{"SSOBOT_API_TIMEOUT": "soon"},
			problems: []string{`SSOBOT_API_TIMEOUT "soon" must be a positive duration`},
		},
		{
			name: "admin hosts: lower case, one trailing dot and duplicates dropped",
			set:  map[string]string{"SSOBOT_ADMIN_HOSTS": "Ssobot-Admin.Internal.Example.com., metrics.corp ssobot.monitoring, metrics.corp"},
			check: func(t *testing.T, c Config) {
				if want := []string{"ssobot-admin.internal.example.com", "metrics.corp", "ssobot.monitoring"}; !slices.Equal(c.AdminHosts, want) {
					t.Errorf("AdminHosts = %q, want %q", c.AdminHosts, want)
				}
			},
		},
		{
			// The README's way to turn the service names off.
			name: "admin hosts: localhost alone",
			set:  map[string]string{"SSOBOT_ADMIN_HOSTS": "localhost"},
			check: func(t *testing.T, c Config) {
				if want := []string{"localhost"}; !slices.Equal(c.AdminHosts, want) {
					t.Errorf("AdminHosts = %q, want %q", c.AdminHosts, want)
				}
			},
		},
		{
			name: "admin hosts that are not host names",
			set:  map[string]string{"SSOBOT_ADMIN_HOSTS": "ok.example.com, http://admin.example.com, admin.example.com/api, admin.example.com:9090, *.example.com, admin!, https://u:hunter2pw@admin.example.com"},
			problems: []string{
				`SSOBOT_ADMIN_HOSTS: "http://admin.example.com" is a URL: list the host name alone, e.g. SSOBOT_ADMIN_HOSTS=admin.example.com`,
				`SSOBOT_ADMIN_HOSTS: "admin.example.com/api" has a path: list the host name alone, e.g. SSOBOT_ADMIN_HOSTS=admin.example.com`,
				`SSOBOT_ADMIN_HOSTS: "admin.example.com:9090" has a port: list the name alone (any port is accepted), e.g. SSOBOT_ADMIN_HOSTS=admin.example.com`,
				`SSOBOT_ADMIN_HOSTS: "*.example.com" has a wildcard, which is not supported: list each name, e.g. SSOBOT_ADMIN_HOSTS=ssobot-admin.internal.example.com`,
				`SSOBOT_ADMIN_HOSTS: "admin!" is not a host name`,
				`SSOBOT_ADMIN_HOSTS: (not shown: it has an @, so it may hold a password) is a URL: list the host name alone, e.g. SSOBOT_ADMIN_HOSTS=ssobot-admin.internal.example.com`,
			},
		},
		{
			// Every IP address is answered: listing one does nothing, and
			// suggests the list limits who may connect.
			name: "admin hosts that are IP addresses, in any form",
			set:  map[string]string{"SSOBOT_ADMIN_HOSTS": "ok.example.com, 10.0.0.5, 127.0.0.1:9090, ::1, [::1], [::1]:9090, [FD00::12]:9090, http://10.0.0.5:9090/metrics, https://u:hunter2pw@[::1]:9090, 10.0.0.5/metrics, 10.0.0.0/8, fd00::/8"},
			problems: []string{
				`SSOBOT_ADMIN_HOSTS: "10.0.0.5" is an IP address, which the admin API always answers: leave it out`,
				`SSOBOT_ADMIN_HOSTS: "127.0.0.1:9090" is an IP address, which the admin API always answers: leave it out`,
				`SSOBOT_ADMIN_HOSTS: "::1" is an IP address, which the admin API always answers: leave it out`,
				`SSOBOT_ADMIN_HOSTS: "[::1]" is an IP address, which the admin API always answers: leave it out`,
				`SSOBOT_ADMIN_HOSTS: "[::1]:9090" is an IP address, which the admin API always answers: leave it out`,
				`SSOBOT_ADMIN_HOSTS: "[FD00::12]:9090" is an IP address, which the admin API always answers: leave it out`,
				`SSOBOT_ADMIN_HOSTS: "http://10.0.0.5:9090/metrics" is an IP address, which the admin API always answers: leave it out`,
				`SSOBOT_ADMIN_HOSTS: (not shown: it has an @, so it may hold a password) is an IP address, which the admin API always answers: leave it out`,
				`SSOBOT_ADMIN_HOSTS: "10.0.0.5/metrics" is an IP address, which the admin API always answers: leave it out`,
				`SSOBOT_ADMIN_HOSTS: "10.0.0.0/8" is an IP address range: the admin API checks the host name a request is for, not the address it comes from, and answers every IP address; leave it out`,
				`SSOBOT_ADMIN_HOSTS: "fd00::/8" is an IP address range: the admin API checks the host name a request is for, not the address it comes from, and answers every IP address; leave it out`,
			},
		},
		{
			name:     "approvers only commas",
			set:      map[string]string{"SSOBOT_APPROVERS": " , ,"},
			problems: []string{"SSOBOT_APPROVERS is empty"},
		},
		{
			name: "malformed numbers, durations, addresses, log settings",
			set: map[string]string{"SSOBOT_APPROVALS_REQUIRED": "0", "SSOBOT_ALLOW_SELF_APPROVAL": "maybe", "SSOBOT_APPROVAL_TTL": "1d",
				"SSOBOT_LISTEN": "8080", "SSOBOT_ADMIN_LISTEN": "127.0.0.1:99999", "SSOBOT_LOG_FORMAT": "xml", "SSOBOT_LOG_LEVEL": "loud",
				"SSOBOT_CHANNELS": "general", "SSOBOT_REQUESTERS": "S0614TZR7", "SSOBOT_AUTHORIZATION_FLOW": "Has Spaces"},
			problems: []string{"SSOBOT_APPROVALS_REQUIRED \"0\" must be a whole number of at least 1", "SSOBOT_ALLOW_SELF_APPROVAL \"maybe\" must be true or false",
				"SSOBOT_APPROVAL_TTL \"1d\" must be a positive duration", "SSOBOT_LISTEN \"8080\" is not a listen address", "SSOBOT_ADMIN_LISTEN \"127.0.0.1:99999\" is not a listen address",
				"SSOBOT_LOG_FORMAT \"xml\"", "SSOBOT_LOG_LEVEL \"loud\"", `SSOBOT_CHANNELS: "general" is not channel IDs`, `SSOBOT_REQUESTERS: "S0614TZR7" is not user IDs`,
				"SSOBOT_AUTHORIZATION_FLOW \"Has Spaces\" is not a flow slug"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := validEnv()
			maps.Copy(env, tt.set)
			c, err := LoadConfig(func(k string) string { return env[k] }, tt.files.readFile)
			if len(tt.problems) == 0 {
				if err != nil {
					t.Fatalf("LoadConfig: %v", err)
				}
				if tt.check != nil {
					tt.check(t, c)
				}
				return
			}
			var ce *ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("LoadConfig error = %v, want a *ConfigError", err)
			}
			if len(ce.Problems) != len(tt.problems) {
				t.Errorf("got %d problems, want %d:\n%s", len(ce.Problems), len(tt.problems), err)
			}
			for _, want := range tt.problems {
				n := 0
				for _, p := range ce.Problems {
					if strings.Contains(p, want) {
						n++
					}
				}
				if n != 1 {
					t.Errorf("problem %q found %d times in:\n%s", want, n, err)
				}
			}
			// No problem may quote a secret, nor the account ID (a
			// swapped token may be in it).
			if v := env["CLOUDFLARE_ACCOUNT_ID"]; len(v) > 4 && strings.Contains(err.Error(), v) {
				t.Errorf("error quotes CLOUDFLARE_ACCOUNT_ID: %s", err)
			}
			if strings.Contains(err.Error(), "hunter2pw") {
				t.Errorf("error reveals a password from a URL: %s", err)
			}
			for k, v := range env {
				if isSecretVar(k) && v != "" && strings.Contains(err.Error(), v) {
					t.Errorf("error reveals the value of %s: %s", k, err)
				}
			}
			for _, v := range tt.files {
				if s := strings.TrimSpace(v); s != "" && strings.Contains(err.Error(), s) {
					t.Errorf("error reveals a secret file's content: %s", err)
				}
			}
		})
	}
}

// TestSigningSecretShape: a signing secret unlike Slack's of today is
// warned of, not refused (Slack documents no format, and its own example
// is not hex), and the warning does not quote it.
func TestSigningSecretShape(t *testing.T) {
	tests := []struct {
		name, secret, warning string // warning "": none
	}{
		{"hex", "0123456789abcdef0123456789abcdef", ""},
		{"Slack's documented example", "8f742231b10e8888abcd99yyyzzz85a5", "(32 characters 0-9 and a-f; it has other characters)"},
		{"upper case", "0123456789ABCDEF0123456789ABCDEF", "it has other characters"},
		{"verification token", "Xk3vQ9sLmN2pR7tY1wZ4aB6c", "it has 24 characters, like the app's Verification Token, which ssobot does not use"},
		{"too long", strings.Repeat("ab", 20), "it has 40 characters"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := validEnv()
			env["SLACK_SIGNING_SECRET"] = tt.secret
			c, err := LoadConfig(func(k string) string { return env[k] }, nil)
			if err != nil {
				t.Fatalf("LoadConfig: %v", err)
			}
			if c.SlackSigningSecret.Reveal() != tt.secret {
				t.Error("the signing secret was not kept")
			}
			if tt.warning == "" {
				if len(c.Warnings) > 0 {
					t.Errorf("warnings %q; want none", c.Warnings)
				}
				return
			}
			if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "SLACK_SIGNING_SECRET does not look like the secrets Slack issues today") || !strings.Contains(c.Warnings[0], tt.warning) {
				t.Fatalf("warnings %q; want one with %q", c.Warnings, tt.warning)
			}
			if strings.Contains(c.Warnings[0], tt.secret) {
				t.Errorf("the warning quotes the secret: %s", c.Warnings[0])
			}
		})
	}
	t.Run("socket mode has none to check", func(t *testing.T) {
		env := validEnv()
		env["SLACK_SIGNING_SECRET"], env["SLACK_APP_TOKEN"] = "", "xapp-1-A0-1-abc"
		if c, err := LoadConfig(func(k string) string { return env[k] }, nil); err != nil || len(c.Warnings) > 0 {
			t.Errorf("LoadConfig = warnings %q, %v; want none", c.Warnings, err)
		}
	})
}

func isSecretVar(name string) bool {
	for _, v := range envVars {
		if v.Name == name {
			return v.Secret
		}
	}
	return false
}

// TestAdminHostsIPAdvice: an IP address in SSOBOT_ADMIN_HOSTS is not met
// with a name to list instead: there is none to list.
func TestAdminHostsIPAdvice(t *testing.T) {
	for _, v := range []string{"127.0.0.1:9090", "[::1]:9090", "10.0.0.0/8", "http://10.0.0.5:9090"} {
		env := validEnv()
		env["SSOBOT_ADMIN_HOSTS"] = v
		_, err := LoadConfig(func(k string) string { return env[k] }, nil)
		var ce *ConfigError
		if !errors.As(err, &ce) || len(ce.Problems) != 1 {
			t.Errorf("%q: %v, want one problem", v, err)
			continue
		}
		if p := ce.Problems[0]; !strings.HasSuffix(p, "leave it out") || strings.Contains(p, "e.g.") {
			t.Errorf("%q: %q, want it to say to leave the address out and nothing else", v, p)
		}
	}
}

// TestApprovalSettingsReachTheEngine: the approval settings read from the
// environment are the ones the engine runs with, the reminder included.
func TestApprovalSettingsReachTheEngine(t *testing.T) {
	tests := []struct {
		name string
		set  map[string]string
		want [2]time.Duration // TTL, reminder
	}{
		{"defaults", nil, [2]time.Duration{24 * time.Hour, 6 * time.Hour}},
		{"set", map[string]string{"SSOBOT_APPROVAL_TTL": "8h", "SSOBOT_APPROVAL_REMINDER": "90m"}, [2]time.Duration{8 * time.Hour, 90 * time.Minute}},
		{"reminders off", map[string]string{"SSOBOT_APPROVAL_REMINDER": "0"}, [2]time.Duration{24 * time.Hour, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := validEnv()
			env["SSOBOT_DB"] = filepath.Join(t.TempDir(), "ssobot.db")
			env["SSOBOT_APPROVALS_REQUIRED"], env["SSOBOT_ALLOW_SELF_APPROVAL"] = "2", "true"
			maps.Copy(env, tt.set)
			a := newTestApp(t, env)
			ec := a.engineConfig(appOptions{})
			if got := [2]time.Duration{ec.ApprovalTTL, ec.ApprovalReminder}; got != tt.want {
				t.Errorf("engine TTL and reminder %v; want %v", got, tt.want)
			}
			if ec.ApprovalsRequired != 2 || !ec.AllowSelfApproval {
				t.Errorf("engine approvals required %d, self-approval %v; want 2, true", ec.ApprovalsRequired, ec.AllowSelfApproval)
			}
		})
	}
}

// newTestApp wires the app from env, as serve does, and closes it when the
// test ends.
func newTestApp(t *testing.T, env map[string]string) *app {
	t.Helper()
	cfg, err := LoadConfig(func(k string) string { return env[k] }, fakeFS{}.readFile)
	if err != nil {
		t.Fatal(err)
	}
	a, err := newApp(cfg, appOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// The wired Slack client does not decode the copy of the message Slack
// echoes after a post or an update (bot.WithoutEchoes): an echo slack-go
// cannot decode fails the call without it.
func TestSlackClientSkipsEchoedMessages(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true,"channel":"C1","ts":"1.2","text":"hi","message":{"blocks":[{"type":"section","text":1}]}}`)
	}))
	defer srv.Close()
	env := validEnv()
	env["SSOBOT_DB"] = filepath.Join(t.TempDir(), "ssobot.db")
	env["SLACK_API_URL"] = srv.URL + "/api/"
	a := newTestApp(t, env)
	if _, ts, err := a.slack.PostMessageContext(t.Context(), "C1", slack.MsgOptionText("hi", false)); err != nil || ts != "1.2" {
		t.Errorf("chat.postMessage = %q, %v; want 1.2 and no error", ts, err)
	}
	if _, ts, _, err := a.slack.UpdateMessageContext(t.Context(), "C1", "1.2", slack.MsgOptionText("hi", false)); err != nil || ts != "1.2" {
		t.Errorf("chat.update = %q, %v; want 1.2 and no error", ts, err)
	}
}

// TestServeRefusesTokensForTheWrongService: a Slack token in another
// service's variable stops serve before any call, so the token is sent
// nowhere, and is not printed.
func TestServeRefusesTokensForTheWrongService(t *testing.T) {
	var calls atomic.Int32
	count := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1) })
	plain, tls := httptest.NewServer(count), httptest.NewTLSServer(count)
	defer plain.Close()
	defer tls.Close()
	const token = "xoxb-1-2-secretwrongplace"
	tests := []struct{ variable, problem string }{
		{"AUTHENTIK_TOKEN", "AUTHENTIK_TOKEN starts with xoxb-, like a Slack bot token, which belongs in SLACK_BOT_TOKEN"},
		{"CLOUDFLARE_API_TOKEN", "CLOUDFLARE_API_TOKEN starts with xoxb-"},
		{"SLACK_SIGNING_SECRET", "SLACK_SIGNING_SECRET starts with xoxb-"},
	}
	for _, tt := range tests {
		t.Run(tt.variable, func(t *testing.T) {
			env := validEnv()
			env["AUTHENTIK_URL"], env["SLACK_API_URL"], env["CLOUDFLARE_BASE_URL"] = tls.URL, plain.URL, plain.URL
			env["SSOBOT_DB"] = filepath.Join(t.TempDir(), "ssobot.db")
			env[tt.variable] = token
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"serve"}, func(k string) string { return env[k] }, fakeFS{}.readFile, &stdout, &stderr)
			if code != exitUsage || !strings.Contains(stderr.String(), tt.problem) {
				t.Errorf("exit %d, stderr:\n%s\nwant %d and %q", code, stderr.String(), exitUsage, tt.problem)
			}
			if strings.Contains(stdout.String()+stderr.String(), token) {
				t.Errorf("the token was printed:\n%s%s", stdout.String(), stderr.String())
			}
			if n := calls.Load(); n != 0 {
				t.Errorf("%d requests were made", n)
			}
		})
	}
}

// TestServeLogsConfigWarnings: serve logs a doubtful signing secret at
// start-up, before anything else can fail, without the secret.
func TestServeLogsConfigWarnings(t *testing.T) {
	// Every service is down: serve stops at its start-up checks.
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) })
	down, downTLS := httptest.NewServer(h), httptest.NewTLSServer(h)
	defer down.Close()
	defer downTLS.Close()
	env := validEnv()
	const secret = "8f742231b10e8888abcd99yyyzzz85a5" // Slack's example, not hex
	env["SLACK_SIGNING_SECRET"] = secret
	env["SLACK_API_URL"], env["CLOUDFLARE_BASE_URL"], env["AUTHENTIK_URL"] = down.URL, down.URL, downTLS.URL
	env["SSOBOT_DB"], env["SSOBOT_LOG_FORMAT"] = filepath.Join(t.TempDir(), "ssobot.db"), "text"
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	run(ctx, []string{"serve"}, func(k string) string { return env[k] }, fakeFS{}.readFile, &stdout, &stderr)
	first, _, _ := strings.Cut(stderr.String(), "\n")
	if !strings.Contains(stderr.String(), `level=WARN msg="check the configuration" warning="SLACK_SIGNING_SECRET does not look like the secrets Slack issues today`) {
		t.Errorf("no warning logged:\n%s", stderr.String())
	}
	if !strings.Contains(first, `msg=starting`) {
		t.Errorf("the first line is not the start:\n%s", stderr.String())
	}
	if strings.Contains(stderr.String(), secret) {
		t.Errorf("the signing secret was logged:\n%s", stderr.String())
	}
}

// TestChecksTimeout: the start-up checks get 30 s, or two API timeouts
// when SSOBOT_API_TIMEOUT is raised above its default.
func TestChecksTimeout(t *testing.T) {
	for _, tt := range []struct{ api, want time.Duration }{
		{0, 30 * time.Second},
		{5 * time.Second, 30 * time.Second},
		{30 * time.Second, 30 * time.Second},
		{31 * time.Second, 62 * time.Second},
		{60 * time.Second, 120 * time.Second},
	} {
		if got := checksTimeout(Config{APITimeout: tt.api}); got != tt.want {
			t.Errorf("checksTimeout(APITimeout %v) = %v, want %v", tt.api, got, tt.want)
		}
	}
}
