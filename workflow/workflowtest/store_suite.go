package workflowtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ssobot/ssobot/workflow"
)

// TestStore runs the conformance suite that every workflow.Store must pass.
// newStore returns a fresh, empty store; the suite calls it once per
// subtest, and subtests run in parallel.
func TestStore(t *testing.T, newStore func(t *testing.T) workflow.Store) {
	t.Helper()
	tests := []struct {
		name string
		test func(t *testing.T, s workflow.Store)
	}{
		{"CreateRunAssignsIDsAndSeqs", storeTestCreateRun},
		{"CreateRunConcurrentIDsDistinct", storeTestCreateRunConcurrent},
		{"GetRunMissing", storeTestGetRunMissing},
		{"ReturnedRunsAreCopies", storeTestCopies},
		{"UpdateRunApplies", storeTestUpdateRun},
		{"UpdateRunErrorWritesNothing", storeTestUpdateRunError},
		{"UpdateRunMissing", storeTestUpdateRunMissing},
		{"UpdateRunCompareAndSet", storeTestCompareAndSet},
		{"UpdateRunNoLostUpdates", storeTestNoLostUpdates},
		{"AppendEvents", storeTestAppendEvents},
		{"ListRuns", storeTestListRuns},
		{"ListRunsPaging", storeTestListRunsPaging},
		{"ListRunsFollowsStateChanges", storeTestListRunsStateChanges},
		{"ListRunsRunningStep", storeTestListRunsRunningStep},
		{"EventsPerRun", storeTestEventsPerRun},
		{"ContextCancelled", storeTestContextCancelled},
		{"RoundTrip", storeTestRoundTrip},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.test(t, newStore(t))
		})
	}
}

func storeCreate(t *testing.T, s workflow.Store, r *workflow.Run, events ...workflow.Event) *workflow.Run {
	t.Helper()
	if err := s.CreateRun(t.Context(), r, events...); err != nil {
		t.Fatalf("CreateRun: %v", err)
	}
	return r
}

func storeGet(t *testing.T, s workflow.Store, id int64) *workflow.Run {
	t.Helper()
	r, err := s.GetRun(t.Context(), id)
	if err != nil {
		t.Fatalf("GetRun(%d): %v", id, err)
	}
	return r
}

func storeEvents(t *testing.T, s workflow.Store, id int64) []workflow.Event {
	t.Helper()
	events, err := s.Events(t.Context(), id)
	if err != nil {
		t.Fatalf("Events(%d): %v", id, err)
	}
	return events
}

func storeList(t *testing.T, s workflow.Store, opts workflow.ListOptions) []int64 {
	t.Helper()
	runs, err := s.ListRuns(t.Context(), opts)
	if err != nil {
		t.Fatalf("ListRuns(%+v): %v", opts, err)
	}
	return storeIDs(runs)
}

func storeSetState(t *testing.T, s workflow.Store, id int64, st workflow.State) {
	t.Helper()
	if _, err := s.UpdateRun(t.Context(), id, func(r *workflow.Run) ([]workflow.Event, error) {
		r.State = st
		return nil, nil
	}); err != nil {
		t.Fatalf("UpdateRun(%d) to %s: %v", id, st, err)
	}
}

func storeTestCreateRun(t *testing.T, s workflow.Store) {
	for i := range 3 {
		want := int64(i + 1)
		r := storeNewRun(fmt.Sprintf("App %d", i), workflow.StatePending)
		r.ID, r.Version = 42, 7 // the store decides both
		events := []workflow.Event{
			{RunID: 99, Seq: 99, Type: workflow.EventCreated, Message: "created"},
			{Type: workflow.EventNote, Message: "second"},
		}
		storeCreate(t, s, r, events...)
		if r.ID != want || r.Version != 1 {
			t.Fatalf("run %d: after CreateRun ID=%d Version=%d, want ID=%d Version=1", i, r.ID, r.Version, want)
		}
		got := storeGet(t, s, want)
		if got.ID != want || got.Version != 1 || got.Request.ApplicationName != r.Request.ApplicationName {
			t.Fatalf("GetRun(%d) = ID %d Version %d name %q", want, got.ID, got.Version, got.Request.ApplicationName)
		}
		storeCheckEvents(t, storeEvents(t, s, want), want, "created", "second")
		// The engine hands r to its caller after CreateRun: the store must
		// have kept none of it.
		r.State, r.Steps[0].Status, r.Params.ApplicationName = workflow.StateFailed, workflow.StepFailed, "changed"
		events[0].Message = "changed"
		if got := storeGet(t, s, want); got.State != workflow.StatePending || got.Steps[0].Status != workflow.StepPending || got.Params.ApplicationName != fmt.Sprintf("App %d", i) {
			t.Fatalf("run %d changed with the caller's copy: state %s, first step %s, name %q", want, got.State, got.Steps[0].Status, got.Params.ApplicationName)
		}
		storeCheckEvents(t, storeEvents(t, s, want), want, "created", "second")
	}
}

