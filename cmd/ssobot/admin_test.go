package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ssobot/ssobot/store"
	"github.com/ssobot/ssobot/workflow"
)

var testTime = time.Date(2026, 5, 4, 10, 0, 0, 0, time.UTC)

// testRun is a finished run as the engine leaves it.
func testRun(name string, state workflow.State) *workflow.Run {
	slug := workflow.Slugify(name)
	r := &workflow.Run{
		State:   state,
		Request: workflow.Request{ApplicationName: name, RequestedBy: "U0ALICE", Channel: "C0OPS"},
		Params: workflow.Params{
			ApplicationName: name, ApplicationSlug: slug, ProviderName: name + " (Cloudflare Access)",
			TeamDomain: "acme.cloudflareaccess.com", LoginMethodName: "authentik", ClientID: "ssobot-" + slug,
			AuthentikURL: "https://auth.example.com",
		},
		CreatedAt: testTime,
		UpdatedAt: testTime.Add(time.Minute),
	}
	for _, p := range workflow.Plan {
		r.Steps = append(r.Steps, workflow.Step{Name: p.Name, Kind: p.Kind, Status: workflow.StepSucceeded, Attempts: 1})
	}
	if state == workflow.StateSucceeded {
		r.Approvals = []workflow.Approval{
			{Gate: workflow.GateAuthentik, User: "U0BOB", Decision: workflow.Approve, At: testTime.Add(10 * time.Second)},
			{Gate: workflow.GateCloudflare, User: "U0BOB", Decision: workflow.Approve, At: testTime.Add(20 * time.Second)},
		}
		r.Resources = workflow.Resources{AuthentikProviderID: 7, AuthentikApplicationSlug: slug, CloudflareIdentityProviderID: "f174e90a-fafe-4643-bbbc-4a0ed4fc8415"}
	} else {
		s := r.Step(workflow.StepAuthentikProvider)
		s.Status, s.Attempts = workflow.StepFailed, 2
		s.Errors = []workflow.AttemptError{{Attempt: 1, Error: "authentik: create provider: 503"}, {Attempt: 2, Error: "authentik: create provider: 400 Bad Request: name taken"}}
		for i := range r.Steps[3:] {
			r.Steps[3+i].Status, r.Steps[3+i].Attempts = workflow.StepPending, 0
		}
		r.Error = "authentik-provider failed"
	}
	return r
}

