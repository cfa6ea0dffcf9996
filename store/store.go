// Package store keeps runs and their audit events in a bbolt database.
//
// Layout (every value is JSON, so bbolt's CLI can read it):
//
//	meta    schema_version -> "1", unsettled_indexed -> "1" (see migrate.go)
//	runs    8-byte big-endian run ID -> Run
//	events  8-byte run ID + 8-byte seq -> Event
//	open    8-byte run ID -> state, for runs in non-terminal states and
//	        finished runs with a step still running (to be settled)
//	counts  state -> 8-byte big-endian number of runs in that state
//
// The open index keeps resuming fast however many runs have finished, and
// the counts feed metrics without a scan. Both are maintained in the same
// transaction as the run they describe; Check verifies them.
package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// SchemaVersion is the layout this package reads and writes.
const SchemaVersion = 1

var (
	// ErrLocked: another process holds the database's lock.
	ErrLocked = errors.New("database is locked")
	// ErrInvalid: the file is not a database this package wrote, or it is damaged.
	ErrInvalid = errors.New("not a valid ssobot database")
	// ErrSchema: the database was written by a newer ssobot.
	ErrSchema = errors.New("unsupported schema version")
	// ErrReadOnly: a write on a store opened with Options.ReadOnly.
	ErrReadOnly = errors.New("store is open read-only")
)

var (
	bucketMeta   = []byte("meta")
	bucketRuns   = []byte("runs")
	bucketEvents = []byte("events")
	bucketOpen   = []byte("open")
	bucketCounts = []byte("counts")

	keySchemaVersion = []byte("schema_version")
	// keyUnsettledIndexed marks a database whose open index holds the
	// finished runs with a step still running. Versions before it did not
	// index them; the first writable Open of such a file does, once.
	keyUnsettledIndexed = []byte("unsettled_indexed")

	// dataBuckets must all exist in a database this package created.
	dataBuckets = [][]byte{bucketRuns, bucketEvents, bucketOpen, bucketCounts}
)

// DefaultTimeout is how long Open waits for the file lock by default.
const DefaultTimeout = time.Second

// Options configure Open.
type Options struct {
	// Timeout bounds the wait for the file lock; default DefaultTimeout.
	Timeout time.Duration
	// ReadOnly takes a shared lock and refuses writes: for inspecting the
	// database while no bot runs. The file must exist.
	ReadOnly bool
	// Verify runs Check before Open returns and refuses a database that
	// fails it. It reads every page: about 15 ms per 1,000 finished runs
	// on a 2-CPU VM.
	Verify bool
	// Preallocate keeps this many bytes of zeros written past the
	// database's last page, topped up once writes have taken half of them
	// and written while no write waits, so that commits appending new runs
	// do not wait for the file system to allocate blocks (see prealloc.go).
	// Zero (the default) leaves the file to bbolt, which extends it
	// sparsely. Ignored with ReadOnly.
	Preallocate int64

	preallocProgress chan<- preallocTurn // tests: see prealloc.progress
	// openFile, when set, opens the file for bbolt (tests: the system's
	// refusals).
	openFile func(string, int, os.FileMode) (*os.File, error)
}

// Store is a workflow.Store on bbolt. Its methods are safe for concurrent use.
type Store struct {
	db       *bolt.DB
	path     string
	readOnly bool
	memo     *runMemo
	prealloc *prealloc // nil unless Options.Preallocate

	committer committer
	commits   atomic.Uint64 // write transactions committed (each one fsync)
	writes    atomic.Uint64 // writes committed in them
}

// Open opens the database at path, creating it unless opts.ReadOnly. It never
// replaces, truncates or adopts an existing file that is not an ssobot
// database: such a file gives an error wrapping ErrInvalid. A lock held by
// another process gives ErrLocked once opts.Timeout has passed.
func Open(path string, opts Options) (*Store, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	info, err := os.Stat(path)
	var legacy []unsettled // runs an older version left unindexed
	switch {
	case errors.Is(err, fs.ErrNotExist) && opts.ReadOnly:
		return nil, fmt.Errorf("open store read-only: %s does not exist: %w", path, err)
	case errors.Is(err, fs.ErrNotExist):
		// Created below.
	case err != nil:
		return nil, fmt.Errorf("open store: %w", err)
	case !info.Mode().IsRegular():
		return nil, fmt.Errorf("%s is %w: not a regular file", path, ErrInvalid)
	case info.Size() == 0 && opts.ReadOnly:
		return nil, fmt.Errorf("%s is %w: the file is empty", path, ErrInvalid)
	case info.Size() > 0 && !opts.ReadOnly:
		// Inspect an existing file under a shared lock first: opening it
		// for writing lets bbolt write to it (a freelist), and a foreign or
		// damaged file must stay exactly as it is.
		db, err := openBolt(path, true, opts.Timeout, opts.openFile)
		if err != nil {
			return nil, err
		}
		err = inspect(db, path, true, opts.Verify)
		if err == nil {
			legacy, err = findUnsettled(db)
		}
		if cerr := closeBolt(db); err == nil && cerr != nil {
			err = fmt.Errorf("close %s after inspection: %w", path, cerr)
		}
		if err != nil {
			return nil, err
		}
	}

	db, err := openBolt(path, opts.ReadOnly, opts.Timeout, opts.openFile)
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, path: path, readOnly: opts.ReadOnly, memo: newRunMemo(memoRuns)}
	if opts.ReadOnly {
		err = inspect(db, path, false, opts.Verify)
	} else {
		err = s.initialize(legacy)
	}
	if err == nil && !opts.ReadOnly && opts.Preallocate > 0 {
		err = s.startPrealloc(opts.Preallocate, opts.preallocProgress)
	}
	if err != nil {
		_ = closeBolt(db)
		return nil, err
	}
	return s, nil
}

