package store

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ssobot/ssobot/workflow"
)

// reportCommits reports synced commits per second: bbolt fsyncs every
// commit, so this is the store's write ceiling.
func reportCommits(b *testing.B, s *Store, before uint64) {
	b.Helper()
	if secs := b.Elapsed().Seconds(); secs > 0 {
		b.ReportMetric(float64(s.Commits()-before)/secs, "commits/s")
	}
}

func BenchmarkCreateRun(b *testing.B) {
	s := openTest(b)
	r := newRun("Grafana", workflow.StatePending)
	before := s.Commits()
	for b.Loop() {
		c := r.Clone()
		if err := s.CreateRun(b.Context(), c, note("created")); err != nil {
			b.Fatal(err)
		}
	}
	reportCommits(b, s, before)
}

func BenchmarkUpdateRun(b *testing.B) {
	s := openTest(b)
	r := mustCreate(b, s, newRun("Grafana", workflow.StateRunning))
	before := s.Commits()
	i := 0
	for b.Loop() {
		i++
		if _, err := s.UpdateRun(b.Context(), r.ID, func(r *workflow.Run) ([]workflow.Event, error) {
			r.Step(workflow.StepVerify).Attempts = i
			return []workflow.Event{note(fmt.Sprint("attempt ", i))}, nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	reportCommits(b, s, before)
}

// BenchmarkListOpen is the resume scan with a long history: 10,000 finished
// runs and 100 open ones.
func BenchmarkListOpen(b *testing.B) {
	s := openTestAt(b, filepath.Join(b.TempDir(), "ssobot.db"))
	largeDB(b, s, 10_000, 100)
	opts := workflow.ListOptions{States: openStates}
	for b.Loop() {
		runs, err := s.ListRuns(b.Context(), opts)
		if err != nil {
			b.Fatal(err)
		}
		if len(runs) != 100 {
			b.Fatalf("%d open runs, want 100", len(runs))
		}
	}
}

// BenchmarkGetRun reads a run that has not changed since it was last read
// (the memo's copy) and one written between reads (a decoding each time).
func BenchmarkGetRun(b *testing.B) {
	for _, tt := range []struct {
		name    string
		changed bool
	}{{"unchanged", false}, {"changed", true}} {
		b.Run(tt.name, func(b *testing.B) {
			s := openTest(b)
			r := newRun("Grafana", workflow.StateRunning)
			bulkCreate(b, s, []*workflow.Run{r})
			for b.Loop() {
				if tt.changed {
					b.StopTimer()
					if _, err := s.UpdateRun(b.Context(), r.ID, func(*workflow.Run) ([]workflow.Event, error) { return nil, nil }); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				if _, err := s.GetRun(b.Context(), r.ID); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCreateRunParallel is many commands starting runs at once: the
// creates share commits.
func BenchmarkCreateRunParallel(b *testing.B) {
	s := openTest(b)
	r := newRun("Grafana", workflow.StatePending)
	before, writes := s.Commits(), s.Writes()
	b.SetParallelism(25) // 50 writers on 2 CPUs
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := s.CreateRun(b.Context(), r.Clone(), note("created")); err != nil {
				b.Error(err)
				return
			}
		}
	})
	reportCommits(b, s, before)
	if c := s.Commits() - before; c > 0 {
		b.ReportMetric(float64(s.Writes()-writes)/float64(c), "writes/commit")
	}
}

// BenchmarkCreateRunBurst is bursts of 50 commands starting runs after a
// quiet moment, in a file bbolt extends sparsely and in one whose filler
// is at rest, its zeros ahead (waited for off the clock): the commits of a
// burst append new pages either way (see prealloc.go).
func BenchmarkCreateRunBurst(b *testing.B) {
	for _, tt := range []struct {
		name  string
		ahead int64
	}{{"sparse", 0}, {"preallocated", 1 << 20}} {
		b.Run(tt.name, func(b *testing.B) {
			progress := make(chan preallocTurn)
			s, err := Open(filepath.Join(b.TempDir(), "ssobot.db"), Options{Preallocate: tt.ahead, preallocProgress: progress})
			if err != nil {
				b.Fatal(err)
			}
			defer func() {
				if err := s.Close(); err != nil {
					b.Error(err)
				}
			}()
			const burst = 50
			r := newRun("Grafana", workflow.StatePending)
			before := s.Commits()
			b.ResetTimer()
			for range b.N {
				if tt.ahead > 0 {
					b.StopTimer()
					waitRested(b, s, progress)
					b.StartTimer()
				}
				var wg sync.WaitGroup
				for range burst {
					wg.Go(func() {
						if err := s.CreateRun(b.Context(), r.Clone(), note("created")); err != nil {
							b.Error(err)
						}
					})
				}
				wg.Wait()
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*burst), "µs/run")
			b.ReportMetric(float64(s.Commits()-before)/float64(b.N), "commits/burst")
		})
	}
}
