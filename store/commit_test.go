package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/ssobot/ssobot/workflow"
)

// holdCommit makes the next write block inside its transaction until the
// returned release is called, so that writes arriving meanwhile queue up for
// the following commit.
func holdCommit(t *testing.T, s *Store) (release func()) {
	t.Helper()
	entered, gate := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.update(func(tx *bolt.Tx) error {
			close(entered)
			<-gate
			return nil
		})
	}()
	<-entered
	return func() {
		close(gate)
		if err := <-done; err != nil {
			t.Errorf("held write: %v", err)
		}
	}
}

// waitQueued waits until n writes wait for the next commit.
func waitQueued(s *Store, n int) {
	for {
		s.committer.mu.Lock()
		q := len(s.committer.queue)
		s.committer.mu.Unlock()
		if q >= n {
			return
		}
		// Yield to the writers being started; no timing is asserted.
		runtime.Gosched()
	}
}

func TestGroupCommitSharesOneCommit(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	r := mustCreate(t, s, newRun("Grafana", workflow.StateRunning))

	release := holdCommit(t, s)
	const n = 20
	var calls atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, err := s.UpdateRun(ctx, r.ID, func(r *workflow.Run) ([]workflow.Event, error) {
				calls.Add(1)
				r.Step(workflow.StepVerify).Attempts++
				return []workflow.Event{note(fmt.Sprint("write ", i))}, nil
			})
			errs <- err
		})
	}
	waitQueued(s, n)
	commits, writes := s.Commits(), s.Writes()
	release()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := s.Commits() - commits; got != 2 {
		t.Errorf("%d commits for the held write and %d queued ones, want 2", got, n)
	}
	if got := s.Writes() - writes; got != n+1 {
		t.Errorf("%d writes counted, want %d", got, n+1)
	}
	if calls.Load() != n {
		t.Errorf("update functions called %d times, want %d (exactly once each)", calls.Load(), n)
	}
	// Each write saw the one before it: no lost update.
	got, err := s.GetRun(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if a := got.Step(workflow.StepVerify).Attempts; a != 1+n {
		t.Errorf("attempts = %d, want %d: a write in the group did not see the one before it", a, 1+n)
	}
	if got.Version != 1+n {
		t.Errorf("version = %d, want %d", got.Version, 1+n)
	}
}

