//go:build !ssobot_server

package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/ssobot/ssobot/workflow"
	"github.com/ssobot/ssobot/workflow/authentik/authentiktest"
	"github.com/ssobot/ssobot/workflow/cloudflare/cloudflaretest"
)

// benchMinCall is one call every correct run makes, and why.
type benchMinCall struct {
	system, call, why string
	times             int // 0 means once
}

// benchMinCalls is the fewest calls a run without failures can make. What
// is left out, and why, is in benchCallsNote.
var benchMinCalls = []benchMinCall{
	{systemAuthentik, "GET /flows/instances/ (authorization)", "its ID goes into the provider", 0},
	{systemAuthentik, "GET /flows/instances/ (invalidation)", "its ID goes into the provider (required since 2024.10)", 0},
	{systemAuthentik, "GET /crypto/certificatekeypairs/", "the signing key's ID: without it tokens are HS256 and Cloudflare refuses them", 0},
	{systemAuthentik, "GET /propertymappings/provider/scope/", "the openid, email and profile mappings' IDs, in one call", 0},
	{systemAuthentik, "GET /core/applications/{slug}/", "the slug is free, known before anyone approves", 0},
	{systemAuthentik, "GET /providers/oauth2/?name=", "the provider name is free (authentik refuses a duplicate), known before anyone approves", 0},
	{systemAuthentik, "POST /providers/oauth2/", "create the provider", 0},
	{systemAuthentik, "POST /core/applications/", "create the application", 0},
	{systemAuthentik, "GET /providers/oauth2/{id}/", "read the client secret when Cloudflare needs it: it is kept nowhere", 0},
	{systemAuthentik, "GET /providers/oauth2/{id}/", "verify: the redirect URI and signing key as authentik stored them", 0},
	{"authentik (public OIDC)", "GET /", "authentik's certificate must be publicly trusted (Cloudflare fetches the keys): known before anyone approves", 0},
	{"authentik (public OIDC)", "GET …/.well-known/openid-configuration", "verify: the endpoints Cloudflare will use", 0},
	{"authentik (public OIDC)", "GET …/jwks/", "verify: at least one RS/ES signing key", 0},
	{systemCloudflare, "GET /accounts/{id}/access/organizations", "the team domain, for the redirect URI (a given team= must be this one)", 0},
	{systemCloudflare, "GET …/access/identity_providers (preflight)", "the login method name is free, known before anyone approves", 0},
	{systemCloudflare, "GET …/access/identity_providers (before create)", "names are not unique and there is no idempotency key: listing is the only guard against a duplicate", 0},
	{systemCloudflare, "POST …/access/identity_providers", "create the login method", 0},
	{systemCloudflare, "GET …/access/identity_providers/{id}", "verify: read it back", 0},
	{systemSlack, "chat.postMessage (root)", "the run's message, posted when the run starts", 0},
	{systemSlack, "chat.update × 7", "the message is edited in place at each change of what it shows after it is posted (with preflight running): preflight done and the first gate open; each decision, which starts the next step (2); each create done, which starts the next step or opens the next gate (3); the run done", 7},
	{systemSlack, "chat.postMessage (thread) × 13", "the thread gets each step started and finished with its IDs (10), each decision (2) and the outcome mentioning the requester (1)", 13},
	{systemSlack, "response_url × 2", "each approver is told privately that the click counted", 2},
	{systemSlack, "users.info", "the approver is a real, active user (cached for a minute; once per run when runs are further apart)", 0},
}

const benchCallsNote = "Left out of the minimum: authentik's GET /core/users/me/ (any call fails with 403 on a bad token, and the start-up check names it), " +
	"and the look-ups before each create (GET /providers/oauth2/?client_id=, GET /core/applications/{slug}/): they make a retried create find what an earlier attempt made, " +
	"but a step's first attempt uses a client ID nobody has seen and a slug checked free, so they are needed only from the second attempt. " +
	"Slack's minimum follows what a run must show (issue: one message edited in place, each step started and finished, each decision and the outcome in its thread); a failed attempt or expiry adds a reply."

// benchCloudflarePage is the page size the Cloudflare client asks for.
const benchCloudflarePage = 50

// benchCalls counts the API calls of a run per system against the minimum,
// then runs setups under 30% injected faults and counts duplicates.
func benchCalls(ctx context.Context, b *bench, s *benchSection) error {
	if err := benchCallsClean(ctx, b, s); err != nil {
		return err
	}
	return benchCallsFaults(ctx, b, s)
}

