//go:build !ssobot_server

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// benchCmd implements `ssobot bench`: it measures acknowledgement latency,
// engine cost, API calls, restart time, memory and binary size side by side
// in one run, against the built-in fakes, and prints each measurement next
// to its target.
func benchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ssobot bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	helpTo(fs, args, stdout)
	var o benchOptions
	fs.BoolVar(&o.Quick, "quick", false, "tiny counts, for CI: every section runs once; the verdicts mean little")
	fs.BoolVar(&o.JSON, "json", false, "print the results as JSON")
	only := fs.String("only", "", "comma-separated sections to run: "+strings.Join(benchSectionNames(), ", ")+" (default: all)")
	fs.StringVar(&o.Binary, "binary", "", "the ssobot binary the restart section runs (default: go build -tags ssobot_server ./cmd/ssobot, else this executable)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the in-process sections to this file")
	mutexProfile := fs.String("mutexprofile", "", "write a mutex contention profile to this file")
	blockProfile := fs.String("blockprofile", "", "write a blocking profile to this file")
	memProfile := fs.String("memprofile", "", "write an allocation profile (bytes and objects allocated, and the heap in use at the end) to this file")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "usage: ssobot bench [--quick] [--json] [--only SECTIONS]\n\nMeasures ssobot against built-in fakes of authentik, Cloudflare and Slack on\nloopback and prints every figure next to its target. Run it from the\nrepository (go run ./cmd/ssobot bench) so it can build the binary.\n\n")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *only != "" {
		for _, s := range strings.Split(*only, ",") {
			s = strings.TrimSpace(s)
			if !slices.Contains(benchSectionNames(), s) {
				fmt.Fprintf(stderr, "ssobot bench: unknown section %q (want %s)\n", s, strings.Join(benchSectionNames(), ", "))
				return exitUsage
			}
			o.Only = append(o.Only, s)
		}
	}

	if *mutexProfile != "" {
		runtime.SetMutexProfileFraction(5)
		defer writeProfile("mutex", *mutexProfile, stderr)
	}
	if *blockProfile != "" {
		runtime.SetBlockProfileRate(int(time.Microsecond))
		defer writeProfile("block", *blockProfile, stderr)
	}
	if *memProfile != "" {
		defer writeProfile("allocs", *memProfile, stderr)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "ssobot bench: %v\n", err)
			return exitFailure
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "ssobot bench: %v\n", err)
			return exitFailure
		}
		defer pprof.StopCPUProfile()
	}

	b := &bench{opts: o, progress: stderr, started: time.Now()}
	report := b.run(ctx, strings.Join(append([]string{"ssobot", "bench"}, args...), " "))
	if o.JSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(report); err != nil {
			fmt.Fprintf(stderr, "ssobot bench: %v\n", err)
			return exitFailure
		}
	} else {
		report.print(stdout)
	}
	if ctx.Err() != nil {
		return exitFailure
	}
	for _, s := range report.Sections {
		if s.Error != "" {
			return exitFailure
		}
	}
	return exitOK
}

func writeProfile(name, path string, stderr io.Writer) {
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintf(stderr, "ssobot bench: %s profile: %v\n", name, err)
		return
	}
	defer f.Close()
	if err := pprof.Lookup(name).WriteTo(f, 0); err != nil {
		fmt.Fprintf(stderr, "ssobot bench: %s profile: %v\n", name, err)
	}
}

// benchOptions configure a bench run.
type benchOptions struct {
	Quick  bool
	JSON   bool
	Only   []string // sections to run; empty: all
	Binary string   // ssobot binary for the restart section; "" builds one
}

// bench is one `ssobot bench` run.
type bench struct {
	opts     benchOptions
	progress io.Writer // one line per phase, so a long run shows life
	started  time.Time

	binary benchBinary // built once, shared by the restart and binary sections
}

// benchSectionFunc measures one section.
type benchSectionFunc func(ctx context.Context, b *bench, s *benchSection) error

