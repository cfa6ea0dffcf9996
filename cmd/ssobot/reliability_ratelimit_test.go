//go:build !ssobot_server

package main

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ssobot/ssobot/store"
	"github.com/ssobot/ssobot/workflow"
	"github.com/ssobot/ssobot/workflow/cloudflare/cloudflaretest"
)

// TestRateLimitBlockNoStorm breaches Cloudflare's rate limit with several
// runs at once through the binary. Cloudflare then refuses every call for
// a while (five minutes in production, a few seconds here) with 429 and
// Retry-After. Each run must take at most one 429 per block and wait for
// Retry-After before calling again, rather than retrying on its own backoff
// into the block; and every run still succeeds.
func TestRateLimitBlockNoStorm(t *testing.T) {
	const (
		runs  = 4
		block = 3 * time.Second
	)
	f, _ := newCountingFakes(t, cloudflaretest.WithRateLimitBlock(block))
	f.ak.SetLatency(5 * time.Millisecond)
	f.cf.SetLatency(5 * time.Millisecond)
	env := f.env(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := newCampaign(ctx, t, f, env, killConfig{open: runs}, 1)
	c.prefix = "Limit"
	defer c.stop()
	c.restart()

	// Each run makes five Cloudflare calls (organization, list, list,
	// create, get): the limit is breached part way through the runs'
	// login method steps, and after one block the rest (with the retries)
	// fit in the next window, so there is exactly one block.
	before := f.cf.Calls("", "")
	f.cf.SetRateLimit(3*runs+3, time.Minute, nil)
	start := time.Now() // for the log only
	for range runs {
		c.newRun()
	}
	c.finish()
	took := time.Since(start)
	c.check()
	calls := f.cf.Calls("", "") - before

	// The 429s the binary saw, from its metrics.
	n429 := 0
	re := regexp.MustCompile(`(?m)^ssobot_api_requests_total\{.*status="429",system="cloudflare"\} (\d+)$`)
	for _, m := range re.FindAllStringSubmatch(string(c.adminDump["/metrics"]), -1) {
		n, _ := strconv.Atoi(m[1])
		n429 += n
	}
	if n429 == 0 {
		t.Fatal("the rate limit was never hit; the test proves nothing")
	}
	if n429 > runs {
		t.Errorf("%d calls answered 429 for %d runs: retries went into the block", n429, runs)
	}
	// That every run still finished shows the block was waited out: the
	// fake answers 429 to every call until the block ends on its own clock,
	// so a run that got one finished only through a call made after it.

	// In the audit, a step's attempt after a 429 starts no sooner than
	// Retry-After allowed: the next attempt's error (if any) is at least a
	// second later, and the step's finish is after the block.
	st, err := store.Open(c.dbPath, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	all, err := st.ListRuns(ctx, workflow.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	limited := 0
	for _, r := range all {
		for _, s := range r.Steps {
			for i, e := range s.Errors {
				if !strings.Contains(e.Error, "429 Too Many Requests") {
					continue
				}
				limited++
				next := s.FinishedAt
				if i+1 < len(s.Errors) {
					next = s.Errors[i+1].At
				}
				if gap := next.Sub(e.At); gap < time.Second {
					t.Errorf("run #%d %s: next attempt %s after a 429", r.ID, s.Name, gap)
				}
			}
		}
	}
	if limited == 0 {
		t.Errorf("no step attempt in the audit failed on a 429 (the binary saw %d): the Retry-After check above proves nothing", n429)
	}
	t.Logf("rate-limit block of %s: %d runs succeeded in %s; %d Cloudflare calls, %d answered 429 (%d attempts failed on it), no retry inside the block",
		block, c.fig.succeeded, took.Round(10*time.Millisecond), calls, n429, limited)
}
