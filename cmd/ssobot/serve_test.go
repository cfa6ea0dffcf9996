//go:build !ssobot_server

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/ssobot/ssobot/bot"
	"github.com/ssobot/ssobot/bot/slacktest"
	"github.com/ssobot/ssobot/store"
	"github.com/ssobot/ssobot/workflow"
	"github.com/ssobot/ssobot/workflow/authentik/authentiktest"
	"github.com/ssobot/ssobot/workflow/cloudflare"
	"github.com/ssobot/ssobot/workflow/cloudflare/cloudflaretest"
)

var (
	binDir   string
	binOnce  sync.Once
	binPath  string
	binError error
)

func TestMain(m *testing.M) {
	// The bench's tests start this test binary as the bench's load generator.
	if code, ok := benchChild(); ok {
		os.Exit(code)
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binary builds ssobot once for the tests that run it as a process.
func binary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binError = os.MkdirTemp("", "ssobot-test-")
		if binError != nil {
			return
		}
		binPath = filepath.Join(binDir, "ssobot")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binError = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binError != nil {
		t.Fatal(binError)
	}
	return binPath
}

func TestServeMissingConfiguration(t *testing.T) {
	required := []string{"SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "AUTHENTIK_URL", "AUTHENTIK_TOKEN", "CLOUDFLARE_API_TOKEN", "CLOUDFLARE_ACCOUNT_ID", "SSOBOT_APPROVERS"}
	check := func(t *testing.T, code int, stderr string) {
		t.Helper()
		if code != exitUsage {
			t.Errorf("exit code %d, want %d", code, exitUsage)
		}
		for _, v := range required {
			if !strings.Contains(stderr, "  - "+v+" is required") {
				t.Errorf("stderr does not list %s:\n%s", v, stderr)
			}
		}
		if !strings.Contains(stderr, "(7 problems)") {
			t.Errorf("stderr does not count the problems:\n%s", stderr)
		}
	}
	t.Run("in process", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), []string{"serve"}, func(string) string { return "" }, os.ReadFile, &stdout, &stderr)
		check(t, code, stderr.String())
	})
	t.Run("binary", func(t *testing.T) {
		cmd := exec.Command(binary(t), "serve")
		cmd.Env = []string{} // nothing set
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var exit *exec.ExitError
		if !errors.As(err, &exit) {
			t.Fatalf("run: %v", err)
		}
		check(t, exit.ExitCode(), stderr.String())
	})
}

// fakes are the three systems ssobot talks to, in the test process.
type fakes struct {
	ak       *authentiktest.Server
	cf       *cloudflaretest.Server
	sl       *slacktest.Server
	certFile string
	secret   string
}