// openTestStore opens a store in a temporary directory with runs created
// by the given constructors, oldest first.
func openTestStore(t *testing.T, runs ...*workflow.Run) (*store.Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ssobot.db")
	st, err := store.Open(path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	for _, r := range runs {
		ev := workflow.Event{At: r.CreatedAt, Type: workflow.EventCreated, Actor: r.Request.RequestedBy, Message: "requested " + r.Request.ApplicationName}
		if err := st.CreateRun(context.Background(), r, ev); err != nil {
			t.Fatal(err)
		}
	}
	return st, path
}

func TestAdmin(t *testing.T) {
	st, _ := openTestStore(t, testRun("Grafana", workflow.StateSucceeded), testRun("Wiki", workflow.StateFailed), testRun("Vault", workflow.StateSucceeded))
	defer st.Close()
	ready := errors.New("engine not running")
	h := newAdminHandler(adminConfig{
		Runs:    st,
		Backup:  st.Backup,
		Ready:   func() error { return ready },
		Metrics: NewMetrics(st).Handler(),
		Clock:   func() time.Time { return testTime },
	})
	srv := httptest.NewServer(h)
	defer srv.Close()

	get := func(t *testing.T, path string) (*http.Response, []byte) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, b
	}

	tests := []struct {
		path   string
		status int
		check  func(t *testing.T, resp *http.Response, body []byte)
	}{
		{path: "/healthz", status: 200},
		{path: "/readyz", status: 503, check: func(t *testing.T, _ *http.Response, body []byte) {
			if !strings.Contains(string(body), "engine not running") {
				t.Errorf("readyz body = %q, want the reason", body)
			}
		}},
		{path: "/metrics", status: 200, check: func(t *testing.T, _ *http.Response, body []byte) {
			requireLines(t, string(body), `ssobot_runs{state="succeeded"} 2`, `ssobot_runs{state="failed"} 1`)
		}},
		{path: "/api/runs", status: 200, check: func(t *testing.T, _ *http.Response, body []byte) {
			var got struct {
				Runs []map[string]any `json:"runs"`
			}
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, r := range got.Runs {
				names = append(names, r["application_name"].(string))
			}
			if strings.Join(names, ",") != "Vault,Wiki,Grafana" {
				t.Errorf("runs = %v, want newest first", names)
			}
			// Every documented field is present.
			for _, k := range []string{"id", "state", "application_name", "application_slug", "team_domain", "requested_by", "created_at", "updated_at", "steps", "approvals", "resources"} {
				if _, ok := got.Runs[0][k]; !ok {
					t.Errorf("run lacks %q", k)
				}
			}
		}},
		{path: "/api/runs?limit=1", status: 200, check: func(t *testing.T, _ *http.Response, body []byte) {
			var got runList
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatal(err)
			}
			if len(got.Runs) != 1 || got.Runs[0].ApplicationName != "Vault" {
				t.Errorf("limit=1 gave %+v", got.Runs)
			}
		}},
		{path: "/api/runs?state=failed", status: 200, check: func(t *testing.T, _ *http.Response, body []byte) {
			var got runList
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatal(err)
			}
			if len(got.Runs) != 1 || got.Runs[0].State != workflow.StateFailed {
				t.Errorf("state=failed gave %+v", got.Runs)
			}
		}},
		{path: "/api/runs?limit=0", status: 400},
		{path: "/api/runs?limit=abc", status: 400},
		{path: "/api/runs?state=bogus", status: 400},
		{path: "/api/runs/1", status: 200, check: func(t *testing.T, _ *http.Response, body []byte) {
			const want = `{
  "id": 1,
  "state": "succeeded",
  "application_name": "Grafana",
  "application_slug": "grafana",
  "team_domain": "acme.cloudflareaccess.com",
  "login_method_name": "authentik",
  "provider_name": "Grafana (Cloudflare Access)",
  "client_id": "ssobot-grafana",
  "requested_by": "U0ALICE",
  "channel": "C0OPS",
  "created_at": "2026-05-04T10:00:00Z",
  "updated_at": "2026-05-04T10:01:00Z",
  "steps": [
    {
      "name": "preflight",
      "kind": "action",
      "status": "succeeded",
      "attempts": 1,
      "error": ""
    },`
			if !strings.HasPrefix(string(body), want) {
				t.Errorf("run JSON starts\n%s\nwant\n%s", body[:min(len(body), len(want)+100)], want)
			}
			var got runView
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatal(err)
			}
			if got.Resources.AuthentikProviderID == nil || *got.Resources.AuthentikProviderID != 7 || *got.Resources.AuthentikApplicationSlug != "grafana" {
				t.Errorf("resources = %+v", got.Resources)
			}
			if len(got.Approvals) != 2 || got.Approvals[1].Gate != workflow.GateCloudflare || got.Approvals[1].User != "U0BOB" {
				t.Errorf("approvals = %+v", got.Approvals)
			}
			if len(got.Events) != 1 || got.Events[0].Type != workflow.EventCreated {
				t.Errorf("events = %+v", got.Events)
			}
		}},
		{path: "/api/runs/2", status: 200, check: func(t *testing.T, _ *http.Response, body []byte) {
			var got map[string]any
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatal(err)
			}
			res := got["resources"].(map[string]any)
			for _, k := range []string{"authentik_provider_id", "authentik_application_slug", "cloudflare_identity_provider_id"} {
				if v, ok := res[k]; !ok || v != nil {
					t.Errorf("resources[%q] = %v, %v; want null", k, v, ok)
				}
			}
			step := got["steps"].([]any)[2].(map[string]any)
			if step["error"] != "authentik: create provider: 400 Bad Request: name taken" || step["attempts"] != 2.0 {
				t.Errorf("failed step = %v, want its last error", step)
			}
		}},
		{path: "/api/runs/99", status: 404, check: func(t *testing.T, resp *http.Response, body []byte) {
			if resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(string(body), `"error": "run 99 not found"`) {
				t.Errorf("404 = %s %s", resp.Header.Get("Content-Type"), body)
			}
		}},
		{path: "/api/runs/abc", status: 404},
		{path: "/nope", status: 404},
		{path: "/api/backup", status: 200, check: func(t *testing.T, resp *http.Response, body []byte) {
			if ct := resp.Header.Get("Content-Type"); ct != "application/octet-stream" {
				t.Errorf("Content-Type = %q", ct)
			}
			if cd := resp.Header.Get("Content-Disposition"); cd != `attachment; filename="ssobot-20260504T100000Z.db"` {
				t.Errorf("Content-Disposition = %q", cd)
			}
			// The copy is a database the store opens, with the same runs.
			path := filepath.Join(t.TempDir(), "backup.db")
			if err := os.WriteFile(path, body, 0o600); err != nil {
				t.Fatal(err)
			}
			cp, err := store.Open(path, store.Options{ReadOnly: true})
			if err != nil {
				t.Fatalf("open backup: %v", err)
			}
			defer cp.Close()
			if err := cp.Check(); err != nil {
				t.Errorf("backup check: %v", err)
			}
			runs, err := cp.ListRuns(context.Background(), workflow.ListOptions{})
			if err != nil || len(runs) != 3 {
				t.Errorf("backup has %d runs, %v; want 3", len(runs), err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, body := get(t, tt.path)
			if resp.StatusCode != tt.status {
				t.Fatalf("GET %s = %d, want %d: %s", tt.path, resp.StatusCode, tt.status, body)
			}
			if tt.check != nil {
				tt.check(t, resp, body)
			}
		})
	}

	ready = nil
	if resp, body := get(t, "/readyz"); resp.StatusCode != 200 {
		t.Errorf("readyz once ready = %d %s", resp.StatusCode, body)
	}
}

