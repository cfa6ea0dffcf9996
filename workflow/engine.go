package workflow

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// Defaults are the parameters a request may leave out.
type Defaults struct {
	// AuthentikURL is authentik's public https URL; the OIDC URLs handed to
	// Cloudflare are built from it.
	AuthentikURL      string
	AuthorizationFlow string // slug; default "default-provider-authorization-explicit-consent"
	InvalidationFlow  string // slug; default "default-provider-invalidation-flow"
	SigningKey        string // certificate name; default "authentik Self-signed Certificate"
	LoginMethodName   string // default "authentik"
}

// RetryPolicy bounds the retries of transient failures.
type RetryPolicy struct {
	MaxAttempts int           // per step before it fails; default 8
	Base        time.Duration // first backoff; default 1s
	Max         time.Duration // cap of one backoff; default 5m
}

// CrashPoint names a moment between the intent and the result of a step.
type CrashPoint string

const (
	CrashAfterIntent CrashPoint = "after-intent" // intent stored, call not made
	CrashAfterCall   CrashPoint = "after-call"   // call made, result not stored
	CrashAfterResult CrashPoint = "after-result" // result stored, next step not started
)

// Config wires an engine. Store, Authentik, Access, Endpoints and Approvers
// are required.
type Config struct {
	Store     Store
	Authentik Authentik
	Access    Access
	Endpoints Endpoints
	Approvers Approvers
	Notifier  Notifier // optional
	Observer  Observer // optional
	Clock     Clock    // default: the system clock
	Logger    *slog.Logger

	Defaults          Defaults
	ApprovalsRequired int           // per gate; default 1
	AllowSelfApproval bool          // the requester may approve their own run
	ApprovalTTL       time.Duration // a gate's deadline; default 24h
	Retry             RetryPolicy
	// AttemptTimeout bounds one attempt of a step (all its API calls); default 60s.
	AttemptTimeout time.Duration
	// MaxConcurrentRuns bounds runs executing steps at once; default 16.
	MaxConcurrentRuns int

	// CrashHook, for tests: returning true at a point makes the engine stop
	// driving the run at once, writing nothing more, as if the process died.
	CrashHook func(point CrashPoint, step StepName) bool
}

// DecisionRequest is a person's approve or reject of a gate.
type DecisionRequest struct {
	RunID    int64
	Gate     StepName
	Nonce    string // the gate's callback token, from the button
	User     string
	Decision Decision
	Reason   string
}

// Engine drives runs from request to end. Its methods are safe for concurrent use.
type Engine struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	driving map[int64]bool // runs with a driver goroutine
	again   map[int64]bool // runs changed while being driven
	timers  map[int64]context.CancelFunc
	ready   bool
	baseCtx context.Context
	wg      sync.WaitGroup
	sem     chan struct{}
}

var errNotImplemented = errors.New("not implemented")
