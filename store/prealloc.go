package store

import (
	"fmt"
	"os"
	"sync"
	"time"
)

// Preallocation. A commit that appends pages past the blocks the file
// system has allocated pays for the allocation at its fdatasync: the file
// system commits its journal as well as the data. bbolt extends its file
// sparsely (truncate, 16 MiB at a time), so every burst of new runs pays it. Measured on ext4
// during 50 concurrent `new` commands: the data sync of a commit took
// 330–450 µs at the median (p90 1.2–2.4 ms), against 220 µs (p90 ~0.3 ms)
// once the blocks had been written before; with this filler `new` answered
// at a median of 1.9–2.4 ms instead of 3.1–3.3 ms.
//
// So the store keeps zeros written ahead of the database's last page, while
// nothing else happens: the filler takes the committer's turn only when no
// write is being committed or waiting, writes one chunk, syncs it and hands
// the turn back. A write arriving meanwhile waits for one chunk at most.
//
// It tops the zeros up only once less than half of ahead is left, and then
// all the way. Each chunk allocates blocks, so the file system commits its
// journal at the chunk's sync too, and a turn after every commit (the filler's first
// version) cost the commits more than it saved them: in five rounds of 1,000
// `new` from 50 senders, 7–10 turns per round of up to 5.9 ms, against 0–9
// turns of at most 1.4 ms once it waited for half.
//
// It never writes over a page in use: bbolt keeps every page it uses or
// frees below the high-water mark of the last commit (the end of the
// database in the header), and while the filler has the turn no
// transaction writes, so the mark cannot move. A crash in the middle
// leaves zeros past the mark, which bbolt never reads, as after its own
// growth.

// preallocChunk is what the filler writes and syncs per turn: 0.3–1.4 ms on
// the disk measured, the longest a write waits for it.
const preallocChunk = 256 << 10

var zeroChunk [preallocChunk]byte

// preallocPause is how long the filler waits between the chunks of a
// top-up when no commit wakes it sooner. Chunks back to back kept its
// goroutine in one sync after another: the P it held never went idle to
// poll the network, and after a garbage collection, with the background
// sweeper on the other P (the runtime polls only when no goroutine is
// runnable), requests and answers waiting on the network went unnoticed
// for up to 3.5 ms (runtime trace of a `new` round at 50 senders).
const preallocPause = time.Millisecond

// prealloc is the state of the filler goroutine.
type prealloc struct {
	ahead  int64    // bytes to keep written past the high-water mark
	file   *os.File // a descriptor of its own: bbolt's is not exported
	filled int64    // zeros are written up to here (owned by the goroutine)
	mark   int64    // the high-water mark at the last turn (owned by the goroutine)
	topUp  bool     // filling up to ahead, not yet there (owned by the goroutine)
	kick   chan struct{}
	stop   chan struct{}
	done   chan struct{}

	stopOnce sync.Once
	stopErr  error

	progress chan<- preallocTurn // tests: each turn's outcome
}

// preallocTurn is what a turn of the filler found and left (tests).
type preallocTurn struct {
	mark   int64 // the high-water mark it saw
	filled int64 // where the zeros reach
	more   bool  // a top-up is under way: more turns will follow
}

// startPrealloc starts the filler; the caller stops it with stopPrealloc.
func (s *Store) startPrealloc(ahead int64, progress chan<- preallocTurn) error {
	f, err := os.OpenFile(s.path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open %s to preallocate: %w", s.path, err)
	}
	p := &prealloc{ahead: ahead, file: f, kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}), progress: progress}
	s.prealloc = p
	go s.fill(p)
	p.wake()
	return nil
}

// stopPrealloc stops the filler, waiting for the chunk it is writing.
func (s *Store) stopPrealloc() error {
	p := s.prealloc
	if p == nil {
		return nil
	}
	p.stopOnce.Do(func() {
		close(p.stop)
		<-p.done
		if err := p.file.Close(); err != nil {
			p.stopErr = fmt.Errorf("close %s after preallocating: %w", s.path, err)
		}
	})
	return p.stopErr
}

// wake tells the filler that the committer is idle; it never blocks.
func (p *prealloc) wake() {
	if p == nil {
		return
	}
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// fill writes chunks whenever the committer is idle and a top-up is due,
// until the zeros reach ahead bytes past the high-water mark, one chunk per
// commit that wakes it or per preallocPause. A write coming in takes the
// next turn; it wakes the filler again once it is committed and nobody
// waits.
//
// The first error (a full disk, say) ends preallocation for good: bbolt
// then grows the file as it would without it, and a disk that refuses the
// zeros refuses the next commit too, whose error reaches its caller.
func (s *Store) fill(p *prealloc) {
	defer close(p.done)
	if p.progress != nil {
		defer close(p.progress) // a test waiting for a turn learns the filler stopped
	}
	pause := time.NewTimer(time.Hour)
	pause.Stop()
	defer pause.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-p.kick:
		case <-pause.C:
		}
		if !s.committer.tryLead() {
			continue // the write that has the turn wakes the filler when done
		}
		err := s.fillChunk(p)
		s.committer.handOver()
		if err != nil {
			return
		}
		if p.progress != nil {
			select {
			case p.progress <- preallocTurn{mark: p.mark, filled: p.filled, more: p.topUp}:
			case <-p.stop:
				return
			}
		}
		if p.topUp {
			pause.Reset(preallocPause)
		} else {
			pause.Stop() // a kick came first: no turn for nothing
		}
	}
}

// fillChunk writes the next chunk of zeros, if a top-up is due or under
// way, and syncs it; p.topUp then tells whether more chunks are due. The
// caller holds the committer's turn.
func (s *Store) fillChunk(p *prealloc) error {
	mark, err := s.Size() // bbolt uses nothing at or past it
	if err != nil {
		return err
	}
	p.mark = mark
	if !p.topUp && p.filled-mark > p.ahead/2 {
		return nil
	}
	start, end := max(mark, p.filled), mark+p.ahead
	if start >= end {
		p.topUp = false
		return nil
	}
	p.topUp = true
	n := min(end-start, preallocChunk)
	if _, err := p.file.WriteAt(zeroChunk[:n], start); err != nil {
		return fmt.Errorf("preallocate %s: %w", s.path, err)
	}
	// fsync, not fdatasync: the file's size may have grown.
	if err := p.file.Sync(); err != nil {
		return fmt.Errorf("preallocate %s: sync: %w", s.path, err)
	}
	p.filled = start + n
	p.topUp = start+n < end
	return nil
}