func storeTestCreateRunConcurrent(t *testing.T, s workflow.Store) {
	const n = 20
	var wg sync.WaitGroup
	start := make(chan struct{})
	ids := make([]int64, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			<-start
			r := storeNewRun(fmt.Sprintf("App %d", i), workflow.StatePending)
			errs[i] = s.CreateRun(context.Background(), r, workflow.Event{Type: workflow.EventCreated, Message: r.Request.ApplicationName})
			ids[i] = r.ID
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("CreateRun: %v", err)
	}
	slices.Sort(ids)
	for i, id := range ids {
		if id != int64(i+1) {
			t.Fatalf("IDs of %d concurrent creates = %v, want 1..%d each once", n, ids, n)
		}
	}
	// Each run got its own events, not another's.
	for i := range n {
		r := storeGet(t, s, int64(i+1))
		storeCheckEvents(t, storeEvents(t, s, r.ID), r.ID, r.Request.ApplicationName)
	}
}

func storeTestGetRunMissing(t *testing.T, s workflow.Store) {
	for _, id := range []int64{0, -1, 1} {
		if _, err := s.GetRun(t.Context(), id); !errors.Is(err, workflow.ErrNotFound) {
			t.Errorf("GetRun(%d) on an empty store: err = %v, want ErrNotFound", id, err)
		}
	}
	storeCreate(t, s, storeNewRun("One", workflow.StatePending))
	if _, err := s.GetRun(t.Context(), 2); !errors.Is(err, workflow.ErrNotFound) {
		t.Errorf("GetRun(2) with one run: err = %v, want ErrNotFound", err)
	}
	if _, err := s.Events(t.Context(), 2); !errors.Is(err, workflow.ErrNotFound) {
		t.Errorf("Events(2) with one run: err = %v, want ErrNotFound", err)
	}
}

// storeScribble changes every field of r in place, element by element,
// reaching into every slice and struct, and then shortens Steps: a store
// that shares memory with what it returned or was given would show the
// change. It walks the type, so a field added to Run later is covered too
// (a store that remembers decoded runs relies on Clone being deep).
func storeScribble(r *workflow.Run) {
	storeScribbleValue(reflect.ValueOf(r).Elem())
	r.Steps = append(r.Steps[:1], r.Steps[2:]...)
}

func storeScribbleValue(v reflect.Value) {
	if v.Type() == reflect.TypeFor[time.Time]() {
		v.Set(reflect.ValueOf(v.Interface().(time.Time).Add(time.Hour)))
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			storeScribbleValue(v.Elem())
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				storeScribbleValue(v.Field(i))
			}
		}
	case reflect.Slice:
		for i := range v.Len() {
			storeScribbleValue(v.Index(i))
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			v.SetMapIndex(k, reflect.ValueOf("scribbled").Convert(v.Type().Elem()))
		}
	case reflect.String:
		v.SetString("scribbled")
	case reflect.Int, reflect.Int64, reflect.Int32:
		v.SetInt(v.Int() + 1000)
	case reflect.Uint, reflect.Uint64, reflect.Uint32:
		v.SetUint(v.Uint() + 1000)
	case reflect.Bool:
		v.SetBool(!v.Bool())
	default:
		panic(fmt.Sprintf("storeScribble: no way to change a %s", v.Type()))
	}
}

// storeDetached copies r through JSON, so that the copy shares nothing with
// r whatever Clone does: the expected value of a test must not change with
// what it is compared to.
func storeDetached(t *testing.T, r *workflow.Run) *workflow.Run {
	t.Helper()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var c workflow.Run
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return &c
}

