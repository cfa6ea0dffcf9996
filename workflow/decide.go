package workflow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"time"
)

func (e *Engine) decide(ctx context.Context, d DecisionRequest) (*Run, error) {
	if d.Decision != Approve && d.Decision != Reject {
		return nil, fmt.Errorf("%w: decision must be approve or reject, not %q", ErrInvalidRequest, d.Decision)
	}
	// Eligibility may ask Slack: never inside the store's transaction.
	eligible, reason, err := e.cfg.Approvers.Eligible(ctx, d.User)
	if err != nil {
		return nil, fmt.Errorf("check approver %s: %w", d.User, err)
	}
	var lapsed map[string]bool
	if eligible && d.Decision == Approve {
		lapsed = e.lapsedApprovers(ctx, d)
	}
	var refusal *RefusedError
	var finished, expired bool
	r, err := e.update(ctx, d.RunID, func(r *Run) ([]Event, error) {
		refusal = e.checkDecision(r, d, eligible, reason)
		if refusal != nil {
			return nil, refusal
		}
		gate := r.Step(d.Gate)
		now := e.cfg.Clock.Now().UTC()
		if !gate.Deadline.IsZero() && !now.Before(gate.Deadline) {
			// The driver expires a gate at its deadline but may not have
			// yet (after a restart, or while it yields): the decision comes
			// too late, and the gate expires with its refusal.
			expired = true
			evs, err := e.expireIn(r, gate)
			if err != nil {
				return nil, err
			}
			refusal = refused("gate %s of run #%d expired at %s, before this decision; to go ahead, retry the run, which opens the gate again", d.Gate, r.ID, gate.Deadline.Format(time.RFC3339))
			refusal.Kind, refusal.At = RefusedExpired, gate.Deadline
			return append(evs, Event{Type: EventDecisionRefused, Step: d.Gate, Actor: d.User,
				Message: fmt.Sprintf("refused %s by %s: %s", d.Decision, d.User, refusal.Reason)}), nil
		}
		// The clicker's own lapsed or set-aside approval, if any, gives way
		// to this one.
		r.Approvals = slices.DeleteFunc(r.Approvals, func(a Approval) bool { return a.Gate == d.Gate && a.User == d.User })
		for i := range r.Approvals {
			// Only the lapse by eligibility is decided again: SetAside
			// stays, or this one approval could pass the gate with those
			// the reopening set aside.
			if a := &r.Approvals[i]; a.Gate == d.Gate {
				a.Lapsed = lapsed[a.User]
			}
		}
		r.Approvals = append(r.Approvals, Approval{Gate: d.Gate, User: d.User, Decision: d.Decision, At: now, Reason: d.Reason})
		evs := []Event{{Type: EventDecisionAccepted, Step: d.Gate, Actor: d.User,
			Message: fmt.Sprintf("%s %s gate %s", d.User, pastTense(d.Decision), d.Gate), Data: reasonData(d.Reason)}}
		switch {
		case d.Decision == Reject:
			gate.Status, gate.FinishedAt = StepRejected, now
			if err := r.transition(StateRejected); err != nil {
				return nil, err
			}
			r.Error = fmt.Sprintf("rejected by %s at gate %s", d.User, d.Gate)
			if d.Reason != "" {
				r.Error += ": " + d.Reason
			}
			evs = append(evs, Event{Type: EventGateRejected, Step: d.Gate, Actor: d.User, Message: r.Error})
			finished = true
		case r.CountingApprovals(d.Gate) < gate.Required:
			for _, a := range r.ApprovalsFor(d.Gate) {
				if lapsed[a.User] {
					evs = append(evs, Event{Type: EventNote, Step: d.Gate, Actor: a.User,
						Message: fmt.Sprintf("the approval of %s does not count: they are no longer an approver", a.User)})
				}
			}
		default:
			gate.Status, gate.FinishedAt = StepSucceeded, now
			if err := r.transition(StateRunning); err != nil {
				return nil, err
			}
			evs = append(evs, Event{Type: EventGateApproved, Step: d.Gate, Message: fmt.Sprintf("gate %s approved", d.Gate)})
			// Remembered before the commit is visible: a driver that reads
			// the run right after it must find the intent fresh. Should the
			// commit fail, the stored attempts will not match it.
			more, n := e.foldIntent(r)
			e.setFresh(r.ID, n)
			evs = append(evs, more...)
		}
		return evs, nil
	})
	if e.cfg.Observer != nil && (err == nil || refusal != nil) {
		e.cfg.Observer.DecisionMade(d.Gate, d.Decision, err == nil && !expired)
	}
	if expired && err == nil {
		e.log.Info("refused", slog.Int64(KeyRunID, d.RunID), slog.String(KeyUser, d.User), slog.String("type", string(EventDecisionRefused)), slog.String("reason", refusal.Reason))
		return nil, refusal
	}
	if refusal != nil && errors.Is(err, ErrRefused) {
		e.recordRefusal(ctx, d.RunID, EventDecisionRefused, d.Gate, d.User, fmt.Sprintf("refused %s by %s: %s", d.Decision, d.User, refusal.Reason))
		return nil, refusal
	}
	if err != nil {
		return nil, fmt.Errorf("decide run %d: %w", d.RunID, err)
	}
	e.log.Info("decision accepted", slog.Int64(KeyRunID, r.ID), slog.String(KeyStep, string(d.Gate)), slog.String(KeyUser, d.User), slog.String("decision", string(d.Decision)))
	if !finished {
		e.kick(r.ID)
	}
	return r.Clone(), nil
}

