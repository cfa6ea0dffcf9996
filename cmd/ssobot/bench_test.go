//go:build !ssobot_server

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ssobot/ssobot/bot"
	"github.com/ssobot/ssobot/bot/slacktest"
	"github.com/ssobot/ssobot/workflow"
	"github.com/ssobot/ssobot/workflow/contracttest"
)

// TestBenchQuick runs `ssobot bench --quick --json` once: every section
// must run to its end and report. It asserts no figure: CI machines are
// too noisy for timing assertions.
func TestBenchQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every benchmark section once; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	memProfile := filepath.Join(t.TempDir(), "mem.prof")
	code := run(ctx, []string{"bench", "--quick", "--json", "--binary", binary(t), "--memprofile", memProfile}, os.Getenv, os.ReadFile, &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit code %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	// pprof writes gzip-compressed protocol buffers.
	if prof, err := os.ReadFile(memProfile); err != nil || len(prof) < 2 || prof[0] != 0x1f || prof[1] != 0x8b {
		t.Errorf("--memprofile wrote no profile (%d bytes, %v)", len(prof), err)
	}
	var report benchReport
	if err := json.Unmarshal(stdout.Bytes(), &report); err != nil {
		t.Fatalf("the report is not JSON: %v\n%s", err, stdout.String())
	}
	got := map[string]*benchSection{}
	for _, s := range report.Sections {
		got[s.Name] = s
	}
	for _, name := range benchSectionNames() {
		s := got[name]
		switch {
		case s == nil:
			t.Errorf("section %s is missing", name)
		case s.Error != "":
			t.Errorf("section %s failed: %s", name, s.Error)
		case len(s.Tables) == 0 || len(s.Checks) == 0:
			t.Errorf("section %s has %d tables and %d checks, want some of each", name, len(s.Tables), len(s.Checks))
		}
		if s == nil {
			continue
		}
		for _, c := range s.Checks {
			if c.Verdict != benchPass && c.Verdict != benchMiss && c.Verdict != benchSkip {
				t.Errorf("section %s: check %q has verdict %q", name, c.What, c.Verdict)
			}
		}
	}
	if ack := got["ack"]; ack != nil && ack.Values["command_status_1_p99_ms"] <= 0 {
		t.Errorf("the ack section measured no latency: %v", ack.Values)
	}
	if calls := got["calls"]; calls != nil && calls.Values["fault_duplicates"] != 0 {
		t.Errorf("duplicates under faults: %v", calls.Values["fault_duplicates"])
	}

	// The text form prints every section, its tables and its verdicts.
	var text bytes.Buffer
	report.print(&text)
	for _, s := range report.Sections {
		if !strings.Contains(text.String(), "## "+s.Title) {
			t.Errorf("the text report lacks section %q", s.Title)
		}
		for _, c := range s.Checks {
			if !strings.Contains(text.String(), c.What) {
				t.Errorf("the text report lacks check %q", c.What)
			}
		}
	}
}

func TestBenchUsage(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"bench", "--only", "nope"}, exitUsage, `unknown section "nope"`},
		{[]string{"bench", "extra"}, exitUsage, "usage: ssobot bench"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, os.Getenv, os.ReadFile, &stdout, &stderr)
			if code != tt.code || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, stderr.String(), tt.code, tt.want)
			}
		})
	}
}

// TestHelpGoesToStdout: help asked for goes to stdout (so it can be piped
// to less or grep), with exit 0, for every subcommand with flags.
func TestHelpGoesToStdout(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"bench", "-h"}, "--quick"},
		{[]string{"serve", "-h"}, "SSOBOT_APPROVERS"},
		{[]string{"serve", "--help"}, "SSOBOT_APPROVERS"},
		{[]string{"manifest", "-h"}, "usage: ssobot manifest"},
		{[]string{"runs", "list", "-h"}, "usage: ssobot runs"},
	} {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, func(string) string { return "" }, os.ReadFile, &stdout, &stderr)
			if code != exitOK || !strings.Contains(stdout.String(), tt.want) || stderr.Len() != 0 {
				t.Errorf("exit %d, stdout %q, stderr %q; want 0, %q on stdout, nothing on stderr", code, stdout.String(), stderr.String(), tt.want)
			}
		})
	}
}