func benchCallsClean(ctx context.Context, b *bench, s *benchSection) error {
	// Approvals are clicked on the Slack endpoints, so the Slack calls of
	// a click (users.info, the private reply) are counted too.
	e, err := newBenchEnv(ctx, benchEnvOptions{ClickApprove: true})
	if err != nil {
		return err
	}
	defer e.Close()
	if _, err := benchSerialRun(ctx, e, "Warm Up"); err != nil {
		return err
	}
	n := pick(b, 2, 10)
	b.logf("   %d runs, counting calls", n)
	routesBefore, err := benchRoutes(ctx, e)
	if err != nil {
		return err
	}
	slackBefore := e.slackMethods()
	var total benchCounters
	for i := range n {
		r, err := benchSerialRun(ctx, e, fmt.Sprintf("Counted %d", i))
		if err != nil {
			return err
		}
		d := r.delta
		total = benchCounters{slack: total.slack + d.slack, authentik: total.authentik + d.authentik, oidcAPI: total.oidcAPI + d.oidcAPI, cloudflare: total.cloudflare + d.cloudflare}
	}
	routesAfter, err := benchRoutes(ctx, e)
	if err != nil {
		return err
	}
	slackAfter := e.slackMethods()

	minBy := map[string]int{}
	for _, c := range benchMinCalls {
		minBy[c.system] += max(c.times, 1)
	}
	per := func(v int64) float64 { return float64(v) / float64(n) }
	t := s.table(fmt.Sprintf("API calls per run (mean of %d runs without faults, after a warm-up run)", n),
		"system", "calls per run", "minimum", "minimum + 2")
	rows := []struct {
		system string
		v      float64
	}{
		{systemAuthentik, per(int64(total.authentik))},
		{"authentik (public OIDC)", per(int64(total.oidcAPI))},
		{systemCloudflare, per(int64(total.cloudflare))},
		{systemSlack, per(total.slack)},
	}
	for _, r := range rows {
		m := minBy[r.system]
		t.row(r.system, fmt.Sprintf("%.1f", r.v), strconv.Itoa(m), strconv.Itoa(m+2))
		s.value("calls_"+strings.NewReplacer(" ", "_", "(", "", ")", "").Replace(r.system), r.v)
		s.check("calls per run: "+r.system, fmt.Sprintf("≤ %d (minimum %d + 2)", m+2, m), fmt.Sprintf("%.1f", r.v), r.v <= float64(m+2))
	}

	bt := s.table("Calls per run by route (from ssobot_api_requests_total and the Slack fake)", "system", "call", "per run")
	for _, k := range slices.Sorted(maps.Keys(routesAfter)) {
		if d := routesAfter[k] - routesBefore[k]; d > 0 {
			sys, route, _ := strings.Cut(k, " ")
			bt.row(sys, route, fmt.Sprintf("%.1f", d/float64(n)))
		}
	}
	for _, m := range slices.Sorted(maps.Keys(slackAfter)) {
		if d := slackAfter[m] - slackBefore[m]; d > 0 {
			bt.row(systemSlack, m, fmt.Sprintf("%.1f", per(d)))
		}
	}

	// The same once the account holds many login methods, as it does after
	// ssobot has set up as many applications: Cloudflare lists them all.
	const others = 200
	for i := range others {
		e.cf.AddIdentityProvider(cloudflaretest.IdentityProvider{Name: fmt.Sprintf("other %d", i), Type: "oidc"})
	}
	r, err := benchSerialRun(ctx, e, "Crowded")
	if err != nil {
		return err
	}
	// Both lists read every page: the minimum grows with the account.
	logins := others + n + 1
	pages := (logins + benchCloudflarePage - 1) / benchCloudflarePage
	crowded := fmt.Sprintf("cloudflare, account with %d login methods", logins)
	m := minBy[systemCloudflare] - 2 + 2*pages
	t.row(crowded, strconv.Itoa(r.delta.cloudflare), strconv.Itoa(m), strconv.Itoa(m+2))
	s.value("calls_cloudflare_crowded", float64(r.delta.cloudflare))
	s.check("calls per run: "+crowded, fmt.Sprintf("≤ %d (minimum %d + 2)", m+2, m), strconv.Itoa(r.delta.cloudflare), r.delta.cloudflare <= m+2)
	s.note("Cloudflare has no name filter on login methods, so each of the two lists reads every page (%d login methods a page): "+
		"in an account holding n login methods (one per application ssobot set up) a run needs 3 + 2 × ⌈n/%d⌉ calls.", benchCloudflarePage, benchCloudflarePage)

	mt := s.table("The minimum a correct run needs, and why", "system", "call", "why")
	for _, c := range benchMinCalls {
		mt.row(c.system, c.call, c.why)
	}
	s.note(benchCallsNote)
	e.logs.report(s, "calls")
	return nil
}

