//go:build !ssobot_server

package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// answer is a handler writing status and body, JSON unless it starts with <.
func answer(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ct := "application/json"
		if strings.HasPrefix(body, "<") {
			ct = "text/html"
		}
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// redirect answers every request with a redirect to the target URL that
// the test case builds from the address of a server recording any request.
func redirect(status int, to func(target string) string) func(target string) http.HandlerFunc {
	return func(target string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Location", to(target))
			w.WriteHeader(status)
		}
	}
}

// hang holds every request until the client gives up. The body is read
// first: only then does the server notice a connection closed.
func hang(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	<-r.Context().Done()
}

// silentListener accepts connections and never writes a byte, not even a
// TLS handshake: a firewall or a wrong port that swallows the request.
func silentListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// TestStartupChecks: a start-up check counts a credential as refused only
// when the service itself refuses it; anything else (a wrong URL, a proxy's
// error or login page, a redirect, no answer, an answer that is not the
// service's) is "could not check", with a hint naming the URL variable to
// check. Either way serve stops with exit 1, as the README says. Each case
// points one service's URL at a test server; the others are the fakes.
func TestStartupChecks(t *testing.T) {
	const (
		refused   = "credential refused"
		unchecked = "could not check a credential: no usable answer from the service"
	)
	cfVerified := func(rest http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/tokens/verify") {
				answer(200, `{"success":true,"errors":[],"messages":[],"result":{"id":"x","status":"active"}}`)(w, r)
				return
			}
			rest(w, r)
		}
	}
	tests := []struct {
		name       string
		service    string // whose URL the test server takes: slack, authentik or cloudflare
		handler    http.HandlerFunc
		redirect   func(target string) http.HandlerFunc // instead of handler: redirects to a recording server
		silent     bool                                 // instead of handler: a listener that never answers
		path       string                               // appended to the test server's URL
		msg        string
		want       []string // in the credential's err and hint
		wantNot    []string // anywhere in the logs
		shortCheck bool     // stop the checks after a moment: the server never answers
	}{
		// Slack: a token is refused with ok:false and an auth error; Slack
		// answers a wrong token with 200, so any HTTP error is someone else's.
		{name: "slack 404", service: "slack", handler: answer(404, "<h1>Not Found</h1>"), path: "/",
			msg: unchecked, want: []string{"slack server error: 404 Not Found", "SLACK_API_URL http://127.0.0.1:", "answered 404 Not Found for auth.test: is SLACK_API_URL Slack's Web API base URL"}},
		{name: "slack 502 from a proxy", service: "slack", handler: answer(502, "<h1>Bad Gateway</h1>"), path: "/api/",
			msg: unchecked, want: []string{"502 Bad Gateway", "SLACK_API_URL http://127.0.0.1:", "a server error"}},
		{name: "slack 501 from a static file server", service: "slack", handler: answer(501, "<p>Unsupported method ('POST')</p>"), path: "/",
			msg: unchecked, want: []string{"501 Not Implemented", "is SLACK_API_URL Slack's Web API base URL"}},
		{name: "slack 403 from a proxy", service: "slack", handler: answer(403, "<h1>Forbidden</h1>"), path: "/api/",
			msg: unchecked, want: []string{"403 Forbidden", "SLACK_API_URL"}},
		{name: "slack stub ok", service: "slack", handler: answer(200, `{"ok":true}`), path: "/api/",
			msg: unchecked, want: []string{"names no user_id, or neither team_id nor enterprise_id", "SLACK_API_URL http://127.0.0.1:", "does not look like Slack's"}},
		{name: "slack ok false without error", service: "slack", handler: answer(200, `{"ok":false}`), path: "/api/",
			msg: unchecked, want: []string{"names no user_id, or neither team_id nor enterprise_id"}},
		{name: "slack invalid_auth", service: "slack", handler: answer(200, `{"ok":false,"error":"invalid_auth"}`), path: "/api/",
			msg: refused, want: []string{"invalid_auth"}},
		{name: "slack token_revoked", service: "slack", handler: answer(200, `{"ok":false,"error":"token_revoked"}`), path: "/api/",
			msg: refused, want: []string{"token_revoked"}},
		{name: "slack fatal_error", service: "slack", handler: answer(200, `{"ok":false,"error":"fatal_error"}`), path: "/api/",
			msg: unchecked, want: []string{"fatal_error", "says nothing of the token"}},
		{name: "slack redirect", service: "slack", path: "/",
			redirect: redirect(http.StatusTemporaryRedirect, func(target string) string {
				return strings.Replace(target, "http://", "http://user:hunter2@", 1) + "/api/auth.test?state=s3cr3t#frag"
			}),
			msg:     unchecked,
			want:    []string{"307 Temporary Redirect", "SLACK_API_URL http://127.0.0.1:", "answered a redirect to http://127.0.0.1:", "set SLACK_API_URL to http://127.0.0.1:"},
			wantNot: []string{"hunter2", "s3cr3t", "frag", "/api/auth.test?"}},
		{name: "slack hangs", service: "slack", handler: hang, path: "/api/", shortCheck: true,
			msg: unchecked, want: []string{"context deadline exceeded", "no answer from SLACK_API_URL http://127.0.0.1:"}},

		// authentik: every refusal is a 403 with {"detail": ...}.
		{name: "authentik 404", service: "authentik", handler: answer(404, `{"detail":"Not found."}`), path: "/if/admin",
			msg: unchecked, want: []string{"404 Not Found: Not found.", "AUTHENTIK_URL https://127.0.0.1:", "/if/admin answered 404 Not Found for /api/v3/core/users/me/: is AUTHENTIK_URL authentik's base URL"}},
		{name: "authentik 500", service: "authentik", handler: answer(500, "<h1>Server Error</h1>"),
			msg: unchecked, want: []string{"500 Internal Server Error", "AUTHENTIK_URL https://127.0.0.1:", "a server error"}},
		{name: "authentik refuses the token", service: "authentik", handler: answer(403, `{"detail":"Token invalid/expired"}`),
			msg: refused, want: []string{"403 Forbidden: Token invalid/expired"}},
		{name: "authentik 403 from a proxy", service: "authentik", handler: answer(403, "<h1>Forbidden</h1>"),
			msg: unchecked, want: []string{"403 Forbidden", "AUTHENTIK_URL https://127.0.0.1:"}},
		{name: "authentik 401 from a proxy", service: "authentik", handler: answer(401, `{"error":"login required"}`),
			msg: unchecked, want: []string{"401 Unauthorized", "authentik refuses a token with 403", "AUTHENTIK_URL"}},
		{name: "authentik stub", service: "authentik", handler: answer(200, `{}`),
			msg: unchecked, want: []string{"no user", "AUTHENTIK_URL https://127.0.0.1:", "does not look like authentik's"}},
		{name: "authentik redirect to a login page", service: "authentik",
			redirect: redirect(http.StatusFound, func(target string) string { return "https://login.example.com/flow?next=s3cr3t" }),
			msg:      unchecked, want: []string{"302 Found: redirected to https://login.example.com", "AUTHENTIK_URL https://127.0.0.1:", "answered a redirect", "set AUTHENTIK_URL to"},
			wantNot: []string{"s3cr3t"}},
		{name: "authentik never answers", service: "authentik", silent: true, shortCheck: true,
			msg: unchecked, want: []string{"no answer from AUTHENTIK_URL https://127.0.0.1:"}},

		// Cloudflare: a refusal is 401 or 403 (400 for a malformed token)
		// with its error envelope, or an inactive token.
		{name: "cloudflare 404", service: "cloudflare", handler: answer(404, `{"success":false,"errors":[{"code":7003,"message":"No route for the URI"}],"messages":[],"result":null}`), path: "/client/v3",
			msg: unchecked, want: []string{"404 Not Found (code 7003): No route for the URI", "CLOUDFLARE_BASE_URL http://127.0.0.1:", "/client/v3 answered 404 Not Found for user/tokens/verify: is CLOUDFLARE_BASE_URL Cloudflare's API base URL"}},
		{name: "cloudflare 502", service: "cloudflare", handler: answer(502, "<h1>Bad Gateway</h1>"), path: "/client/v4",
			msg: unchecked, want: []string{"502 Bad Gateway", "CLOUDFLARE_BASE_URL http://127.0.0.1:", "a server error"}},
		{name: "cloudflare invalid token", service: "cloudflare", handler: answer(401, `{"success":false,"errors":[{"code":1000,"message":"Invalid API Token"}],"messages":[],"result":null}`), path: "/client/v4",
			msg: refused, want: []string{"401 Unauthorized (code 1000): Invalid API Token"}},
		{name: "cloudflare malformed token", service: "cloudflare", handler: answer(400, `{"success":false,"errors":[{"code":6003,"message":"Invalid request headers","error_chain":[{"code":6111,"message":"Invalid format for Authorization header"}]}],"messages":[],"result":null}`), path: "/client/v4",
			msg: refused, want: []string{"400 Bad Request (code 6003): Invalid request headers"}},
		{name: "cloudflare token without access permission", service: "cloudflare", path: "/client/v4",
			handler: cfVerified(answer(403, `{"success":false,"errors":[{"code":10000,"message":"Authentication error"}],"messages":[],"result":null}`)),
			msg:     refused, want: []string{"403 Forbidden (code 10000): Authentication error"}},
		{name: "cloudflare 403 from a proxy", service: "cloudflare", handler: answer(403, "<h1>Forbidden</h1>"), path: "/client/v4",
			msg: unchecked, want: []string{"403 Forbidden", "CLOUDFLARE_BASE_URL http://127.0.0.1:"}},
		{name: "cloudflare disabled token", service: "cloudflare", handler: answer(200, `{"success":true,"errors":[],"messages":[],"result":{"id":"x","status":"disabled"}}`), path: "/client/v4",
			msg: refused, want: []string{`token status is "disabled"`}},
		{name: "cloudflare stub", service: "cloudflare", handler: answer(200, `{"success":true,"result":{}}`), path: "/client/v4",
			msg: unchecked, want: []string{"CLOUDFLARE_BASE_URL http://127.0.0.1:", "does not look like Cloudflare's"}},
		{name: "cloudflare redirect", service: "cloudflare", path: "/client/v4",
			redirect: redirect(http.StatusFound, func(target string) string { return target + "/client/v4/user/tokens/verify?x=s3cr3t" }),
			msg:      unchecked, want: []string{"302 Found", "answered a redirect to http://127.0.0.1:", "set CLOUDFLARE_BASE_URL to http://127.0.0.1:"},
			wantNot: []string{"s3cr3t"}},
		{name: "cloudflare hangs", service: "cloudflare", handler: hang, path: "/client/v4", shortCheck: true,
			msg: unchecked, want: []string{"no answer from CLOUDFLARE_BASE_URL http://127.0.0.1:"}},
	}
	f := newFakes(t)
	credential := map[string]string{"slack": "SLACK_BOT_TOKEN", "authentik": "AUTHENTIK_TOKEN", "cloudflare": "CLOUDFLARE_API_TOKEN"}
	urlVar := map[string]string{"slack": "SLACK_API_URL", "authentik": "AUTHENTIK_URL", "cloudflare": "CLOUDFLARE_BASE_URL"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			roots := x509.NewCertPool()
			roots.AppendCertsFromPEM(f.ak.CertPEM())
			// A redirect's target counts the requests that reach it: none may.
			var followed atomic.Int32
			target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				followed.Add(1)
				answer(200, `{"ok":true,"user_id":"U1","team_id":"T1","success":true,"result":{"status":"active"}}`)(w, r)
			}))
			defer target.Close()
			h := tt.handler
			if tt.redirect != nil {
				h = tt.redirect(target.URL)
			}
			var base string
			switch {
			case tt.silent:
				base = "https://" + silentListener(t)
			case tt.service == "authentik":
				srv := httptest.NewTLSServer(h)
				defer srv.Close()
				roots.AddCert(srv.Certificate())
				base = srv.URL
			default:
				srv := httptest.NewServer(h)
				defer srv.Close()
				base = srv.URL
			}
			env := f.env(t)
			env[urlVar[tt.service]] = base + tt.path
			timeout := 20 * time.Second
			if tt.shortCheck {
				timeout = 300 * time.Millisecond
			}
			logs, lines := runStartupChecks(t, env, roots, timeout)
			for svc, v := range credential {
				l, found := lines[v]
				switch {
				case !found:
					t.Errorf("no log line for %s:\n%s", v, logs)
				case svc != tt.service && l["msg"] != "credential ok":
					t.Errorf("%s: %q, want credential ok:\n%s", v, l["msg"], logs)
				case svc == tt.service:
					if l["msg"] != tt.msg {
						t.Errorf("%s: %q, want %q:\n%s", v, l["msg"], tt.msg, logs)
					}
					text := fmt.Sprint(l["error"]) + " | " + fmt.Sprint(l["hint"])
					for _, w := range tt.want {
						if !strings.Contains(text, w) {
							t.Errorf("%s: err | hint %q lacks %q", v, text, w)
						}
					}
				}
			}
			for _, s := range tt.wantNot {
				if strings.Contains(logs, s) {
					t.Errorf("logs hold %q:\n%s", s, logs)
				}
			}
			if n := followed.Load(); n != 0 {
				t.Errorf("the redirect was followed (%d requests reached its target)", n)
			}
		})
	}
}