// inspect validates an open database without writing to it and, when
// verify is set, runs Check.
func inspect(db *bolt.DB, path string, allowEmpty, verify bool) error {
	s := &Store{db: db, path: path, readOnly: true, memo: newRunMemo(memoRuns)}
	if err := s.view(func(tx *bolt.Tx) error { return validate(tx, path, allowEmpty) }); err != nil {
		return err
	}
	if verify {
		if err := s.Check(); err != nil {
			return fmt.Errorf("%s is %w: %w", path, ErrInvalid, err)
		}
	}
	return nil
}

// openBolt opens the file with bbolt, turning its errors (and panics on
// damaged files) into errors that name the path.
func openBolt(path string, readOnly bool, timeout time.Duration, openFile func(string, int, os.FileMode) (*os.File, error)) (db *bolt.DB, err error) {
	defer func() {
		if p := recover(); p != nil {
			db, err = nil, fmt.Errorf("%s is %w: damaged: %v", path, ErrInvalid, p)
		}
	}()
	// A page of a truncated file is a fault (SIGBUS) when read through the
	// mmap; make that a panic recovered above instead of a crash.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))

	db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout, ReadOnly: readOnly, OpenFile: openFile, InitialMmapSize: initialMapping})
	if errors.Is(err, syscall.ENOMEM) && initialMapping > 0 {
		// A limit on the address space (ulimit -v) refuses the wide
		// mapping: bbolt's own, which a backup can hold up, rather than none.
		db, err = bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout, ReadOnly: readOnly, OpenFile: openFile})
	}
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("another ssobot process holds %s (waited %s): %w", path, timeout, ErrLocked)
	case errors.Is(err, berrors.ErrInvalid):
		return nil, fmt.Errorf("%s is %w: no valid bbolt header (not a bbolt file, or its header is damaged): %w", path, ErrInvalid, err)
	case errors.Is(err, berrors.ErrChecksum):
		return nil, fmt.Errorf("%s is %w: header checksum mismatch: %w", path, ErrInvalid, err)
	case errors.Is(err, berrors.ErrVersionMismatch):
		return nil, fmt.Errorf("%s is %w: unknown bbolt format version: %w", path, ErrInvalid, err)
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrPermission):
		return nil, fmt.Errorf("open store: %w", err)
	case errors.Is(err, syscall.ENOMEM):
		return nil, fmt.Errorf("open store: the system refused to map %s into memory (a limit on the address space, ulimit -v?): %w", path, err)
	case errors.As(err, new(*fs.PathError)):
		// The system refused the file (a read-only mount, a full disk, an
		// I/O error): nothing says the file itself is bad.
		return nil, fmt.Errorf("open store: the system refused %s: %w", path, err)
	default:
		return nil, fmt.Errorf("%s is %w: %w", path, ErrInvalid, err)
	}
}

// initialMapping is how much of the file bbolt maps when it opens it: 1
// GiB of address space on 64-bit Unix systems, of which only the pages read
// take memory. bbolt otherwise maps the next power of two above the file's
// size and remaps when a commit grows the file past it, and a remap waits
// for every read transaction to end: one backup downloaded slowly
// (/api/backup) would stop every commit, and every Slack acknowledgement
// waiting for one, until the download ended. Past 1 GiB (some 85,000
// finished runs: the restart benchmark's 10,100 take 119 MB) bbolt remaps
// again. Windows grows the file to the mapping, and a 32-bit address space
// has no room to spare: there, bbolt's default. So does openBolt under a
// limit on the address space that refuses the mapping.
var initialMapping = func() int {
	if runtime.GOOS == "windows" || strconv.IntSize < 64 {
		return 0
	}
	return 1 << 30
}()

// closeBolt closes db even when a damaged file makes bbolt panic.
func closeBolt(db *bolt.DB) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("close: %v", p)
		}
	}()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return db.Close()
}

