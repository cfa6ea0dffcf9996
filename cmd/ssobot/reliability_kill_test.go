//go:build !ssobot_server

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ssobot/ssobot/bot"
	"github.com/ssobot/ssobot/bot/slacktest"
	"github.com/ssobot/ssobot/store"
	"github.com/ssobot/ssobot/workflow"
	"github.com/ssobot/ssobot/workflow/authentik/authentiktest"
	"github.com/ssobot/ssobot/workflow/cloudflare/cloudflaretest"
)

// killConfig sizes a kill campaign.
type killConfig struct {
	kills      int           // planned kills
	extraKills int           // more kills allowed to hit a kill point not hit yet
	open       int           // runs kept going at once
	faultShare float64       // share of API calls failing inside a fault window
	faultGap   time.Duration // least time between fault windows
	latency    time.Duration // per call, authentik and Cloudflare
	slackDelay time.Duration // per call, Slack
	budget     time.Duration // the whole campaign
}

var (
	ciKills   = killConfig{kills: 40, extraKills: 24, open: 4, faultShare: 0.3, faultGap: 2 * time.Second, latency: 25 * time.Millisecond, slackDelay: 5 * time.Millisecond, budget: 100 * time.Second}
	longKills = killConfig{kills: 304, extraKills: 24, open: 6, faultShare: 0.3, faultGap: 2 * time.Second, latency: 25 * time.Millisecond, slackDelay: 5 * time.Millisecond, budget: 15 * time.Minute}
)

// targetCommand is the kill point "a slash command is being handled"; the
// others are the steps and gates of workflow.Plan.
const targetCommand workflow.StepName = "slash-command"

var killTargets = []workflow.StepName{
	targetCommand,
	workflow.StepPreflight,
	workflow.GateAuthentik,
	workflow.StepAuthentikProvider,
	workflow.StepAuthentikApplication,
	workflow.GateCloudflare,
	workflow.StepCloudflareLoginMethod,
	workflow.StepVerify,
}

func isGateStep(name workflow.StepName) bool {
	for _, p := range workflow.Plan {
		if p.Name == name {
			return p.Kind == workflow.KindGate
		}
	}
	return false
}

// Kill points, as read from the database right after a SIGKILL. A kill
// "hits" a point when some open run was there at the moment of death.
func hitInFlight(s workflow.StepName) string { return "in flight: " + string(s) }
func hitBackoff(s workflow.StepName) string  { return "waiting to retry: " + string(s) }
func hitBetween(s workflow.StepName) string  { return "between steps, before: " + string(s) }
func hitAwaiting(g workflow.StepName) string { return "gate open: " + string(g) }
func hitDecision(g workflow.StepName) string { return "approval click in flight: " + string(g) }
func hitCommandCut() string                  { return "slash command cut before its answer" }
func requiredHits() []string {
	var out []string
	for _, p := range workflow.Plan {
		if p.Kind == workflow.KindGate {
			out = append(out, hitAwaiting(p.Name), hitDecision(p.Name))
		} else {
			out = append(out, hitInFlight(p.Name))
		}
	}
	return out
}

// TestKillCampaign runs the real binary against the fakes (with latency and
// fault windows), drives runs through its Slack endpoints and kills it with
// SIGKILL at random moments aimed at every step and gate, restarting it on
// the same database each time. After every kill the database passes Check
// and holds every acknowledged run; at the end every run has succeeded with
// exactly one provider, application and login method, nothing created is
// unrecorded, and nothing secret leaked anywhere.
//
// SSOBOT_LONG=1 runs the long campaign; SSOBOT_KILL_SEED=<n> replays the
// choices (targets, delays, fault windows) of a campaign, though not the
// timing; SSOBOT_KILL_DEBUG=1 logs every run waiting to retry at a kill.
func TestKillCampaign(t *testing.T) {
	cfg := ciKills
	if os.Getenv("SSOBOT_LONG") != "" {
		cfg = longKills
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("SSOBOT_KILL_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("SSOBOT_KILL_SEED=%q: %v", s, err)
		}
	}
	t.Logf("kill campaign seed %d: replay with SSOBOT_KILL_SEED=%d", seed, seed)

	f, faults := newCountingFakes(t)
	f.ak.SetLatency(cfg.latency)
	f.cf.SetLatency(cfg.latency)
	f.sl.SetLatency(cfg.slackDelay)
	env := f.env(t)
	env["SSOBOT_LOG_LEVEL"] = "debug" // the most output to search for secrets

	ctx, cancel := context.WithTimeout(context.Background(), cfg.budget)
	defer cancel()
	c := newCampaign(ctx, t, f, env, cfg, seed)
	defer c.stop()

	start := time.Now()
	c.restart()
	missing := requiredHits()
	for c.killNo < cfg.kills || (len(missing) > 0 && c.killNo < cfg.kills+cfg.extraKills) {
		target := killTargets[c.killNo%len(killTargets)]
		if c.killNo >= cfg.kills {
			target = targetFor(missing[c.killNo%len(missing)])
		}
		// Fault windows are spaced out: each failure doubles a step's
		// backoff, and runs should not wait minutes to retry.
		c.cycle(target, time.Since(c.lastWindow) >= cfg.faultGap)
		missing = slices.DeleteFunc(requiredHits(), func(h string) bool { return c.hits[h] > 0 })
		c.restart()
	}
	killPhase := time.Since(start)
	c.finish()
	if len(missing) > 0 {
		t.Errorf("after %d kills these kill points were never hit: %s", c.killNo, strings.Join(missing, "; "))
	}
	c.check()
	c.report(faults, killPhase, time.Since(start))
}