// lapsedApprovers lists the people whose earlier approval of the gate does
// not count now: they may no longer approve (taken off the list or
// out of the group between the clicks); a quorum is of current approvers.
// One whose check fails (Slack unavailable) still counts: the approval was
// valid when given, and not counting it could leave a gate that nobody
// left may approve waiting until it expires. Eligibility may ask Slack, so
// it is checked before the transaction.
func (e *Engine) lapsedApprovers(ctx context.Context, d DecisionRequest) map[string]bool {
	r, err := e.cfg.Store.GetRun(ctx, d.RunID)
	if err != nil {
		return nil // the transaction reports it
	}
	var lapsed map[string]bool
	for _, a := range r.ApprovalsFor(d.Gate) {
		// One set aside does not count whoever gave it: no need to ask.
		if a.Decision != Approve || a.SetAside || a.User == d.User || lapsed[a.User] {
			continue
		}
		ok, _, err := e.cfg.Approvers.Eligible(ctx, a.User)
		if err != nil {
			e.log.Warn("could not check an earlier approver again; their approval counts as given", slog.Int64(KeyRunID, d.RunID), slog.String(KeyUser, a.User), slog.Any(KeyError, err))
			continue
		}
		if ok {
			continue
		}
		if lapsed == nil {
			lapsed = map[string]bool{}
		}
		lapsed[a.User] = true
	}
	return lapsed
}

func pastTense(d Decision) string {
	if d == Approve {
		return "approved"
	}
	return "rejected"
}

func reasonData(reason string) map[string]string {
	if reason == "" {
		return nil
	}
	return map[string]string{"reason": reason}
}

// checkDecision is the whole validation of a decision, run inside the
// store's write transaction so that of concurrent decisions one wins.
func (e *Engine) checkDecision(r *Run, d DecisionRequest, eligible bool, reason string) *RefusedError {
	gate := r.Step(d.Gate)
	if gate == nil || gate.Kind != KindGate {
		return refused("run #%d has no such gate", r.ID)
	}
	// "Already decided" only when a decision closed the gate: one that
	// expired or was cancelled after a first approval is answered below.
	if decided := r.ApprovalsFor(d.Gate); (gate.Status == StepSucceeded || gate.Status == StepRejected) && len(decided) > 0 {
		last := decided[len(decided)-1]
		ref := refused("gate %s of run #%d was already %s by %s at %s", d.Gate, r.ID, pastTense(last.Decision), last.User, last.At.Format(time.RFC3339))
		ref.DecidedBy = last.User
		return ref
	}
	switch {
	case r.State.Terminal():
		return refusedState(r, "run #%d is already %s", r.ID, r.State)
	case gate.Status == StepPending:
		return refused("gate %s of run #%d is not open yet", d.Gate, r.ID)
	case gate.Status != StepWaiting:
		return refused("gate %s of run #%d is %s", d.Gate, r.ID, gate.Status)
	case d.MessageRef != "" && r.MessageRef != "" && d.MessageRef != r.MessageRef:
		return refused("this button does not belong to run #%d's message", r.ID)
	case d.Nonce != gate.Nonce:
		return refused("this button is from an older message of run #%d; use the latest message", r.ID)
	case !eligible:
		return refused("%s", reason)
	case d.User == r.Request.RequestedBy && !e.cfg.AllowSelfApproval:
		// Rejecting is refused too: a requester who changed their mind cancels.
		ref := refused("you requested run #%d, so another approver must decide; to stop it, cancel it", r.ID)
		ref.Kind = RefusedOwnRun
		return ref
	}
	for _, a := range r.ApprovalsFor(d.Gate) {
		// An approval that stopped counting (its approver was not one for
		// a while, or the gate's reopening set it aside) may be given
		// again: else, with as many approvers as approvals required,
		// nobody could open the gate.
		if a.User == d.User && !a.Lapsed && !a.SetAside {
			ref := refused("you already %s gate %s of run #%d at %s", pastTense(a.Decision), d.Gate, r.ID, a.At.Format(time.RFC3339))
			ref.Kind, ref.At, ref.Decision = RefusedRepeat, a.At, a.Decision
			return ref
		}
	}
	return nil
}

