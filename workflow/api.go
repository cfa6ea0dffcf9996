package workflow

import "context"

// This file is the engine's API for front ends (the Slack bot, the admin API).

// New checks the configuration and returns an engine; call Run to start it.
func New(cfg Config) (*Engine, error) { return newEngine(cfg) }

// Run resumes every open run and drives runs until ctx ends. On return no
// step is in flight: a running attempt has reached its recorded result.
func (e *Engine) Run(ctx context.Context) error { return e.run(ctx) }

// Ready reports whether Run has resumed the open runs and is serving.
func (e *Engine) Ready() bool { return e.isReady() }

// Validate normalizes a request and explains what is wrong with it, without
// touching the store: front ends call it before acknowledging a command.
// Errors wrap ErrInvalidRequest and say what to type instead.
func (e *Engine) Validate(req Request) (Request, error) { return e.validate(req) }

// Start validates and records a new run (state pending) and schedules its
// preflight. It returns once the run is stored.
func (e *Engine) Start(ctx context.Context, req Request) (*Run, error) { return e.start(ctx, req) }

// Decide records an approval or rejection on the open gate. Of concurrent
// decisions exactly one changes the run; a refused decision returns an error
// wrapping ErrRefused (a *RefusedError telling who decided first, when that
// is the reason) and is recorded in the run's event log.
func (e *Engine) Decide(ctx context.Context, d DecisionRequest) (*Run, error) {
	return e.decide(ctx, d)
}

// Cancel ends an open run. Only the requester or an eligible approver may.
func (e *Engine) Cancel(ctx context.Context, runID int64, user, reason string) (*Run, error) {
	return e.cancel(ctx, runID, user, reason)
}

// Retry resumes a failed run from its failed step, or opens an expired
// run's gate again; finished steps are not repeated. Only the requester or
// an eligible approver may.
func (e *Engine) Retry(ctx context.Context, runID int64, user string) (*Run, error) {
	return e.retry(ctx, runID, user)
}

// Get returns a run, or an error wrapping ErrNotFound.
func (e *Engine) Get(ctx context.Context, id int64) (*Run, error) { return e.cfg.Store.GetRun(ctx, id) }

// List returns runs newest first.
func (e *Engine) List(ctx context.Context, opts ListOptions) ([]*Run, error) {
	return e.cfg.Store.ListRuns(ctx, opts)
}

// Events returns a run's audit log, oldest first.
func (e *Engine) Events(ctx context.Context, id int64) ([]Event, error) {
	return e.cfg.Store.Events(ctx, id)
}

// SetMessageRef stores the front end's reference to the run's message.
func (e *Engine) SetMessageRef(ctx context.Context, id int64, ref string) (*Run, error) {
	return e.setMessageRef(ctx, id, ref)
}

// SetDelivered records the Seq of the last event the front end delivered.
// It never moves backwards.
func (e *Engine) SetDelivered(ctx context.Context, id int64, seq uint64) (*Run, error) {
	return e.setDelivered(ctx, id, seq)
}