// setUp registers the fakes' cleanup, adds alice, bob and #ops, and writes
// authentik's certificate for SSL_CERT_FILE.
func (f *fakes) setUp(t *testing.T) {
	t.Helper()
	t.Cleanup(f.ak.Close)
	t.Cleanup(f.cf.Close)
	t.Cleanup(f.sl.Close)
	f.sl.AddUser(slacktest.User{ID: "U0ALICE", Name: "alice"})
	f.sl.AddUser(slacktest.User{ID: "U0BOB", Name: "bob"})
	f.sl.AddChannel("C0OPS", "ops", true)
	f.certFile = filepath.Join(t.TempDir(), "authentik-ca.pem")
	if err := os.WriteFile(f.certFile, f.ak.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
}

func newFakes(t *testing.T) *fakes {
	t.Helper()
	f := &fakes{
		ak:     authentiktest.New(),
		cf:     cloudflaretest.New(testAccountID, cloudflaretest.WithTeam("acme")),
		sl:     slacktest.NewServer(),
		secret: randomHex(16),
	}
	f.setUp(t)
	return f
}

// env configures ssobot serve against the fakes; authentik's certificate
// is trusted only through SSL_CERT_FILE, and its token comes from a file.
func (f *fakes) env(t *testing.T) map[string]string {
	tokenFile := filepath.Join(t.TempDir(), "authentik-token")
	if err := os.WriteFile(tokenFile, []byte(f.ak.Token()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"SSL_CERT_FILE":         f.certFile,
		"SLACK_BOT_TOKEN":       f.sl.BotToken(),
		"SLACK_SIGNING_SECRET":  f.secret,
		"SLACK_API_URL":         f.sl.APIURL(),
		"AUTHENTIK_URL":         f.ak.URL(),
		"AUTHENTIK_TOKEN_FILE":  tokenFile,
		"CLOUDFLARE_API_TOKEN":  f.cf.Token(),
		"CLOUDFLARE_ACCOUNT_ID": testAccountID,
		"CLOUDFLARE_BASE_URL":   f.cf.URL(),
		"SSOBOT_APPROVERS":      "U0BOB",
		"SSOBOT_DB":             filepath.Join(t.TempDir(), "ssobot.db"),
		"SSOBOT_LISTEN":         "127.0.0.1:0",
		"SSOBOT_ADMIN_LISTEN":   "127.0.0.1:0",
		"SSOBOT_LOG_LEVEL":      "debug",
		// After a login method create left unanswered the step waits this
		// long before it looks again: 5 s keeps the fault tests short and
		// is still far beyond the fakes' latency.
		"SSOBOT_API_TIMEOUT": "5s",
	}
}

// secrets lists every credential and the provider's client secret.
func (f *fakes) secrets() []string {
	s := []string{f.sl.BotToken(), f.secret, f.ak.Token(), f.cf.Token()}
	for _, p := range f.ak.Providers() {
		s = append(s, p.ClientSecret)
	}
	return s
}

// process is a running ssobot serve.
type process struct {
	cmd  *exec.Cmd
	done chan error

	mu     sync.Mutex
	stderr bytes.Buffer
	addrs  map[string]string // log message → addr
	seen   chan struct{}     // closed and replaced on every log line
}

func startServe(t *testing.T, env map[string]string) *process {
	t.Helper()
	cmd := exec.Command(binary(t), "serve")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, done: make(chan error, 1), addrs: map[string]string{}, seen: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			var l struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			_ = json.Unmarshal(sc.Bytes(), &l)
			p.mu.Lock()
			p.stderr.Write(sc.Bytes())
			p.stderr.WriteByte('\n')
			if l.Addr != "" {
				p.addrs[l.Msg] = l.Addr
			}
			close(p.seen)
			p.seen = make(chan struct{})
			p.mu.Unlock()
		}
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("ssobot stderr:\n%s", p.logs())
		}
	})
	return p
}

func (p *process) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// addr waits for the log line announcing a listener.
func (p *process) addr(ctx context.Context, msg string) (string, error) {
	for {
		p.mu.Lock()
		a, seen := p.addrs[msg], p.seen
		p.mu.Unlock()
		if a != "" {
			return a, nil
		}
		select {
		case <-seen:
		case err := <-p.done:
			p.done <- err
			return "", fmt.Errorf("ssobot exited before %q: %v", msg, err)
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for %q: %w", msg, ctx.Err())
		}
	}
}

// exitCode waits for the process to end.
func (p *process) exitCode(ctx context.Context) (int, error) {
	select {
	case err := <-p.done:
		p.done <- err
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode(), nil
		}
		return 0, err
	case <-ctx.Done():
		return 0, fmt.Errorf("waiting for ssobot to exit: %w", ctx.Err())
	}
}

// signedPost sends what Slack would, signed with the fakes' secret.
func (f *fakes) signedPost(t *testing.T, url string, body []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(slacktest.SignedRequest(url, f.secret, body, time.Now()))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s = %s: %s", url, resp.Status, b)
	}
}

// nextApproval waits for an Approve button not clicked yet on the run's
// message and returns bob's click on it.
func (f *fakes) nextApproval(ctx context.Context, t *testing.T, clicked map[string]bool) slacktest.BlockAction {
	t.Helper()
	var root string
	var btn slacktest.Button
	_, err := f.sl.WaitFor(ctx, func(calls []slacktest.Call) bool {
		for _, c := range slacktest.FilterCalls(calls, "chat.postMessage") {
			if c.Param("channel") == "C0OPS" && c.Param("thread_ts") == "" && c.Error == "" {
				root, _ = c.Result["ts"].(string)
				break
			}
		}
		if root == "" {
			return false
		}
		m, ok := f.sl.Message("C0OPS", root)
		if !ok {
			return false
		}
		b, ok := m.Button(bot.ActionApprove)
		if !ok || clicked[b.Value] {
			return false
		}
		btn = b
		return true
	})
	if err != nil {
		t.Fatalf("waiting for an Approve button: %v", err)
	}
	clicked[btn.Value] = true
	a, err := f.sl.ClickButton("C0OPS", root, bot.ActionApprove, "U0BOB")
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// waitRun polls the admin API until the only run ends.
func waitRun(ctx context.Context, t *testing.T, adminURL string) runView {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		var list runList
		if err := json.Unmarshal(getBody(ctx, t, adminURL+"/api/runs"), &list); err != nil {
			t.Fatal(err)
		}
		if len(list.Runs) != 1 {
			t.Fatalf("runs = %+v, want one", list.Runs)
		}
		if list.Runs[0].State.Terminal() {
			return list.Runs[0]
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("run still %s", list.Runs[0].State)
		}
	}
}

