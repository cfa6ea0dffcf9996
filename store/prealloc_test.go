package store

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ssobot/ssobot/workflow"
)

// openPrealloc opens a store that keeps ahead bytes preallocated; progress
// receives the outcome of each of the filler's turns.
func openPrealloc(t *testing.T, path string, ahead int64) (*Store, <-chan preallocTurn) {
	t.Helper()
	progress := make(chan preallocTurn)
	s, err := Open(path, Options{Preallocate: ahead, preallocProgress: progress})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s, progress
}

// highWater is the end of the database's pages, from its header.
func highWater(t testing.TB, s *Store) int64 {
	t.Helper()
	mark, err := s.Size()
	if err != nil {
		t.Fatal(err)
	}
	return mark
}

// waitFilled waits until the filler reports zeros up to ahead bytes past the
// high-water mark, and returns the mark.
func waitFilled(t testing.TB, s *Store, progress <-chan preallocTurn, ahead int64) int64 {
	t.Helper()
	for turn := range progress {
		if mark := highWater(t, s); turn.filled >= mark+ahead {
			return mark
		}
	}
	t.Fatal("the filler stopped")
	return 0
}

// waitRested waits for a turn of the filler that saw the latest commit and
// left nothing more to do: between two bursts, the filler tops the zeros up
// only once half of them are used, so waiting for them all could wait for
// ever. A turn reported late (the filler waits for its report to be taken)
// saw an earlier commit; the latest commit woke the filler for another.
func waitRested(t testing.TB, s *Store, progress <-chan preallocTurn) {
	t.Helper()
	for turn := range progress {
		if !turn.more && turn.mark == highWater(t, s) {
			return
		}
	}
	t.Fatal("the filler stopped")
}

// assertZerosAhead checks that the file holds zeros, written to disk
// blocks, from the high-water mark to ahead bytes past it.
func assertZerosAhead(t *testing.T, path string, mark, ahead int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got := make([]byte, ahead)
	if _, err := io.ReadFull(io.NewSectionReader(f, mark, ahead), got); err != nil {
		t.Fatalf("read %d bytes past the high-water mark %d: %v", ahead, mark, err)
	}
	if i := bytes.IndexFunc(got, func(r rune) bool { return r != 0 }); i >= 0 {
		t.Fatalf("byte %d past the high-water mark is not zero", i)
	}
	assertAllocated(t, f, mark, mark+ahead)
}

func TestPreallocateKeepsZerosAhead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ssobot.db")
	const ahead = 3*preallocChunk + 4096 // several turns, the last one short
	s, progress := openPrealloc(t, path, ahead)
	mark := waitFilled(t, s, progress, ahead)
	assertZerosAhead(t, path, mark, ahead)

	// New runs go into the zeros; once they have taken half, the filler
	// tops them up again.
	ctx := context.Background()
	var runs []*workflow.Run
	for i := 0; i < 200 || highWater(t, s) < mark+ahead/2; i++ {
		runs = append(runs, mustCreate(t, s, newRun(fmt.Sprintf("App %d", i), workflow.StateRunning), note("created")))
	}
	after := waitFilled(t, s, progress, ahead)
	if after <= mark {
		t.Fatalf("high-water mark %d after 200 runs, was %d: the test wrote nothing past it", after, mark)
	}
	assertZerosAhead(t, path, after, ahead)
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	for _, want := range runs {
		got, err := s.GetRun(ctx, want.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Params.ApplicationName != want.Params.ApplicationName {
			t.Fatalf("run %d is %q, want %q", want.ID, got.Params.ApplicationName, want.Params.ApplicationName)
		}
	}
}

