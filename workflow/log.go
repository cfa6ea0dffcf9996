package workflow

// Attribute keys shared by every log line about runs.
const (
	KeyRunID   = "run_id"
	KeyStep    = "step"
	KeyState   = "state"
	KeyAttempt = "attempt"
	KeyUser    = "user"
	KeyError   = "error"
	// KeyDuration is how long an attempt or a run took (slog.Duration).
	KeyDuration = "duration"
	// KeyOutcome is how an attempt ended: succeeded, retrying, failed or cancelled.
	KeyOutcome = "outcome"
)
