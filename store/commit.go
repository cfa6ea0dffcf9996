package store

import (
	"errors"
	"fmt"
	"runtime/debug"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// Group commit. bbolt runs one write transaction at a time and syncs the file
// at each commit, so writers queue behind each other's fsync. Here writers
// that arrive while a commit is in progress share the next one: a lone writer
// commits at once (bbolt's Batch would make it wait MaxBatchDelay for
// company), and under load the number of fsyncs stays about constant while
// the writes per commit grow.
//
// A write is a function applied inside the shared transaction, one after the
// other, so each sees the writes of those before it: UpdateRun's
// compare-and-set holds as with a transaction of its own. Unlike bbolt's
// Batch, a function is never run twice: one that refuses (errSkip, before it
// writes) is left out while the others commit; any other error, or a panic of
// bbolt, rolls the whole group back and fails every write in it.

// write is one caller's function waiting for a commit.
type write struct {
	fn    func(tx *bolt.Tx) error
	err   error
	panic any // a panic of the caller's own function, re-raised in its goroutine
	lead  bool
	done  chan struct{}
}

// committer queues writes; the first writer to find it idle commits the
// queue, and hands the next batch to the first writer waiting in it. The
// preallocation filler (prealloc.go) takes a turn the same way when idle.
type committer struct {
	mu    sync.Mutex
	queue []*write
	busy  bool
}

// skipError marks an error a write returned before writing anything: the
// group commits without it.
type skipError struct{ err error }

func (e skipError) Error() string { return e.err.Error() }
func (e skipError) Unwrap() error { return e.err }

// errSkip wraps err as a refusal that wrote nothing.
func errSkip(err error) error { return skipError{err} }

// errShared is the error of the writes that fail because another write of
// their group did.
var errShared = errors.New("a write sharing the commit failed")

// update runs fn in a write transaction, possibly shared with other writes,
// and returns once it is committed (or has failed). fn must not write before
// returning an errSkip error; any other error rolls back the whole group.
func (s *Store) update(fn func(tx *bolt.Tx) error) error {
	if s.readOnly {
		return fmt.Errorf("%s: %w", s.path, ErrReadOnly)
	}
	w := &write{fn: fn, done: make(chan struct{})}
	c := &s.committer
	c.mu.Lock()
	c.queue = append(c.queue, w)
	lead := !c.busy
	c.busy = true
	c.mu.Unlock()
	if !lead {
		<-w.done
		lead = w.lead
	}
	if lead {
		c.mu.Lock()
		group := c.queue
		c.queue = nil
		c.mu.Unlock()

		s.commitGroup(group)
		if c.handOver() {
			s.prealloc.wake()
		}
	}
	if w.panic != nil {
		panic(w.panic)
	}
	var skip skipError
	if errors.As(w.err, &skip) {
		return skip.err
	}
	return w.err
}

// handOver ends the current turn (a commit, or a chunk of preallocation):
// the first writer waiting leads the next commit, so a writer leads at most
// one and nobody waits on a stream of others. It reports whether the
// committer is idle.
func (c *committer) handOver() (idle bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.queue) > 0 {
		next := c.queue[0]
		next.lead = true
		close(next.done)
		return false
	}
	c.busy = false
	return true
}

// tryLead takes the turn if nobody has it, as the first writer to arrive
// does; the caller ends it with handOver.
func (c *committer) tryLead() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.busy {
		return false
	}
	c.busy = true
	return true
}

// commitGroup applies the writes in one transaction and commits it, then
// sets each write's outcome and wakes its writer (except a leader's, which
// is running this).
func (s *Store) commitGroup(group []*write) {
	var applied int
	err := s.transact(func(tx *bolt.Tx) error {
		for _, w := range group {
			if err := s.apply(tx, w); err != nil {
				w.err = err
				return err
			}
			if w.err == nil && w.panic == nil {
				applied++
			}
		}
		return nil
	})
	if err != nil {
		for _, w := range group {
			if w.err == nil || isSkip(w.err) {
				w.err = fmt.Errorf("%w: %w", errShared, err)
			}
		}
	} else if applied > 0 {
		s.commits.Add(1)
	}
	s.writes.Add(uint64(applied))
	for _, w := range group {
		if !w.lead {
			close(w.done)
		}
	}
}

// apply runs one write. A refusal or a panic of the caller's function is
// kept on the write and the group goes on; any other error is returned and
// rolls the group back.
func (s *Store) apply(tx *bolt.Tx, w *write) (err error) {
	defer func() {
		p := recover()
		if p == nil {
			return
		}
		if cp, ok := p.(callerPanic); ok {
			// The caller's function panics before it writes (see callFn).
			w.panic = cp.v
			return
		}
		err = fmt.Errorf("%s is %w: damaged: %v", s.path, ErrInvalid, p)
	}()
	if err := w.fn(tx); err != nil {
		if isSkip(err) {
			w.err = err
			return nil
		}
		return err
	}
	return nil
}

func isSkip(err error) bool {
	var skip skipError
	return errors.As(err, &skip)
}

// transact runs fn in one bbolt write transaction, turning a panic of bbolt
// on a damaged page into an error.
func (s *Store) transact(fn func(tx *bolt.Tx) error) (err error) {
	defer s.recoverDamage(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return s.db.Update(fn)
}