// The filler leaves the zeros alone until writes have taken half of them
// (each of its syncs grows the file, which costs a journal commit), then
// fills them up in whole chunks.
func TestPreallocateTopsUpAtHalf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ssobot.db")
	const ahead = 4 * preallocChunk
	s, progress := openPrealloc(t, path, ahead)
	mark := waitFilled(t, s, progress, ahead)
	filled := mark + ahead

	// Each commit wakes the filler (the committer is idle after it), whose
	// turn writes nothing while more than half of the zeros are left; the
	// turn after the commit that passes half writes a whole chunk.
	for n := 1; ; n++ {
		mustCreate(t, s, newRun(fmt.Sprintf("App %d", n), workflow.StateRunning), note("created"))
		got := (<-progress).filled
		if highWater(t, s) >= mark+ahead/2 {
			if n < 2 {
				t.Fatalf("one run took half of %d bytes of zeros: the test needs a larger ahead", ahead)
			}
			if got != filled+preallocChunk {
				t.Fatalf("turn after run %d, past half: zeros up to %d, want %d (one whole chunk past %d)", n, got, filled+preallocChunk, filled)
			}
			break
		}
		if got != filled {
			t.Fatalf("turn after run %d, below half: zeros up to %d, want them left at %d", n, got, filled)
		}
	}
	after := waitFilled(t, s, progress, ahead)
	assertZerosAhead(t, path, after, ahead)
}

// The zeros never land on a page in use, however writes and the filler
// interleave: every run reads back and the database checks clean, also
// after reopening it (which verifies every page).
func TestPreallocateConcurrentWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ssobot.db")
	// Small, so the writes run past the zeros again and again.
	const ahead = preallocChunk / 4
	s, progress := openPrealloc(t, path, ahead)
	go func() {
		for range progress { // drained: the filler never waits for the test
		}
	}()
	ctx := context.Background()
	const writers, perWriter = 8, 40
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	ids := make(chan int64, writers*perWriter)
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				r := newRun(fmt.Sprintf("App %d-%d", w, i), workflow.StateRunning)
				if err := s.CreateRun(ctx, r, note("created")); err != nil {
					errs <- err
					return
				}
				if _, err := s.UpdateRun(ctx, r.ID, func(r *workflow.Run) ([]workflow.Event, error) {
					r.Step(workflow.StepVerify).Attempts++
					return []workflow.Event{note("updated")}, nil
				}); err != nil {
					errs <- err
					return
				}
				ids <- r.ID
			}
		})
	}
	wg.Wait()
	close(errs)
	close(ids)
	for err := range errs {
		t.Fatal(err)
	}
	n := 0
	for id := range ids {
		n++
		r, err := s.GetRun(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if r.Version != 2 || r.Step(workflow.StepVerify).Attempts != 2 {
			t.Fatalf("run %d: version %d, %d attempts; want 2 and 2", id, r.Version, r.Step(workflow.StepVerify).Attempts)
		}
	}
	if n != writers*perWriter {
		t.Fatalf("%d runs written, want %d", n, writers*perWriter)
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	reopened, err := Open(path, Options{Verify: true})
	if err != nil {
		t.Fatalf("reopen with Verify: %v", err)
	}
	if err := reopened.Close(); err != nil {
		t.Fatal(err)
	}
}

// The filler takes a turn only when nobody has it.
func TestPreallocateWaitsForCommit(t *testing.T) {
	s := openTest(t)
	release := holdCommit(t, s)
	if s.committer.tryLead() {
		t.Fatal("took the turn while a commit was in progress")
	}
	release()
	if !s.committer.tryLead() {
		t.Fatal("could not take the turn once the committer was idle")
	}
	s.committer.handOver()
}

// A filler that fails stops; writes go on as without it.
func TestPreallocateFailureLeavesWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ssobot.db")
	const ahead = 4 * 4096
	s, progress := openPrealloc(t, path, ahead)
	waitFilled(t, s, progress, ahead)
	go func() {
		for range progress {
		}
	}()

	// A descriptor that cannot write makes the next chunk fail.
	if !s.committer.tryLead() {
		t.Fatal("committer busy")
	}
	p := s.prealloc
	if err := p.file.Close(); err != nil {
		t.Fatal(err)
	}
	ro, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	p.file = ro
	s.committer.handOver()

	for i := range 100 { // runs past the zeros, so the filler is woken and fails
		mustCreate(t, s, newRun(fmt.Sprintf("App %d", i), workflow.StateRunning))
	}
	<-p.done
	for i := range 10 {
		mustCreate(t, s, newRun(fmt.Sprintf("After %d", i), workflow.StateRunning))
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
}