// TestCheckCredentialsSlackIdentity: auth.test must name the bot's user
// and its workspace, or, for an Enterprise Grid org-wide install, which
// may answer without a team_id, its organization.
func TestCheckCredentialsSlackIdentity(t *testing.T) {
	f := newFakes(t)
	for _, tt := range []struct {
		name, answer string
		identity     string // of a credential ok; "" for the stub refusal
	}{
		{"a workspace", `{"ok":true,"user":"ssobot","user_id":"U0BOT","team":"Acme","team_id":"T0ACME"}`, "bot ssobot (U0BOT) in workspace Acme"},
		{"an org-wide install", `{"ok":true,"user":"ssobot","user_id":"U0BOT","team":"Acme Org","enterprise_id":"E0ACME"}`, "bot ssobot (U0BOT) in Enterprise Grid organization Acme Org"},
		{"an org-wide install without a name", `{"ok":true,"user":"ssobot","user_id":"U0BOT","enterprise_id":"E0ACME"}`, "bot ssobot (U0BOT) in Enterprise Grid organization E0ACME"},
		{"an organization but no user", `{"ok":true,"enterprise_id":"E0ACME"}`, ""},
		{"a workspace but no user", `{"ok":true,"team_id":"T0ACME"}`, ""},
		{"a user but no workspace or organization", `{"ok":true,"user_id":"U0BOT"}`, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(answer(200, tt.answer))
			defer srv.Close()
			env := f.env(t)
			env["SLACK_API_URL"] = srv.URL + "/api/"
			cfg, err := LoadConfig(func(k string) string { return env[k] }, os.ReadFile)
			if err != nil {
				t.Fatal(err)
			}
			roots := x509.NewCertPool()
			roots.AppendCertsFromPEM(f.ak.CertPEM())
			var logs bytes.Buffer
			a, err := newApp(cfg, appOptions{Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Roots: roots})
			if err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			err = a.CheckCredentials(context.Background())
			line := logLines(t, logs.Bytes())["SLACK_BOT_TOKEN"]
			switch {
			case tt.identity == "" && !errors.Is(err, errNoSlackIdentity):
				t.Errorf("checks: %v; want %v", err, errNoSlackIdentity)
			case tt.identity != "" && err != nil:
				t.Errorf("checks: %v; want none to fail", err)
			case tt.identity != "" && (line["msg"] != "credential ok" || line["identity"] != tt.identity):
				t.Errorf("SLACK_BOT_TOKEN logged %v; want credential ok, identity %q:\n%s", line, tt.identity, logs.String())
			}
		})
	}
}