// waitReady polls /readyz until the engine runs.
func waitReady(ctx context.Context, t *testing.T, adminURL string) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := http.Get(adminURL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatal("never ready")
		}
	}
}

func getBody(ctx context.Context, t *testing.T, url string) []byte {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s = %s: %s", url, resp.Status, b)
	}
	return b
}

// TestServeEndToEnd runs the binary against the fakes, drives one run
// through its Slack endpoints and checks the admin API, the metrics, the
// logs and a graceful SIGTERM.
func TestServeEndToEnd(t *testing.T) {
	f := newFakes(t)
	env := f.env(t)
	env["SSOBOT_ADMIN_HOSTS"] = "ssobot-admin.internal.example.com"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	p := startServe(t, env)
	slackAddr, err := p.addr(ctx, "slack endpoints listening")
	if err != nil {
		t.Fatal(err)
	}
	adminAddr, err := p.addr(ctx, "admin API listening")
	if err != nil {
		t.Fatal(err)
	}
	slackURL, adminURL := "http://"+slackAddr, "http://"+adminAddr

	// Ready once the engine runs; poll with a deadline, it is a separate process.
	waitReady(ctx, t, adminURL)

	cmd := f.sl.NewSlashCommand("/sso-setup", "new Grafana", "U0ALICE", "C0OPS")
	f.signedPost(t, slackURL+slackCommandsPath, []byte(slacktest.SlashCommandForm(cmd).Encode()))
	clicked := map[string]bool{}
	for range 2 { // the authentik gate, then the Cloudflare gate
		a := f.nextApproval(ctx, t, clicked)
		f.signedPost(t, slackURL+slackInteractionsPath, []byte(slacktest.BlockActionsPayload(a).Encode()))
	}

	run := waitRun(ctx, t, adminURL)
	if run.State != workflow.StateSucceeded {
		t.Fatalf("run ended %s: %+v", run.State, run)
	}
	providers, apps, idps := f.ak.Providers(), f.ak.Applications(), f.cf.IdentityProviders()
	if len(providers) != 1 || len(apps) != 1 || len(idps) != 1 {
		t.Fatalf("created %d providers, %d applications, %d login methods; want one each", len(providers), len(apps), len(idps))
	}
	if r := run.Resources; r.AuthentikProviderID == nil || *r.AuthentikProviderID != providers[0].PK ||
		r.AuthentikApplicationSlug == nil || *r.AuthentikApplicationSlug != "grafana" ||
		r.CloudflareIdentityProviderID == nil || *r.CloudflareIdentityProviderID != idps[0].ID {
		t.Errorf("resources = %+v", run.Resources)
	}
	if len(run.Approvals) != 2 || run.Approvals[0].User != "U0BOB" {
		t.Errorf("approvals = %+v", run.Approvals)
	}

	// The admin API answers to the names configured, and to no other: on
	// this loopback listener, not to single-label or Kubernetes service
	// names either, which LLMNR and mDNS let a machine on the LAN answer.
	for host, want := range map[string]int{
		"ssobot-admin.internal.example.com":   http.StatusOK,
		"localhost":                           http.StatusOK,
		"attacker.example.com":                http.StatusMisdirectedRequest,
		"attacker":                            http.StatusMisdirectedRequest,
		"evil.svc.cluster.local":              http.StatusMisdirectedRequest,
		"ssobot.monitoring.svc.cluster.local": http.StatusMisdirectedRequest,
	} {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, adminURL+"/api/runs", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET /api/runs for %s = %d, want %d", host, resp.StatusCode, want)
		}
	}
	if !strings.Contains(p.logs(), `"service_names":false`) {
		t.Error("the admin API's log line does not say it refuses service names")
	}

	metrics := string(getBody(ctx, t, adminURL+"/metrics"))
	requireLines(t, metrics,
		`ssobot_runs{state="succeeded"} 1`,
		`ssobot_decisions_total{accepted="true",decision="approve",gate="authentik"} 1`,
		`ssobot_runs_finished_total{state="succeeded"} 1`,
	)
	for _, want := range []string{
		`ssobot_api_requests_total{method="auth.test",status="200",system="slack"}`,
		`ssobot_api_requests_total{method="chat.postMessage",status="200",system="slack"}`,
		`ssobot_api_requests_total{method="GET /core/users/me/",status="200",system="authentik"}`,
		`ssobot_api_requests_total{method="POST /providers/oauth2/",status="201",system="authentik"}`,
		`ssobot_api_requests_total{method="POST /accounts/{account_id}/access/identity_providers",status="201",system="cloudflare"}`,
		`ssobot_step_duration_seconds_count{step="verify"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// Graceful shutdown: exit 0, the database closed and consistent.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, err := p.exitCode(ctx)
	if err != nil || code != 0 {
		t.Fatalf("exit %d, %v; want 0", code, err)
	}
	logs := p.logs()
	for _, want := range []string{`"msg":"credential ok","credential":"SLACK_BOT_TOKEN"`, `"credential":"AUTHENTIK_TOKEN"`, `"credential":"CLOUDFLARE_API_TOKEN"`, `"msg":"shutting down"`, `"msg":"stopped"`, `"run_id":1`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s", want)
		}
	}
	for _, s := range f.secrets() {
		if strings.Contains(logs, s) {
			t.Errorf("a secret appears in the logs")
		}
		if strings.Contains(metrics, s) {
			t.Errorf("a secret appears in the metrics")
		}
	}
	st, err := store.Open(env["SSOBOT_DB"], store.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("reopen after shutdown: %v", err)
	}
	defer st.Close()
	if err := st.Check(); err != nil {
		t.Error(err)
	}
}

// TestServeBadCredentials: each refused credential is named with its
// reason, never its value, and the process exits 1.
func TestServeBadCredentials(t *testing.T) {
	f := newFakes(t)
	env := f.env(t)
	delete(env, "AUTHENTIK_TOKEN_FILE")
	env["AUTHENTIK_TOKEN"] = "not-the-authentik-token"
	env["CLOUDFLARE_API_TOKEN"] = "not-the-cloudflare-token"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := startServe(t, env)
	code, err := p.exitCode(ctx)
	if err != nil || code != exitFailure {
		t.Fatalf("exit %d, %v; want %d", code, err, exitFailure)
	}
	logs := p.logs()
	for _, want := range []string{
		`"msg":"credential refused","credential":"AUTHENTIK_TOKEN","check":"authentik GET /api/v3/core/users/me/`,
		`"error":"authentik: get current user: 403 Forbidden: Token invalid/expired"`,
		`"msg":"credential refused","credential":"CLOUDFLARE_API_TOKEN"`,
		`"msg":"credential ok","credential":"SLACK_BOT_TOKEN"`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
	if n := strings.Count(logs, `"msg":"credential refused"`); n != 2 {
		t.Errorf("%d credentials refused, want 2:\n%s", n, logs)
	}
	for _, s := range []string{"not-the-authentik-token", "not-the-cloudflare-token"} {
		if strings.Contains(logs, s) {
			t.Errorf("logs reveal %q", s)
		}
	}
}