// testRunNotCounting is a run whose authentik gate has one approval that
// counts, one whose approver is not one any more and one set aside when
// the expired gate was opened again.
func testRunNotCounting() *workflow.Run {
	r := testRun("Portal", workflow.StateSucceeded)
	r.Approvals = []workflow.Approval{
		{Gate: workflow.GateAuthentik, User: "U0BOB", Decision: workflow.Approve, At: testTime.Add(10 * time.Second), Reason: "ok"},
		{Gate: workflow.GateAuthentik, User: "U0CAROL", Decision: workflow.Approve, At: testTime.Add(20 * time.Second), Lapsed: true},
		{Gate: workflow.GateAuthentik, User: "U0DAVE", Decision: workflow.Approve, At: testTime.Add(30 * time.Second), SetAside: true},
	}
	return r
}

// notCountingWant is what the admin API and `runs show --json` say of
// testRunNotCounting's approvals, by user: whether each counts, and why not.
var notCountingWant = []struct {
	user, notCounted string
	counts           bool
}{
	{"U0BOB", "", true},
	{"U0CAROL", "not an approver any more", false},
	{"U0DAVE", "given before the gate expired and was opened again", false},
}

// TestAdminApprovalsNotCounted: each approval in /api/runs and
// /api/runs/{id} says whether it counts and, when not, why, beside the
// fields it had.
func TestAdminApprovalsNotCounted(t *testing.T) {
	st, _ := openTestStore(t, testRunNotCounting())
	srv := httptest.NewServer(newAdminHandler(adminConfig{Runs: st, Backup: st.Backup}))
	defer srv.Close()
	for _, tt := range []struct {
		path string
		run  func(body []byte) (map[string]any, error)
	}{
		{"/api/runs", func(body []byte) (map[string]any, error) {
			var got struct {
				Runs []map[string]any `json:"runs"`
			}
			if err := json.Unmarshal(body, &got); err != nil || len(got.Runs) != 1 {
				return nil, fmt.Errorf("%d runs, %v; want 1", len(got.Runs), err)
			}
			return got.Runs[0], nil
		}},
		{"/api/runs/1", func(body []byte) (map[string]any, error) {
			var got map[string]any
			return got, json.Unmarshal(body, &got)
		}},
	} {
		t.Run(tt.path, func(t *testing.T) {
			resp, err := http.Get(srv.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			run, err := tt.run(body)
			if err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			approvals, _ := run["approvals"].([]any)
			if len(approvals) != len(notCountingWant) {
				t.Fatalf("approvals %v; want %d", run["approvals"], len(notCountingWant))
			}
			for i, want := range notCountingWant {
				a := approvals[i].(map[string]any)
				if a["gate"] != string(workflow.GateAuthentik) || a["user"] != want.user || a["decision"] != string(workflow.Approve) || a["at"] == nil {
					t.Errorf("approval %d = %v; want %s's approval of %s", i, a, want.user, workflow.GateAuthentik)
				}
				if a["counts"] != want.counts {
					t.Errorf("%s's approval counts: %v; want %v", want.user, a["counts"], want.counts)
				}
				if why, ok := a["not_counted"]; ok != !want.counts || (ok && why != want.notCounted) {
					t.Errorf("%s's approval not_counted: %v (%v); want %q", want.user, why, ok, want.notCounted)
				}
			}
		})
	}
}

// TestAdminApprovalCountsOfRejections: counts and not_counted speak of
// approvals only. A rejection counts toward no gate, so it has neither: a
// client counting entries with counts true counts approvals, and
// `runs show` marks no rejection as no longer counting.
func TestAdminApprovalCountsOfRejections(t *testing.T) {
	tests := []struct {
		name     string
		approval workflow.Approval
		want     string // the JSON of counts and not_counted, "" for neither
	}{
		{"approval", workflow.Approval{Decision: workflow.Approve}, `"counts":true`},
		{"lapsed approval", workflow.Approval{Decision: workflow.Approve, Lapsed: true}, `"counts":false,"not_counted":"not an approver any more"`},
		{"rejection", workflow.Approval{Decision: workflow.Reject}, ""},
		{"rejection by a former approver", workflow.Approval{Decision: workflow.Reject, Lapsed: true}, ""},
		{"rejection set aside", workflow.Approval{Decision: workflow.Reject, SetAside: true}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := tt.approval
			a.Gate, a.User, a.At = workflow.GateAuthentik, "U0BOB", testTime
			b, err := json.Marshal(newApprovalView(a))
			if err != nil {
				t.Fatal(err)
			}
			prefix := `{"gate":"authentik","user":"U0BOB","decision":"` + string(a.Decision) + `","at":"` + testTime.Format(time.RFC3339Nano) + `"`
			want := prefix + "}"
			if tt.want != "" {
				want = prefix + "," + tt.want + "}"
			}
			if string(b) != want {
				t.Errorf("JSON %s; want %s", b, want)
			}
			var out bytes.Buffer
			printRun(&out, runView{ID: 1, Approvals: []approvalView{newApprovalView(a)}})
			if marked := strings.Contains(out.String(), "no longer counts"); marked != strings.Contains(tt.want, "false") {
				t.Errorf("runs show marks it as no longer counting: %v; output:\n%s", marked, out.String())
			}
		})
	}
}