// targetFor is the kill target that aims at a kill point.
func targetFor(hit string) workflow.StepName {
	_, name, _ := strings.Cut(hit, ": ")
	return workflow.StepName(name)
}

// campaign is the state of a kill campaign. Only the test goroutine touches
// it, except where noted.
type campaign struct {
	ctx    context.Context
	t      *testing.T
	f      *fakes
	env    map[string]string
	cfg    killConfig
	rng    *rand.Rand
	dbPath string
	prefix string // of application names

	srv     *relServer
	gen     int      // process generation: 1 for the first start
	outputs [][]byte // everything every process wrote

	cmds     []*relCommand
	results  chan *relCommand // finished commands, from their goroutines
	inflight int
	nextApp  int
	final    bool

	clicks    map[string]relClick // by button value
	clickedAt map[string]int      // "run|gate" → generation of the last click
	retried   map[int64]relClick
	nClicks   int
	nRetries  int

	roots    *rootIndex
	stopFeed func()

	killNo     int
	hits       map[string]int // kill point → kills that hit it
	aimed      map[workflow.StepName]int
	untargeted int
	faulty     int
	restarts   int
	faultTimer *time.Timer
	lastWindow time.Time
	explicit   [5]int   // queued faults by explicitFaults index
	log        []string // one line per kill, for a failure

	adminDump map[string][]byte // what the admin API showed at the end
	stale     []string          // runs whose Slack message does not show their end state
	kills     []killRecord
	fig       killFigures
}

// killRecord is when a kill was and the newest run then.
type killRecord struct {
	at        time.Time
	newestRun int64
}

type relClick struct {
	gen int
	at  time.Time
}

// relCommand is one /sso-setup command sent. Its goroutine fills it in and
// then sends it on campaign.results; the test reads it only after that.
type relCommand struct {
	text  string
	app   string // the application name of a new command, "" for retry
	gen   int
	ack   string
	runID int64 // from "Run #N started"
	err   error // no answer: the process died under it
}

var ackPattern = regexp.MustCompile(`Run #(\d+) started`)

func newCampaign(ctx context.Context, t *testing.T, f *fakes, env map[string]string, cfg killConfig, seed uint64) *campaign {
	c := &campaign{
		ctx: ctx, t: t, f: f, env: env, cfg: cfg,
		rng:       rand.New(rand.NewPCG(seed, 0x6b696c6c)),
		dbPath:    env["SSOBOT_DB"],
		prefix:    "Kill",
		results:   make(chan *relCommand, 64),
		clicks:    map[string]relClick{},
		clickedAt: map[string]int{},
		retried:   map[int64]relClick{},
		hits:      map[string]int{},
		aimed:     map[workflow.StepName]int{},
	}
	c.roots, c.stopFeed = newRootIndex(f.sl, "C0OPS")
	return c
}

func (c *campaign) stop() {
	c.stopFeed()
	if c.srv != nil {
		c.srv.kill()
	}
	for c.inflight > 0 {
		<-c.results
		c.inflight--
	}
}

// fatalf ends the test with the campaign's log and the last process's output.
func (c *campaign) fatalf(format string, args ...any) {
	c.t.Helper()
	tail := c.log
	if len(tail) > 10 {
		tail = tail[len(tail)-10:]
	}
	var out []byte
	if c.srv != nil {
		out = c.srv.output()
		if len(out) > 20000 {
			out = out[len(out)-20000:]
		}
	}
	c.t.Fatalf("%s\nlast kills:\n  %s\nlast process output (tail):\n%s", fmt.Sprintf(format, args...), strings.Join(tail, "\n  "), out)
}

// restart starts the binary on the campaign's database.
func (c *campaign) restart() {
	c.t.Helper()
	srv, err := relServe(c.ctx, c.t, c.env)
	if srv != nil {
		c.srv = srv // for fatalf's output
	}
	if err != nil {
		c.fatalf("restart %d: %v", c.gen+1, err)
	}
	c.srv = srv
	c.gen++
	if c.gen > 1 {
		c.restarts++
	}
}