func storeTestCopies(t *testing.T, s workflow.Store) {
	ctx := t.Context()
	given := storeFullRun("copies")
	storeCreate(t, s, given, storeFullEvent("event"))
	want := storeDetached(t, storeGet(t, s, given.ID))
	wantEvents := storeEvents(t, s, given.ID)

	storeScribble(given)
	storeRequireSame(t, "run after changing the run given to CreateRun", want, storeGet(t, s, want.ID))

	storeScribble(storeGet(t, s, want.ID))
	storeRequireSame(t, "run after changing a run GetRun returned", want, storeGet(t, s, want.ID))

	listed, err := s.ListRuns(ctx, workflow.ListOptions{})
	if err != nil || len(listed) != 1 {
		t.Fatalf("ListRuns = %d runs, %v; want 1", len(listed), err)
	}
	storeScribble(listed[0])
	storeRequireSame(t, "run after changing a run ListRuns returned", want, storeGet(t, s, want.ID))

	var inside *workflow.Run
	updated, err := s.UpdateRun(ctx, want.ID, func(r *workflow.Run) ([]workflow.Event, error) {
		inside = r
		return nil, nil
	})
	if err != nil {
		t.Fatalf("UpdateRun: %v", err)
	}
	want = storeDetached(t, storeGet(t, s, want.ID))
	storeScribble(updated)
	storeScribble(inside)
	storeRequireSame(t, "run after changing the runs UpdateRun handed out", want, storeGet(t, s, want.ID))

	events := storeEvents(t, s, want.ID)
	events[0].Message = "scribbled"
	events[0].Data["provider_id"] = "scribbled"
	storeRequireSame(t, "events after changing what Events returned", wantEvents, storeEvents(t, s, want.ID))
}

func storeTestUpdateRun(t *testing.T, s workflow.Store) {
	ctx := t.Context()
	r := storeCreate(t, s, storeNewRun("Grafana", workflow.StatePending),
		workflow.Event{Type: workflow.EventCreated, Message: "created"})

	calls := 0
	got, err := s.UpdateRun(ctx, r.ID, func(cur *workflow.Run) ([]workflow.Event, error) {
		calls++
		if cur.ID != r.ID || cur.Version != 1 || cur.State != workflow.StatePending {
			t.Errorf("fn got ID %d Version %d State %s, want %d 1 pending", cur.ID, cur.Version, cur.State, r.ID)
		}
		cur.State = workflow.StateAwaitingApproval
		cur.Step(workflow.StepPreflight).Status = workflow.StepSucceeded
		cur.Approvals = append(cur.Approvals, workflow.Approval{Gate: workflow.GateAuthentik, User: "U1", Decision: workflow.Approve, At: storeTime})
		return []workflow.Event{
			{Type: workflow.EventPlanned, Message: "planned"},
			{Type: workflow.EventGateOpened, Step: workflow.GateAuthentik, Message: "gate opened"},
		}, nil
	})
	if err != nil {
		t.Fatalf("UpdateRun: %v", err)
	}
	if calls != 1 {
		t.Errorf("fn called %d times, want 1", calls)
	}
	if got.Version != 2 || got.State != workflow.StateAwaitingApproval || len(got.Approvals) != 1 {
		t.Fatalf("UpdateRun returned Version %d State %s %d approvals; want 2, awaiting_approval, 1", got.Version, got.State, len(got.Approvals))
	}
	storeRequireSame(t, "stored run vs the run UpdateRun returned", got, storeGet(t, s, r.ID))
	if st := storeGet(t, s, r.ID).Step(workflow.StepPreflight).Status; st != workflow.StepSucceeded {
		t.Errorf("stored preflight status %s, want succeeded", st)
	}
	storeCheckEvents(t, storeEvents(t, s, r.ID), r.ID, "created", "planned", "gate opened")

	// An update with no events still bumps the version.
	got, err = s.UpdateRun(ctx, r.ID, func(cur *workflow.Run) ([]workflow.Event, error) {
		if cur.Version != 2 {
			t.Errorf("second fn saw Version %d, want 2", cur.Version)
		}
		cur.MessageRef = "C1/123.456"
		return nil, nil
	})
	if err != nil {
		t.Fatalf("second UpdateRun: %v", err)
	}
	if got.Version != 3 || storeGet(t, s, r.ID).MessageRef != "C1/123.456" {
		t.Errorf("after the second update: Version %d MessageRef %q", got.Version, storeGet(t, s, r.ID).MessageRef)
	}
	storeCheckEvents(t, storeEvents(t, s, r.ID), r.ID, "created", "planned", "gate opened")
}

