//go:build !ssobot_server

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ssobot/ssobot/bot"
	"github.com/ssobot/ssobot/store"
	"github.com/ssobot/ssobot/workflow"
	"github.com/ssobot/ssobot/workflow/contracttest"
)

func TestDemo(t *testing.T) {
	db := filepath.Join(t.TempDir(), "demo.db")
	env := map[string]string{"SSOBOT_DB": db}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"demo"}, func(k string) string { return env[k] }, nil, &stdout, &stderr)
	out := stdout.String()
	if code != exitOK {
		t.Fatalf("demo exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr.String())
	}
	want := []string{
		"alice in #platform: /sso-setup new Grafana",
		"bob in #platform: clicks [Approve]",
		"Run #1: succeeded",
		"Created in authentik",
		`application "Grafana", slug grafana`,
		"redirect URI    https://acme.cloudflareaccess.com/cdn-cgi/access/callback (strict)",
		"Created in Cloudflare Zero Trust Access",
		"certificate URL https://127.0.0.1:",
		"no token or secret appears in the output, the logs or the database",
		"Grafana is set up for single sign-on",
	}
	// Each step as the bot shows it in Slack, and by name in the summary.
	for _, s := range workflow.Plan {
		want = append(want, bot.StepLabel(s.Name), "  "+string(s.Name)+" ")
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("demo output lacks %q", w)
		}
	}
	// With the contracts found, the demo says they matched, and only that.
	if _, err := contracttest.Dir(); err == nil {
		if !strings.Contains(out, "Every request and response matched the OpenAPI contracts of authentik (") || strings.Contains(out, "were not checked") {
			t.Errorf("demo output does not say, or says more than, that the contracts matched:\n%s", out)
		}
	}
	if n := strings.Count(out, "bob in #platform: clicks [Approve]"); n != 2 {
		t.Errorf("bob clicked Approve %d times, want once per gate", n)
	}
	if !strings.Contains(out, "alice in #platform: clicks [Approve]") || !strings.Contains(out, "replied to alice only: ⛔ You requested run #1, so another approver must decide") {
		t.Error("the requester's own click was not shown refused")
	}
	if strings.Contains(out, "\x1b[") {
		t.Error("colours written to a non-terminal")
	}
	if stderr.Len() > 0 {
		t.Errorf("demo logged warnings:\n%s", stderr.String())
	}

	// SSOBOT_DB kept the run: a valid database holding one succeeded run.
	st, err := store.Open(db, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Check(); err != nil {
		t.Errorf("database check: %v", err)
	}
	counts, err := st.CountByState(context.Background())
	if err != nil || counts[workflow.StateSucceeded] != 1 {
		t.Errorf("runs by state = %v, %v; want one succeeded", counts, err)
	}
}