// cycle drives runs until one is at target, waits a random moment and kills
// the process, then checks the database it left.
func (c *campaign) cycle(target workflow.StepName, faulty bool) {
	c.t.Helper()
	if faulty {
		c.faultsOn()
		c.faulty++
		c.lastWindow = time.Now()
	}
	c.aimed[target]++
	var delay time.Duration
	hit := c.driveUntil(target)
	switch {
	case target == targetCommand:
		delay = time.Duration(c.rng.Int64N(int64(8 * time.Millisecond)))
	case isGateStep(target):
		delay = time.Duration(c.rng.Int64N(int64(6 * time.Millisecond)))
	default:
		delay = time.Duration(c.rng.Int64N(int64(50 * time.Millisecond)))
	}
	if !hit {
		c.untargeted++
	}
	// Choosing the moment of death is this test's purpose: a timer is the
	// only way to do it.
	<-time.After(delay)
	c.srv.kill()
	c.killNo++
	c.outputs = append(c.outputs, c.srv.output())
	if c.faultTimer != nil {
		c.faultTimer.Stop()
		c.faultTimer = nil
	}
	c.faultsOff()
	relHTTP.CloseIdleConnections()
	for c.inflight > 0 { // commands cut by the kill fail at once
		c.collect(<-c.results)
	}
	got := c.inspect()
	c.log = append(c.log, fmt.Sprintf("kill %d: aimed at %s (found: %v) + %s, faults %v → %s",
		c.killNo, target, hit, delay.Round(time.Millisecond), faulty, strings.Join(got, "; ")))
}

// faultsOn opens a fault window of a random 150 to 400 ms: a share of
// every authentik and Cloudflare call fails (no timeouts: the binary's
// client waits 30 s). The window is short so that a run's failures stay
// few and its backoff short; kills during and after it land in retries.
// Each window also queues one fault of a kind the random choice does not
// make, in turn: authentik 429 with and without Retry-After, 500, 502, and
// Cloudflare 429 without Retry-After.
func (c *campaign) faultsOn() {
	seed := c.rng.Int64()
	c.f.ak.SetFaultRate(c.cfg.faultShare, seed,
		authentiktest.FaultStatus, authentiktest.FaultReset, authentiktest.FaultMalformed, authentiktest.FaultApplyThenReset)
	c.f.cf.SetFaultRate(c.cfg.faultShare, seed+1) // 429 with Retry-After, 500, 502, 503, reset, malformed, apply-then-reset
	// On paths the start-up credential checks never call, so a restart is not refused.
	switch c.faulty % 5 {
	case 0:
		c.f.ak.AddFault(authentiktest.Fault{PathContains: "/flows/instances/", Kind: authentiktest.FaultStatus, Status: 429, RetryAfter: "1", Times: 1})
	case 1:
		c.f.ak.AddFault(authentiktest.Fault{PathContains: "/crypto/certificatekeypairs/", Kind: authentiktest.FaultStatus, Status: 429, Times: 1})
	case 2:
		c.f.ak.AddFault(authentiktest.Fault{Method: "POST", PathContains: "/providers/oauth2/", Kind: authentiktest.FaultStatus, Status: 500, Times: 1})
	case 3:
		c.f.ak.AddFault(authentiktest.Fault{Method: "POST", PathContains: "/core/applications/", Kind: authentiktest.FaultStatus, Status: 502, Times: 1})
	case 4:
		c.f.cf.AddFault(cloudflaretest.Fault{Method: "GET", PathContains: "/identity_providers", Kind: cloudflaretest.FaultStatus, Status: 429, Times: 1})
	}
	c.explicit[c.faulty%5]++
	window := 150*time.Millisecond + time.Duration(c.rng.Int64N(int64(250*time.Millisecond)))
	c.faultTimer = time.AfterFunc(window, c.faultsOff)
}

// faultsOff closes the fault window; the fakes make it safe from any goroutine.
func (c *campaign) faultsOff() {
	c.f.ak.SetFaultRate(0, 0)
	c.f.cf.SetFaultRate(0, 0)
}

// explicitFaults names the queued faults of faultsOn, in turn.
var explicitFaults = [5]string{
	"authentik 429 with Retry-After",
	"authentik 429 without Retry-After",
	"authentik 500",
	"authentik 502",
	"cloudflare 429 without Retry-After",
}

// driveUntil approves gates, retries failed runs and keeps cfg.open runs
// going until a run is at target; for a gate, it clicks Approve on it; for
// targetCommand, it sends a new command. It reports false when no run got
// there in time.
func (c *campaign) driveUntil(target workflow.StepName) bool {
	c.t.Helper()
	if target == targetCommand {
		c.newRun()
		return true
	}
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(4 * time.Millisecond)
	defer tick.Stop()
	for {
		hit := false
		runs := c.activeRuns()
		for _, r := range runs {
			cur := currentView(r)
			switch {
			case r.State == workflow.StateFailed:
				c.retry(r.ID)
			case r.State == workflow.StateAwaitingApproval && cur != nil:
				force := cur.Name == target && !hit
				if c.approve(r.ID, cur.Name, force) && force {
					hit = true
				}
			case cur != nil && cur.Name == target && cur.Status == workflow.StepRunning:
				hit = true
			}
		}
		c.topUp(runs)
		if hit {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-tick.C:
		case r := <-c.results:
			c.collect(r)
		case <-c.ctx.Done():
			c.fatalf("campaign out of time aiming at %s: %v", target, c.ctx.Err())
		}
	}
}

