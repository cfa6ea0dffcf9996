package store

import (
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/ssobot/ssobot/workflow"
)

// unsettled is a finished run with a step still running, and its state.
type unsettled struct {
	id    int64
	state workflow.State
}

// unsettledIndexed reports whether the open index of tx's database holds
// the finished runs with a step running.
func unsettledIndexed(tx *bolt.Tx) bool {
	meta := tx.Bucket(bucketMeta)
	return meta != nil && meta.Get(keyUnsettledIndexed) != nil
}

// findUnsettled lists, in a database not yet marked unsettledIndexed, the
// finished runs with a step running that its open index lacks. It reads
// every run once, through the inspection's own mapping, which is closed
// before the store serves: only the first start after an upgrade pays.
func findUnsettled(db *bolt.DB) ([]unsettled, error) {
	var out []unsettled
	err := db.View(func(tx *bolt.Tx) error {
		runs, open := tx.Bucket(bucketRuns), tx.Bucket(bucketOpen)
		if unsettledIndexed(tx) || runs == nil || open == nil {
			return nil
		}
		return runs.ForEach(func(k, v []byte) error {
			var head struct {
				State workflow.State `json:"state"`
				Steps []struct {
					Status workflow.StepStatus `json:"status"`
				} `json:"steps"`
			}
			if unmarshal(v, &head) != nil || !head.State.Terminal() || open.Get(k) != nil {
				return nil // a run that does not decode fails where it is read
			}
			for _, st := range head.Steps {
				if st.Status == workflow.StepRunning {
					out = append(out, unsettled{id: keyID(k), state: head.State})
					break
				}
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("find unsettled runs: %w", err)
	}
	return out, nil
}

// indexUnsettled puts legacy's runs in the open index and marks the
// database as holding them there, in one commit.
func (s *Store) indexUnsettled(legacy []unsettled) error {
	return s.update(func(tx *bolt.Tx) error {
		open := tx.Bucket(bucketOpen)
		for _, u := range legacy {
			if err := open.Put(runKey(u.id), []byte(u.state)); err != nil {
				return fmt.Errorf("index unsettled run %d: %w", u.id, err)
			}
		}
		if err := tx.Bucket(bucketMeta).Put(keyUnsettledIndexed, []byte("1")); err != nil {
			return fmt.Errorf("write index mark: %w", err)
		}
		return nil
	})
}