func storeTestUpdateRunError(t *testing.T, s workflow.Store) {
	errSentinel := errors.New("fn says no")
	tests := []struct {
		name  string
		err   error
		check func(t *testing.T, err error)
	}{
		{"sentinel", errSentinel, func(t *testing.T, err error) {
			if !errors.Is(err, errSentinel) {
				t.Errorf("err = %v, want errSentinel", err)
			}
		}},
		{"wrapped", fmt.Errorf("gate closed: %w", errSentinel), func(t *testing.T, err error) {
			if !errors.Is(err, errSentinel) {
				t.Errorf("err = %v, want it to wrap errSentinel", err)
			}
		}},
		{"refused", &workflow.RefusedError{Reason: "already decided", DecidedBy: "U9"}, func(t *testing.T, err error) {
			var re *workflow.RefusedError
			if !errors.As(err, &re) || re.DecidedBy != "U9" || !errors.Is(err, workflow.ErrRefused) {
				t.Errorf("err = %v, want the *RefusedError fn returned", err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := storeCreate(t, s, storeFullRun(tt.name), storeFullEvent("created"))
			want := storeDetached(t, storeGet(t, s, r.ID))
			wantEvents := storeEvents(t, s, r.ID)
			_, err := s.UpdateRun(t.Context(), r.ID, func(cur *workflow.Run) ([]workflow.Event, error) {
				storeScribble(cur)
				return []workflow.Event{{Type: workflow.EventNote, Message: "must not be written"}}, tt.err
			})
			tt.check(t, err)
			storeRequireSame(t, "run after a failed fn", want, storeGet(t, s, r.ID))
			storeRequireSame(t, "events after a failed fn", wantEvents, storeEvents(t, s, r.ID))
		})
	}
}

func storeTestUpdateRunMissing(t *testing.T, s workflow.Store) {
	storeCreate(t, s, storeNewRun("One", workflow.StatePending))
	called := false
	_, err := s.UpdateRun(t.Context(), 2, func(*workflow.Run) ([]workflow.Event, error) {
		called = true
		return nil, nil
	})
	if !errors.Is(err, workflow.ErrNotFound) {
		t.Errorf("UpdateRun(2) with one run: err = %v, want ErrNotFound", err)
	}
	if called {
		t.Error("fn was called for a missing run")
	}
	if ids := storeList(t, s, workflow.ListOptions{}); !slices.Equal(ids, []int64{1}) {
		t.Errorf("runs after UpdateRun of a missing one: %v, want [1]", ids)
	}
}

// storeTestCompareAndSet is the double click: many writers claim a field
// only if it is empty, inside fn. Exactly one must win and every other one
// must see the winner.
func storeTestCompareAndSet(t *testing.T, s workflow.Store) {
	const n = 100
	r := storeCreate(t, s, storeNewRun("Grafana", workflow.StateAwaitingApproval))

	type result struct {
		user string
		run  *workflow.Run
		err  error
	}
	results := make(chan result, n)
	start := make(chan struct{})
	for i := range n {
		go func() {
			user := fmt.Sprintf("U%03d", i)
			<-start
			run, err := s.UpdateRun(context.Background(), r.ID, func(cur *workflow.Run) ([]workflow.Event, error) {
				if cur.MessageRef != "" {
					return nil, &workflow.RefusedError{Reason: "already claimed", DecidedBy: cur.MessageRef}
				}
				cur.MessageRef = user
				return []workflow.Event{{Type: workflow.EventDecisionAccepted, Actor: user, Message: "claimed"}}, nil
			})
			results <- result{user, run, err}
		}()
	}
	close(start)

	var winners []string
	var losers []result
	for range n {
		res := <-results
		if res.err == nil {
			winners = append(winners, res.user)
			if res.run.MessageRef != res.user {
				t.Errorf("winner %s got a run claimed by %q", res.user, res.run.MessageRef)
			}
			continue
		}
		losers = append(losers, res)
	}
	if len(winners) != 1 {
		t.Fatalf("%d writers won (%v), want exactly 1", len(winners), winners)
	}
	winner := winners[0]
	for _, l := range losers {
		var re *workflow.RefusedError
		if !errors.As(l.err, &re) {
			t.Errorf("loser %s: err = %v, want the RefusedError its fn returned", l.user, l.err)
		} else if re.DecidedBy != winner {
			t.Errorf("loser %s saw %q as the winner, want %s", l.user, re.DecidedBy, winner)
		}
	}
	got := storeGet(t, s, r.ID)
	if got.MessageRef != winner || got.Version != 2 {
		t.Errorf("stored run: MessageRef %q Version %d, want %s and 2", got.MessageRef, got.Version, winner)
	}
	events := storeEvents(t, s, r.ID)
	if len(events) != 1 || events[0].Actor != winner {
		t.Errorf("events %+v, want one claim by %s", events, winner)
	}
}

// storeTestNoLostUpdates: concurrent writers that all succeed each see the
// previous one's write.
func storeTestNoLostUpdates(t *testing.T, s workflow.Store) {
	const n = 50
	r := storeCreate(t, s, storeNewRun("Grafana", workflow.StateAwaitingApproval))
	var wg sync.WaitGroup
	start := make(chan struct{})
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			user := fmt.Sprintf("U%03d", i)
			<-start
			_, errs[i] = s.UpdateRun(context.Background(), r.ID, func(cur *workflow.Run) ([]workflow.Event, error) {
				cur.Approvals = append(cur.Approvals, workflow.Approval{Gate: workflow.GateAuthentik, User: user, Decision: workflow.Approve, At: storeTime})
				return []workflow.Event{{Type: workflow.EventDecisionAccepted, Actor: user, Message: user}}, nil
			})
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("UpdateRun: %v", err)
	}
	got := storeGet(t, s, r.ID)
	if got.Version != n+1 {
		t.Errorf("Version %d after %d updates, want %d", got.Version, n, n+1)
	}
	users := make(map[string]bool)
	for _, a := range got.Approvals {
		users[a.User] = true
	}
	if len(got.Approvals) != n || len(users) != n {
		t.Errorf("%d approvals by %d users, want %d by %d: updates were lost", len(got.Approvals), len(users), n, n)
	}
	// The log holds each writer's event once, in commit order, which is
	// the order of the approvals.
	var order []string
	for _, a := range got.Approvals {
		order = append(order, a.User)
	}
	storeCheckEvents(t, storeEvents(t, s, r.ID), r.ID, order...)
}

func storeTestAppendEvents(t *testing.T, s workflow.Store) {
	ctx := t.Context()
	r := storeCreate(t, s, storeNewRun("Grafana", workflow.StateAwaitingApproval),
		workflow.Event{Type: workflow.EventCreated, Message: "created"})
	if err := s.AppendEvents(ctx, r.ID,
		workflow.Event{RunID: 77, Seq: 1, Type: workflow.EventDecisionRefused, Actor: "U2", Message: "refused 1"},
		workflow.Event{Type: workflow.EventDecisionRefused, Actor: "U3", Message: "refused 2"},
	); err != nil {
		t.Fatalf("AppendEvents: %v", err)
	}
	if err := s.AppendEvents(ctx, r.ID); err != nil {
		t.Fatalf("AppendEvents with no events: %v", err)
	}
	storeCheckEvents(t, storeEvents(t, s, r.ID), r.ID, "created", "refused 1", "refused 2")
	if v := storeGet(t, s, r.ID).Version; v != 1 {
		t.Errorf("Version %d after AppendEvents, want 1 (the run is unchanged)", v)
	}

	err := s.AppendEvents(ctx, r.ID+1, workflow.Event{Type: workflow.EventNote, Message: "orphan"})
	if !errors.Is(err, workflow.ErrNotFound) {
		t.Fatalf("AppendEvents to a missing run: err = %v, want ErrNotFound", err)
	}
	// Nothing was kept for the missing run: the run created next under
	// that ID starts with an empty log.
	next := storeCreate(t, s, storeNewRun("Next", workflow.StatePending))
	if next.ID != r.ID+1 {
		t.Fatalf("next run got ID %d, want %d", next.ID, r.ID+1)
	}
	storeCheckEvents(t, storeEvents(t, s, next.ID), next.ID)
}

// storeListStates are the states of runs 1..10 in the ListRuns tests.
var storeListStates = []workflow.State{
	workflow.StatePending, workflow.StateAwaitingApproval, workflow.StateRunning, workflow.StateSucceeded,
	workflow.StateFailed, workflow.StateRejected, workflow.StateExpired, workflow.StateCancelled,
	workflow.StateRunning, workflow.StateSucceeded,
}

var storeOpenStates = []workflow.State{workflow.StatePending, workflow.StateAwaitingApproval, workflow.StateRunning}

func storeCreateListRuns(t *testing.T, s workflow.Store) {
	t.Helper()
	for i, st := range storeListStates {
		storeCreate(t, s, storeNewRun(fmt.Sprintf("App %d", i+1), st))
	}
}

func storeTestListRuns(t *testing.T, s workflow.Store) {
	if ids := storeList(t, s, workflow.ListOptions{}); len(ids) != 0 {
		t.Fatalf("ListRuns on an empty store = %v", ids)
	}
	storeCreateListRuns(t, s)
	tests := []struct {
		name string
		opts workflow.ListOptions
		want []int64
	}{
		{"all", workflow.ListOptions{}, []int64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}},
		{"limit", workflow.ListOptions{Limit: 3}, []int64{10, 9, 8}},
		{"limit above count", workflow.ListOptions{Limit: 100}, []int64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}},
		{"open states", workflow.ListOptions{States: storeOpenStates}, []int64{9, 3, 2, 1}},
		{"open states limit", workflow.ListOptions{States: storeOpenStates, Limit: 2}, []int64{9, 3}},
		{"one open state", workflow.ListOptions{States: []workflow.State{workflow.StateRunning}}, []int64{9, 3}},
		{"one terminal state", workflow.ListOptions{States: []workflow.State{workflow.StateSucceeded}}, []int64{10, 4}},
		{"mixed states", workflow.ListOptions{States: []workflow.State{workflow.StateFailed, workflow.StateRunning}}, []int64{9, 5, 3}},
		{"pending and cancelled", workflow.ListOptions{States: []workflow.State{workflow.StatePending, workflow.StateCancelled}}, []int64{8, 1}},
		{"before", workflow.ListOptions{BeforeID: 5}, []int64{4, 3, 2, 1}},
		{"before limit", workflow.ListOptions{BeforeID: 5, Limit: 2}, []int64{4, 3}},
		{"before open", workflow.ListOptions{BeforeID: 9, States: storeOpenStates}, []int64{3, 2, 1}},
		{"before terminal", workflow.ListOptions{BeforeID: 10, States: []workflow.State{workflow.StateSucceeded}}, []int64{4}},
		{"before first", workflow.ListOptions{BeforeID: 1}, nil},
		{"before beyond newest", workflow.ListOptions{BeforeID: 1000}, []int64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			runs, err := s.ListRuns(t.Context(), tt.opts)
			if err != nil {
				t.Fatalf("ListRuns: %v", err)
			}
			if got := storeIDs(runs); !slices.Equal(got, tt.want) {
				t.Fatalf("ListRuns(%+v) = %v, want %v", tt.opts, got, tt.want)
			}
			for _, r := range runs {
				if len(tt.opts.States) > 0 && !slices.Contains(tt.opts.States, r.State) {
					t.Errorf("run %d in state %s, not in the filter %v", r.ID, r.State, tt.opts.States)
				}
				// Listed runs are whole runs, as GetRun gives them.
				storeRequireSame(t, fmt.Sprintf("listed run %d", r.ID), storeGet(t, s, r.ID), r)
			}
		})
	}
}