var benchSections = []struct {
	name, title string
	fn          benchSectionFunc
}{
	{"ack", "Acknowledgement latency of the Slack endpoints", benchAck},
	{"engine", "Engine cost per run, throughput and commits", benchEngine},
	{"calls", "API calls per run, and duplicates under faults", benchCalls},
	{"restart", "Restart and memory of the real binary", benchRestart},
	{"binary", "Binary size and build time", benchBinarySection},
}

func benchSectionNames() []string {
	var names []string
	for _, s := range benchSections {
		names = append(names, s.name)
	}
	return names
}

func (b *bench) run(ctx context.Context, command string) *benchReport {
	start := time.Now()
	r := &benchReport{Command: command, Quick: b.opts.Quick, Machine: benchMachineInfo(), Started: start.UTC().Format(time.RFC3339)}
	defer b.binary.cleanup()
	for _, sec := range benchSections {
		if len(b.opts.Only) > 0 && !slices.Contains(b.opts.Only, sec.name) {
			continue
		}
		s := &benchSection{Name: sec.name, Title: sec.title}
		// What one section left behind (its fakes' state) is not collected
		// during the next one's measurements.
		debug.FreeOSMemory()
		b.logf("== %s", sec.title)
		secStart := time.Now()
		if err := sec.fn(ctx, b, s); err != nil {
			s.Error = err.Error()
			b.logf("   failed: %v", err)
		}
		s.Seconds = roundTo(time.Since(secStart).Seconds(), 1)
		r.Sections = append(r.Sections, s)
		if ctx.Err() != nil {
			break
		}
	}
	r.Seconds = roundTo(time.Since(start).Seconds(), 1)
	return r
}

// logf reports progress on stderr; results go to stdout.
func (b *bench) logf(format string, args ...any) {
	if b.progress != nil {
		fmt.Fprintf(b.progress, "[%6.1fs] "+format+"\n", append([]any{time.Since(b.started).Seconds()}, args...)...)
	}
}

// pick returns the quick or the full value.
func pick[T any](b *bench, quick, full T) T {
	if b.opts.Quick {
		return quick
	}
	return full
}

// benchReport is everything a run measured.
type benchReport struct {
	Command  string          `json:"command"`
	Quick    bool            `json:"quick"`
	Started  string          `json:"started"`
	Seconds  float64         `json:"seconds"`
	Machine  benchMachine    `json:"machine"`
	Sections []*benchSection `json:"sections"`
}