// runStartupChecks runs serve's start-up checks with env and roots and
// requires them to stop serve with exit 1. It returns the logs, and each
// credential's log line.
func runStartupChecks(t *testing.T, env map[string]string, roots *x509.CertPool, timeout time.Duration) (string, map[string]map[string]any) {
	t.Helper()
	cfg, err := LoadConfig(func(k string) string { return env[k] }, os.ReadFile)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	a, err := newApp(cfg, appOptions{Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Roots: roots})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	code, ok := a.startupChecks(context.Background(), timeout)
	if ok || code != exitFailure {
		t.Errorf("start-up checks: go on %v, exit %d; want to stop with %d", ok, code, exitFailure)
	}
	return logs.String(), logLines(t, logs.Bytes())
}

// TestStartupChecksAppToken: in Socket Mode, apps.connections.open is told
// apart the same way, and must give a connection URL.
func TestStartupChecksAppToken(t *testing.T) {
	const (
		refused   = "credential refused"
		unchecked = "could not check a credential: no usable answer from the service"
	)
	tests := []struct {
		name    string
		handler http.HandlerFunc
		msg     string
		want    []string
	}{
		{"stub ok", answer(200, `{"ok":true}`), unchecked, []string{"no url", "SLACK_API_URL http://127.0.0.1:", "to apps.connections.open does not look like Slack's"}},
		{"invalid_auth", answer(200, `{"ok":false,"error":"invalid_auth"}`), refused, []string{"invalid_auth"}},
		{"a bot token", answer(200, `{"ok":false,"error":"not_allowed_token_type"}`), refused, []string{"not_allowed_token_type"}},
		{"no connections:write", answer(200, `{"ok":false,"error":"missing_scope","needed":"connections:write"}`), refused, []string{"missing_scope"}},
		{"404", answer(404, "<h1>Not Found</h1>"), unchecked, []string{"answered 404 Not Found for apps.connections.open: is SLACK_API_URL Slack's Web API base URL"}},
	}
	f := newFakes(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, "/auth.test") {
					answer(200, `{"ok":true,"user":"ssobot","user_id":"U0BOT","team":"Acme","team_id":"T0ACME"}`)(w, r)
					return
				}
				tt.handler(w, r)
			}))
			defer srv.Close()
			env := f.env(t)
			delete(env, "SLACK_SIGNING_SECRET")
			env["SLACK_APP_TOKEN"] = f.sl.AppToken()
			env["SLACK_API_URL"] = srv.URL + "/api/"
			roots := x509.NewCertPool()
			roots.AppendCertsFromPEM(f.ak.CertPEM())
			logs, lines := runStartupChecks(t, env, roots, 20*time.Second)
			for _, v := range []string{"SLACK_BOT_TOKEN", "AUTHENTIK_TOKEN", "CLOUDFLARE_API_TOKEN"} {
				if lines[v]["msg"] != "credential ok" {
					t.Errorf("%s: %v, want credential ok", v, lines[v]["msg"])
				}
			}
			l := lines["SLACK_APP_TOKEN"]
			if l["msg"] != tt.msg {
				t.Errorf("SLACK_APP_TOKEN: %q, want %q:\n%s", l["msg"], tt.msg, logs)
			}
			text := fmt.Sprint(l["error"]) + " | " + fmt.Sprint(l["hint"])
			for _, w := range tt.want {
				if !strings.Contains(text, w) {
					t.Errorf("SLACK_APP_TOKEN: err | hint %q lacks %q", text, w)
				}
			}
		})
	}
}

// logLines maps each credential to its log line.
func logLines(t *testing.T, logs []byte) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, line := range bytes.Split(bytes.TrimSpace(logs), []byte("\n")) {
		var l map[string]any
		if err := json.Unmarshal(line, &l); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if c, ok := l["credential"].(string); ok {
			if _, dup := out[c]; dup {
				t.Errorf("two log lines for %s", c)
			}
			out[c] = l
		}
	}
	return out
}
