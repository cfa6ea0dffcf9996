package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ssobot/ssobot/workflow"
)

func TestRunsCommand(t *testing.T) {
	st, dbPath := openTestStore(t, testRun("Grafana", workflow.StateSucceeded), testRun("Wiki", workflow.StateFailed))
	admin := httptest.NewServer(newAdminHandler(adminConfig{Runs: st, Backup: st.Backup}))
	defer admin.Close()

	// An address where nothing listens: the command falls back to the file.
	deadAdmin := "http://" + deadAddr(t)

	type source struct {
		name  string
		args  []string
		setup func(t *testing.T) // runs before the command
	}
	sources := []source{
		{name: "admin API", args: []string{"--admin", admin.URL}},
		{name: "admin API as host:port", args: []string{"--admin", strings.TrimPrefix(admin.URL, "http://")}},
		{name: "admin API from SSOBOT_ADMIN_LISTEN", args: nil},
		// The bot holds the database open; close it so the read-only open
		// gets its shared lock, as when no bot runs.
		{name: "database file", args: []string{"--admin", deadAdmin, "--db", dbPath}, setup: func(t *testing.T) { st.Close() }},
	}
	env := map[string]string{"SSOBOT_ADMIN_LISTEN": strings.TrimPrefix(admin.URL, "http://")}
	tests := []struct {
		args   []string
		code   int
		stdout []string // substrings
		stderr string   // all of it, when set
		check  func(t *testing.T, out []byte)
	}{
		{args: []string{"list"}, stdout: []string{"ID  STATE", "2   failed     Wiki", "1   succeeded  Grafana", "authentik-provider (failed)"}},
		{args: []string{"list", "--json"}, check: func(t *testing.T, out []byte) {
			var got runList
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			if len(got.Runs) != 2 || got.Runs[0].ApplicationName != "Wiki" {
				t.Errorf("runs = %+v", got.Runs)
			}
		}},
		{args: []string{"show", "1"}, stdout: []string{"Run           #1", "State         succeeded", "Application   Grafana (slug grafana)", "authentik provider       7", "authentik   approve  by U0BOB", "run.created"}},
		{args: []string{"show", "--json", "2"}, check: func(t *testing.T, out []byte) {
			var got runView
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatal(err)
			}
			if got.ID != 2 || got.Steps[2].Error == "" || len(got.Events) != 1 {
				t.Errorf("run = %+v", got)
			}
		}},
		{args: []string{"show", "99"}, code: exitFailure, stderr: "ssobot runs: run 99 not found\n"},
		{args: []string{"show", "x"}, code: exitUsage},
		{args: []string{"frobnicate"}, code: exitUsage},
	}
	for _, src := range sources {
		t.Run(src.name, func(t *testing.T) {
			if src.setup != nil {
				src.setup(t)
			}
			for _, tt := range tests {
				t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
					var stdout, stderr bytes.Buffer
					args := append(append([]string{"runs"}, tt.args...), src.args...)
					code := run(context.Background(), args, func(k string) string { return env[k] }, nil, &stdout, &stderr)
					if code != tt.code {
						t.Fatalf("exit %d, want %d; stderr: %s", code, tt.code, stderr.String())
					}
					if tt.stderr != "" && stderr.String() != tt.stderr {
						t.Errorf("stderr %q, want %q", stderr.String(), tt.stderr)
					}
					for _, want := range tt.stdout {
						if !strings.Contains(stdout.String(), want) {
							t.Errorf("output lacks %q:\n%s", want, stdout.String())
						}
					}
					if tt.check != nil {
						tt.check(t, stdout.Bytes())
					}
				})
			}
		})
	}
}