// validate checks that tx sees an ssobot database of a schema this package
// reads. allowEmpty accepts a bbolt database without any bucket, which
// initialize will adopt.
func validate(tx *bolt.Tx, path string, allowEmpty bool) error {
	// Checked before any page beyond the header is read: a truncated file
	// would fault there.
	if err := checkSize(tx, path); err != nil {
		return err
	}
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		var names []string
		_ = tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			names = append(names, strconv.Quote(string(name)))
			return nil
		})
		if len(names) == 0 && allowEmpty {
			return nil
		}
		if len(names) == 0 {
			return fmt.Errorf("%s is %w: an empty bbolt database", path, ErrInvalid)
		}
		return fmt.Errorf("%s is %w: a bbolt database of another program (buckets %v, no %q bucket)", path, ErrInvalid, names, bucketMeta)
	}
	raw := meta.Get(keySchemaVersion)
	if raw == nil {
		return fmt.Errorf("%s is %w: no schema version in the %q bucket", path, ErrInvalid, bucketMeta)
	}
	v, err := strconv.Atoi(string(raw))
	if err != nil || v < 1 {
		return fmt.Errorf("%s is %w: schema version %q is not a positive number", path, ErrInvalid, raw)
	}
	if v > SchemaVersion {
		return fmt.Errorf("%s has schema version %d but this ssobot reads up to %d; upgrade ssobot: %w", path, v, SchemaVersion, ErrSchema)
	}
	for _, name := range dataBuckets {
		if tx.Bucket(name) == nil {
			return fmt.Errorf("%s is %w: bucket %q is missing", path, ErrInvalid, name)
		}
	}
	return nil
}

// checkSize refuses a file shorter than the pages its header claims.
func checkSize(tx *bolt.Tx, path string) error {
	info, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	if info.Size() < tx.Size() {
		return fmt.Errorf("%s is %w: truncated: the file has %d bytes, its header claims %d", path, ErrInvalid, info.Size(), tx.Size())
	}
	return nil
}

// initialize validates the database and, when it has no bucket yet, creates
// the layout. A database that has it is not written to.
func (s *Store) initialize(legacy []unsettled) error {
	var empty, migrated bool
	err := s.view(func(tx *bolt.Tx) error {
		if err := validate(tx, s.path, true); err != nil {
			return err
		}
		empty = tx.Bucket(bucketMeta) == nil
		migrated = unsettledIndexed(tx)
		return nil
	})
	if err != nil {
		return err
	}
	if !empty {
		if migrated {
			return nil
		}
		return s.indexUnsettled(legacy)
	}
	return s.update(func(tx *bolt.Tx) error {
		if err := validate(tx, s.path, true); err != nil {
			return err
		}
		meta, err := tx.CreateBucket(bucketMeta)
		if err != nil {
			return fmt.Errorf("create bucket %s: %w", bucketMeta, err)
		}
		if err := meta.Put(keySchemaVersion, []byte(strconv.Itoa(SchemaVersion))); err != nil {
			return fmt.Errorf("write schema version: %w", err)
		}
		if err := meta.Put(keyUnsettledIndexed, []byte("1")); err != nil {
			return fmt.Errorf("write index mark: %w", err)
		}
		for _, name := range dataBuckets {
			if _, err := tx.CreateBucket(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		return nil
	})
}

// Close releases the database and its lock.
func (s *Store) Close() error {
	perr := s.stopPrealloc()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("close %s: %w", s.path, err)
	}
	return perr
}

// Path is the database file's path.
func (s *Store) Path() string { return s.path }

// Size is the database's size in bytes: up to the end of the highest page
// bbolt has allocated (free pages below it count), what a backup copies.
// The file is usually longer: bbolt grows it ahead (16 MiB at a time with
// the wide mapping), and Options.Preallocate writes zeros ahead.
func (s *Store) Size() (n int64, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		n = tx.Size()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", s.path, err)
	}
	return n, nil
}

// Commits counts the write transactions this Store has committed, each
// synced to disk once; for benchmarks.
func (s *Store) Commits() uint64 { return s.commits.Load() }

// Writes counts the writes (CreateRun, UpdateRun, AppendEvents) committed;
// concurrent writes share a commit, so Writes ≥ Commits.
func (s *Store) Writes() uint64 { return s.writes.Load() }

// view runs fn in one read transaction.
func (s *Store) view(fn func(tx *bolt.Tx) error) (err error) {
	defer s.recoverDamage(&err)
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	return s.db.View(fn)
}

// recoverDamage, deferred around a transaction, turns a panic of bbolt on a
// damaged page (or, with SetPanicOnFault, a fault on a page missing from a
// truncated file) into an error; bbolt has already rolled the transaction
// back. A panic of the caller's own code (see callerPanic) goes on.
func (s *Store) recoverDamage(err *error) {
	p := recover()
	if p == nil {
		return
	}
	if cp, ok := p.(callerPanic); ok {
		panic(cp.v)
	}
	*err = fmt.Errorf("%s is %w: damaged: %v", s.path, ErrInvalid, p)
}

// callerPanic carries a panic of a function the caller gave the store (the
// fn of UpdateRun) through recoverDamage: a bug of the caller is not damage
// of the file.
type callerPanic struct{ v any }