func TestBenchHelpers(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	tests := []struct {
		in            []time.Duration
		p50, p99, max time.Duration
	}{
		{nil, 0, 0, 0},
		{ms(7), 7 * time.Millisecond, 7 * time.Millisecond, 7 * time.Millisecond},
		{ms(5, 1, 3, 2, 4), 3 * time.Millisecond, 5 * time.Millisecond, 5 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92, 93, 94, 95, 96, 97, 98, 99, 100, 1000),
			51 * time.Millisecond, 100 * time.Millisecond, time.Second},
	}
	for _, tt := range tests {
		s := stats(tt.in)
		if s.P50 != tt.p50 || s.P99 != tt.p99 || s.Max != tt.max {
			t.Errorf("stats(%v) = p50 %v p99 %v max %v; want %v %v %v", tt.in, s.P50, s.P99, s.Max, tt.p50, tt.p99, tt.max)
		}
	}

	fams, err := parseMetrics(strings.NewReader(`# TYPE ssobot_api_requests_total counter
ssobot_api_requests_total{method="GET /flows/instances/",status="200",system="authentik"} 2
ssobot_api_requests_total{method="GET /flows/instances/",status="503",system="authentik"} 1
ssobot_api_requests_total{method="chat.update",status="200",system="slack"} 5
`))
	if routes := apiRequests(fams); err != nil || len(routes) != 1 || routes["authentik GET /flows/instances/"] != 3 {
		t.Errorf("apiRequests = %v, %v", routes, err)
	}

	for _, tt := range []struct{ pkg, kind string }{
		{"github.com/cloudflare/cloudflare-go/v7/zero_trust", "product"},
		{"github.com/cloudflare/cloudflare-go/v7/dns", "product"},
		{"github.com/cloudflare/cloudflare-go/v7", "product (the root client links every product)"},
		{"github.com/cloudflare/cloudflare-go/v7/internal/apijson", "SDK plumbing"},
		{"github.com/cloudflare/cloudflare-go/v7/packages/pagination", "SDK plumbing"},
		{"github.com/cloudflare/cloudflare-go/v7/option", "SDK plumbing"},
	} {
		if got := cloudflarePackageKind(tt.pkg); got != tt.kind {
			t.Errorf("cloudflarePackageKind(%s) = %q, want %q", tt.pkg, got, tt.kind)
		}
	}
	for _, tt := range []struct{ commit, want string }{
		{"create run: run.created", "yes"},
		{"update run: step.started, step.intent [preflight]", "no"},
		{"update run: step.started, step.intent [authentik-provider]", "yes"},
		{"update run: step.started, step.intent [verify]", "no"},
		{"update run: message ref", "yes"},
		{"update run: delivered", "no"},
		{"update run: gate.decision_accepted, gate.approved [authentik]", "yes"},
	} {
		if got := benchCommitNeed(tt.commit); !strings.HasPrefix(got, tt.want) {
			t.Errorf("benchCommitNeed(%q) = %q, want %s…", tt.commit, got, tt.want)
		}
	}
}

// benchAckEnv is a bot with a run whose authentik gate is approved, for the
// acknowledgement benchmarks.
type benchAckEnv struct {
	e       *benchEnv
	handler http.Handler
	run     *workflow.Run
	click   slacktest.BlockAction
	seq     atomic.Int64
}

func newBenchAckEnv(b *testing.B) *benchAckEnv {
	b.Helper()
	e, err := newBenchEnv(b.Context(), benchEnvOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close() })
	run, err := e.start(b.Context(), "Grafana")
	if err != nil {
		b.Fatal(err)
	}
	if err := e.settle(b.Context(), 20*time.Millisecond); err != nil {
		b.Fatal(err)
	}
	if run, err = e.app.engine.Get(b.Context(), run.ID); err != nil {
		b.Fatal(err)
	}
	g := run.OpenGate()
	if g == nil {
		b.Fatalf("run %d is %s", run.ID, run.State)
	}
	ch, ts, _ := strings.Cut(run.MessageRef, "|")
	click, err := e.sl.ClickButton(ch, ts, bot.ActionApprove, benchApprover)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := e.app.engine.Decide(b.Context(), workflow.DecisionRequest{RunID: run.ID, Gate: g.Name, Nonce: g.Nonce, User: benchApprover, Decision: workflow.Approve}); err != nil {
		b.Fatal(err)
	}
	return &benchAckEnv{e: e, handler: e.app.bot.Handler(), run: run, click: click}
}