// activeRuns lists the runs that need the driver: open or failed.
func (c *campaign) activeRuns() []runView {
	c.t.Helper()
	body, err := relGet(c.ctx, c.srv.adminURL+"/api/runs?limit=500&state=pending&state=awaiting_approval&state=running&state=failed")
	if err != nil {
		c.fatalf("process %d stopped answering (it was not killed): %v", c.gen, err)
	}
	var list runList
	if err := json.Unmarshal(body, &list); err != nil {
		c.fatalf("decode /api/runs: %v", err)
	}
	return list.Runs
}

// currentView is the first step of a run that has not succeeded.
func currentView(r runView) *stepView {
	for i := range r.Steps {
		if r.Steps[i].Status != workflow.StepSucceeded {
			return &r.Steps[i]
		}
	}
	return nil
}

// topUp starts a run when fewer than cfg.open are moving. A run whose
// current step has failed (it waits to retry, or is retried) counts only
// against a cap of twice that, so runs in backoff do not stall the campaign.
func (c *campaign) topUp(runs []runView) {
	if c.final || len(runs)+c.inflight >= 2*c.cfg.open {
		return
	}
	moving := c.inflight
	for _, r := range runs {
		if cur := currentView(r); cur != nil && cur.Status == workflow.StepRunning && cur.Error != "" {
			continue
		}
		moving++
	}
	if moving < c.cfg.open {
		c.newRun()
	}
}

// newRun sends /sso-setup new for a fresh application. Names are never
// reused, even for a command that got no answer: a person who saw no answer
// would type it again, and a second run for the same slug would rightly
// fail at creating the application.
func (c *campaign) newRun() {
	c.nextApp++
	app := fmt.Sprintf("%s%04d", c.prefix, c.nextApp)
	c.send(&relCommand{app: app, text: fmt.Sprintf("new %s login=%s", app, strings.ToLower(app))}, "U0ALICE")
}

// retry sends /sso-setup retry for a failed run, at most once a second per
// process.
func (c *campaign) retry(id int64) {
	if last, ok := c.retried[id]; ok && last.gen == c.gen && time.Since(last.at) < time.Second {
		return
	}
	c.retried[id] = relClick{gen: c.gen, at: time.Now()}
	c.nRetries++
	c.send(&relCommand{text: fmt.Sprintf("retry %d", id)}, "U0BOB")
}

// send posts a signed slash command from a goroutine: the kill may land
// while it is being answered.
func (c *campaign) send(cmd *relCommand, user string) {
	cmd.gen = c.gen
	c.cmds = append(c.cmds, cmd)
	c.inflight++
	form := slacktest.SlashCommandForm(c.f.sl.NewSlashCommand("/sso-setup", cmd.text, user, "C0OPS")).Encode()
	url, secret := c.srv.slackURL+slackCommandsPath, c.f.secret
	go func() {
		body, err := relPost(url, secret, []byte(form))
		if err != nil {
			cmd.err = err
		} else {
			var reply struct {
				Text string `json:"text"`
			}
			_ = json.Unmarshal(body, &reply)
			cmd.ack = reply.Text
			if m := ackPattern.FindStringSubmatch(reply.Text); m != nil {
				cmd.runID, _ = strconv.ParseInt(m[1], 10, 64)
			}
		}
		c.results <- cmd
	}()
}

func (c *campaign) collect(cmd *relCommand) {
	c.inflight--
	if cmd.app != "" && cmd.err == nil && cmd.runID == 0 {
		c.fatalf("/sso-setup %s was answered without a run: %q", cmd.text, cmd.ack)
	}
}

// approve clicks Approve on the run's latest message when it shows the
// gate's buttons; a click is repeated only after a restart or a second
// without effect (or when forced). It reports whether it clicked.
func (c *campaign) approve(id int64, gate workflow.StepName, force bool) bool {
	c.t.Helper()
	ts := c.roots.latest(id)
	if ts == "" {
		return false
	}
	m, ok := c.f.sl.Message("C0OPS", ts)
	if !ok {
		return false
	}
	btn, ok := m.Button(bot.ActionApprove)
	if !ok {
		return false
	}
	if _, g, _, err := bot.ParseButtonValue(btn.Value); err != nil || g != gate {
		return false // the message is not updated yet
	}
	if last, ok := c.clicks[btn.Value]; ok && !force && last.gen == c.gen && time.Since(last.at) < time.Second {
		return false
	}
	a, err := c.f.sl.ClickButton("C0OPS", ts, bot.ActionApprove, "U0BOB")
	if err != nil {
		return false
	}
	if _, err := relPost(c.srv.slackURL+slackInteractionsPath, c.f.secret, []byte(slacktest.BlockActionsPayload(a).Encode())); err != nil {
		c.fatalf("process %d refused a click (it was not killed): %v", c.gen, err)
	}
	c.clicks[btn.Value] = relClick{gen: c.gen, at: time.Now()}
	c.clickedAt[fmt.Sprintf("%d|%s", id, gate)] = c.gen
	c.nClicks++
	return true
}

