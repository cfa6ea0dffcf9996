package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/ssobot/ssobot/workflow"
)

// TestMemoFollowsWrites reads a run between writes of every kind: each read
// must show what is stored, whether the run's last decoding is remembered
// or not.
func TestMemoFollowsWrites(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	r := mustCreate(t, s, newRun("Grafana", workflow.StateRunning))
	get := func() *workflow.Run {
		t.Helper()
		got, err := s.GetRun(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	get() // remembered from here on

	refused := errors.New("refused")
	tests := []struct {
		name        string
		fn          func(r *workflow.Run) ([]workflow.Event, error)
		wantMessage string
	}{
		{"update", func(r *workflow.Run) ([]workflow.Event, error) {
			r.MessageRef = "first"
			return nil, nil
		}, "first"},
		{"refused update changes nothing", func(r *workflow.Run) ([]workflow.Event, error) {
			r.MessageRef = "never stored"
			return nil, refused
		}, "first"},
		{"second update", func(r *workflow.Run) ([]workflow.Event, error) {
			r.MessageRef = "second"
			return nil, nil
		}, "second"},
	}
	for _, tt := range tests {
		_, err := s.UpdateRun(ctx, r.ID, tt.fn)
		if err != nil && !errors.Is(err, refused) {
			t.Fatalf("%s: %v", tt.name, err)
		}
		for i := range 2 { // a decoding, then the remembered one
			if got := get(); got.MessageRef != tt.wantMessage {
				t.Fatalf("%s: read %d: MessageRef = %q, want %q", tt.name, i, got.MessageRef, tt.wantMessage)
			}
		}
	}
}

// TestMemoConcurrentReadersSeeEveryWrite has readers race a writer: a
// reader that starts after an update was committed must never see an older
// version, however its read interleaves with the memo's updates.
func TestMemoConcurrentReadersSeeEveryWrite(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	r := mustCreate(t, s, newRun("Grafana", workflow.StateRunning))
	var (
		mu        sync.Mutex
		committed uint64 = 1
	)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				floor := committed
				mu.Unlock()
				got, err := s.GetRun(ctx, r.ID)
				if err != nil {
					errs <- err
					return
				}
				if got.Version < floor {
					errs <- fmt.Errorf("read version %d after version %d was committed", got.Version, floor)
					return
				}
			}
		})
	}
	for range 200 {
		u, err := s.UpdateRun(ctx, r.ID, func(r *workflow.Run) ([]workflow.Event, error) { return nil, nil })
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		committed = u.Version
		mu.Unlock()
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestMemoBounded reads more runs than the memo keeps, and a listing of
// the whole history: the memo stays within its bound, and the listing does
// not push the runs read one by one out.
func TestMemoBounded(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	runs := make([]*workflow.Run, memoRuns+50)
	for i := range runs {
		runs[i] = newRun(fmt.Sprintf("App %d", i), workflow.StateAwaitingApproval)
	}
	bulkCreate(t, s, runs)
	if _, err := s.GetRun(ctx, runs[0].ID); err != nil {
		t.Fatal(err)
	}
	if n := s.memo.len(); n != 1 {
		t.Fatalf("memo holds %d runs after one read, want 1", n)
	}
	if _, err := s.ListRuns(ctx, workflow.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := s.memo.len(); n != 1 {
		t.Fatalf("memo holds %d runs after listing the history, want 1", n)
	}
	for _, r := range runs {
		if _, err := s.GetRun(ctx, r.ID); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.memo.len(); n != memoRuns {
		t.Fatalf("memo holds %d runs after reading %d, want its bound %d", n, len(runs), memoRuns)
	}
}

// TestMemoForgetsFinishedRuns: a run is remembered while it is open and
// forgotten once it is read finished, so an idle service holds none.
func TestMemoForgetsFinishedRuns(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	r := mustCreate(t, s, newRun("Grafana", workflow.StateRunning))
	done := mustCreate(t, s, newRun("Vault", workflow.StateSucceeded))
	for _, id := range []int64{r.ID, done.ID} {
		if _, err := s.GetRun(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.memo.len(); n != 1 {
		t.Fatalf("memo holds %d runs after reading an open and a finished one, want 1", n)
	}
	if _, err := s.UpdateRun(ctx, r.ID, func(r *workflow.Run) ([]workflow.Event, error) {
		r.State = workflow.StateSucceeded
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetRun(ctx, r.ID)
	if err != nil || got.State != workflow.StateSucceeded {
		t.Fatalf("run = %v, %v; want succeeded", got, err)
	}
	if n := s.memo.len(); n != 0 {
		t.Fatalf("memo holds %d runs once both are finished, want 0", n)
	}
}

// An update leaves its own decoding in the memo, so the writer's next read
// decodes nothing; what the writer does with the run it got back does not
// reach the memo; a write that ends the run leaves nothing.
func TestMemoRemembersWhatAWriteCommitted(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	r := mustCreate(t, s, newRun("Grafana", workflow.StateRunning))
	out, err := s.UpdateRun(ctx, r.ID, func(r *workflow.Run) ([]workflow.Event, error) {
		r.MessageRef = "C1|1.2"
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var stored []byte
	if err := s.db.View(func(tx *bolt.Tx) error {
		stored = bytes.Clone(tx.Bucket(bucketRuns).Get(runKey(r.ID)))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	s.memo.mu.Lock()
	e, ok := s.memo.entries[r.ID]
	s.memo.mu.Unlock()
	if !ok || !bytes.Equal(e.raw, stored) || e.run.MessageRef != "C1|1.2" {
		t.Fatalf("after the update the memo holds %v, %q; want the committed run", ok, e.raw)
	}
	out.MessageRef = "changed by the caller"
	if got, err := s.GetRun(ctx, r.ID); err != nil || got.MessageRef != "C1|1.2" {
		t.Fatalf("GetRun = %v, %v; want what was committed", got, err)
	}
	if _, err := s.UpdateRun(ctx, r.ID, func(r *workflow.Run) ([]workflow.Event, error) {
		r.State = workflow.StateSucceeded
		return nil, nil
	}); err != nil {
		t.Fatal(err)
	}
	if n := s.memo.len(); n != 0 {
		t.Fatalf("%d runs in the memo after the run ended; want none", n)
	}
}