func TestAdminBackupFailure(t *testing.T) {
	h := newAdminHandler(adminConfig{
		Backup: func(context.Context, io.Writer) (int64, error) { return 0, errors.New("database closed") },
	})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/api/backup", nil)
	req.Host = "127.0.0.1:9090" // httptest's example.com is refused
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusInternalServerError || rec.Header().Get("Content-Disposition") != "" {
		t.Errorf("failed backup = %d %v, want 500 without an attachment", rec.Code, rec.Header())
	}
	if !bytes.Contains(rec.Body.Bytes(), []byte("database closed")) {
		t.Errorf("body = %s", rec.Body)
	}
}

// TestAdminBackupStalledClient: a backup client that stops reading is cut
// off, so the copy's read transaction (which the next commit growing the
// file waits for) ends instead of lasting until TCP gives up.
func TestAdminBackupStalledClient(t *testing.T) {
	ended := make(chan error, 1)
	srv := httptest.NewServer(newAdminHandler(adminConfig{
		BackupStall: 100 * time.Millisecond,
		Backup: func(ctx context.Context, w io.Writer) (int64, error) {
			chunk := make([]byte, 1<<20)
			var n int64
			for {
				m, err := w.Write(chunk)
				n += int64(m)
				if err != nil {
					ended <- err
					return n, err
				}
			}
		},
	}))
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /api/backup HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// The client reads nothing from here on.
	select {
	case err := <-ended:
		if err == nil {
			t.Error("the copy ended without an error")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the copy to a client that stopped reading never ended")
	}
}

// TestAdminHost: the admin API answers requests for IP addresses,
// localhost and the names configured, on every route, and, listening
// beyond loopback only, single-label and Kubernetes service names; it
// refuses others (a DNS rebinding page's) with 421 and what to do, before
// any route runs.
func TestAdminHost(t *testing.T) {
	st, _ := openTestStore(t, testRun("Grafana", workflow.StateSucceeded))
	var backups atomic.Int32
	var logs bytes.Buffer
	cfg := adminConfig{
		Runs: st,
		Backup: func(ctx context.Context, w io.Writer) (int64, error) {
			backups.Add(1)
			return st.Backup(ctx, w)
		},
		Metrics: NewMetrics(st).Handler(),
		Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
		Clock:   func() time.Time { return testTime },
		Hosts:   []string{"ssobot-admin.internal.example.com"},
	}
	h := newAdminHandler(cfg) // a loopback listener's
	cfg.ServiceNames, cfg.Logger = true, nil
	beyond := newAdminHandler(cfg)
	routes := []string{"/healthz", "/readyz", "/metrics", "/api/runs", "/api/runs/1", "/api/backup", "/nope"}
	const (
		refused  = iota
		service  // answered beyond loopback only
		answered // on any listener
	)
	tests := []struct {
		host string
		want int
	}{
		{"", answered}, // HTTP/1.0
		{"127.0.0.1:9090", answered},
		{"127.0.0.1", answered},
		{"[::1]:9090", answered},
		{"[::1]", answered},
		{"10.1.2.3:9090", answered}, // a pod's IP: Kubernetes probes, Prometheus
		{"[fd00::12]:9090", answered},
		{"localhost", answered},
		{"LocalHost:9090", answered},
		{"localhost.:9090", answered},
		{"ssobot-admin.internal.example.com", answered}, // SSOBOT_ADMIN_HOSTS
		{"SSOBOT-Admin.Internal.Example.com:8443", answered},

		// Names that LLMNR, NetBIOS or mDNS may resolve: a machine on the
		// same network can answer for them.
		{"ssobot", service}, // a Compose or Kubernetes short service name
		{"ssobot:9090", service},
		{"ssobot-admin_1", service},
		{"attacker", service},
		{"ssobot.monitoring.svc", service},
		{"ssobot.monitoring.svc:9090", service},
		{"ssobot.monitoring.svc.cluster.local", service},
		{"ssobot.monitoring.svc.cluster.local.:9090", service},
		{"evil.svc.cluster.local", service},

		{"attacker.example.com", refused},
		{"attacker.example.com:9090", refused},
		{"127.0.0.1.nip.io", refused},
		{"127.0.0.1.nip.io:9090", refused},
		{"7f000001.c0a80001.rbndr.us:9090", refused},
		{"localhost.attacker.example.com", refused},
		{"attacker.localhost", refused},
		{"attacker.local", refused},
		{"ssobot.svc.attacker.example.com", refused},
		{"ssobot.monitoring.svc.cluster.local.attacker.example.com", refused},
		{"ssobot.monitoring", refused}, // to be listed in SSOBOT_ADMIN_HOSTS
		{"ssobot.monitoring.svc.k8s.example.com", refused},
		{"other.internal.example.com", refused},
		{"internal.example.com", refused},
		{"ssobot!", refused},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			for _, l := range []struct {
				name string
				h    http.Handler
				ok   bool
			}{
				{"loopback", h, tt.want == answered},
				{"beyond loopback", beyond, tt.want != refused},
			} {
				for _, path := range routes {
					before := backups.Load()
					req := httptest.NewRequest("GET", path, nil)
					req.Host = tt.host
					rec := httptest.NewRecorder()
					l.h.ServeHTTP(rec, req)
					if !l.ok {
						if rec.Code != http.StatusMisdirectedRequest {
							t.Errorf("%s: GET %s for %q = %d, want 421", l.name, path, tt.host, rec.Code)
						}
						want := fmt.Sprintf("host %q is not allowed for the admin API: use its IP address or localhost, or add the name to SSOBOT_ADMIN_HOSTS\n", adminHostName(tt.host))
						if got := rec.Body.String(); got != want {
							t.Errorf("%s: GET %s for %q: body %q, want %q", l.name, path, tt.host, got, want)
						}
						if ct := rec.Header().Get("Content-Type"); ct != "text/plain; charset=utf-8" {
							t.Errorf("Content-Type = %q", ct)
						}
						if backups.Load() != before {
							t.Errorf("a refused request ran a backup")
						}
						continue
					}
					want := http.StatusOK
					if path == "/nope" {
						want = http.StatusNotFound
					}
					if rec.Code != want {
						t.Errorf("%s: GET %s for %q = %d, want %d: %s", l.name, path, tt.host, rec.Code, want, rec.Body)
					}
				}
			}
		})
	}

	// The host is the requester's: it is quoted, cut short, and logged
	// once a minute at most.
	long := strings.Repeat("a", 300) + ".example.com"
	req := httptest.NewRequest("GET", "/api/backup", nil)
	req.Host = long
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if body := rec.Body.String(); rec.Code != http.StatusMisdirectedRequest || len(body) > 250 || !strings.Contains(body, `"`+strings.Repeat("a", maxQuotedHost)+`..."`) {
		t.Errorf("long host: %d %q; want 421 quoting %d bytes of it", rec.Code, body, maxQuotedHost)
	}
	if n := strings.Count(logs.String(), "admin request refused"); n != 1 {
		t.Errorf("%d log lines about refused hosts within a minute, want 1:\n%s", n, logs.String())
	}
	first := ""
	for _, tt := range tests {
		if tt.want != answered {
			first = adminHostName(tt.host)
			break
		}
	}
	if !strings.Contains(logs.String(), "host="+first+" ") || strings.Contains(logs.String(), long) {
		t.Errorf("log:\n%s\nwant the first refused host, and no host uncut", logs.String())
	}
}