// inspect opens the database the killed process left, checks it, verifies
// that every acknowledged run is in it, and records where the open runs
// were at the moment of death.
func (c *campaign) inspect() []string {
	c.t.Helper()
	st, err := store.Open(c.dbPath, store.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		c.fatalf("kill %d: the database does not open: %v", c.killNo, err)
	}
	defer st.Close()
	if err := st.Check(); err != nil {
		c.fatalf("kill %d: the database fails Check: %v", c.killNo, err)
	}
	for _, cmd := range c.cmds {
		if cmd.runID == 0 {
			continue
		}
		r, err := st.GetRun(c.ctx, cmd.runID)
		if err != nil || r.Request.ApplicationName != cmd.app {
			c.fatalf("kill %d: run #%d acknowledged for %s is lost: %v", c.killNo, cmd.runID, cmd.app, err)
		}
	}
	newest, err := st.ListRuns(c.ctx, workflow.ListOptions{Limit: 1})
	if err != nil {
		c.fatalf("kill %d: list runs: %v", c.killNo, err)
	}
	k := killRecord{at: time.Now()}
	if len(newest) > 0 {
		k.newestRun = newest[0].ID
	}
	c.kills = append(c.kills, k)
	open, err := st.ListRuns(c.ctx, workflow.ListOptions{States: workflow.OpenStates})
	if err != nil {
		c.fatalf("kill %d: list runs: %v", c.killNo, err)
	}
	hits := map[string]bool{}
	for _, cmd := range c.cmds {
		if cmd.app != "" && cmd.gen == c.gen && cmd.err != nil {
			hits[hitCommandCut()] = true
		}
	}
	for _, r := range open {
		s := r.Current()
		switch {
		case s == nil:
		case r.State == workflow.StateAwaitingApproval:
			hits[hitAwaiting(s.Name)] = true
			if c.clickedAt[fmt.Sprintf("%d|%s", r.ID, s.Name)] == c.gen {
				hits[hitDecision(s.Name)] = true
			}
		case s.Kind == workflow.KindAction && s.Status == workflow.StepRunning && s.NextAttemptAt.IsZero():
			hits[hitInFlight(s.Name)] = true
		case s.Kind == workflow.KindAction && s.Status == workflow.StepRunning:
			hits[hitBackoff(s.Name)] = true
			if os.Getenv("SSOBOT_KILL_DEBUG") != "" {
				c.t.Logf("kill %d: run #%d waits until %s to retry %s (attempt %d): %s", c.killNo, r.ID, s.NextAttemptAt.Format(time.StampMilli), s.Name, s.Attempts, s.LastError())
			}
		default:
			hits[hitBetween(s.Name)] = true
		}
	}
	for h := range hits {
		c.hits[h]++
	}
	return slices.Sorted(maps.Keys(hits))
}

// finish lets every run end after the last restart: no more kills, no
// faults, gates approved and failed runs retried; then it waits for Slack
// to show every end state, collects what the admin API shows and stops the
// process with SIGTERM.
func (c *campaign) finish() {
	c.t.Helper()
	c.final = true
	c.faultsOff()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		runs := c.activeRuns()
		for _, r := range runs {
			cur := currentView(r)
			switch {
			case r.State == workflow.StateFailed:
				c.retry(r.ID)
			case r.State == workflow.StateAwaitingApproval && cur != nil:
				c.approve(r.ID, cur.Name, false)
			}
		}
		if len(runs) == 0 && c.inflight == 0 {
			break
		}
		select {
		case <-tick.C:
		case r := <-c.results:
			c.collect(r)
		case <-c.ctx.Done():
			c.fatalf("runs still going after the last restart: %+v", runs)
		}
	}
	// Every run's latest root message shows its end state; the delivery
	// worker gets a few seconds to catch up, then stale messages are counted.
	runs := c.allRuns()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.stale = c.stale[:0]
		for _, r := range runs {
			// The message the bot follows: a root posted by a process killed
			// mid-call may reach Slack after its successor's and stay orphaned.
			ch, ts, _ := strings.Cut(r.SlackMessage, "|")
			m, ok := c.f.sl.Message(ch, ts)
			if !ok || !strings.Contains(m.Text, bot.StateLabel(r.State)) {
				// The kill that followed its last change, and how many
				// newer runs there were then (the bot refreshes the
				// messages of finished runs among the newest 20 only).
				next := ""
				for i, k := range c.kills {
					if k.at.After(r.UpdatedAt) {
						next = fmt.Sprintf("; kill %d came %s later, with %d newer runs", i+1, k.at.Sub(r.UpdatedAt).Round(time.Millisecond), k.newestRun-r.ID)
						break
					}
				}
				c.stale = append(c.stale, fmt.Sprintf("run #%d (%s, updated %s) shows %q%s", r.ID, r.State, r.UpdatedAt.Format(time.StampMilli), m.Text, next))
			}
		}
		if len(c.stale) == 0 || time.Now().After(deadline) {
			break
		}
		select {
		case <-tick.C:
		case <-c.ctx.Done():
			c.fatalf("waiting for Slack to show every run's end state: %v", c.ctx.Err())
		}
	}
	dump, err := adminDump(c.ctx, c.srv.adminURL)
	if err != nil {
		c.fatalf("admin API: %v", err)
	}
	c.adminDump = dump
	if err := c.srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		c.t.Fatal(err)
	}
	code, err := c.srv.wait(c.ctx)
	c.outputs = append(c.outputs, c.srv.output())
	if err != nil || code != 0 {
		c.fatalf("SIGTERM: exit %d, %v; want 0", code, err)
	}
}

