//go:build !ssobot_server

package main

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ssobot/ssobot/workflow"
	"github.com/ssobot/ssobot/workflow/contracttest"
)

// benchLatency is the latency given to every authentik and Cloudflare call
// in the second measurement.
const benchLatency = 50 * time.Millisecond

// benchEngine measures what a run costs beyond the APIs it waits for, how
// many runs complete per second when many run at once, against the bound
// the disk sets (synced bbolt commits per second ÷ commits per run), and
// lists the commits of one run.
// benchOffCriticalPath is how many of a run's calls overlap another:
// preflight's six other authentik reads run at once after its token check,
// while the organization, the login methods and the TLS check run beside
// them (8 of its 10 calls off the path), and verify's four run at once (3
// off the path).
const benchOffCriticalPath = 8 + 3

func benchEngine(ctx context.Context, b *bench, s *benchSection) error {
	e, err := newBenchEnv(ctx, benchEnvOptions{AutoApprove: true, RecordCommits: true})
	if err != nil {
		return err
	}
	defer func() {
		if e != nil {
			e.Close()
		}
	}()

	// One run first: connections, the approver's users.info cache.
	if _, err := benchSerialRun(ctx, e, "Warm Up"); err != nil {
		return err
	}

	// 1. One run at a time, zero-latency fakes, approvals at once.
	b.logf("   serial runs, zero-latency fakes")
	var zero []benchRunResult
	for i := range pick(b, 2, 30) {
		r, err := benchSerialRun(ctx, e, fmt.Sprintf("Serial %d", i))
		if err != nil {
			return err
		}
		zero = append(zero, r)
	}

	// 2. The same with 50 ms on every authentik and Cloudflare call.
	b.logf("   serial runs, %s per API call", benchLatency)
	e.ak.SetLatency(benchLatency)
	e.cf.SetLatency(benchLatency)
	var slow []benchRunResult
	for i := range pick(b, 1, 10) {
		r, err := benchSerialRun(ctx, e, fmt.Sprintf("Slow %d", i))
		if err != nil {
			return err
		}
		slow = append(slow, r)
	}
	e.ak.SetLatency(0)
	e.cf.SetLatency(0)
	t := s.table("Engine cost per run (one run at a time, approvals given through the engine's API the moment a gate opens)",
		"fakes", "runs", "API calls on the critical path", "wall p50", "wall max", "API time p50 (fakes serving)", "overhead p50", "overhead max", "wall − 8 × 50ms p50")
	zeroWall := make([]time.Duration, 0, len(zero))
	for _, r := range zero {
		zeroWall = append(zeroWall, r.wall)
	}
	zs := stats(zeroWall)
	critical := func(r benchRunResult) int { return r.calls() - benchOffCriticalPath }
	t.row("zero latency", strconv.Itoa(len(zero)), fmt.Sprintf("%d of %d", critical(zero[0]), zero[0].calls()), fmtDur(zs.P50), fmtDur(zs.Max), "", "", "", "")
	var slowWall, overhead, api, strict []time.Duration
	for _, r := range slow {
		slowWall = append(slowWall, r.wall)
		api = append(api, r.api)
		overhead = append(overhead, r.wall-r.api)
		strict = append(strict, r.wall-time.Duration(critical(r))*benchLatency)
	}
	ss, ovs, as, sts := stats(slowWall), stats(overhead), stats(api), stats(strict)
	t.row(benchLatency.String()+" per call", strconv.Itoa(len(slow)), fmt.Sprintf("%d of %d", critical(slow[0]), slow[0].calls()), fmtDur(ss.P50), fmtDur(ss.Max), fmtDur(as.P50), fmtDur(ovs.P50), fmtDur(ovs.Max), fmtDur(sts.P50))
	s.value("run_zero_latency_p50_ms", ms(zs.P50))
	s.value("run_api_time_p50_ms", ms(as.P50))
	s.value("run_overhead_p50_ms", ms(ovs.P50))
	s.value("run_overhead_max_ms", ms(ovs.Max))
	s.value("run_wall_minus_nominal_p50_ms", ms(sts.P50))
	s.check("overhead per run beyond API latency (p50)", "< 20ms", fmtDur(ovs.P50), ovs.P50 < 20*time.Millisecond)
	s.check("overhead per run beyond API latency (max)", "< 20ms", fmtDur(ovs.Max), ovs.Max < 20*time.Millisecond)

	// 3. Throughput: K runs at once, against the bound the disk sets, in
	// a fresh bot and account (the login methods above would lengthen
	// Cloudflare's list, see the calls section).
	list := e.store.Commits(zero[0].id)
	e.logs.report(s, "engine")
	if err := e.Close(); err != nil {
		return err
	}
	k := pick(b, 4, 50)
	b.logf("   %d concurrent runs", k)
	if e, err = newBenchEnv(ctx, benchEnvOptions{AutoApprove: true}); err != nil {
		return err
	}
	if _, err := benchSerialRun(ctx, e, "Warm Up"); err != nil {
		return err
	}
	syncRate, err := benchSyncedCommits(filepath.Join(e.dir, "commit-probe.db"), pick(b, 50, 1000))
	if err != nil {
		return err
	}
	before := e.counters()
	cpuBefore := processCPU()
	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, k)
	for i := range k {
		wg.Go(func() {
			r, err := e.start(ctx, fmt.Sprintf("Concurrent %d", i))
			if err == nil {
				var st workflow.State
				st, err = e.wait(ctx, r.ID)
				if err == nil && st != workflow.StateSucceeded {
					err = fmt.Errorf("run %d ended %s", r.ID, st)
				}
			}
			errs[i] = err
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := processCPU() - cpuBefore
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	if err := e.settle(ctx, 50*time.Millisecond); err != nil {
		return err
	}
	d := e.counters().sub(before)
	commitsPerRun := float64(d.writes) / float64(k)
	sharedPerRun := float64(d.commits) / float64(k)
	throughput := float64(k) / elapsed.Seconds()
	bound := syncRate / commitsPerRun
	tt := s.table("Throughput of concurrent runs (zero-latency fakes; the engine runs at most 16 steps at once)",
		"runs at once", "elapsed", "runs/s", "CPU per run (whole process)", "CPU busy", "synced commits/s (plain bbolt loop, same disk)", "commits per run", "bound: commits/s ÷ commits per run", "runs/s ÷ bound", "fsyncs per run (commits shared)")
	tt.row(strconv.Itoa(k), fmtDur(elapsed), fmt.Sprintf("%.1f", throughput), fmtDur(cpu/time.Duration(k)),
		fmt.Sprintf("%.0f%% of %d CPUs", 100*cpu.Seconds()/elapsed.Seconds()/float64(runtime.NumCPU()), runtime.NumCPU()),
		fmt.Sprintf("%.0f", syncRate), fmt.Sprintf("%.1f", commitsPerRun), fmt.Sprintf("%.1f runs/s", bound), fmt.Sprintf("%.2f", throughput/bound), fmt.Sprintf("%.1f", sharedPerRun))
	s.value("fsyncs_per_run", roundTo(sharedPerRun, 2))
	s.value("cpu_per_run_ms", ms(cpu/time.Duration(k)))
	s.value("throughput_runs_per_s", roundTo(throughput, 2))
	s.value("synced_commits_per_s", roundTo(syncRate, 1))
	s.value("bound_runs_per_s", roundTo(bound, 2))
	s.value("commits_per_run", roundTo(commitsPerRun, 2))
	s.check(fmt.Sprintf("throughput, %d runs at once", k), "≥ ½ × bound", fmt.Sprintf("%.1f runs/s, bound %.1f", throughput, bound), throughput >= bound/2)

	// 4. The commits of one run, one by one, against what the design needs.
	ct := s.table(fmt.Sprintf("The %d commits of one run (run #%d), next to the %d the design needs", len(list), zero[0].id, benchMinCommits),
		"#", "what the commit wrote", "needed?")
	extra := 0
	for i, c := range list {
		why := benchCommitNeed(c)
		if strings.HasPrefix(why, "no") {
			extra++
		}
		ct.row(strconv.Itoa(i+1), c, why)
	}
	s.value("commits_per_run_min", benchMinCommits)
	s.value("commits_per_run_kept", float64(extra))
	s.note("Commits per run: %d, against %d the design needs; the %d others are kept on purpose (marked \"no, kept\" above). "+
		"The minimum: create 1 (carrying preflight's intent), message reference 1 (the run's Slack message is edited after restarts), preflight result 1, "+
		"two decisions 2 (each carrying the intent of the step it releases), three side effects' results 3 (the provider's and the login method's carrying the intent of the step after them), verify result 1 = 9. "+
		"An intent is written into the commit that ends the step or gate before it whenever the next step can start at once; a crash between that commit and the call is handled like one after the intent.", len(list), benchMinCommits, extra)
	s.note(
		"Overhead = wall time − API time, the time during which the fakes were serving at least one of the run's authentik or Cloudflare requests (from each request's arrival in the handler to its answer: the %s of latency, the timer's lateness and the fake's own work). "+
			"\"wall − 8 × 50ms\" subtracts only the nominal latency of the calls on the critical path, so it also counts the fakes' timers firing late and their own work. The calls are counted by the fakes (authentik's API and public OIDC URLs, Cloudflare); preflight checks the authentik token and then makes its six other authentik reads at once, its three other calls running beside them, and verify makes its four at once, so %d calls are off the critical path.", benchLatency, benchOffCriticalPath)
	e.logs.report(s, "throughput")
	return nil
}

// benchMinCommits is the fewest commits a run needs (see benchCommitNeed).
const benchMinCommits = 9

// benchCommitNeed says whether the design needs a commit, by what it wrote.
func benchCommitNeed(c string) string {
	has := func(t workflow.EventType) bool { return strings.Contains(c, string(t)) }
	withIntent := ""
	if has(workflow.EventStepIntent) {
		withIntent = ", with the next step's intent"
	}
	switch {
	case strings.HasPrefix(c, "create run"):
		return "yes: the request, durable before the acknowledgement" + strings.Replace(withIntent, "next", "first", 1)
	case strings.Contains(c, "message ref"):
		return "yes: the message is edited after a restart"
	case strings.Contains(c, "delivered"):
		return "no, kept: the bot's delivery mark (a reply a restart must not lose: the outcome, or the call of a gate still open)"
	case has(workflow.EventDecisionAccepted):
		return "yes: the decision" + withIntent
	case has(workflow.EventStepSucceeded), has(workflow.EventStepFailed), has(workflow.EventAttemptFailed):
		return "yes: the step's result" + withIntent
	case has(workflow.EventStepIntent) && (strings.Contains(c, "["+string(workflow.StepPreflight)+"]") || strings.Contains(c, "["+string(workflow.StepVerify)+"]")):
		return "no, kept: the intent of a read-only step (it counts the attempt, so a step that crashes the process every time gives up)"
	case has(workflow.EventStepIntent):
		return "yes: the intent before a side effect"
	}
	return "?"
}

// benchRunResult is one run measured alone.
type benchRunResult struct {
	id    int64
	wall  time.Duration
	delta benchCounters
	// api is how long at least one authentik or Cloudflare request of the
	// run was being served by the fakes (the union of their spans).
	api time.Duration
}

// calls is the number of authentik and Cloudflare calls, all made one after
// another within a run.
func (r benchRunResult) calls() int { return r.delta.authentik + r.delta.oidcAPI + r.delta.cloudflare }

// benchSerialRun runs one setup to its end with nothing else going on and
// measures it; the counters include the Slack delivery that follows.
func benchSerialRun(ctx context.Context, e *benchEnv, name string) (benchRunResult, error) {
	if err := e.settle(ctx, 20*time.Millisecond); err != nil {
		return benchRunResult{}, err
	}
	before := e.counters()
	start := time.Now()
	r, err := e.start(ctx, name)
	if err != nil {
		return benchRunResult{}, err
	}
	st, err := e.wait(ctx, r.ID)
	wall := time.Since(start)
	if err != nil {
		return benchRunResult{}, err
	}
	if st != workflow.StateSucceeded {
		run, _ := e.app.engine.Get(ctx, r.ID)
		return benchRunResult{}, fmt.Errorf("run %d (%s) ended %s: %s", r.ID, name, st, run.LastError())
	}
	if err := e.settle(ctx, 30*time.Millisecond); err != nil {
		return benchRunResult{}, err
	}
	spans := append(e.ak.Spans(), e.cf.Spans()...)
	return benchRunResult{id: r.ID, wall: wall, delta: e.counters().sub(before), api: spanUnion(spans, start, start.Add(wall))}, nil
}

// spanUnion is how much of [from, to] at least one span covers.
func spanUnion(spans []contracttest.Span, from, to time.Time) time.Duration {
	var in []contracttest.Span
	for _, sp := range spans {
		sp.Start, sp.End = maxTime(sp.Start, from), minTime(sp.End, to)
		if sp.End.After(sp.Start) {
			in = append(in, sp)
		}
	}
	slices.SortFunc(in, func(a, b contracttest.Span) int { return a.Start.Compare(b.Start) })
	var total time.Duration
	var cur contracttest.Span
	for i, sp := range in {
		switch {
		case i == 0:
			cur = sp
		case !sp.Start.After(cur.End):
			cur.End = maxTime(cur.End, sp.End)
		default:
			total += cur.End.Sub(cur.Start)
			cur = sp
		}
	}
	if len(in) > 0 {
		total += cur.End.Sub(cur.Start)
	}
	return total
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// processCPU is the CPU time this process used so far, user and system.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchSyncedCommits measures synced bbolt commits per second on the disk
// holding path: n one-key write transactions in a row, each fsynced.
func benchSyncedCommits(path string, n int) (float64, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return 0, fmt.Errorf("commit probe: %w", err)
	}
	defer db.Close()
	value := make([]byte, 512)
	start := time.Now()
	for i := range n {
		err := db.Update(func(tx *bolt.Tx) error {
			bk, err := tx.CreateBucketIfNotExists([]byte("probe"))
			if err != nil {
				return err
			}
			return bk.Put([]byte(fmt.Sprintf("%016d", i)), value)
		})
		if err != nil {
			return 0, fmt.Errorf("commit probe: %w", err)
		}
	}
	return float64(n) / time.Since(start).Seconds(), nil
}
