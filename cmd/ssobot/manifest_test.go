package main

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

func TestManifestCommand(t *testing.T) {
	tests := []struct {
		name                         string
		args                         []string
		code                         int
		socketMode                   bool
		commandURL, interactivityURL string
		stderr                       string
	}{
		{name: "socket mode", args: nil, socketMode: true},
		{name: "request URLs", args: []string{"--url", "https://bot.example.com/"}, commandURL: "https://bot.example.com/slack/commands", interactivityURL: "https://bot.example.com/slack/interactions"},
		{name: "sub-path", args: []string{"--url=https://example.com/ssobot"}, commandURL: "https://example.com/ssobot/slack/commands", interactivityURL: "https://example.com/ssobot/slack/interactions"},
		{name: "http refused", args: []string{"--url", "http://bot.example.com"}, code: exitUsage, stderr: `--url "http://bot.example.com" must use https: Slack sends requests only over https`},
		{name: "http refused on loopback too", args: []string{"--url", "http://127.0.0.1:8080"}, code: exitUsage, stderr: "must use https"},
		{name: "not a URL", args: []string{"--url", "ssobot.example.com"}, code: exitUsage, stderr: `--url "ssobot.example.com" is not an absolute URL: use e.g. https://ssobot.example.com`},
		// As serve: user info, a query and a fragment are refused, and never
		// printed.
		{name: "user info refused", args: []string{"--url", "https://user:hunter2pw@ssobot.example.com"}, code: exitUsage,
			stderr: `--url must not contain user info ("https://ssobot.example.com" with something@ before the host)`},
		{name: "query refused", args: []string{"--url", "https://ssobot.example.com?x=hunter2pw"}, code: exitUsage,
			stderr: `--url ("https://ssobot.example.com" with a query) must not contain a query or fragment`},
		{name: "fragment refused", args: []string{"--url", "https://ssobot.example.com/#hunter2pw"}, code: exitUsage,
			stderr: `--url ("https://ssobot.example.com/" with a fragment) must not contain a query or fragment`},
		// An endpoint's URL for the base would double its path.
		{name: "commands URL refused", args: []string{"--url", "https://ssobot.example.com/slack/commands"}, code: exitUsage,
			stderr: "--url is the bot's base URL, to which ssobot adds /slack/commands and /slack/interactions: use --url https://ssobot.example.com\n"},
		{name: "interactions URL refused", args: []string{"--url", "https://example.com/ssobot/slack/interactions/"}, code: exitUsage,
			stderr: "use --url https://example.com/ssobot\n"},
		{name: "stray argument", args: []string{"extra"}, code: exitUsage, stderr: "usage: ssobot manifest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), append([]string{"manifest"}, tt.args...), func(string) string { return "" }, nil, &stdout, &stderr)
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tt.code, stderr.String())
			}
			if tt.code != 0 {
				if !strings.Contains(stderr.String(), tt.stderr) {
					t.Errorf("stderr = %q, want %q", stderr.String(), tt.stderr)
				}
				if strings.Contains(stderr.String(), "hunter2pw") || stdout.Len() > 0 {
					t.Errorf("a refused URL printed a secret or a manifest:\nstdout: %s\nstderr: %s", stdout.String(), stderr.String())
				}
				return
			}
			var m struct {
				Features struct {
					SlashCommands []struct {
						Command, URL, Description string
					} `yaml:"slash_commands"`
				}
				OAuthConfig struct {
					Scopes struct{ Bot []string }
				} `yaml:"oauth_config"`
				Settings struct {
					Interactivity struct {
						IsEnabled  bool   `yaml:"is_enabled"`
						RequestURL string `yaml:"request_url"`
					}
					SocketModeEnabled bool `yaml:"socket_mode_enabled"`
				}
			}
			if err := yaml.Unmarshal(stdout.Bytes(), &m); err != nil {
				t.Fatalf("manifest is not YAML: %v\n%s", err, stdout.String())
			}
			if len(m.Features.SlashCommands) != 1 || m.Features.SlashCommands[0].Command != "/sso-setup" || m.Features.SlashCommands[0].Description == "" {
				t.Errorf("slash commands = %+v", m.Features.SlashCommands)
			}
			if got := m.Features.SlashCommands[0].URL; got != tt.commandURL {
				t.Errorf("command url = %q, want %q", got, tt.commandURL)
			}
			for _, s := range []string{"commands", "chat:write", "users:read", "usergroups:read"} {
				if !slices.Contains(m.OAuthConfig.Scopes.Bot, s) {
					t.Errorf("bot scopes %v lack %q", m.OAuthConfig.Scopes.Bot, s)
				}
			}
			if !m.Settings.Interactivity.IsEnabled || m.Settings.Interactivity.RequestURL != tt.interactivityURL {
				t.Errorf("interactivity = %+v, want url %q", m.Settings.Interactivity, tt.interactivityURL)
			}
			if m.Settings.SocketModeEnabled != tt.socketMode {
				t.Errorf("socket_mode_enabled = %v, want %v", m.Settings.SocketModeEnabled, tt.socketMode)
			}
		})
	}
}