// TestRunsShowApprovalsNotCounted: `runs show` says which approvals no
// longer count and why, in the bot card's words, in its text and its
// JSON, from the admin API and from the file alike.
func TestRunsShowApprovalsNotCounted(t *testing.T) {
	st, dbPath := openTestStore(t, testRunNotCounting())
	admin := httptest.NewServer(newAdminHandler(adminConfig{Runs: st, Backup: st.Backup}))
	defer admin.Close()
	deadAdmin := "http://" + deadAddr(t)
	for _, src := range []struct {
		name  string
		args  []string
		setup func()
	}{
		{"admin API", []string{"--admin", admin.URL}, nil},
		// Closed so that the read-only open gets its lock, as when no bot runs.
		{"database file", []string{"--admin", deadAdmin, "--db", dbPath}, func() { st.Close() }},
	} {
		t.Run(src.name, func(t *testing.T) {
			if src.setup != nil {
				src.setup()
			}
			show := func(t *testing.T, extra ...string) []byte {
				t.Helper()
				var stdout, stderr bytes.Buffer
				args := append(append([]string{"runs", "show", "1"}, extra...), src.args...)
				if code := run(context.Background(), args, func(string) string { return "" }, nil, &stdout, &stderr); code != exitOK {
					t.Fatalf("exit %d; stderr: %s", code, stderr.String())
				}
				return stdout.Bytes()
			}
			text := string(show(t))
			lines := map[string]string{}
			for line := range strings.SplitSeq(text, "\n") {
				if f := strings.Fields(line); len(f) > 3 && f[2] == "by" {
					lines[f[3]] = line
				}
			}
			var got runView
			if err := json.Unmarshal(show(t, "--json"), &got); err != nil {
				t.Fatal(err)
			}
			if len(got.Approvals) != len(notCountingWant) {
				t.Fatalf("JSON approvals %+v; want %d", got.Approvals, len(notCountingWant))
			}
			for i, want := range notCountingWant {
				line, ok := lines[want.user]
				switch {
				case !ok:
					t.Errorf("no decision by %s in:\n%s", want.user, text)
				case want.counts && strings.Contains(line, "no longer counts"):
					t.Errorf("%s's approval shown as not counting: %q", want.user, line)
				case !want.counts && !strings.HasSuffix(line, "(no longer counts: "+want.notCounted+")"):
					t.Errorf("%s's approval %q; want it to end (no longer counts: %s)", want.user, line, want.notCounted)
				}
				a := got.Approvals[i]
				if a.User != want.user || a.Counts == nil || *a.Counts != want.counts || a.NotCounted != want.notCounted {
					t.Errorf("JSON approval %d: %s counts %v, not counted %q; want %s, %v, %q", i, a.User, a.Counts, a.NotCounted, want.user, want.counts, want.notCounted)
				}
			}
			if !strings.Contains(lines["U0BOB"], "ok") {
				t.Errorf("U0BOB's reason missing: %q", lines["U0BOB"])
			}
		})
	}
}

// TestRunsShowApprovalsFromAnOlderBot: an approval from a bot that does
// not say whether it counts is not shown as not counting.
func TestRunsShowApprovalsFromAnOlderBot(t *testing.T) {
	var r runView
	if err := json.Unmarshal([]byte(`{"id": 1, "approvals": [{"gate": "authentik", "user": "U0BOB", "decision": "approve", "at": "2026-05-04T10:00:10Z"}]}`), &r); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	printRun(&out, r)
	if !strings.Contains(out.String(), "by U0BOB") || strings.Contains(out.String(), "no longer counts") {
		t.Errorf("output:\n%s\nwant U0BOB's approval, not marked", out.String())
	}
}