// TestServeBadAppToken: in Socket Mode the app-level token is checked at
// start with the others, and named when Slack refuses it.
func TestServeBadAppToken(t *testing.T) {
	f := newFakes(t)
	env := f.env(t)
	delete(env, "SLACK_SIGNING_SECRET")
	env["SLACK_APP_TOKEN"] = "xapp-1-A0WRONG-0000000000000-notthetoken"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := startServe(t, env)
	if code, err := p.exitCode(ctx); err != nil || code != exitFailure {
		t.Fatalf("exit %d, %v; want %d", code, err, exitFailure)
	}
	logs := p.logs()
	if !strings.Contains(logs, `"msg":"credential refused","credential":"SLACK_APP_TOKEN"`) {
		t.Errorf("logs do not name SLACK_APP_TOKEN:\n%s", logs)
	}
	if strings.Contains(logs, "notthetoken") {
		t.Error("the app-level token appears in the logs")
	}
}

// TestServeSocketMode drives a run over Socket Mode: no Slack listener, no
// signing secret, envelopes acknowledged.
func TestServeSocketMode(t *testing.T) {
	f := newFakes(t)
	env := f.env(t)
	delete(env, "SLACK_SIGNING_SECRET")
	env["SLACK_APP_TOKEN"] = f.sl.AppToken()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	p := startServe(t, env)
	adminAddr, err := p.addr(ctx, "admin API listening")
	if err != nil {
		t.Fatal(err)
	}
	adminURL := "http://" + adminAddr
	waitReady(ctx, t, adminURL)
	if err := f.sl.WaitConnected(ctx); err != nil {
		t.Fatal(err)
	}
	send := func(typ string, payload any) {
		t.Helper()
		id, err := f.sl.SendEnvelope(ctx, typ, payload)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.sl.WaitAck(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	send(slacktest.EnvelopeSlashCommands, f.sl.NewSlashCommand("/sso-setup", "new Grafana", "U0ALICE", "C0OPS"))
	clicked := map[string]bool{}
	for range 2 {
		send(slacktest.EnvelopeInteractive, slacktest.BlockActionsJSON(f.nextApproval(ctx, t, clicked)))
	}
	if run := waitRun(ctx, t, adminURL); run.State != workflow.StateSucceeded {
		t.Fatalf("run ended %s: %+v", run.State, run)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := p.exitCode(ctx); err != nil || code != 0 {
		t.Fatalf("exit %d, %v; want 0", code, err)
	}
	logs := p.logs()
	if strings.Contains(logs, "slack endpoints listening") || !strings.Contains(logs, `"socket_mode":true`) {
		t.Errorf("socket mode opened an HTTP listener or did not say so:\n%s", logs)
	}
	if strings.Contains(logs, f.sl.AppToken()) {
		t.Error("the app-level token appears in the logs")
	}
}

// TestRefused: only the service's own refusal of a credential counts as
// refused; no answer, or one that is not the service's, says nothing of it.
func TestRefused(t *testing.T) {
	dns := &url.Error{Op: "Post", URL: "https://slack.com/api/auth.test", Err: &net.OpError{Op: "dial", Net: "tcp", Err: &net.DNSError{Err: "no such host", Name: "slack.com"}}}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"no such host", dns, false},
		{"wrapped by the adapter", &workflow.APIError{System: "authentik", Op: "get current user", Err: dns}, false},
		{"connection refused", fmt.Errorf("token verify: %w", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), false},
		{"timed out", fmt.Errorf("auth.test: %w", context.DeadlineExceeded), false},
		{"TLS handshake timeout", tlsHandshakeTimeout(t), false},
		{"untrusted certificate", &workflow.APIError{System: "authentik", Op: "get current user", Err: &url.Error{Op: "Get", URL: "https://auth.example.com", Err: &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}}}, false},
		{"redirect", &workflow.APIError{System: "cloudflare", Op: "verify token", Err: &url.Error{Op: "Get", URL: "https://api.cloudflare.com/client/v4/user/tokens/verify", Err: &workflow.RedirectError{Status: 302}}, Permanent: true}, false},
		{"authentik redirect", &workflow.APIError{System: "authentik", Op: "get current user", Status: 302, Message: "redirected to https://login.example.com; ssobot needs direct access"}, false},
		{"proxy error", &workflow.APIError{System: "authentik", Op: "get current user", Status: 502}, false},
		{"authentik 404", &workflow.APIError{System: "authentik", Op: "get current user", Status: 404, Message: "Not found."}, false},
		{"authentik refuses the token", &workflow.APIError{System: "authentik", Op: "get current user", Status: 403, Message: "Token invalid/expired"}, true},
		{"a proxy's 403 before authentik", &workflow.APIError{System: "authentik", Op: "get current user", Status: 403}, false},
		{"a proxy's 401 before authentik", &workflow.APIError{System: "authentik", Op: "get current user", Status: 401, Message: "error: login required"}, false},
		{"cloudflare invalid token", &workflow.APIError{System: "cloudflare", Op: "verify token", Status: 401, Code: 1000, Message: "Invalid API Token"}, true},
		{"cloudflare permission", fmt.Errorf("read the organization: %w", &workflow.APIError{System: "cloudflare", Op: "get organization", Status: 403, Code: 10000, Message: "Authentication error"}), true},
		{"cloudflare unreadable token", &workflow.APIError{System: "cloudflare", Op: "verify token", Status: 400, Code: 6003, Message: "Invalid request headers"}, true},
		{"cloudflare other 400", &workflow.APIError{System: "cloudflare", Op: "verify token", Status: 400, Code: 12130, Message: "invalid request"}, false},
		{"a proxy's 403 before cloudflare", &workflow.APIError{System: "cloudflare", Op: "verify token", Status: 403, Message: "no error message in the response"}, false},
		{"cloudflare 404", &workflow.APIError{System: "cloudflare", Op: "verify token", Status: 404, Code: 7003, Message: "No route for the URI"}, false},
		{"cloudflare inactive token", fmt.Errorf("token verify: %w", &cloudflare.TokenStatusError{Status: "disabled"}), true},
		{"slack invalid_auth", fmt.Errorf("auth.test: %w", slack.SlackErrorResponse{Err: "invalid_auth"}), true},
		{"slack app token without connections:write", slack.SlackErrorResponse{Err: "missing_scope"}, true},
		{"slack fatal_error", slack.SlackErrorResponse{Err: "fatal_error"}, false},
		{"slack 404", slack.StatusCodeError{Code: 404, Status: "404 Not Found"}, false},
		{"slack 401 from a proxy", slack.StatusCodeError{Code: 401, Status: "401 Unauthorized"}, false},
		{"slack rate limit", &slack.RateLimitedError{RetryAfter: time.Second}, false},
		{"slack stub", errNoSlackIdentity, false},
		{"a plain invalid_auth string", errors.New("invalid_auth"), false},
	}
	for _, tt := range tests {
		if got := refused(tt.err); got != tt.want {
			t.Errorf("%s: refused(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

// tlsHandshakeTimeout is the error of a server that accepts a connection
// and never answers TLS, within a short handshake timeout.
func tlsHandshakeTimeout(t *testing.T) error {
	t.Helper()
	tr := &http.Transport{TLSHandshakeTimeout: 50 * time.Millisecond}
	defer tr.CloseIdleConnections()
	_, err := (&http.Client{Transport: tr}).Get("https://" + silentListener(t) + "/")
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !strings.Contains(err.Error(), "TLS handshake timeout") {
		t.Fatalf("err = %v; want a TLS handshake timeout", err)
	}
	return err
}

// TestReportCheckFailure: a refused credential fails the start, naming its
// variable; a stop asked for while the checks ran (their calls then fail
// with the context) is no failure and blames no credential.
func TestReportCheckFailure(t *testing.T) {
	refused := &CredentialError{Variable: "AUTHENTIK_TOKEN", Check: "authentik users/me", Err: &workflow.APIError{System: "authentik", Op: "users/me", Status: 403, Message: "Token invalid/expired"}}
	stopped, stop := context.WithCancelCause(context.Background())
	stop(errors.New("terminated signal received"))
	tests := []struct {
		name    string
		ctx     context.Context
		err     error
		code    int
		want    string
		wantNot string
	}{
		{"refused", context.Background(), refused, exitFailure, `msg="credential refused" credential=AUTHENTIK_TOKEN`, "stopped before"},
		{"not checked", context.Background(), &CredentialError{Variable: "AUTHENTIK_TOKEN", Check: "authentik users/me",
			Err: &workflow.APIError{System: "authentik", Op: "get current user", Status: 404, Message: "Not found."},
			At:  apiURL{"authentik", "AUTHENTIK_URL", "https://auth.example.com/if/admin", "authentik's base URL"}, Call: "/api/v3/core/users/me/"},
			exitFailure, `msg="could not check a credential: no usable answer from the service" credential=AUTHENTIK_TOKEN check="authentik users/me" error="authentik: get current user: 404 Not Found: Not found." hint="AUTHENTIK_URL https://auth.example.com/if/admin answered 404 Not Found for /api/v3/core/users/me/: is AUTHENTIK_URL authentik's base URL?"`, "refused"},
		{"stopped meanwhile", stopped, &CredentialError{Variable: "AUTHENTIK_TOKEN", Check: "authentik users/me", Err: context.Canceled}, exitOK, `msg="stopped before the start-up checks finished" cause="terminated signal received"`, "credential"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			code := reportCheckFailure(tt.ctx, tt.err, slog.New(slog.NewTextHandler(&logs, nil)))
			if code != tt.code || !strings.Contains(logs.String(), tt.want) || strings.Contains(logs.String(), tt.wantNot) {
				t.Errorf("exit %d, logs %q; want %d, %q and not %q", code, logs.String(), tt.code, tt.want, tt.wantNot)
			}
		})
	}
}
