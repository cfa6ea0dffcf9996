package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ssobot/ssobot/workflow"
)

func TestRouteLabel(t *testing.T) {
	tests := []struct {
		system, method, path, want string
	}{
		{systemSlack, "POST", "/api/chat.postMessage", "chat.postMessage"},
		{systemSlack, "POST", "/chat.update", "chat.update"},
		{systemSlack, "POST", "/api/usergroups.users.list", "usergroups.users.list"},
		{systemSlack, "POST", "/api/", "other"},
		{systemSlack, "POST", "/api/../../etc", "other"},
		{systemAuthentik, "GET", "/api/v3/core/users/me/", "GET /core/users/me/"},
		{systemAuthentik, "POST", "/api/v3/providers/oauth2/", "POST /providers/oauth2/"},
		{systemAuthentik, "GET", "/api/v3/providers/oauth2/42/", "GET /providers/oauth2/{id}/"},
		{systemAuthentik, "GET", "/api/v3/providers/oauth2/42/setup_urls/", "GET /providers/oauth2/{id}/setup_urls/"},
		{systemAuthentik, "GET", "/api/v3/core/applications/grafana/", "GET /core/applications/{slug}/"},
		{systemAuthentik, "GET", "/auth/api/v3/flows/instances/", "GET /flows/instances/"},
		{systemAuthentik, "GET", "/api/v3/crypto/certificatekeypairs/6e1c4b47-4bd4-4e3a-9a83-9d4e5c1e2f3a/", "GET /crypto/certificatekeypairs/{id}/"},
		{systemAuthentik, "GET", "/api/v3/propertymappings/provider/scope/", "GET /propertymappings/provider/scope/"},
		{systemAuthentik, "GET", "/api/v3/core/Weird Path/", "GET /core/{param}/"},
		{systemCloudflare, "GET", "/client/v4/accounts/0123456789abcdef0123456789abcdef/access/organizations", "GET /accounts/{account_id}/access/organizations"},
		{systemCloudflare, "POST", "/client/v4/accounts/0123456789abcdef0123456789abcdef/access/identity_providers", "POST /accounts/{account_id}/access/identity_providers"},
		{systemCloudflare, "GET", "/accounts/x/access/identity_providers/f174e90a-fafe-4643-bbbc-4a0ed4fc8415", "GET /accounts/{account_id}/access/identity_providers/{id}"},
		{systemCloudflare, "GET", "/client/v4/user/tokens/verify", "GET /user/tokens/verify"},
		{systemCloudflare, "GET", "/a/b/c/d/e/f/g/h/i/j", "GET other"},
	}
	for _, tt := range tests {
		t.Run(tt.system+" "+tt.path, func(t *testing.T) {
			if got := routeLabel(tt.system, tt.method, tt.path); got != tt.want {
				t.Errorf("routeLabel(%q, %q, %q) = %q, want %q", tt.system, tt.method, tt.path, got, tt.want)
			}
		})
	}
}

type fixedCounts struct {
	counts map[workflow.State]int
	err    error
}

func (f fixedCounts) CountByState(context.Context) (map[workflow.State]int, error) {
	return f.counts, f.err
}

func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

func requireLines(t *testing.T, body string, lines ...string) {
	t.Helper()
	for _, l := range lines {
		if !strings.Contains(body, l+"\n") {
			t.Errorf("metrics lack %q", l)
		}
	}
}