// benchMachine describes where the figures come from.
type benchMachine struct {
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	CPU        string `json:"cpu,omitempty"`
	GoVersion  string `json:"go_version"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
}

func benchMachineInfo() benchMachine {
	m := benchMachine{CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// benchSection is one section's tables, target checks and notes.
type benchSection struct {
	Name    string        `json:"name"`
	Title   string        `json:"title"`
	Tables  []*benchTable `json:"tables,omitempty"`
	Checks  []benchCheck  `json:"checks,omitempty"`
	Notes   []string      `json:"notes,omitempty"`
	Error   string        `json:"error,omitempty"`
	Seconds float64       `json:"seconds"`
	// Values are the key figures as numbers, for scripts reading --json.
	Values map[string]float64 `json:"values,omitempty"`
}

// benchTable is a table of formatted cells.
type benchTable struct {
	Title  string     `json:"title,omitempty"`
	Header []string   `json:"header"`
	Rows   [][]string `json:"rows"`
}

// benchCheck is one target and what was measured against it.
type benchCheck struct {
	What     string `json:"what"`
	Target   string `json:"target"`
	Measured string `json:"measured"`
	Verdict  string `json:"verdict"` // PASS, MISS or SKIP
}

// Verdicts of a check.
const (
	benchPass = "PASS"
	benchMiss = "MISS"
	benchSkip = "SKIP"
)

func (s *benchSection) table(title string, header ...string) *benchTable {
	t := &benchTable{Title: title, Header: header}
	s.Tables = append(s.Tables, t)
	return t
}

func (t *benchTable) row(cells ...string) { t.Rows = append(t.Rows, cells) }

func (s *benchSection) check(what, target, measured string, pass bool) {
	v := benchMiss
	if pass {
		v = benchPass
	}
	s.Checks = append(s.Checks, benchCheck{What: what, Target: target, Measured: measured, Verdict: v})
}

func (s *benchSection) skip(what, target, why string) {
	s.Checks = append(s.Checks, benchCheck{What: what, Target: target, Measured: why, Verdict: benchSkip})
}

func (s *benchSection) note(format string, args ...any) {
	s.Notes = append(s.Notes, fmt.Sprintf(format, args...))
}

func (s *benchSection) value(key string, v float64) {
	if s.Values == nil {
		s.Values = map[string]float64{}
	}
	s.Values[key] = v
}

// print writes the report as text tables.
func (r *benchReport) print(w io.Writer) {
	m := r.Machine
	fmt.Fprintf(w, "%s\n", r.Command)
	cpu := ""
	if m.CPU != "" {
		cpu = ", " + m.CPU
	}
	fmt.Fprintf(w, "machine: %d CPUs (GOMAXPROCS %d%s), %s %s/%s; started %s, took %.1fs\n", m.CPUs, m.GOMAXPROCS, cpu, m.GoVersion, m.OS, m.Arch, r.Started, r.Seconds)
	if r.Quick {
		fmt.Fprintln(w, "--quick: tiny counts; the figures show that every section runs, not how fast ssobot is.")
	}
	for _, s := range r.Sections {
		fmt.Fprintf(w, "\n## %s (%.1fs)\n", s.Title, s.Seconds)
		for _, t := range s.Tables {
			fmt.Fprintln(w)
			if t.Title != "" {
				fmt.Fprintf(w, "%s\n", t.Title)
			}
			printBenchTable(w, t.Header, t.Rows)
		}
		if len(s.Checks) > 0 {
			fmt.Fprintln(w)
			rows := make([][]string, 0, len(s.Checks))
			for _, c := range s.Checks {
				rows = append(rows, []string{c.What, c.Target, c.Measured, c.Verdict})
			}
			printBenchTable(w, []string{"target", "wanted", "measured", "verdict"}, rows)
		}
		for _, n := range s.Notes {
			fmt.Fprintf(w, "\n%s\n", n)
		}
		if s.Error != "" {
			fmt.Fprintf(w, "\nERROR: %s\n", s.Error)
		}
	}
}

func printBenchTable(w io.Writer, header []string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  "+strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, "  "+strings.Join(r, "\t"))
	}
	tw.Flush()
}

// Formatting helpers.

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
}

// fmtMicros shows a short duration in whole microseconds.
func fmtMicros(d time.Duration) string {
	return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
}

func fmtMB(bytes int64) string { return fmt.Sprintf("%.1f MB", float64(bytes)/(1<<20)) }

func ms(d time.Duration) float64 { return roundTo(float64(d)/float64(time.Millisecond), 3) }

func roundTo(v float64, digits int) float64 {
	p := 1.0
	for range digits {
		p *= 10
	}
	if v < 0 {
		return -float64(int64(-v*p+0.5)) / p
	}
	return float64(int64(v*p+0.5)) / p
}

// benchStats summarizes latencies.
type benchStats struct {
	N             int
	P50, P99, Max time.Duration
	Mean          time.Duration
}

func stats(ds []time.Duration) benchStats {
	if len(ds) == 0 {
		return benchStats{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return benchStats{
		N:    len(s),
		P50:  s[percentileIndex(len(s), 50)],
		P99:  s[percentileIndex(len(s), 99)],
		Max:  s[len(s)-1],
		Mean: sum / time.Duration(len(s)),
	}
}

// percentileIndex is the nearest-rank index of the p-th percentile.
func percentileIndex(n int, p int) int {
	i := (n*p+99)/100 - 1
	return max(0, min(i, n-1))
}
