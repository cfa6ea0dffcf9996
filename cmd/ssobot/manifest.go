package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/ssobot/ssobot/bot"
)

// Paths of the Slack endpoints in HTTP mode.
const (
	slackCommandsPath     = "/slack/commands"
	slackInteractionsPath = "/slack/interactions"
)

// slashCommand is the command the bot registers.
const slashCommand = bot.DefaultCommand

// botScopes are the bot token scopes the code uses: the slash command,
// posting and editing run messages (chat.postMessage, chat.update,
// chat.postEphemeral), checking approvers and naming people in a public
// status (users.info) and expanding approver user groups
// (usergroups.users.list).
var botScopes = []string{"commands", "chat:write", "users:read", "usergroups:read"}

// The manifest's structs keep the field order Slack's documentation uses.
type manifest struct {
	DisplayInformation struct {
		Name            string `yaml:"name"`
		Description     string `yaml:"description"`
		LongDescription string `yaml:"long_description,omitempty"`
		BackgroundColor string `yaml:"background_color"`
	} `yaml:"display_information"`
	Features struct {
		BotUser struct {
			DisplayName  string `yaml:"display_name"`
			AlwaysOnline bool   `yaml:"always_online"`
		} `yaml:"bot_user"`
		SlashCommands []manifestCommand `yaml:"slash_commands"`
	} `yaml:"features"`
	OAuthConfig struct {
		Scopes struct {
			Bot []string `yaml:"bot"`
		} `yaml:"scopes"`
	} `yaml:"oauth_config"`
	Settings struct {
		Interactivity struct {
			IsEnabled  bool   `yaml:"is_enabled"`
			RequestURL string `yaml:"request_url,omitempty"`
		} `yaml:"interactivity"`
		OrgDeployEnabled     bool `yaml:"org_deploy_enabled"`
		SocketModeEnabled    bool `yaml:"socket_mode_enabled"`
		TokenRotationEnabled bool `yaml:"token_rotation_enabled"`
	} `yaml:"settings"`
}

type manifestCommand struct {
	Command      string `yaml:"command"`
	URL          string `yaml:"url,omitempty"`
	Description  string `yaml:"description"`
	UsageHint    string `yaml:"usage_hint"`
	ShouldEscape bool   `yaml:"should_escape"`
}

// Manifest returns the Slack app manifest as YAML. Without a base URL the
// app uses Socket Mode; with one, Slack sends requests to its endpoints.
func Manifest(baseURL string) ([]byte, error) {
	var m manifest
	m.DisplayInformation.Name = "ssobot"
	m.DisplayInformation.Description = "Sets up authentik single sign-on for Cloudflare Zero Trust Access, with approvals."
	m.DisplayInformation.LongDescription = "Type /sso-setup new <Application> to create an authentik OAuth2/OpenID provider and application and the matching OpenID Connect login method in Cloudflare Zero Trust Access. Each phase waits for approvals clicked in Slack; every step is recorded and shown in the run's thread."
	m.DisplayInformation.BackgroundColor = "#1f2d3d"
	m.Features.BotUser.DisplayName = "ssobot"
	m.Features.BotUser.AlwaysOnline = true
	cmd := manifestCommand{
		Command:     slashCommand,
		Description: "Set up SSO for an application (authentik + Cloudflare Access)",
		UsageHint:   "new <application name> [slug=…] [team=…] [login=…] | status <run> | list | cancel <run> | retry <run> | help",
	}
	m.OAuthConfig.Scopes.Bot = botScopes
	m.Settings.Interactivity.IsEnabled = true
	if baseURL == "" {
		m.Settings.SocketModeEnabled = true
	} else {
		// serve's check: no user info (the manifest is pasted into the
		// app's settings, which its collaborators read), no query and
		// https, whatever the host.
		base, problem := checkURL(urlSetting{name: "--url", example: "https://ssobot.example.com",
			httpsWhy: "Slack sends requests only over https", userWhy: "Slack signs its requests, and the app's settings would show the password"}, strings.TrimSpace(baseURL))
		if problem != "" {
			return nil, errors.New(problem)
		}
		for _, p := range []string{slackCommandsPath, slackInteractionsPath} {
			// An endpoint's URL given for the base: refused like
			// AUTHENTIK_URL's /api/v3, rather than guessed at.
			if rest, ok := strings.CutSuffix(base, p); ok {
				return nil, fmt.Errorf("--url is the bot's base URL, to which ssobot adds %s and %s: use --url %s", slackCommandsPath, slackInteractionsPath, rest)
			}
		}
		cmd.URL = base + slackCommandsPath
		m.Settings.Interactivity.RequestURL = base + slackInteractionsPath
	}
	m.Features.SlashCommands = []manifestCommand{cmd}

	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	return b.Bytes(), nil
}

// manifestCmd implements `ssobot manifest [--url https://bot.example.com]`.
func manifestCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ssobot manifest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	helpTo(fs, args, stdout)
	base := fs.String("url", "", "public https URL of the bot: Slack sends commands and clicks there (default: Socket Mode)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: ssobot manifest [--url https://bot.example.com]\n\nPrints the Slack app manifest: paste it at https://api.slack.com/apps > Create New App > From a manifest.\n\n")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	m, err := Manifest(*base)
	if err != nil {
		fmt.Fprintf(stderr, "ssobot manifest: %v\n", err)
		return exitUsage
	}
	stdout.Write(m)
	return exitOK
}
