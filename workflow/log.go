package workflow

// Attribute keys shared by every log line about runs.
const (
	KeyRunID   = "run_id"
	KeyStep    = "step"
	KeyState   = "state"
	KeyAttempt = "attempt"
	KeyUser    = "user"
	KeyError   = "error"
)
