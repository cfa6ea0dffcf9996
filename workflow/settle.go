package workflow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"
)

// A cancel leaves a running step to its call in flight, whose result
// closes it (recordResult). When the process stops before that result is
// stored, the run is finished and nothing would ever close the step or
// record what its call made. At the next start such runs are settled:
// the create is not made again; its object is looked up by the keys the
// create used, recorded on the run if found, and the step is closed with
// a note saying what was found. Settling writes once, and a restart
// before that write only looks up again.

// resumeUnsettled kicks the finished runs left with a running step.
func (e *Engine) resumeUnsettled(ctx context.Context) {
	var ended []State
	for _, s := range States {
		if s.Terminal() {
			ended = append(ended, s)
		}
	}
	runs, err := e.cfg.Store.ListRuns(ctx, ListOptions{States: ended, RunningStep: true})
	if err != nil {
		if ctx.Err() == nil {
			e.log.Error("find finished runs with a step in flight", slog.Any(KeyError, err))
		}
		return
	}
	for _, r := range runs {
		e.kick(r.ID)
		e.log.Info("settling run", slog.Int64(KeyRunID, r.ID), slog.String(KeyState, string(r.State)), slog.String(KeyStep, string(r.RunningStep().Name)))
	}
}

// found is what a look-up for a step's object found.
type found struct {
	what   string // the object, for a person: kind, ID and keys
	apply  func(r *Run)
	events []Event
	data   map[string]string
}

// lookUp finds the object step would have created on run r, by the same
// keys the step's retried create looks it up by, and never creates. It
// returns nil when there is none that is the run's, and a note on what it
// found that is not (or "").
func (e *Engine) lookUp(ctx context.Context, r *Run, step StepName) (*found, string, error) {
	p := r.Params
	switch step {
	case StepAuthentikProvider:
		prov, err := e.cfg.Authentik.ProviderByClientID(ctx, p.ClientID)
		if errors.Is(err, ErrNotFound) {
			return nil, "", nil
		}
		if err != nil {
			return nil, "", fmt.Errorf("find provider by client_id: %w", err)
		}
		id := prov.PK
		return &found{
			what:   fmt.Sprintf("the authentik provider #%d %q (client ID %s)", id, prov.Name, p.ClientID),
			apply:  func(r *Run) { r.Resources.AuthentikProviderID = id },
			events: []Event{resourceEvent(true, step, "authentik provider", strconv.Itoa(id), p.ProviderName)},
			data:   map[string]string{"provider_id": strconv.Itoa(id), "client_id": p.ClientID},
		}, "", nil
	case StepAuthentikApplication:
		app, err := e.cfg.Authentik.ApplicationBySlug(ctx, p.ApplicationSlug)
		if errors.Is(err, ErrNotFound) {
			return nil, "", nil
		}
		if err != nil {
			return nil, "", fmt.Errorf("find application by slug: %w", err)
		}
		if providerID := r.Resources.AuthentikProviderID; providerID == 0 || app.Provider != providerID {
			return nil, fmt.Sprintf("the application with slug %q uses another provider (#%d), so it is not this run's", app.Slug, app.Provider), nil
		}
		slug := app.Slug
		return &found{
			what:   fmt.Sprintf("the authentik application %q (slug %s)", app.Name, slug),
			apply:  func(r *Run) { r.Resources.AuthentikApplicationSlug = slug },
			events: []Event{resourceEvent(true, step, "authentik application", slug, p.ApplicationName)},
			data:   map[string]string{"application_slug": slug},
		}, "", nil
	case StepCloudflareLoginMethod:
		idps, err := e.cfg.Access.ListIdentityProviders(ctx)
		if err != nil {
			return nil, "", fmt.Errorf("list login methods: %w", err)
		}
		// The same rule as the step that creates it.
		switch named := loginMethodsNamed(idps, p); {
		case named.found():
			own, extras := named.adopt("")
			id := own.ID
			what := fmt.Sprintf("the Cloudflare login method %s %q (client ID %s)", id, own.Name, p.ClientID)
			if len(extras) > 0 {
				what += "; " + duplicatesProblem(p, id, extras)
			}
			return &found{
				what:   what,
				apply:  func(r *Run) { r.Resources.CloudflareIdentityProviderID = id },
				events: []Event{resourceEvent(true, step, "Cloudflare login method", id, p.LoginMethodName)},
				data:   map[string]string{"identity_provider_id": id},
			}, "", nil
		case len(named.unreadable) > 0:
			// Not absent: it may be the run's own.
			return nil, "", &APIError{System: "cloudflare", Op: "find login method", Permanent: true, Message: named.unreadableProblem(p)}
		case named.others > 0:
			return nil, fmt.Sprintf("%d login method(s) named %q are for another client, so not this run's", named.others, p.LoginMethodName), nil
		}
		return nil, "", nil
	}
	return nil, "", nil
}

