package store

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/ssobot/ssobot/workflow"
)

// TestOpenIndexesUnsettledRunsOfOlderVersions: versions before the open
// index held finished runs with a step running left them out of it. The
// first writable Open indexes them (once: the database is marked), so
// that the engine settles them; until then Check accepts them.
func TestOpenIndexesUnsettledRunsOfOlderVersions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ssobot.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	inFlight := newRun("In flight", workflow.StateCancelled)
	inFlight.Step(workflow.StepAuthentikProvider).Status = workflow.StepRunning
	mustCreate(t, s, inFlight)
	mustCreate(t, s, newRun("Done", workflow.StateSucceeded))
	open := newRun("Open", workflow.StateRunning)
	open.Step(workflow.StepAuthentikApplication).Status = workflow.StepRunning
	mustCreate(t, s, open)
	// What an older version wrote: the finished run not indexed, no mark.
	if err := s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketOpen).Delete(runKey(1)); err != nil {
			return err
		}
		return tx.Bucket(bucketMeta).Delete(keyUnsettledIndexed)
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(); err != nil {
		t.Fatalf("Check of an older version's database: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	for range 2 { // the second Open finds the mark and changes nothing
		s, err = Open(path, Options{Verify: true})
		if err != nil {
			t.Fatalf("Open with Verify: %v", err)
		}
		got, err := s.ListRuns(context.Background(), workflow.ListOptions{RunningStep: true})
		if err != nil {
			t.Fatal(err)
		}
		var ids []int64
		for _, r := range got {
			ids = append(ids, r.ID)
		}
		if !slices.Equal(ids, []int64{3, 1}) {
			t.Errorf("runs with a step running %v; want [3 1]", ids)
		}
		if err := s.db.View(func(tx *bolt.Tx) error {
			if !unsettledIndexed(tx) {
				t.Error("the database is not marked")
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := s.Check(); err != nil {
			t.Errorf("Check after Open: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestCheckWantsUnsettledRunsIndexed: once a database is marked, a finished
// run with a step running that the index lacks is a broken index.
func TestCheckWantsUnsettledRunsIndexed(t *testing.T) {
	s := openTest(t)
	r := newRun("In flight", workflow.StateCancelled)
	r.Step(workflow.StepAuthentikProvider).Status = workflow.StepRunning
	mustCreate(t, s, r)
	if err := s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketOpen).Delete(runKey(1)) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Check(); err == nil {
		t.Error("Check passed an unindexed run with a step running in a marked database")
	}
	// Put it back for the cleanup's Check.
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOpen).Put(runKey(1), []byte(workflow.StateCancelled))
	}); err != nil {
		t.Fatal(err)
	}
}
