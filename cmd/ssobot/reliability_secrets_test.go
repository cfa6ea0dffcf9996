//go:build !ssobot_server

package main

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ssobot/ssobot/store"
	"github.com/ssobot/ssobot/workflow"
	"github.com/ssobot/ssobot/workflow/authentik/authentiktest"
	"github.com/ssobot/ssobot/workflow/cloudflare/cloudflaretest"
)

// TestSecretHygiene runs full setups through the binary with the failures
// that tempt code to print what it holds: a permanent 400 on each create
// (the run fails and is retried from Slack), a create applied whose answer
// is lost, transient 429s and 503s, a SIGKILL in the middle and a SIGQUIT
// goroutine dump taken while the client secret is in memory. Then no
// credential and no client secret appears in any byte the processes
// wrote, any Slack call, the database file, /api/runs, /api/runs/{id},
// /api/backup or /metrics.
func TestSecretHygiene(t *testing.T) {
	f, _ := newCountingFakes(t)
	f.ak.SetLatency(10 * time.Millisecond)
	f.cf.SetLatency(10 * time.Millisecond)
	f.ak.AddFault(authentiktest.Fault{Method: "POST", PathContains: "/providers/oauth2/", Kind: authentiktest.FaultStatus, Status: 400, Times: 1})
	f.ak.AddFault(authentiktest.Fault{Method: "POST", PathContains: "/core/applications/", Kind: authentiktest.FaultApplyThenReset, Times: 1})
	f.ak.AddFault(authentiktest.Fault{PathContains: "/flows/instances/", Kind: authentiktest.FaultStatus, Status: 429, RetryAfter: "1", Times: 1})
	f.ak.AddFault(authentiktest.Fault{PathContains: "/.well-known/openid-configuration", Kind: authentiktest.FaultMalformed, Times: 1})
	cloudflareFaults := func() {
		f.cf.AddFault(cloudflaretest.Fault{Method: "POST", PathContains: "/identity_providers", Kind: cloudflaretest.FaultStatus, Status: 400, Times: 1})
		f.cf.AddFault(cloudflaretest.Fault{Method: "POST", PathContains: "/identity_providers", Kind: cloudflaretest.FaultApplyThenReset, Times: 1})
		f.cf.AddFault(cloudflaretest.Fault{Method: "GET", PathContains: "/identity_providers/", Kind: cloudflaretest.FaultStatus, Status: 503, Times: 1})
	}
	cloudflareFaults()
	env := f.env(t)
	env["SSOBOT_LOG_LEVEL"] = "debug" // the most output to search
	// The login method's attempt after its unanswered create waits the
	// API timeout (SSOBOT_API_TIMEOUT, 5 s in f.env) before it lists again.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := newCampaign(ctx, t, f, env, killConfig{open: 2}, 1)
	c.prefix = "Secret"
	defer c.stop()

	c.restart()
	c.newRun()
	c.newRun()
	// A crash in the middle of authentik's part.
	if !c.driveUntil(workflow.StepAuthentikApplication) {
		t.Fatal("no run reached the application step")
	}
	c.srv.kill()
	c.outputs = append(c.outputs, c.srv.output())
	c.restart()

	// The goroutine dump Go prints on SIGQUIT, taken while a login method
	// is being created: the client secret is in the process's memory.
	if !c.driveUntil(workflow.StepCloudflareLoginMethod) {
		t.Fatal("no run reached the login method step")
	}
	if err := c.srv.cmd.Process.Signal(syscall.SIGQUIT); err != nil {
		t.Fatal(err)
	}
	code, err := c.srv.wait(ctx)
	dump := c.srv.output()
	c.outputs = append(c.outputs, dump)
	if err != nil || code != 2 || !strings.Contains(string(dump), "SIGQUIT") || !strings.Contains(string(dump), "goroutine ") {
		t.Fatalf("SIGQUIT: exit %d, %v; want exit 2 and a goroutine dump:\n%s", code, err, dump)
	}
	// Unless a login method create was refused already, the login
	// method's faults are armed afresh for the last process, with one
	// more run to meet them: on a busy machine a process stopped by a
	// signal may have met them, answered but never recorded.
	rearm := !refusedSteps(ctx, t, c.dbPath)[workflow.StepCloudflareLoginMethod]
	if rearm {
		f.cf.ClearFaults()
		cloudflareFaults()
	}
	c.restart()
	if rearm {
		c.newRun()
	}
	c.finish()
	c.check()

	// The failures happened, so their messages were there to leak.
	if failed := refusedSteps(ctx, t, c.dbPath); !failed[workflow.StepAuthentikProvider] || !failed[workflow.StepCloudflareLoginMethod] {
		t.Errorf("permanent failures seen at %v; want the provider and the login method steps", failed)
	}
	if c.nRetries < 2 {
		t.Errorf("%d retries sent; want one per permanent failure", c.nRetries)
	}
	t.Logf("secret hygiene: %d runs succeeded after %d retries from Slack, 1 SIGKILL and 1 SIGQUIT dump (%d bytes); %d secrets searched in %d bytes; found %d (login method faults armed for the last process: %v)",
		c.fig.succeeded, c.nRetries, len(dump), len(c.f.allSecrets()), c.fig.scannedBytes, c.fig.leaks, rearm)
}

// refusedSteps reads the database at path, which no process holds, and
// tells the steps where an attempt met a permanent 400.
func refusedSteps(ctx context.Context, t *testing.T, path string) map[workflow.StepName]bool {
	t.Helper()
	st, err := store.Open(path, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	runs, err := st.ListRuns(ctx, workflow.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	failed := map[workflow.StepName]bool{}
	for _, r := range runs {
		for _, s := range r.Steps {
			for _, e := range s.Errors {
				if !e.Transient && strings.Contains(e.Error, "400 Bad Request") {
					failed[s.Name] = true
				}
			}
		}
	}
	return failed
}

// TestLeakProbes: the scanner finds a secret whole, cut short or cut at
// the front, and nothing in clean data.
func TestLeakProbes(t *testing.T) {
	const secret = "s3cr3tS3CR3Ts3cr3tS3CR3Ts3cr3tS3CR3T0123"
	probes := leakProbes(map[string]string{"client secret": secret, "empty": ""})
	tests := []struct {
		data string
		want bool
	}{
		{`{"client_secret":"` + secret + `"}`, true},
		{"error: invalid secret " + secret[:20] + "…", true},
		{"…" + secret[len(secret)-18:], true},
		{"nothing to see: [redacted]", false},
		{secret[:12] + " " + secret[30:], false},
	}
	for _, tt := range tests {
		if got := len(leaks(probes, "data", []byte(tt.data))) > 0; got != tt.want {
			t.Errorf("leaks in %q = %v, want %v", tt.data, got, tt.want)
		}
	}
}