// recordRefusal writes a refused attempt to the audit log. The run itself
// does not change, so the version is not bumped.
func (e *Engine) recordRefusal(ctx context.Context, id int64, typ EventType, step StepName, user, msg string) {
	ev := Event{At: e.cfg.Clock.Now().UTC(), Type: typ, Step: step, Actor: user, Message: msg}
	if err := e.cfg.Store.AppendEvents(context.WithoutCancel(ctx), id, ev); err != nil && !errors.Is(err, ErrNotFound) {
		e.log.Error("record refusal", slog.Int64(KeyRunID, id), slog.Any(KeyError, err))
	}
	e.log.Info("refused", slog.Int64(KeyRunID, id), slog.String(KeyUser, user), slog.String("type", string(typ)), slog.String("reason", msg))
}

// mayControl decides who may cancel or retry: the requester or an approver.
func (e *Engine) mayControl(ctx context.Context, id int64, user string) (*Run, *RefusedError, error) {
	r, err := e.cfg.Store.GetRun(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	if user == SystemActor || user == r.Request.RequestedBy {
		return r, nil, nil
	}
	ok, reason, err := e.cfg.Approvers.Eligible(ctx, user)
	if err != nil {
		return nil, nil, fmt.Errorf("check approver %s: %w", user, err)
	}
	if !ok {
		return r, refused("only the requester or an approver may do that: %s", reason), nil
	}
	return r, nil, nil
}

func (e *Engine) cancel(ctx context.Context, id int64, user, reason string) (*Run, error) {
	_, ref, err := e.mayControl(ctx, id, user)
	if err == nil && ref == nil {
		var r *Run
		r, err = e.update(ctx, id, func(r *Run) ([]Event, error) {
			if r.State.Terminal() {
				return nil, refusedState(r, "run #%d is already %s", r.ID, r.State)
			}
			if err := r.transition(StateCancelled); err != nil {
				return nil, err
			}
			now := e.cfg.Clock.Now().UTC()
			// A running step is left to its call in flight, which records
			// its outcome; one only waiting for its next attempt has none.
			if s := r.Current(); s != nil && (s.Status != StepRunning || !s.NextAttemptAt.IsZero()) {
				s.Status, s.FinishedAt, s.NextAttemptAt = StepCancelled, now, time.Time{}
			}
			r.Error = "cancelled by " + user
			if reason != "" {
				r.Error += ": " + reason
			}
			return []Event{{Type: EventCancelled, Actor: user, Message: r.Error, Data: reasonData(reason)}}, nil
		})
		if err == nil {
			return r.Clone(), nil
		}
	}
	if ref == nil {
		errors.As(err, &ref)
	}
	if ref != nil {
		e.recordRefusal(ctx, id, EventCancelRefused, "", user, "refused cancel by "+user+": "+ref.Reason)
		return nil, ref
	}
	return nil, fmt.Errorf("cancel run %d: %w", id, err)
}

func (e *Engine) retry(ctx context.Context, id int64, user string) (*Run, error) {
	_, ref, err := e.mayControl(ctx, id, user)
	if err == nil && ref == nil {
		var r *Run
		r, err = e.update(ctx, id, func(r *Run) ([]Event, error) {
			switch {
			case !r.State.Retryable():
				return nil, refusedState(r, "run #%d is %s; only failed or expired runs can be retried", r.ID, r.State)
			case r.State == StateFailed:
				return retryFailed(r, user)
			}
			return e.reopenExpired(r, user)
		})
		if err == nil {
			e.kick(id)
			return r.Clone(), nil
		}
	}
	if ref == nil {
		errors.As(err, &ref)
	}
	if ref != nil {
		e.recordRefusal(ctx, id, EventRetryRefused, "", user, "refused retry by "+user+": "+ref.Reason)
		return nil, ref
	}
	return nil, fmt.Errorf("retry run %d: %w", id, err)
}

func (e *Engine) setMessageRef(ctx context.Context, id int64, ref string) (*Run, error) {
	r, err := e.cfg.Store.UpdateRun(ctx, id, func(r *Run) ([]Event, error) {
		if r.MessageRef == ref {
			return nil, errUnchanged
		}
		r.MessageRef = ref
		return nil, nil
	})
	if errors.Is(err, errUnchanged) {
		return e.cfg.Store.GetRun(ctx, id)
	}
	if err != nil {
		return nil, fmt.Errorf("set message ref of run %d: %w", id, err)
	}
	return r, nil
}

var errUnchanged = errors.New("unchanged")

func (e *Engine) setDelivered(ctx context.Context, id int64, seq uint64) (*Run, error) {
	r, err := e.cfg.Store.UpdateRun(ctx, id, func(r *Run) ([]Event, error) {
		if seq <= r.Delivered {
			return nil, errUnchanged
		}
		r.Delivered = seq
		return nil, nil
	})
	if errors.Is(err, errUnchanged) {
		return e.cfg.Store.GetRun(ctx, id)
	}
	if err != nil {
		return nil, fmt.Errorf("set delivered of run %d: %w", id, err)
	}
	return r, nil
}

// retryFailed sets failed run r going again from its failed step.
func retryFailed(r *Run, user string) ([]Event, error) {
	s := r.Current()
	if s == nil {
		return nil, refused("run #%d has no step left to retry", r.ID)
	}
	to := StateRunning
	if s.Name == StepPreflight {
		to = StatePending
	}
	if err := r.transition(to); err != nil {
		return nil, err
	}
	s.Status, s.NextAttemptAt, s.FinishedAt = StepPending, time.Time{}, time.Time{}
	s.RetriedAtAttempt = s.Attempts
	r.Error, r.Problems = "", nil
	return []Event{{Type: EventRetried, Step: s.Name, Actor: user, Message: fmt.Sprintf("%s retried run #%d from step %s", user, r.ID, s.Name)}}, nil
}

// reopenExpired opens expired run r's gate again, with a new deadline and
// nonce (the old buttons stay refused). The plan is the one approved so
// far, so approvals given before the gate expired still count, unless they
// alone would now pass it: then all of them are set aside; what the run
// created before the gate is kept and the run goes on from there.
func (e *Engine) reopenExpired(r *Run, user string) ([]Event, error) {
	s := r.Current()
	if s == nil || s.Kind != KindGate || s.Status != StepExpired {
		return nil, refused("run #%d has no expired gate to open again", r.ID)
	}
	if err := r.transition(StateAwaitingApproval); err != nil {
		return nil, err
	}
	s.FinishedAt = time.Time{}
	r.Error = ""
	evs := []Event{{Type: EventRetried, Step: s.Name, Actor: user, Message: fmt.Sprintf("%s opened gate %s of run #%d again", user, s.Name, r.ID)}}
	opened := e.openGateIn(r, s)
	if n := r.CountingApprovals(s.Name); n >= s.Required {
		// The number required was lowered since they were given: they would
		// pass the gate without anyone acting on it now. They stop counting
		// for good, and their approvers may give them again. Those lapsed
		// by eligibility are set aside too: were their approver one again
		// at the next decision, they would count again beside that one new
		// approval.
		for i := range r.Approvals {
			if a := &r.Approvals[i]; a.Gate == s.Name && a.Decision == Approve {
				a.SetAside = true
			}
		}
		evs = append(evs, Event{Type: EventNote, Step: s.Name,
			Message: fmt.Sprintf("the approvals given before gate %s expired do not count: %d of them would pass it alone, %d being required now; their approvers may approve again", s.Name, n, s.Required)})
	}
	return append(evs, opened...), nil
}

// refusedState refuses what r's state does not allow.
func refusedState(r *Run, format string, args ...any) *RefusedError {
	ref := refused(format, args...)
	ref.Kind, ref.State = RefusedRunState, r.State
	return ref
}