func storeTestListRunsPaging(t *testing.T, s workflow.Store) {
	storeCreateListRuns(t, s)
	tests := []struct {
		name   string
		states []workflow.State
		want   []int64
	}{
		{"all", nil, []int64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1}},
		{"open", storeOpenStates, []int64{9, 3, 2, 1}},
		{"terminal", []workflow.State{workflow.StateSucceeded, workflow.StateFailed, workflow.StateRejected, workflow.StateExpired, workflow.StateCancelled}, []int64{10, 8, 7, 6, 5, 4}},
	}
	for _, tt := range tests {
		for _, size := range []int{1, 3, 4} {
			t.Run(fmt.Sprintf("%s/%d", tt.name, size), func(t *testing.T) {
				var got []int64
				before := int64(0)
				for page := 0; ; page++ {
					if page > len(tt.want) {
						t.Fatalf("paging does not end; so far %v", got)
					}
					ids := storeList(t, s, workflow.ListOptions{Limit: size, BeforeID: before, States: tt.states})
					if len(ids) > size {
						t.Fatalf("page of %d runs with Limit %d", len(ids), size)
					}
					if len(ids) == 0 {
						break
					}
					got = append(got, ids...)
					before = ids[len(ids)-1]
				}
				if !slices.Equal(got, tt.want) {
					t.Fatalf("pages joined = %v, want %v", got, tt.want)
				}
			})
		}
	}
}