// benchCallsFaults runs setups at once while 30% of the authentik and
// Cloudflare calls fail (errors, resets, malformed answers, and creates
// applied but answered with a reset), and counts the objects created.
func benchCallsFaults(ctx context.Context, b *bench, s *benchSection) error {
	// Retries a thousand times faster than in production, so the run takes
	// seconds; every backoff still honours Retry-After.
	e, err := newBenchEnv(ctx, benchEnvOptions{AutoApprove: true, Retry: workflow.RetryPolicy{MaxAttempts: 500, Base: time.Millisecond, Max: 20 * time.Millisecond},
		// The fakes apply a create before they answer, or never.
		UnansweredCreateWait: 20 * time.Millisecond})
	if err != nil {
		return err
	}
	defer e.Close()
	e.ak.SetFaultRate(0.3, 1, authentiktest.FaultStatus, authentiktest.FaultReset, authentiktest.FaultMalformed, authentiktest.FaultApplyThenReset)
	e.cf.SetFaultRate(0.3, 2, cloudflaretest.FaultStatus, cloudflaretest.FaultReset, cloudflaretest.FaultMalformed, cloudflaretest.FaultApplyThenReset)

	m := pick(b, 2, 20)
	b.logf("   %d runs under 30%% faults", m)
	before := e.counters()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	ids := make([]int64, m)
	states := make([]workflow.State, m)
	errs := make([]error, m)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range m {
		wg.Go(func() {
			r, err := e.start(ctx, fmt.Sprintf("Faulty %d", i))
			if err != nil {
				errs[i] = err
				return
			}
			ids[i] = r.ID
			states[i], errs[i] = e.wait(ctx, r.ID)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	e.ak.SetFaultRate(0, 0)
	e.cf.SetFaultRate(0, 0)
	if err := e.settle(ctx, 50*time.Millisecond); err != nil {
		return err
	}
	d := e.counters().sub(before)

	succeeded, failedAttempts := 0, 0
	clientIDs := map[string]bool{}
	for _, id := range ids {
		r, err := e.app.engine.Get(ctx, id)
		if err != nil {
			return err
		}
		if r.State == workflow.StateSucceeded {
			succeeded++
		}
		clientIDs[r.Params.ClientID] = true
		for _, st := range r.Steps {
			failedAttempts += len(st.Errors)
		}
	}
	provs, apps, idps := e.ak.Providers(), e.ak.Applications(), e.cf.IdentityProviders()
	dupProv, foreign := benchDuplicates(len(provs), func(i int) string { return provs[i].ClientID }, clientIDs)
	dupApp, _ := benchDuplicates(len(apps), func(i int) string { return apps[i].Slug }, nil)
	dupIDP, foreignIDP := benchDuplicates(len(idps), func(i int) string { return idps[i].Config.ClientID }, clientIDs)
	dups := dupProv + dupApp + dupIDP

	t := s.table(fmt.Sprintf("Under 30%% injected faults on every authentik and Cloudflare call (%d runs at once)", m),
		"runs", "succeeded", "failed attempts", "elapsed", "authentik calls/run", "public OIDC calls/run", "Cloudflare calls/run",
		"providers", "applications", "login methods", "duplicates", "objects of no run")
	t.row(strconv.Itoa(m), strconv.Itoa(succeeded), strconv.Itoa(failedAttempts), fmtDur(elapsed),
		fmt.Sprintf("%.1f", float64(d.authentik)/float64(m)), fmt.Sprintf("%.1f", float64(d.oidcAPI)/float64(m)), fmt.Sprintf("%.1f", float64(d.cloudflare)/float64(m)),
		strconv.Itoa(len(provs)), strconv.Itoa(len(apps)), strconv.Itoa(len(idps)), strconv.Itoa(dups), strconv.Itoa(foreign+foreignIDP))
	s.value("fault_duplicates", float64(dups))
	s.value("fault_runs_succeeded", float64(succeeded))
	s.check("duplicate creates under 30% faults", "0", strconv.Itoa(dups), dups == 0 && foreign+foreignIDP == 0)
	s.check("runs that succeeded under 30% faults", strconv.Itoa(m), strconv.Itoa(succeeded), succeeded == m)
	s.note("Faults: 503/429/5xx answers, connection resets, truncated JSON, and creates applied but answered with a reset (the client never learns the outcome). " +
		"The retry policy is compressed (1 ms base, 20 ms cap, 500 attempts, 20 ms after a create left unanswered) so the section takes seconds; Retry-After is still honoured.")
	e.logs.report(s, "faults")
	return nil
}

// benchDuplicates counts objects beyond the first for each key, and objects
// whose key belongs to no run (when runs is set).
func benchDuplicates(n int, key func(int) string, runs map[string]bool) (dups, foreign int) {
	seen := map[string]bool{}
	for i := range n {
		k := key(i)
		if seen[k] {
			dups++
		}
		seen[k] = true
		if runs != nil && !runs[k] {
			foreign++
		}
	}
	return dups, foreign
}

// benchRoutes reads ssobot_api_requests_total from the admin API, summed
// over statuses: "system route" -> count.
func benchRoutes(ctx context.Context, e *benchEnv) (map[string]float64, error) {
	fams, err := scrapeMetrics(ctx, e.adminURL)
	if err != nil {
		return nil, err
	}
	return apiRequests(fams), nil
}

// apiRequests sums ssobot_api_requests_total over statuses, per system and
// route. Slack is left out: the Slack fake counts it, response_url posts too.
func apiRequests(fams map[string]*dto.MetricFamily) map[string]float64 {
	out := map[string]float64{}
	for _, m := range fams["ssobot_api_requests_total"].GetMetric() {
		l := metricLabels(m)
		if l["system"] == systemSlack {
			continue
		}
		out[l["system"]+" "+l["method"]] += metricValue(m)
	}
	return out
}