// TestRunsDBFlagWins: with --db (and no --admin), the file is read even
// when a bot answers on the default admin address.
func TestRunsDBFlagWins(t *testing.T) {
	st, dbPath := openTestStore(t, testRun("Grafana", workflow.StateSucceeded))
	st.Close()
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"runs": []}`)
	}))
	defer other.Close()
	env := map[string]string{"SSOBOT_ADMIN_LISTEN": strings.TrimPrefix(other.URL, "http://")}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"runs", "list", "--db", dbPath}, func(k string) string { return env[k] }, nil, &stdout, &stderr)
	if code != 0 || !strings.Contains(stdout.String(), "Grafana") {
		t.Fatalf("exit %d, output:\n%s%s\nwant the file's run", code, stdout.String(), stderr.String())
	}
}

// TestRunsDBHeldByABot: --db alone on a file a running bot holds says
// to ask the bot instead; it asked no admin API, so it does not say none
// answered.
func TestRunsDBHeldByABot(t *testing.T) {
	_, dbPath := openTestStore(t, testRun("Grafana", workflow.StateSucceeded)) // held open, as by serve
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"runs", "list", "--db", dbPath}, func(string) string { return "" }, nil, &stdout, &stderr)
	if code == 0 || !strings.Contains(stderr.String(), "another process (a running bot?) holds "+dbPath+": leave out --db") || strings.Contains(stderr.String(), "no bot answers") {
		t.Fatalf("exit %d, stderr:\n%s\nwant a failure that says to ask the bot", code, stderr.String())
	}
}

// TestRunsAdminAndDBFlags: with both --admin and --db, the bot named
// answers when it can, and the file is read only when it does not.
func TestRunsAdminAndDBFlags(t *testing.T) {
	st, dbPath := openTestStore(t, testRun("Grafana", workflow.StateSucceeded))
	st.Close()
	live, _ := openTestStore(t, testRun("Wiki", workflow.StateFailed))
	admin := httptest.NewServer(newAdminHandler(adminConfig{Runs: live, Backup: live.Backup}))
	defer admin.Close()
	deadAdmin := "http://" + deadAddr(t)
	for _, tt := range []struct {
		name, admin, want, not string
	}{
		{"the bot answers", admin.URL, "Wiki", "Grafana"},
		{"no bot answers", deadAdmin, "Grafana", "Wiki"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"runs", "list", "--admin", tt.admin, "--db", dbPath}, func(string) string { return "" }, nil, &stdout, &stderr)
			if out := stdout.String(); code != 0 || !strings.Contains(out, tt.want) || strings.Contains(out, tt.not) {
				t.Fatalf("exit %d, output:\n%s%s\nwant %s's run, not %s's", code, out, stderr.String(), tt.want, tt.not)
			}
		})
	}
}

func TestAdminBaseURL(t *testing.T) {
	for in, want := range map[string]string{
		"":               "http://127.0.0.1:9090",
		":9091":          "http://127.0.0.1:9091",
		"0.0.0.0:9092":   "http://127.0.0.1:9092",
		"[::]:9093":      "http://127.0.0.1:9093",
		"10.0.0.5:9094":  "http://10.0.0.5:9094",
		"localhost:9095": "http://localhost:9095",
	} {
		if got := adminBaseURL(in); got != want {
			t.Errorf("adminBaseURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// adminRefusal is an --admin value that `runs` and `health` refuse
// (adminBase): want is in the message, secret nowhere in the output.
type adminRefusal struct {
	name, value, want, secret string
}

// adminRefusals: user info, a query or a fragment, in a URL or a
// host:port. dead is a host:port where nothing listens, so that a value
// taken would be named again in "no answer" messages.
func adminRefusals(dead string) []adminRefusal {
	const userInfo = "must not contain user info "
	const query = " must not contain a query or fragment"
	return []adminRefusal{
		{"user info in a URL", "http://ops:s3cret@" + dead, userInfo + `("http://` + dead + `" with something@ before the host)`, "s3cret"},
		{"user info in a host:port", "ops:s3cret@" + dead, userInfo + "(not shown: it has an @, so it may hold a password)", "s3cret"},
		{"a query", "http://" + dead + "/?token=s3cret", `--admin ("http://` + dead + `/" with a query)` + query, "s3cret"},
		{"an empty query", "http://" + dead + "/?", `--admin ("http://` + dead + `/" with a query)` + query, "/?"},
		{"a fragment", "http://" + dead + "#s3cret", `--admin ("http://` + dead + `" with a fragment)` + query, "s3cret"},
		{"a query after a host:port", dead + "?token=s3cret", `--admin ("` + dead + `" with a query or fragment)` + query, "s3cret"},
		// An unescaped # or ? in a password ends the host early: what
		// comes before it is the user and part of the password.
		{"a password with a #", "http://ops:pw12#34@" + dead, "(not shown: it has an @, so it may hold a password)", "pw12"},
		{"a password with a ?", "http://ops:pw12?34@" + dead, "(not shown: it has an @, so it may hold a password)", "pw12"},
		{"a host:port password with a #", "ops:pw12#34@" + dead, "(not shown: it has an @, so it may hold a password)", "pw12"},
		{"a password with an @ and a #", "http://ops:p@ss12#w0rd@" + dead, "(not shown: it has an @, so it may hold a password)", "ss12"},
	}
}

// TestRunsAdminRefused: --admin with user info, a query or a fragment is
// refused as a usage error that does not show them.
func TestRunsAdminRefused(t *testing.T) {
	env := map[string]string{"SSOBOT_DB": filepath.Join(t.TempDir(), "none.db")}
	for _, tt := range adminRefusals(deadAddr(t)) {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{"runs", "list", "--admin", tt.value}, func(k string) string { return env[k] }, nil, &stdout, &stderr)
			out := stdout.String() + stderr.String()
			if code != exitUsage || !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("exit %d, output %q; want %d and %q", code, out, exitUsage, tt.want)
			}
			if strings.Contains(out, tt.secret) {
				t.Errorf("output %q shows %q", out, tt.secret)
			}
		})
	}
}

// TestRunsAgainstAnotherService: another service on the admin address
// (9090 is also Prometheus's) is named as such, not reported as a missing
// run.
func TestRunsAgainstAnotherService(t *testing.T) {
	other := httptest.NewServer(http.NotFoundHandler())
	defer other.Close()
	for _, args := range [][]string{{"runs", "list", "--admin", other.URL}, {"runs", "show", "1", "--admin", other.URL}} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), args, func(string) string { return "" }, os.ReadFile, &stdout, &stderr)
		if code == exitOK || !strings.Contains(stderr.String(), "another service listens there") || !strings.Contains(stderr.String(), other.URL) {
			t.Errorf("%v: exit %d, stderr %q; want a failure naming %s as another service", args, code, stderr.String(), other.URL)
		}
	}
}

// TestRunsForAHostNotAllowed: --admin with a name the bot does not answer
// to fails saying how to fix it, and does not read the file instead.
func TestRunsForAHostNotAllowed(t *testing.T) {
	st, dbPath := openTestStore(t, testRun("Grafana", workflow.StateSucceeded))
	h := newAdminHandler(adminConfig{Runs: st, Backup: st.Backup})
	named := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Host = "admin.example.com:9090" // as if --admin named it so
		h.ServeHTTP(w, r)
	}))
	defer named.Close()
	for _, args := range [][]string{{"runs", "list", "--admin", named.URL, "--db", dbPath}, {"runs", "show", "1", "--admin", named.URL}} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), args, func(string) string { return "" }, os.ReadFile, &stdout, &stderr)
		want := `admin API "` + named.URL + `": 421 Misdirected Request: host "admin.example.com" is not allowed for the admin API: use its IP address or localhost, or add the name to SSOBOT_ADMIN_HOSTS`
		if code != exitFailure || !strings.Contains(stderr.String(), want) || strings.Contains(stdout.String(), "Grafana") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 1 and %q", args, code, stdout.String(), stderr.String(), want)
		}
	}
}

// deadAddr is a loopback address where nothing listens: one just closed.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