// serve sends one signed request to the bot's handler, as the HTTP server
// would, and checks the answer.
func (a *benchAckEnv) serve(b *testing.B, path string, body []byte, want string) {
	now := time.Now()
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set(bot.HeaderTimestamp, fmt.Sprint(now.Unix()))
	req.Header.Set(bot.HeaderSignature, slacktest.Sign(a.e.secret, now, body))
	w := httptest.NewRecorder()
	a.handler.ServeHTTP(w, req)
	if w.Code != http.StatusOK || !strings.Contains(w.Body.String(), want) {
		b.Fatalf("POST %s = %d %q, want 200 with %q", path, w.Code, w.Body.String(), want)
	}
}

// BenchmarkCommandAck is the bot's answer to a slash command, up to the
// acknowledgement, with a real engine and store behind it. Each request is
// distinct, as Slack's are (the replay guard short-cuts copies).
func BenchmarkCommandAck(b *testing.B) {
	a := newBenchAckEnv(b)
	for _, tt := range []struct{ name, text, want string }{
		{"status", fmt.Sprintf("status %d", a.run.ID), "Grafana"},
		{"list", "list", "most recent run"},
		{"new", "new Bench%d", "started"},
	} {
		b.Run(tt.name, func(b *testing.B) {
			for b.Loop() {
				text := tt.text
				if strings.Contains(text, "%d") {
					text = fmt.Sprintf(text, a.seq.Add(1))
				}
				a.serve(b, slackCommandsPath, benchCommandBody(a.e, text), tt.want)
			}
		})
	}
}