// storeTestListRunsStateChanges checks that filters follow UpdateRun, which
// an index kept by the store must do.
func storeTestListRunsStateChanges(t *testing.T, s workflow.Store) {
	storeCreateListRuns(t, s)
	steps := []struct {
		id        int64
		to        workflow.State
		open      []int64
		running   []int64
		succeeded []int64
	}{
		{9, workflow.StateSucceeded, []int64{3, 2, 1}, []int64{3}, []int64{10, 9, 4}},
		{5, workflow.StateRunning, []int64{5, 3, 2, 1}, []int64{5, 3}, []int64{10, 9, 4}},
		{2, workflow.StateRunning, []int64{5, 3, 2, 1}, []int64{5, 3, 2}, []int64{10, 9, 4}},
		{1, workflow.StateCancelled, []int64{5, 3, 2}, []int64{5, 3, 2}, []int64{10, 9, 4}},
		{10, workflow.StateFailed, []int64{5, 3, 2}, []int64{5, 3, 2}, []int64{9, 4}},
	}
	for _, st := range steps {
		storeSetState(t, s, st.id, st.to)
		for _, c := range []struct {
			states []workflow.State
			want   []int64
		}{
			{storeOpenStates, st.open},
			{[]workflow.State{workflow.StateRunning}, st.running},
			{[]workflow.State{workflow.StateSucceeded}, st.succeeded},
		} {
			if got := storeList(t, s, workflow.ListOptions{States: c.states}); !slices.Equal(got, c.want) {
				t.Fatalf("after run %d moved to %s: ListRuns(%v) = %v, want %v", st.id, st.to, c.states, got, c.want)
			}
		}
	}
}