// TestAdminHostOnTheWire: what clients send reaches the check as the
// tests above set it: a browser's Host, an IPv6 literal, none (HTTP/1.0).
func TestAdminHostOnTheWire(t *testing.T) {
	loopback := httptest.NewServer(newAdminHandler(adminConfig{}))
	defer loopback.Close()
	beyond := httptest.NewServer(newAdminHandler(adminConfig{ServiceNames: true}))
	defer beyond.Close()
	for _, tt := range []struct {
		srv             *httptest.Server
		request, status string
	}{
		{loopback, "GET /healthz HTTP/1.1\r\nHost: attacker.example.com:9090\r\n\r\n", "HTTP/1.1 421 Misdirected Request"},
		{loopback, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1.nip.io:9090\r\n\r\n", "HTTP/1.1 421 Misdirected Request"},
		// Names LLMNR and mDNS resolve, which a machine on the LAN can
		// answer with 127.0.0.1.
		{loopback, "GET /healthz HTTP/1.1\r\nHost: attacker:9090\r\n\r\n", "HTTP/1.1 421 Misdirected Request"},
		{loopback, "GET /healthz HTTP/1.1\r\nHost: evil.svc.cluster.local:9090\r\n\r\n", "HTTP/1.1 421 Misdirected Request"},
		{loopback, "GET /healthz HTTP/1.1\r\nHost: [::1]:9090\r\n\r\n", "HTTP/1.1 200 OK"},
		{loopback, "GET /healthz HTTP/1.1\r\nHost: localhost:9090\r\n\r\n", "HTTP/1.1 200 OK"},
		{loopback, "GET /healthz HTTP/1.0\r\n\r\n", "HTTP/1.0 200 OK"},
		{beyond, "GET /healthz HTTP/1.1\r\nHost: ssobot.monitoring.svc.cluster.local:9090\r\n\r\n", "HTTP/1.1 200 OK"},
		{beyond, "GET /healthz HTTP/1.1\r\nHost: ssobot:9090\r\n\r\n", "HTTP/1.1 200 OK"},
		{beyond, "GET /healthz HTTP/1.1\r\nHost: ssobot.monitoring:9090\r\n\r\n", "HTTP/1.1 421 Misdirected Request"},
		{beyond, "GET /healthz HTTP/1.1\r\nHost: attacker.example.com:9090\r\n\r\n", "HTTP/1.1 421 Misdirected Request"},
	} {
		conn, err := net.Dial("tcp", tt.srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(conn, tt.request); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		conn.Close()
		if err != nil {
			t.Fatalf("%q: %v", tt.request, err)
		}
		if got := resp.Proto + " " + resp.Status; got != tt.status {
			t.Errorf("%q answered %s, want %s", tt.request, got, tt.status)
		}
	}
}

// TestAdminBeyondLoopback: service names are answered on a listener that
// other machines reach, not on a loopback one, whatever names it.
func TestAdminBeyondLoopback(t *testing.T) {
	for _, tt := range []struct {
		addr net.Addr
		want bool
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9090}, false},
		{&net.TCPAddr{IP: net.IPv4(127, 0, 1, 1), Port: 9090}, false}, // Debian's /etc/hosts name for the machine
		{&net.TCPAddr{IP: net.IPv6loopback, Port: 9090}, false},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:127.0.0.1"), Port: 9090}, false},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 9090}, true}, // :9090
		{&net.TCPAddr{IP: net.IPv4zero, Port: 9090}, true},
		{&net.TCPAddr{IP: net.IPv4(10, 1, 2, 3), Port: 9090}, true},
		{&net.TCPAddr{IP: net.ParseIP("fd00::12"), Port: 9090}, true},
		{&net.UnixAddr{Name: "/run/ssobot.sock", Net: "unix"}, false},
	} {
		if got := adminBeyondLoopback(tt.addr); got != tt.want {
			t.Errorf("adminBeyondLoopback(%v) = %v, want %v", tt.addr, got, tt.want)
		}
	}
	// A listener on a name takes the address the name resolves to.
	ln, err := net.Listen("tcp", "localhost:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if adminBeyondLoopback(ln.Addr()) {
		t.Errorf("a listener on localhost (%v) counts as beyond loopback", ln.Addr())
	}
}