// settle closes step name of the finished run r, left running by a call
// no longer in flight. It makes no create: a create step's object is
// looked up (transient errors are tried again, up to the step's budget of
// attempts) and recorded if found.
func (e *Engine) settle(ctx context.Context, r *Run, name StepName) {
	select {
	case e.sem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-e.sem }()
	log := e.log.With(slog.Int64(KeyRunID, r.ID), slog.String(KeyStep, string(name)))
	attemptNo := r.Step(name).Attempts
	obj := createdBy(r, name)
	var (
		got      *found
		notOurs  string
		lookErr  error
		hadTries int
	)
	if obj != "" {
		lookCtx, cancel := context.WithTimeout(ctx, e.cfg.AttemptTimeout)
		got, notOurs, lookErr = e.lookUp(lookCtx, r, name)
		cancel()
		if ctx.Err() != nil {
			return // stopping: the next start looks again
		}
		if lookErr != nil && IsTransient(lookErr) {
			e.mu.Lock()
			e.settleTries[r.ID]++
			hadTries = e.settleTries[r.ID]
			e.mu.Unlock()
			if hadTries < e.cfg.Retry.MaxAttempts {
				wait := e.cfg.Retry.Backoff(hadTries, RetryAfter(lookErr))
				log.Warn("look-up of what an interrupted step made failed; trying again", slog.Duration("wait", wait), slog.String(KeyError, lookErr.Error()))
				e.wakeAt(r.ID, e.cfg.Clock.Now().Add(wait))
				return
			}
		}
	}
	_, err := e.update(context.WithoutCancel(ctx), r.ID, func(r *Run) ([]Event, error) {
		s := r.Step(name)
		if !r.State.Terminal() || s == nil || s.Status != StepRunning || s.Attempts != attemptNo {
			return nil, errStale
		}
		s.Status, s.FinishedAt, s.NextAttemptAt = StepCancelled, e.cfg.Clock.Now().UTC(), time.Time{}
		msg := fmt.Sprintf("attempt %d of %s was interrupted (its result was never stored: the process stopped first, or the store refused it) after the run was %s", attemptNo, name, r.State)
		var evs []Event
		var data map[string]string
		switch {
		case obj == "":
			msg += "; it creates nothing"
		case lookErr != nil:
			msg += fmt.Sprintf("; could not look for %s (%v): it may have been created all the same, which ssobot does not delete", obj, lookErr)
		case got != nil:
			got.apply(r)
			evs = append(evs, got.events...)
			data = got.data
			msg += fmt.Sprintf("; found %s and recorded it on the run; kept, since ssobot deletes nothing", got.what)
		default:
			msg += fmt.Sprintf("; looked for %s and found none: it was not created", obj)
			if notOurs != "" {
				msg += " (" + notOurs + ")"
			}
		}
		return append(evs, Event{Type: EventNote, Step: name, Message: msg, Data: data}), nil
	})
	switch {
	case errors.Is(err, errStale) || errors.Is(err, ErrNotFound):
	case err != nil:
		if ctx.Err() == nil {
			log.Error("close interrupted step", slog.Any(KeyError, err))
			e.wakeAt(r.ID, e.cfg.Clock.Now().Add(storeRetryDelay))
		}
		return
	default:
		log.Info("closed interrupted step", slog.Bool("found", got != nil), slog.Bool("lookup_failed", lookErr != nil))
	}
	e.mu.Lock()
	delete(e.settleTries, r.ID)
	e.mu.Unlock()
}