func TestMetrics(t *testing.T) {
	m := NewMetrics(fixedCounts{counts: map[workflow.State]int{workflow.StateSucceeded: 3, workflow.StateAwaitingApproval: 1}})
	m.StepFinished(workflow.StepAuthentikProvider, 250*time.Millisecond, nil)
	m.StepFinished(workflow.StepAuthentikProvider, time.Second, errors.New("boom"))
	m.DecisionMade(workflow.GateAuthentik, workflow.Approve, true)
	m.DecisionMade(workflow.GateAuthentik, workflow.Approve, false)
	m.RunFinished(workflow.StateSucceeded)

	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, "missing") {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, `{}`)
	}))
	defer api.Close()
	client := &http.Client{Transport: m.Transport(systemAuthentik, nil)}
	for _, p := range []string{"/api/v3/core/applications/grafana/", "/api/v3/core/applications/missing/", "/api/v3/core/users/me/"} {
		resp, err := client.Get(api.URL + p + "?secret=token-value")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	// A refused connection counts as status "error".
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	if _, err := (&http.Client{Transport: m.Transport(systemCloudflare, nil)}).Get(dead.URL + "/client/v4/user/tokens/verify"); err == nil {
		t.Fatal("request to a closed server succeeded")
	}

	// Slack answers its errors with HTTP 200 and {"ok":false}: counted by
	// code, and the caller still reads the whole answer.
	slackAPI := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		switch {
		case strings.HasSuffix(r.URL.Path, "chat.postMessage"):
			io.WriteString(w, `{"ok":false,"error":"not_in_channel"}`)
		case strings.HasSuffix(r.URL.Path, "chat.update"):
			io.WriteString(w, `{"ok":false,"error":"Weird Error!"}`)
		default:
			io.WriteString(w, `{"ok":true,"error":"ignored"}`)
		}
	}))
	defer slackAPI.Close()
	slackClient := &http.Client{Transport: m.Transport(systemSlack, nil)}
	for _, method := range []string{"chat.postMessage", "chat.update", "users.info"} {
		resp, err := slackClient.Post(slackAPI.URL+"/api/"+method, "application/x-www-form-urlencoded", nil)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.HasPrefix(got, []byte(`{"ok":`)) || !bytes.HasSuffix(got, []byte(`"}`)) {
			t.Errorf("%s: the caller read %q; want the whole answer", method, got)
		}
	}

	body := scrape(t, m.Handler())
	requireLines(t, body,
		`ssobot_slack_errors_total{error="not_in_channel",method="chat.postMessage"} 1`,
		`ssobot_slack_errors_total{error="other",method="chat.update"} 1`,
		`ssobot_api_requests_total{method="chat.postMessage",status="200",system="slack"} 1`,
		`ssobot_runs{state="succeeded"} 3`,
		`ssobot_runs{state="awaiting_approval"} 1`,
		`ssobot_runs{state="failed"} 0`,
		`ssobot_step_duration_seconds_count{step="authentik-provider"} 2`,
		`ssobot_step_duration_seconds_count{step="verify"} 0`,
		`ssobot_step_failures_total{step="authentik-provider"} 1`,
		`ssobot_step_failures_total{step="preflight"} 0`,
		`ssobot_decisions_total{accepted="true",decision="approve",gate="authentik"} 1`,
		`ssobot_decisions_total{accepted="false",decision="approve",gate="authentik"} 1`,
		`ssobot_runs_finished_total{state="succeeded"} 1`,
		`ssobot_api_requests_total{method="GET /core/applications/{slug}/",status="200",system="authentik"} 1`,
		`ssobot_api_requests_total{method="GET /core/applications/{slug}/",status="404",system="authentik"} 1`,
		`ssobot_api_requests_total{method="GET /core/users/me/",status="200",system="authentik"} 1`,
		`ssobot_api_requests_total{method="GET /user/tokens/verify",status="error",system="cloudflare"} 1`,
		`ssobot_api_request_duration_seconds_count{method="GET /core/applications/{slug}/",system="authentik"} 2`,
	)
	if strings.Contains(body, `method="users.info"}`) && strings.Contains(body, "ssobot_slack_errors_total{error=\"ignored\"") {
		t.Error("an ok answer counted as a Slack error")
	}
	for _, leak := range []string{"grafana", "token-value", "missing"} {
		if strings.Contains(body, leak) {
			t.Errorf("metrics contain %q: labels must be bounded and secret-free", leak)
		}
	}
	if !strings.Contains(body, "ssobot_build_info{") || !strings.Contains(body, "go_goroutines") {
		t.Error("metrics lack build info or Go runtime metrics")
	}
}

func TestMetricsStoreError(t *testing.T) {
	m := NewMetrics(fixedCounts{err: errors.New("database closed")})
	m.RunFinished(workflow.StateFailed)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	// The other metrics are still served when the store cannot be read.
	if rec.Code != http.StatusOK {
		t.Fatalf("status = %d, want 200", rec.Code)
	}
	requireLines(t, rec.Body.String(), `ssobot_runs_finished_total{state="failed"} 1`)
	if strings.Contains(rec.Body.String(), "ssobot_runs{") {
		t.Error("ssobot_runs served although the store failed")
	}
}