// storeTestListRunsRunningStep checks ListOptions.RunningStep, alone and
// with the other filters, and that it follows UpdateRun.
func storeTestListRunsRunningStep(t *testing.T, s workflow.Store) {
	terminal := []workflow.State{workflow.StateSucceeded, workflow.StateFailed, workflow.StateRejected, workflow.StateExpired, workflow.StateCancelled}
	runs := []struct {
		name    string
		state   workflow.State
		running workflow.StepName // "" for none
	}{
		{"Cancelled in flight", workflow.StateCancelled, workflow.StepAuthentikProvider}, // 1
		{"Cancelled", workflow.StateCancelled, ""},                                       // 2
		{"Running", workflow.StateRunning, workflow.StepAuthentikApplication},            // 3
		{"Succeeded", workflow.StateSucceeded, ""},                                       // 4
		// Text that reads like a running step, in a run with none.
		{`Named "status":"running"`, workflow.StateFailed, ""},                                  // 5
		{"Cancelled in preflight", workflow.StateCancelled, workflow.StepPreflight},             // 6
		{"Waiting", workflow.StateAwaitingApproval, ""},                                         // 7
		{"Cancelled login method", workflow.StateCancelled, workflow.StepCloudflareLoginMethod}, // 8
	}
	for _, c := range runs {
		r := storeNewRun(c.name, c.state)
		r.Request.LoginMethodName = c.name
		if c.running != "" {
			r.Step(c.running).Status = workflow.StepRunning
		}
		storeCreate(t, s, r)
	}
	tests := []struct {
		name string
		opts workflow.ListOptions
		want []int64
	}{
		{"alone", workflow.ListOptions{RunningStep: true}, []int64{8, 6, 3, 1}},
		{"terminal", workflow.ListOptions{States: terminal, RunningStep: true}, []int64{8, 6, 1}},
		{"open", workflow.ListOptions{States: storeOpenStates, RunningStep: true}, []int64{3}},
		{"one state", workflow.ListOptions{States: []workflow.State{workflow.StateFailed}, RunningStep: true}, nil},
		{"limit", workflow.ListOptions{States: terminal, RunningStep: true, Limit: 2}, []int64{8, 6}},
		{"before", workflow.ListOptions{States: terminal, RunningStep: true, BeforeID: 6}, []int64{1}},
		{"before and limit", workflow.ListOptions{RunningStep: true, BeforeID: 8, Limit: 2}, []int64{6, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ListRuns(t.Context(), tt.opts)
			if err != nil {
				t.Fatalf("ListRuns: %v", err)
			}
			if ids := storeIDs(got); !slices.Equal(ids, tt.want) {
				t.Fatalf("ListRuns(%+v) = %v, want %v", tt.opts, ids, tt.want)
			}
			for _, r := range got {
				storeRequireSame(t, fmt.Sprintf("listed run %d", r.ID), storeGet(t, s, r.ID), r)
			}
		})
	}
	// Closing a running step takes the run out; starting one puts it in.
	for _, ch := range []struct {
		id     int64
		step   workflow.StepName
		status workflow.StepStatus
	}{
		{1, workflow.StepAuthentikProvider, workflow.StepCancelled},
		{2, workflow.StepAuthentikApplication, workflow.StepRunning},
	} {
		if _, err := s.UpdateRun(t.Context(), ch.id, func(r *workflow.Run) ([]workflow.Event, error) {
			r.Step(ch.step).Status = ch.status
			return nil, nil
		}); err != nil {
			t.Fatalf("UpdateRun(%d): %v", ch.id, err)
		}
	}
	if got := storeList(t, s, workflow.ListOptions{States: terminal, RunningStep: true}); !slices.Equal(got, []int64{8, 6, 2}) {
		t.Fatalf("after closing run 1's step and starting run 2's: %v, want [8 6 2]", got)
	}
}