// TestAdminClientsAnswered: ssobot health and ssobot runs, which find the
// API from SSOBOT_ADMIN_LISTEN, ask for a host the API answers to, on a
// loopback listener as on one beyond it (the Docker HEALTHCHECK, a pod).
func TestAdminClientsAnswered(t *testing.T) {
	for _, listen := range []string{"", "127.0.0.1:9090", "[::1]:9090", "localhost:9090", ":9090", "0.0.0.0:9090", "[::]:9090", "10.1.2.3:9090", "ssobot-admin:9090", "Admin.Example.com:9090"} {
		for _, serviceNames := range []bool{false, true} {
			h := newAdminHandler(adminConfig{Hosts: adminHosts(Config{AdminListen: listen}), ServiceNames: serviceNames})
			base := adminBaseURL(listen)
			req := httptest.NewRequest("GET", base+"/healthz", nil)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				t.Errorf("SSOBOT_ADMIN_LISTEN=%q, service names %v: GET %s/healthz = %d %s", listen, serviceNames, base, rec.Code, rec.Body)
			}
		}
	}
}

// TestAdminHostsFromConfig: the admin API answers to SSOBOT_ADMIN_HOSTS
// and to the name SSOBOT_ADMIN_LISTEN listens on, which the clients use.
func TestAdminHostsFromConfig(t *testing.T) {
	for _, tt := range []struct {
		listen string
		hosts  []string
		want   []string
	}{
		{"127.0.0.1:9090", nil, nil},
		{":9090", []string{"a.example.com"}, []string{"a.example.com"}},
		{"[::1]:9090", nil, nil},
		{"Admin.Example.com:9090", []string{"a.example.com"}, []string{"a.example.com", "admin.example.com"}},
	} {
		if got := adminHosts(Config{AdminListen: tt.listen, AdminHosts: tt.hosts}); !slices.Equal(got, tt.want) {
			t.Errorf("adminHosts(%q, %q) = %q, want %q", tt.listen, tt.hosts, got, tt.want)
		}
	}
}

