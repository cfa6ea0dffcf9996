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
		{name: "http refused", args: []string{"--url", "http://bot.example.com"}, code: exitUsage, stderr: "absolute https URL"},
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