// allRuns lists every run through the admin API.
func (c *campaign) allRuns() []runView {
	c.t.Helper()
	var all []runView
	before := ""
	for {
		body, err := relGet(c.ctx, c.srv.adminURL+"/api/runs?limit=500"+before)
		if err != nil {
			c.fatalf("list runs: %v", err)
		}
		var list runList
		if err := json.Unmarshal(body, &list); err != nil {
			c.fatalf("decode /api/runs: %v", err)
		}
		if len(list.Runs) == 0 {
			return all
		}
		all = append(all, list.Runs...)
		before = fmt.Sprintf("&before=%d", list.Runs[len(list.Runs)-1].ID)
	}
}

// rootIndex follows the fake Slack's calls and remembers, per run, the root
// messages the bot posted in a channel, in order.
type rootIndex struct {
	mu    sync.Mutex
	roots map[int64][]string
}

var rootPattern = regexp.MustCompile(`^SSO setup #(\d+) for `)

func newRootIndex(sl *slacktest.Server, channel string) (*rootIndex, func()) {
	idx := &rootIndex{roots: map[int64][]string{}}
	feed, stop := sl.Subscribe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range feed {
			if c.Method != "chat.postMessage" || c.Error != "" || c.Param("channel") != channel || c.Param("thread_ts") != "" {
				continue
			}
			m := rootPattern.FindStringSubmatch(c.Param("text"))
			ts, _ := c.Result["ts"].(string)
			if m == nil || ts == "" {
				continue
			}
			id, _ := strconv.ParseInt(m[1], 10, 64)
			idx.mu.Lock()
			idx.roots[id] = append(idx.roots[id], ts)
			idx.mu.Unlock()
		}
	}()
	return idx, func() { stop(); <-done }
}

// latest is the ts of the run's newest root message, or "".
func (x *rootIndex) latest(id int64) string {
	x.mu.Lock()
	defer x.mu.Unlock()
	if r := x.roots[id]; len(r) > 0 {
		return r[len(r)-1]
	}
	return ""
}

func (x *rootIndex) count(id int64) int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.roots[id])
}

// killFigures are the campaign's results, for the README.
type killFigures struct {
	runs, succeeded                             int
	commands, acked, cutWithRun, cutWithoutRun  int
	lost, duplicates, orphans, missingMessages  int
	extraRootMessages, runsWithExtraRoot        int
	providers, applications, loginMethods       int
	leaks                                       int
	scannedBytes                                int
	authentikCalls, cloudflareCalls, slackCalls int
	gapsChecked                                 int
	minGap                                      time.Duration
	staleMessages                               int
}