// TestRunViewRemindAt: the admin API shows an open gate's pending reminder,
// not the time a closed gate's was set for.
func TestRunViewRemindAt(t *testing.T) {
	at := time.Date(2026, 11, 29, 6, 0, 0, 0, time.UTC)
	r := &workflow.Run{ID: 1, State: workflow.StateAwaitingApproval, Steps: []workflow.Step{
		{Name: workflow.GateAuthentik, Kind: workflow.KindGate, Status: workflow.StepSucceeded, RemindAt: at},
		{Name: workflow.GateCloudflare, Kind: workflow.KindGate, Status: workflow.StepWaiting, RemindAt: at.Add(time.Hour)},
	}}
	v := newRunView(r, nil)
	if v.Steps[0].RemindAt != nil {
		t.Errorf("closed gate remind_at %v; want none", v.Steps[0].RemindAt)
	}
	if got := v.Steps[1].RemindAt; got == nil || !got.Equal(at.Add(time.Hour)) {
		t.Errorf("open gate remind_at %v; want %v", got, at.Add(time.Hour))
	}
	// ssobot runs show says the same.
	r.Steps[1].Deadline = at.Add(7 * time.Hour)
	var out bytes.Buffer
	printRun(&out, newRunView(r, nil))
	want := fmt.Sprintf("waiting until %s, reminder at %s", at.Add(7*time.Hour).Local().Format(time.RFC3339), at.Add(time.Hour).Local().Format(time.RFC3339))
	if !strings.Contains(out.String(), want) || strings.Count(out.String(), "reminder at") != 1 {
		t.Errorf("runs show:\n%s\nwant the open gate's line to say %q", out.String(), want)
	}
}