// TestDemoNames: a name with quotes, backslashes and Slack's &, < and > is
// typed the way the bot reads it, and is the name created in authentik and
// Cloudflare and reported at the end.
func TestDemoNames(t *testing.T) {
	tests := []struct{ app, typed string }{
		{`My <App> & "Co"`, `/sso-setup new "My <App> & \"Co\""`},
		{`C:\apps\ "x"`, `/sso-setup new "C:\\apps\\ \"x\""`},
	}
	for _, tt := range tests {
		t.Run(tt.app, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"demo", "-app", tt.app}, func(string) string { return "" }, nil, &stdout, &stderr)
			out := stdout.String()
			if code != exitOK {
				t.Fatalf("demo exit %d\nstdout:\n%s\nstderr:\n%s", code, out, stderr.String())
			}
			for _, w := range []string{
				"alice in #platform: " + tt.typed + "\n",
				fmt.Sprintf("application %q, slug ", tt.app),
				fmt.Sprintf("login method %q (oidc)", "authentik ("+tt.app+")"),
				"Done in ",
				": " + tt.app + " is set up for single sign-on.",
			} {
				if !strings.Contains(out, w) {
					t.Errorf("demo output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestDemoSaysWhenContractsAreMissing: a contracts directory that is not
// there is said, not left to be noticed by a missing line. (The binary
// runs it: the fakes load the contracts once per process.)
func TestDemoSaysWhenContractsAreMissing(t *testing.T) {
	cmd := exec.Command(binary(t), "demo")
	cmd.Env = append(os.Environ(), contracttest.EnvDir+"="+filepath.Join(t.TempDir(), "nowhere"), "SSOBOT_DB=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	out := stdout.String()
	if err != nil {
		t.Fatalf("demo: %v\n%s%s", err, out, stderr.String())
	}
	if !strings.Contains(out, "Requests were not checked against the OpenAPI contracts (contracts dir from $SSOBOT_CONTRACTS: stat ") || strings.Contains(out, "matched the OpenAPI contracts") {
		t.Errorf("demo output does not say the contracts were missing:\n%s", out)
	}
}

// TestDemoRefusesExistingDatabase: SSOBOT_DB may name the service's
// database; the demo would resume its open runs against the fakes, so it
// refuses any file that exists, and leaves it as it was.
func TestDemoRefusesExistingDatabase(t *testing.T) {
	db := filepath.Join(t.TempDir(), "ssobot.db")
	env := map[string]string{"SSOBOT_DB": db}
	getenv := func(k string) string { return env[k] }
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"demo"}, getenv, nil, &stdout, &stderr); code != exitOK {
		t.Fatalf("first demo exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	before, err := os.ReadFile(db)
	if err != nil {
		t.Fatal(err)
	}
	stdout.Reset()
	code := run(context.Background(), []string{"demo"}, getenv, nil, &stdout, &stderr)
	if code != exitFailure || !strings.Contains(stdout.String(), "already exists") {
		t.Errorf("second demo on the same file: exit %d, output %q; want 1 and a message that it exists", code, stdout.String())
	}
	if after, err := os.ReadFile(db); err != nil || !bytes.Equal(before, after) {
		t.Errorf("the existing database changed (%v)", err)
	}
}

// TestDemoRefusedName: a name the bot refuses ends the demo at once with
// the bot's answer, instead of waiting out the demo's timeout for a run
// that never starts.
func TestDemoRefusedName(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"demo", "-app", "authorize"}, func(string) string { return "" }, nil, &stdout, &stderr)
	out := stdout.String()
	if code != exitFailure || !strings.Contains(out, `the bot started no run for -app "authorize"`) || !strings.Contains(out, "reserved") {
		t.Errorf("exit %d, output:\n%s\nwant 1, the bot's refusal and the reason the demo stopped", code, out)
	}
}

func TestDemoCancelled(t *testing.T) {
	// A context that is already over (as on Ctrl-C): the demo fails with a
	// clear message instead of hanging.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"demo"}, func(string) string { return "" }, nil, &stdout, &stderr)
	if code != exitFailure || !strings.Contains(stdout.String(), "demo failed") {
		t.Errorf("exit %d, output %q; want 1 and a failure message", code, stdout.String())
	}
}

// BenchmarkDemo measures one complete run through the real wiring, from
// starting the fakes and opening a fresh database to the verified login
// method and shutdown.
func BenchmarkDemo(b *testing.B) {
	for b.Loop() {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{"demo"}, func(string) string { return "" }, nil, &stdout, &stderr); code != exitOK {
			b.Fatalf("demo exit %d:\n%s\n%s", code, stdout.String(), stderr.String())
		}
	}
}

// TestDemoArgumentErrors: an application named without -app, or any
// other stray argument, is answered with what to type instead.
func TestDemoArgumentErrors(t *testing.T) {
	tests := []struct {
		args  []string
		first string
	}{
		{[]string{"demo", "Grafana"}, `ssobot demo: unexpected argument "Grafana": the application name goes in -app: ssobot demo -app Grafana`},
		{[]string{"demo", "-v", "My", "App"}, `ssobot demo: unexpected arguments "My" "App": the application name goes in -app: ssobot demo -app "My App"`},
		{[]string{"bench", "extra"}, `ssobot bench: unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, func(string) string { return "" }, nil, &stdout, &stderr)
			first, rest, _ := strings.Cut(stderr.String(), "\n")
			if code != exitUsage || first != tt.first || !strings.Contains(rest, "usage: ssobot "+tt.args[0]) {
				t.Errorf("exit %d, stderr:\n%s\nwant %d, first %q, then the usage", code, stderr.String(), exitUsage, tt.first)
			}
		})
	}
}