// check verifies the end state in the database left by the last process,
// in the fakes and in Slack, and searches everything for secrets.
func (c *campaign) check() {
	t := c.t
	t.Helper()
	fig := &c.fig
	st, err := store.Open(c.dbPath, store.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("reopen after the campaign: %v", err)
	}
	defer st.Close()
	if err := st.Check(); err != nil {
		t.Errorf("the final database fails Check: %v", err)
	}
	runs, err := st.ListRuns(c.ctx, workflow.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fig.runs = len(runs)

	// Commands against runs: no acknowledged run lost, no run without a
	// command, no command with two runs.
	byApp := map[string][]*workflow.Run{}
	for _, r := range runs {
		byApp[r.Request.ApplicationName] = append(byApp[r.Request.ApplicationName], r)
	}
	apps := map[string]bool{}
	for _, cmd := range c.cmds {
		if cmd.app == "" {
			continue
		}
		fig.commands++
		apps[cmd.app] = true
		got := byApp[cmd.app]
		switch {
		case len(got) > 1:
			t.Errorf("/sso-setup %s made %d runs", cmd.text, len(got))
		case cmd.runID != 0:
			fig.acked++
			if len(got) != 1 || got[0].ID != cmd.runID {
				fig.lost++
				t.Errorf("run #%d acknowledged for %s is lost", cmd.runID, cmd.app)
			}
		case len(got) == 1:
			fig.cutWithRun++
		default:
			fig.cutWithoutRun++
		}
	}
	for app := range byApp {
		if !apps[app] {
			t.Errorf("run for %q was never requested", app)
		}
	}

	// End states and resources.
	providers, applications, idps := c.f.ak.Providers(), c.f.ak.Applications(), c.f.cf.IdentityProviders()
	fig.providers, fig.applications, fig.loginMethods = len(providers), len(applications), len(idps)
	recorded := map[string]bool{}
	for _, r := range runs {
		res := r.Resources
		recorded[fmt.Sprint("provider ", res.AuthentikProviderID)] = true
		recorded["application "+res.AuthentikApplicationSlug] = true
		recorded["login method "+res.CloudflareIdentityProviderID] = true
		if r.State != workflow.StateSucceeded {
			t.Errorf("run #%d (%s) ended %s: %s", r.ID, r.Request.ApplicationName, r.State, r.LastError())
			continue
		}
		fig.succeeded++
		var ps []authentiktest.Provider
		for _, p := range providers {
			if p.ClientID == r.Params.ClientID {
				ps = append(ps, p)
			}
		}
		var as []authentiktest.Application
		for _, a := range applications {
			if a.Slug == r.Params.ApplicationSlug {
				as = append(as, a)
			}
		}
		var ls []cloudflaretest.IdentityProvider
		for _, l := range idps {
			if l.Name == r.Params.LoginMethodName && l.Config.ClientID == r.Params.ClientID {
				ls = append(ls, l)
			}
		}
		if len(ps) != 1 || len(as) != 1 || len(ls) != 1 {
			fig.duplicates += max(len(ps)-1, 0) + max(len(as)-1, 0) + max(len(ls)-1, 0)
			t.Errorf("run #%d has %d providers, %d applications and %d login methods; want one each", r.ID, len(ps), len(as), len(ls))
			continue
		}
		if ps[0].PK != res.AuthentikProviderID || as[0].Slug != res.AuthentikApplicationSlug || ls[0].ID != res.CloudflareIdentityProviderID {
			t.Errorf("run #%d records %+v; the fakes hold provider %d, application %s, login method %s", r.ID, res, ps[0].PK, as[0].Slug, ls[0].ID)
		}
		if as[0].Provider != ps[0].PK || ls[0].Config.ClientSecret != ps[0].ClientSecret {
			t.Errorf("run #%d: the application or the login method does not match the provider", r.ID)
		}
	}
	for _, p := range providers {
		if !recorded[fmt.Sprint("provider ", p.PK)] {
			fig.orphans++
			t.Errorf("provider %d (%s) is recorded in no run", p.PK, p.Name)
		}
	}
	for _, a := range applications {
		if !recorded["application "+a.Slug] {
			fig.orphans++
			t.Errorf("application %s is recorded in no run", a.Slug)
		}
	}
	for _, l := range idps {
		if !recorded["login method "+l.ID] {
			fig.orphans++
			t.Errorf("login method %s (%s) is recorded in no run", l.ID, l.Name)
		}
	}

	// Retries kept their backoff across kills: after a transient failure
	// the step waited at least half the base backoff (1 s), and at least the
	// Retry-After of a 429 that gave one, before its next attempt (seen as
	// that attempt's failure or the step's success).
	for _, r := range runs {
		for _, s := range r.Steps {
			for i, e := range s.Errors {
				// The next attempt's failure, or the step's success.
				var nextAt time.Time
				switch {
				case i+1 < len(s.Errors):
					nextAt = s.Errors[i+1].At
				case s.Status == workflow.StepSucceeded:
					nextAt = s.FinishedAt
				default:
					continue
				}
				// A step that used up its attempts was retried by hand, at once.
				inBudget := e.Attempt < 8 || (e.Attempt > s.RetriedAtAttempt && e.Attempt < s.RetriedAtAttempt+8)
				if !e.Transient || !inBudget {
					continue
				}
				want := 500 * time.Millisecond
				if strings.Contains(e.Error, "Expected available in 1 seconds") {
					want = time.Second
				}
				gap := nextAt.Sub(e.At)
				fig.gapsChecked++
				if fig.minGap == 0 || gap < fig.minGap {
					fig.minGap = gap
				}
				if gap < want {
					t.Errorf("run #%d %s: the attempt after attempt %d (%s) ended %s later; want at least %s", r.ID, s.Name, e.Attempt, e.Error, gap, want)
				}
			}
		}
	}

	// Every run has its message: the reference is stored and the message is
	// in Slack. Extra root messages (posted again after a kill between the
	// post and storing its reference) are counted.
	for _, r := range runs {
		ch, ts, _ := strings.Cut(r.MessageRef, "|")
		if m, ok := c.f.sl.Message(ch, ts); !ok || !strings.HasPrefix(m.Text, fmt.Sprintf("SSO setup #%d for ", r.ID)) {
			fig.missingMessages++
			t.Errorf("run #%d has no message (ref %q)", r.ID, r.MessageRef)
		}
		if n := c.roots.count(r.ID); n > 1 {
			fig.extraRootMessages += n - 1
			fig.runsWithExtraRoot++
		}
	}

	// A run that ended just before a kill must still get its message
	// updated after the restart.
	fig.staleMessages = len(c.stale)
	// Known limitation (README, "What a kill can still cost"): after a kill
	// right around posting a run's message, that message can keep an older
	// state. Counted and reported; the runs themselves are checked above.
	for _, s := range c.stale {
		t.Logf("Slack message not updated to the end state after the last restart: %s", s)
	}

	for _, err := range append(c.f.ak.ContractErrors(), c.f.cf.ContractErrors()...) {
		t.Errorf("contract: %v", err)
	}

	// Secrets: every byte written by every process, every Slack call, the
	// database file and everything the admin API showed.
	probes := leakProbes(c.f.allSecrets())
	if len(probes) < 5+fig.succeeded {
		t.Errorf("only %d secrets to look for; want the five credentials and a client secret per run", len(probes))
	}
	var found []string
	scan := func(where string, data []byte) {
		fig.scannedBytes += len(data)
		found = append(found, leaks(probes, where, data)...)
	}
	for i, out := range c.outputs {
		scan(fmt.Sprintf("the output of process %d", i+1), out)
	}
	scan("Slack calls", slackCallsText(c.f.sl))
	db, err := os.ReadFile(c.dbPath)
	if err != nil {
		t.Fatal(err)
	}
	scan(filepath.Base(c.dbPath), db)
	for _, where := range slices.Sorted(maps.Keys(c.adminDump)) {
		scan(where, c.adminDump[where])
	}
	fig.leaks = len(found)
	for _, l := range found {
		t.Errorf("secret leaked: %s", l)
	}
	fig.authentikCalls, fig.cloudflareCalls, fig.slackCalls = c.f.ak.Calls("", ""), c.f.cf.Calls("", ""), len(c.f.sl.Calls())
}

// report logs the figures for the README.
func (c *campaign) report(faults *faultCounter, killPhase, total time.Duration) {
	fig := c.fig
	var b strings.Builder
	fmt.Fprintf(&b, "kill campaign: %d SIGKILLs survived, %d restarts, %d runs (%d succeeded), kill phase %s, total %s\n",
		c.killNo, c.restarts, fig.runs, fig.succeeded, killPhase.Round(time.Second), total.Round(time.Second))
	fmt.Fprintf(&b, "  slash commands: %d sent, %d acknowledged; %d cut by a kill made their run, %d made none; runs lost: %d\n",
		fig.commands, fig.acked, fig.cutWithRun, fig.cutWithoutRun, fig.lost)
	fmt.Fprintf(&b, "  resources: %d providers, %d applications, %d login methods; duplicates %d, unrecorded %d; runs without a message %d\n",
		fig.providers, fig.applications, fig.loginMethods, fig.duplicates, fig.orphans, fig.missingMessages)
	fmt.Fprintf(&b, "  Slack root messages posted again after a kill: %d (on %d runs); messages left showing an old state: %d\n", fig.extraRootMessages, fig.runsWithExtraRoot, fig.staleMessages)
	fmt.Fprintf(&b, "  approvals clicked %d, retries sent %d, fault windows %d of %d kills, kills that found no run at their target %d\n",
		c.nClicks, c.nRetries, c.faulty, c.killNo, c.untargeted)
	fmt.Fprintf(&b, "  kills aimed at:")
	for _, tg := range killTargets {
		fmt.Fprintf(&b, " %s %d,", tg, c.aimed[tg])
	}
	fmt.Fprintf(&b, "\n  kill points hit (a kill may hit several, one per open run):\n")
	for _, h := range slices.Sorted(maps.Keys(c.hits)) {
		fmt.Fprintf(&b, "    %-50s %d\n", h, c.hits[h])
	}
	counts := faults.snapshot()
	fmt.Fprintf(&b, "  faults injected (as served by the fakes): %d\n", faults.total())
	for _, k := range slices.Sorted(maps.Keys(counts)) {
		fmt.Fprintf(&b, "    %-50s %d\n", k, counts[k])
	}
	fmt.Fprintf(&b, "  of which queued one at a time (in the status lines above once served):\n")
	for i, name := range explicitFaults {
		fmt.Fprintf(&b, "    %-50s %d\n", name, c.explicit[i])
	}
	fmt.Fprintf(&b, "  retry waits checked: %d failed attempts and the next one, shortest gap %s\n", fig.gapsChecked, fig.minGap.Round(time.Millisecond))
	fmt.Fprintf(&b, "  API calls: authentik %d, Cloudflare %d, Slack %d\n", fig.authentikCalls, fig.cloudflareCalls, fig.slackCalls)
	fmt.Fprintf(&b, "  secrets searched for: %d; found: %d in %d bytes (process output, Slack calls, database file, admin API)\n",
		len(c.f.allSecrets()), fig.leaks, fig.scannedBytes)
	c.t.Log(b.String())
}