// TestClosedGateShowsNoDeadlineNorReminder: a gate that was decided,
// expired or cancelled keeps the deadline and reminder it was set with;
// neither the admin API nor ssobot runs show says it still waits for them.
func TestClosedGateShowsNoDeadlineNorReminder(t *testing.T) {
	deadline := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	remind := deadline.Add(-6 * time.Hour)
	for _, status := range []workflow.StepStatus{workflow.StepSucceeded, workflow.StepRejected, workflow.StepExpired, workflow.StepCancelled} {
		t.Run(string(status), func(t *testing.T) {
			r := &workflow.Run{ID: 1, State: workflow.StateCancelled, Steps: []workflow.Step{
				{Name: workflow.GateAuthentik, Kind: workflow.KindGate, Status: status, Deadline: deadline, RemindAt: remind},
			}}
			v := newRunView(r, nil)
			if got := v.Steps[0].RemindAt; got != nil {
				t.Errorf("remind_at %v on a %s gate; want none", got, status)
			}
			var out bytes.Buffer
			printRun(&out, v)
			if s := out.String(); strings.Contains(s, " until ") || strings.Contains(s, "reminder at") {
				t.Errorf("runs show:\n%s\nsays a %s gate waits", s, status)
			}
		})
	}
}

// TestAdminServiceNames: service names are answered only beyond loopback,
// and a list set in SSOBOT_ADMIN_HOSTS replaces them.
func TestAdminServiceNames(t *testing.T) {
	loop := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9090}
	wide := &net.TCPAddr{IP: net.IPv6unspecified, Port: 9090}
	for _, tt := range []struct {
		addr  net.Addr
		hosts []string
		want  bool
	}{
		{loop, nil, false},
		{loop, []string{"ssobot.monitoring"}, false},
		{wide, nil, true},
		{wide, []string{"ssobot.monitoring"}, false},
	} {
		if got := adminServiceNames(tt.addr, Config{AdminHosts: tt.hosts}); got != tt.want {
			t.Errorf("adminServiceNames(%v, %q) = %v, want %v", tt.addr, tt.hosts, got, tt.want)
		}
	}
}

// TestAdminMethodNotAllowed: a known endpoint asked with another method is
// answered 405 with the methods it takes; an unknown path stays 404, and
// a host the API does not answer to is refused before either.
func TestAdminMethodNotAllowed(t *testing.T) {
	st, _ := openTestStore(t, testRun("Grafana", workflow.StateSucceeded))
	defer st.Close()
	h := newAdminHandler(adminConfig{Runs: st, Backup: st.Backup, Ready: func() error { return nil }, Metrics: NewMetrics(st).Handler()})
	tests := []struct {
		method, path, host string
		status             int
		allow              string
	}{
		{"POST", "/api/runs", "", http.StatusMethodNotAllowed, "GET, HEAD"},
		{"DELETE", "/api/runs/1", "", http.StatusMethodNotAllowed, "GET, HEAD"},
		{"PUT", "/healthz", "", http.StatusMethodNotAllowed, "GET, HEAD"},
		{"POST", "/metrics", "", http.StatusMethodNotAllowed, "GET, HEAD"},
		{"POST", "/nope", "", http.StatusNotFound, ""},
		{"HEAD", "/api/runs", "", http.StatusOK, ""},
		{"POST", "/api/runs", "rebound.example.com", http.StatusMisdirectedRequest, ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path+" "+tt.host, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, tt.path, nil)
			req.Host = first(tt.host, "127.0.0.1:9090")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.status || rec.Header().Get("Allow") != tt.allow {
				t.Errorf("%d, Allow %q; want %d, %q: %s", rec.Code, rec.Header().Get("Allow"), tt.status, tt.allow, rec.Body)
			}
			if tt.status == http.StatusMethodNotAllowed {
				var e apiError
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || !strings.Contains(e.Error, tt.method) {
					t.Errorf("body %q, want a JSON error naming %s", rec.Body, tt.method)
				}
			}
		})
	}
}