func storeTestEventsPerRun(t *testing.T, s workflow.Store) {
	ctx := t.Context()
	a := storeCreate(t, s, storeNewRun("A", workflow.StatePending), workflow.Event{Type: workflow.EventCreated, Message: "a1"})
	b := storeCreate(t, s, storeNewRun("B", workflow.StatePending), workflow.Event{Type: workflow.EventCreated, Message: "b1"})
	empty := storeCreate(t, s, storeNewRun("Empty", workflow.StatePending))

	note := func(msg string) workflow.Event { return workflow.Event{Type: workflow.EventNote, Message: msg} }
	for _, step := range []func() error{
		func() error { return s.AppendEvents(ctx, a.ID, note("a2")) },
		func() error { return s.AppendEvents(ctx, b.ID, note("b2"), note("b3")) },
		func() error {
			_, err := s.UpdateRun(ctx, a.ID, func(*workflow.Run) ([]workflow.Event, error) {
				return []workflow.Event{note("a3"), note("a4")}, nil
			})
			return err
		},
		func() error { return s.AppendEvents(ctx, b.ID, note("b4")) },
		func() error { return s.AppendEvents(ctx, a.ID, note("a5")) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	storeCheckEvents(t, storeEvents(t, s, a.ID), a.ID, "a1", "a2", "a3", "a4", "a5")
	storeCheckEvents(t, storeEvents(t, s, b.ID), b.ID, "b1", "b2", "b3", "b4")
	storeCheckEvents(t, storeEvents(t, s, empty.ID), empty.ID)
	if _, err := s.Events(ctx, 99); !errors.Is(err, workflow.ErrNotFound) {
		t.Errorf("Events of a missing run: err = %v, want ErrNotFound", err)
	}
}

func storeTestContextCancelled(t *testing.T, s workflow.Store) {
	r := storeCreate(t, s, storeNewRun("Grafana", workflow.StatePending), workflow.Event{Type: workflow.EventCreated, Message: "created"})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	called := false
	calls := []struct {
		name string
		call func() error
	}{
		{"CreateRun", func() error { return s.CreateRun(ctx, storeNewRun("Other", workflow.StatePending)) }},
		{"GetRun", func() error { _, err := s.GetRun(ctx, r.ID); return err }},
		{"UpdateRun", func() error {
			_, err := s.UpdateRun(ctx, r.ID, func(cur *workflow.Run) ([]workflow.Event, error) {
				called = true
				cur.State = workflow.StateCancelled
				return nil, nil
			})
			return err
		}},
		{"AppendEvents", func() error {
			return s.AppendEvents(ctx, r.ID, workflow.Event{Type: workflow.EventNote, Message: "late"})
		}},
		{"ListRuns", func() error { _, err := s.ListRuns(ctx, workflow.ListOptions{}); return err }},
		{"Events", func() error { _, err := s.Events(ctx, r.ID); return err }},
	}
	for _, c := range calls {
		if err := c.call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context: err = %v, want context.Canceled", c.name, err)
		}
	}
	if called {
		t.Error("UpdateRun called fn with a cancelled context")
	}
	if ids := storeList(t, s, workflow.ListOptions{}); !slices.Equal(ids, []int64{r.ID}) {
		t.Errorf("runs after cancelled calls: %v, want [%d]", ids, r.ID)
	}
	if got := storeGet(t, s, r.ID); got.Version != 1 || got.State != workflow.StatePending {
		t.Errorf("run after cancelled calls: Version %d State %s, want 1 pending", got.Version, got.State)
	}
	storeCheckEvents(t, storeEvents(t, s, r.ID), r.ID, "created")
}

func storeTestRoundTrip(t *testing.T, s workflow.Store) {
	// The samples must set every field, or the round trip proves nothing
	// about the fields left out.
	for name, v := range map[string]any{"run": storeFullRun("x"), "event": storeFullEvent("x")} {
		var zero []string
		storeZeroFields(name, reflect.ValueOf(v), &zero)
		if len(zero) > 0 {
			t.Fatalf("the suite's sample %s leaves fields unset: %v", name, zero)
		}
	}

	want := storeFullRun("first")
	ev := storeFullEvent("created ✓ \"quoted\"\nsecond line")
	storeCreate(t, s, want, ev)
	storeRequireSame(t, "run read back", want, storeGet(t, s, want.ID))

	wantEvent := ev
	wantEvent.RunID = want.ID
	events := storeEvents(t, s, want.ID)
	if len(events) != 1 {
		t.Fatalf("%d events, want 1", len(events))
	}
	if events[0].Seq == 0 {
		t.Error("event Seq 0: the store must assign Seq")
	}
	wantEvent.Seq = events[0].Seq
	storeRequireSame(t, "event read back", wantEvent, events[0])

	// Every field written through UpdateRun survives as well.
	second := storeFullRun("second")
	updated, err := s.UpdateRun(t.Context(), want.ID, func(cur *workflow.Run) ([]workflow.Event, error) {
		id, version := cur.ID, cur.Version
		*cur = *second
		cur.ID, cur.Version = id, version
		return nil, nil
	})
	if err != nil {
		t.Fatalf("UpdateRun: %v", err)
	}
	second.ID, second.Version = want.ID, 2
	storeRequireSame(t, "run returned by UpdateRun", second, updated)
	storeRequireSame(t, "updated run read back", second, storeGet(t, s, want.ID))
}