// BenchmarkInteractionAck is the bot's answer to an Approve click (refused
// in the background: the gate was already approved).
func BenchmarkInteractionAck(b *testing.B) {
	a := newBenchAckEnv(b)
	channel, ts, _ := strings.Cut(a.run.MessageRef, "|")
	for b.Loop() {
		c := a.click
		c.TriggerID = fmt.Sprintf("%d.bench", a.seq.Add(1))
		c.ResponseURL = a.e.sl.NewResponseURLFor(channel, ts, benchApprover)
		a.serve(b, slackInteractionsPath, []byte(slacktest.BlockActionsPayload(c).Encode()), "")
	}
	b.StopTimer()
	// The refusals are decided off the request path: let them finish
	// before the store closes.
	if err := a.e.settle(context.Background(), 20*time.Millisecond); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkRunHTTP is a complete run through the real engine, store and
// bot against zero-latency fakes over HTTP, gates approved through the
// engine's API the moment they open, one run at a time.
func BenchmarkRunHTTP(b *testing.B) {
	e, err := newBenchEnv(b.Context(), benchEnvOptions{AutoApprove: true})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	before := e.counters()
	i := 0
	for b.Loop() {
		i++
		r, err := e.start(b.Context(), fmt.Sprintf("Run %d", i))
		if err != nil {
			b.Fatal(err)
		}
		st, err := e.wait(b.Context(), r.ID)
		if err != nil || st != workflow.StateSucceeded {
			b.Fatalf("run %d ended %s: %v", r.ID, st, err)
		}
	}
	b.StopTimer()
	if err := e.settle(b.Context(), 20*time.Millisecond); err != nil {
		b.Fatal(err)
	}
	d := e.counters().sub(before)
	n := float64(b.N)
	b.ReportMetric(float64(d.commits)/n, "commits/op")
	b.ReportMetric(float64(d.authentik+d.oidcAPI)/n, "authentik-calls/op")
	b.ReportMetric(float64(d.cloudflare)/n, "cloudflare-calls/op")
	b.ReportMetric(float64(d.slack)/n, "slack-calls/op")
}

func TestSpanUnion(t *testing.T) {
	t0 := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	span := func(a, b int) contracttest.Span { return contracttest.Span{Start: at(a), End: at(b)} }
	for _, tt := range []struct {
		name  string
		spans []contracttest.Span
		want  time.Duration
	}{
		{"none", nil, 0},
		{"one after another", []contracttest.Span{span(0, 10), span(20, 30)}, 20 * time.Millisecond},
		{"overlapping count once", []contracttest.Span{span(0, 10), span(5, 15), span(2, 3)}, 15 * time.Millisecond},
		{"touching", []contracttest.Span{span(0, 10), span(10, 20)}, 20 * time.Millisecond},
		{"clipped to the window", []contracttest.Span{span(-10, 5), span(95, 120)}, 10 * time.Millisecond},
		{"outside the window", []contracttest.Span{span(-20, -10), span(100, 110)}, 0},
		{"unsorted", []contracttest.Span{span(50, 60), span(0, 10)}, 20 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := spanUnion(tt.spans, at(0), at(100)); got != tt.want {
				t.Errorf("spanUnion = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestBenchSender runs jobs through a real sender process (this test
// binary again, see TestMain) against a server that checks each request's
// signature: every request must arrive once, signed, and each answer be
// judged by the job's Want.
func TestBenchSender(t *testing.T) {
	const secret = "bench-sender-secret"
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := bot.Verify(r.Header, body, workflow.NewSecret(secret), time.Now()); err != nil {
			http.Error(w, "invalid signature", http.StatusUnauthorized)
			return
		}
		mu.Lock()
		seen[r.URL.Path+"?"+string(body)]++
		mu.Unlock()
		fmt.Fprint(w, "run started")
	}))
	defer srv.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedHost := strings.TrimPrefix(closed.URL, "http://")
	closed.Close()

	gen := func(i int) ([]byte, string) { return []byte(fmt.Sprintf("text=new+App+%d", i)), "/slack/commands" }
	host := strings.TrimPrefix(srv.URL, "http://")
	tests := []struct {
		name     string
		host     string
		secret   string
		want     string
		wantBad  int
		wantSeen int // distinct requests the server accepted
		wantErr  bool
	}{
		{name: "right answers", host: host, secret: secret, want: "started", wantSeen: 20},
		{name: "any 200 is right", host: host, secret: secret, want: "", wantSeen: 20},
		{name: "answers without want", host: host, secret: secret, want: "approved", wantBad: 17, wantSeen: 20},
		{name: "signed with another secret", host: host, secret: "other", want: "", wantBad: 17},
		{name: "nobody listening", host: closedHost, secret: secret, want: "", wantBad: 17, wantErr: true},
	}
	sender, err := startBenchSender(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			clear(seen)
			mu.Unlock()
			res, cpu, err := sender.run(benchJob{Host: tt.host, Senders: 3, Want: tt.want, Reqs: signedRequests(tt.secret, 20, gen)})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Lat) != 17 || res.Bad != tt.wantBad || (res.Err != "") != tt.wantErr {
				t.Errorf("%d latencies, %d bad, error %q; want 17, %d, error %v", len(res.Lat), res.Bad, res.Err, tt.wantBad, tt.wantErr)
			}
			for i, d := range res.Lat {
				if d <= 0 {
					t.Errorf("request %d: latency %v", i, d)
				}
			}
			// 20 requests cost the sender far more than a microsecond.
			if cpu < 0 || (tt.wantSeen > 0 && res.CPU <= 0) {
				t.Errorf("CPU: this process %v, the sender's %v", cpu, res.CPU)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(seen) != tt.wantSeen {
				t.Errorf("the server accepted %d distinct requests, want %d", len(seen), tt.wantSeen)
			}
			for req, n := range seen {
				if n != 1 {
					t.Errorf("%s arrived %d times", req, n)
				}
			}
		})
	}
	if err := sender.Close(); err != nil {
		t.Errorf("the sender process ended badly: %v", err)
	}

	// A sender process that died fails the job with an error, at once.
	dead, err := startBenchSender(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := dead.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := dead.run(benchJob{Host: host, Senders: 3, Reqs: signedRequests(secret, 20, gen)}); err == nil || !strings.Contains(err.Error(), "sender process") {
		t.Errorf("a job for a dead sender process: error %v, want one naming the sender process", err)
	}
	if err := dead.Close(); err != nil {
		t.Errorf("Close after the failure: %v", err)
	}
}