func TestGroupCommitRefusalLeavesOthers(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	a := mustCreate(t, s, newRun("A", workflow.StateRunning))
	b := mustCreate(t, s, newRun("B", workflow.StateRunning))
	refused := errors.New("stale version")

	release := holdCommit(t, s)
	results := make(chan error, 4)
	update := func(id int64, fail bool) {
		_, err := s.UpdateRun(ctx, id, func(r *workflow.Run) ([]workflow.Event, error) {
			if fail {
				return nil, refused
			}
			r.Error += "!"
			return nil, nil
		})
		results <- err
	}
	go update(a.ID, false)
	waitQueued(s, 1)
	go update(b.ID, true)
	waitQueued(s, 2)
	go update(b.ID, false)
	waitQueued(s, 3)
	go func() { _, err := s.GetRun(ctx, 999); results <- errors.Join(err, s.AppendEvents(ctx, 999, note("x"))) }()
	release()

	var gotRefused, ok, notFound int
	for range 4 {
		err := <-results
		switch {
		case err == nil:
			ok++
		case errors.Is(err, refused):
			gotRefused++
		case errors.Is(err, workflow.ErrNotFound):
			notFound++
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != 2 || gotRefused != 1 || notFound != 1 {
		t.Errorf("ok %d, refused %d, not found %d; want 2, 1, 1", ok, gotRefused, notFound)
	}
	for _, id := range []int64{a.ID, b.ID} {
		r, err := s.GetRun(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(r.Error, "!") || r.Version != 2 {
			t.Errorf("run %d = %q version %d: the write sharing a commit with a refusal was lost", id, r.Error, r.Version)
		}
	}
}

func TestGroupCommitFailureFailsTheGroup(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	r := mustCreate(t, s, newRun("Grafana", workflow.StateRunning))
	broken := errors.New("disk on fire")

	release := holdCommit(t, s)
	results := make(chan error, 2)
	go func() {
		_, err := s.UpdateRun(ctx, r.ID, func(r *workflow.Run) ([]workflow.Event, error) {
			r.Error = "changed"
			return nil, nil
		})
		results <- err
	}()
	waitQueued(s, 1)
	go func() {
		// A write that fails after writing rolls back everything in its commit.
		results <- s.update(func(tx *bolt.Tx) error {
			if err := tx.Bucket(bucketMeta).Put([]byte("scratch"), []byte("x")); err != nil {
				return err
			}
			return broken
		})
	}()
	waitQueued(s, 2)
	release()

	var shared, own int
	for range 2 {
		err := <-results
		switch {
		case errors.Is(err, errShared) && errors.Is(err, broken):
			shared++
		case errors.Is(err, broken):
			own++
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if shared != 1 || own != 1 {
		t.Errorf("shared %d, own %d; want 1, 1", shared, own)
	}
	got, err := s.GetRun(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Error == "changed" || got.Version != 1 {
		t.Errorf("run = %q version %d: a write of a failed commit was kept", got.Error, got.Version)
	}
	if err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketMeta).Get([]byte("scratch")) != nil {
			return errors.New("the failed write's own change was kept")
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
	// The store goes on after a failed group.
	if _, err := s.UpdateRun(ctx, r.ID, func(r *workflow.Run) ([]workflow.Event, error) { return nil, nil }); err != nil {
		t.Errorf("write after a failed group: %v", err)
	}
}

// TestGroupCommitRolledBackRefusalGetsTheSharedError: a write that refused
// because of what an earlier write of its group had done must not keep its
// refusal when the group rolls back: the change it refused on was never
// committed, so its outcome is the group's failure, not its own verdict.
func TestGroupCommitRolledBackRefusalGetsTheSharedError(t *testing.T) {
	s := openTest(t)
	key := []byte("claimed")
	alreadyClaimed := errors.New("already claimed")
	broken := errors.New("disk on fire")

	release := holdCommit(t, s)
	a, b, c := make(chan error, 1), make(chan error, 1), make(chan error, 1)
	sawA := make(chan bool, 1)
	go func() {
		// A writes the key.
		a <- s.update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(key, []byte("A"))
		})
	}()
	waitQueued(s, 1)
	go func() {
		// B refuses, before writing, because it sees A's change.
		b <- s.update(func(tx *bolt.Tx) error {
			seen := tx.Bucket(bucketMeta).Get(key) != nil
			sawA <- seen
			if seen {
				return errSkip(alreadyClaimed)
			}
			return tx.Bucket(bucketMeta).Put(key, []byte("B"))
		})
	}()
	waitQueued(s, 2)
	go func() {
		// C fails for real after writing: the whole group rolls back.
		c <- s.update(func(tx *bolt.Tx) error {
			if err := tx.Bucket(bucketMeta).Put([]byte("scratch"), []byte("C")); err != nil {
				return err
			}
			return broken
		})
	}()
	waitQueued(s, 3)
	release()

	if !<-sawA {
		t.Fatal("B did not see A's change: A and B were not in one group")
	}
	errA, errB, errC := <-a, <-b, <-c
	if !errors.Is(errC, broken) || errors.Is(errC, errShared) {
		t.Errorf("C = %v, want its own error", errC)
	}
	if !errors.Is(errA, errShared) || !errors.Is(errA, broken) {
		t.Errorf("A = %v, want the shared error wrapping C's", errA)
	}
	if errors.Is(errB, alreadyClaimed) {
		t.Errorf("B = %v: kept its refusal although the write it refused on was rolled back", errB)
	}
	if !errors.Is(errB, errShared) || !errors.Is(errB, broken) {
		t.Errorf("B = %v, want the shared error wrapping C's", errB)
	}
	if err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(key); v != nil {
			return fmt.Errorf("key = %q after the group rolled back", v)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}

// TestUpdateRunRefusalOnARolledBackGroup: the public UpdateRun, like
// update, does not report a refusal its fn made on a change that was rolled
// back with its group (an approval refused as "already approved" by an
// approval that never held): it reports the shared failure, to be retried.
func TestUpdateRunRefusalOnARolledBackGroup(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	run := newRun("Grafana", workflow.StateAwaitingApproval)
	if err := s.CreateRun(ctx, run); err != nil {
		t.Fatal(err)
	}
	alreadyApproved := errors.New("already approved by A")
	broken := errors.New("disk on fire")
	release := holdCommit(t, s)
	a, b, c := make(chan error, 1), make(chan error, 1), make(chan error, 1)
	sawA := make(chan bool, 1)
	go func() {
		_, err := s.UpdateRun(ctx, run.ID, func(r *workflow.Run) ([]workflow.Event, error) {
			r.Error = "approved by A"
			return nil, nil
		})
		a <- err
	}()
	waitQueued(s, 1)
	go func() {
		_, err := s.UpdateRun(ctx, run.ID, func(r *workflow.Run) ([]workflow.Event, error) {
			sawA <- r.Error == "approved by A"
			if r.Error == "approved by A" {
				return nil, alreadyApproved
			}
			r.Error = "approved by B"
			return nil, nil
		})
		b <- err
	}()
	waitQueued(s, 2)
	go func() {
		c <- s.update(func(tx *bolt.Tx) error { return broken })
	}()
	waitQueued(s, 3)
	release()
	if !<-sawA {
		t.Fatal("B did not see A's change: A and B were not in one group")
	}
	if errA := <-a; !errors.Is(errA, errShared) {
		t.Errorf("A = %v, want the shared error", errA)
	}
	if errB := <-b; errors.Is(errB, alreadyApproved) || !errors.Is(errB, errShared) {
		t.Errorf("B = %v, want the shared error, not a refusal made on a change that was rolled back", errB)
	}
	<-c
	got, err := s.GetRun(ctx, run.ID)
	if err != nil || got.Error != "" {
		t.Errorf("run after the rollback: %+v, %v; want it unchanged", got, err)
	}
}

// TestGroupCommitAllRefusedCountsNoCommit: a group in which every write
// refused wrote nothing, so it is not counted as a commit (nor as writes).
func TestGroupCommitAllRefusedCountsNoCommit(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	r := mustCreate(t, s, newRun("Grafana", workflow.StateRunning))
	refused := errors.New("stale version")

	// A lone refusal is a group of one.
	commits, writes := s.Commits(), s.Writes()
	if _, err := s.UpdateRun(ctx, r.ID, func(*workflow.Run) ([]workflow.Event, error) { return nil, refused }); !errors.Is(err, refused) {
		t.Fatalf("lone refusal: %v", err)
	}
	if c, w := s.Commits()-commits, s.Writes()-writes; c != 0 || w != 0 {
		t.Errorf("a lone refused write counted %d commits and %d writes, want 0 and 0", c, w)
	}

	// Several refusals queued behind a held commit form one group.
	release := holdCommit(t, s)
	const n = 3
	results := make(chan error, n)
	for i := range n {
		go func() {
			_, err := s.UpdateRun(ctx, r.ID, func(*workflow.Run) ([]workflow.Event, error) { return nil, refused })
			results <- err
		}()
		waitQueued(s, i+1)
	}
	commits, writes = s.Commits(), s.Writes()
	release()
	for range n {
		if err := <-results; !errors.Is(err, refused) {
			t.Errorf("refused write: %v", err)
		}
	}
	// Only the held write committed.
	if c, w := s.Commits()-commits, s.Writes()-writes; c != 1 || w != 1 {
		t.Errorf("held write and a group of %d refusals counted %d commits and %d writes, want 1 and 1", n, c, w)
	}
	if got, err := s.GetRun(ctx, r.ID); err != nil || got.Version != 1 {
		t.Errorf("run = %+v, %v; want it unchanged", got, err)
	}
}

func TestGroupCommitPanicStaysWithItsCaller(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	r := mustCreate(t, s, newRun("Grafana", workflow.StateRunning))

	release := holdCommit(t, s)
	panicked := make(chan any, 1)
	go func() {
		defer func() { panicked <- recover() }()
		_, _ = s.UpdateRun(ctx, r.ID, func(r *workflow.Run) ([]workflow.Event, error) { panic("bug in fn") })
	}()
	waitQueued(s, 1)
	ok := make(chan error, 1)
	go func() {
		_, err := s.UpdateRun(ctx, r.ID, func(r *workflow.Run) ([]workflow.Event, error) {
			r.Error = "kept"
			return nil, nil
		})
		ok <- err
	}()
	waitQueued(s, 2)
	release()
	if p := <-panicked; p != "bug in fn" {
		t.Errorf("panic = %v, want the caller's own panic in its goroutine", p)
	}
	if err := <-ok; err != nil {
		t.Errorf("write in the same commit as a panicking one: %v", err)
	}
	if got, err := s.GetRun(ctx, r.ID); err != nil || got.Error != "kept" {
		t.Errorf("run = %+v, %v; want the other write kept", got, err)
	}
}

func BenchmarkUpdateRunParallel(b *testing.B) {
	s := openTest(b)
	const runs = 64
	ids := make([]int64, runs)
	for i := range ids {
		ids[i] = mustCreate(b, s, newRun(fmt.Sprint("run ", i), workflow.StateRunning)).ID
	}
	var next atomic.Int64
	before, writes := s.Commits(), s.Writes()
	b.SetParallelism(16)
	b.RunParallel(func(pb *testing.PB) {
		id := ids[next.Add(1)%runs]
		for pb.Next() {
			if _, err := s.UpdateRun(b.Context(), id, func(r *workflow.Run) ([]workflow.Event, error) {
				r.Step(workflow.StepVerify).Attempts++
				return []workflow.Event{note("attempt")}, nil
			}); err != nil {
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

// TestGroupCommitUndecodableRunFailsAlone: a run whose record does not
// decode fails its own update, and the write sharing its commit is kept.
func TestGroupCommitUndecodableRunFailsAlone(t *testing.T) {
	s := openTest(t)
	ctx := t.Context()
	damaged := mustCreate(t, s, newRun("Damaged", workflow.StateRunning))
	healthy := mustCreate(t, s, newRun("Healthy", workflow.StateRunning))
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRuns).Put(runKey(damaged.ID), []byte(`{"id":1,"state":"running","created_at":"not a time"}`))
	}); err != nil {
		t.Fatal(err)
	}
	release := holdCommit(t, s)
	results := make(chan error, 2)
	update := func(id int64) {
		_, err := s.UpdateRun(ctx, id, func(r *workflow.Run) ([]workflow.Event, error) {
			r.Error = "touched"
			return nil, nil
		})
		results <- err
	}
	go update(damaged.ID)
	waitQueued(s, 1)
	go update(healthy.ID)
	waitQueued(s, 2)
	release()
	var failed, ok int
	for range 2 {
		if err := <-results; err != nil {
			failed++
			if errors.Is(err, errShared) {
				t.Errorf("the healthy run's write failed with the damaged one: %v", err)
			}
		} else {
			ok++
		}
	}
	if failed != 1 || ok != 1 {
		t.Errorf("failed %d, ok %d; want 1 and 1", failed, ok)
	}
	if r, err := s.GetRun(ctx, healthy.ID); err != nil || r.Error != "touched" {
		t.Errorf("healthy run: %v, %v; want its write kept", r, err)
	}
}

// TestVerifyAcceptsEmptyBolt: a first start stopped between bbolt creating
// the file and ssobot creating its buckets leaves an empty bbolt file,
// which the next start (with Verify) takes over.
func TestVerifyAcceptsEmptyBolt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ssobot.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, Options{Verify: true})
	if err != nil {
		t.Fatalf("Open with Verify: %v", err)
	}
	defer s.Close()
	if _, err := s.ListRuns(t.Context(), workflow.ListOptions{}); err != nil {
		t.Errorf("ListRuns on the adopted file: %v", err)
	}
}
