package workflowtest

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ssobot/ssobot/workflow"
)

// storeTime is the suite's fixed clock: UTC, no monotonic reading, with
// nanoseconds, so a store that drops precision is caught.
var storeTime = time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.UTC)

// storeNewRun returns a plain run as the engine would create it.
func storeNewRun(name string, state workflow.State) *workflow.Run {
	r := &workflow.Run{
		State: state,
		Request: workflow.Request{
			ApplicationName: name,
			RequestedBy:     "U0REQUEST",
			Channel:         "C0CHANNEL",
		},
		Params: workflow.Params{
			ApplicationName: name,
			ApplicationSlug: workflow.Slugify(name),
			ClientID:        "client-" + workflow.Slugify(name),
		},
		CreatedAt: storeTime,
		UpdatedAt: storeTime,
	}
	for _, p := range workflow.Plan {
		r.Steps = append(r.Steps, workflow.Step{Name: p.Name, Kind: p.Kind, Status: workflow.StepPending})
	}
	return r
}

// storeFullRun returns a run with every field set (checked by
// storeZeroFields), with text that JSON must escape, so that a round trip
// proves the store keeps everything.
func storeFullRun(variant string) *workflow.Run {
	at := func(d time.Duration) time.Time { return storeTime.Add(d) }
	r := &workflow.Run{
		ID:      1,
		State:   workflow.StateRunning,
		Version: 1,
		Request: workflow.Request{
			ApplicationName: "Grafana « prod » " + variant,
			ApplicationSlug: "grafana-prod-" + variant,
			TeamDomain:      "company",
			LoginMethodName: "authentik \"quoted\"\n" + variant,
			RequestedBy:     "U0REQUEST" + variant,
			Channel:         "C0CHANNEL" + variant,
		},
		Params: workflow.Params{
			ApplicationName:       "Grafana « prod » " + variant,
			ApplicationSlug:       "grafana-prod-" + variant,
			ProviderName:          "Grafana provider " + variant,
			TeamDomain:            "company.cloudflareaccess.com",
			LoginMethodName:       "authentik " + variant,
			ClientID:              "client-id-" + variant,
			AuthentikURL:          "https://auth.example.com",
			AuthorizationFlowSlug: "default-provider-authorization-explicit-consent",
			InvalidationFlowSlug:  "default-provider-invalidation-flow",
			SigningKeyName:        "authentik Self-signed Certificate",
			AuthorizationFlowID:   "0b7c7a4e-1111-4c4c-8f8f-" + variant,
			InvalidationFlowID:    "0b7c7a4e-2222-4c4c-8f8f-" + variant,
			SigningKeyID:          "0b7c7a4e-3333-4c4c-8f8f-" + variant,
			ScopeMappingIDs:       []string{"scope-openid-" + variant, "scope-email", "scope-profile"},
			AccountID:             "account-" + variant,
			CallbackURL:           "https://company.cloudflareaccess.com/cdn-cgi/access/callback",
			AuthURL:               "https://auth.example.com/application/o/authorize/",
			TokenURL:              "https://auth.example.com/application/o/token/",
			CertsURL:              "https://auth.example.com/application/o/grafana/jwks/",
			DiscoveryURL:          "https://auth.example.com/application/o/grafana/.well-known/openid-configuration",
		},
		Approvals: []workflow.Approval{
			{Gate: workflow.GateAuthentik, User: "U0APPROVE1", Decision: workflow.Approve, At: at(time.Minute), Reason: "ok <b>&</b> " + variant, Lapsed: true, SetAside: true},
			{Gate: workflow.GateCloudflare, User: "U0APPROVE2", Decision: workflow.Reject, At: at(2 * time.Minute), Reason: "not yet " + variant, Lapsed: true, SetAside: true},
		},
		Resources: workflow.Resources{
			AuthentikProviderID:          42,
			AuthentikApplicationSlug:     "grafana-prod-" + variant,
			CloudflareIdentityProviderID: "idp-" + variant,
		},
		Problems:     []string{"first problem " + variant, "second: ✓ ünïcödé"},
		Error:        "authentik: create provider: 400 Bad Request: {\"slug\":[\"exists\"]} " + variant,
		DashboardURL: "https://one.dash.cloudflare.com/account/settings/authentication",
		MessageRef:   "C0CHANNEL/1712345678.000100/" + variant,
		Delivered:    7,
		CreatedAt:    at(0),
		UpdatedAt:    at(time.Hour + time.Nanosecond),
	}
	for i, p := range workflow.Plan {
		d := time.Duration(i) * time.Second
		r.Steps = append(r.Steps, workflow.Step{
			Name:     p.Name,
			Kind:     p.Kind,
			Status:   workflow.StepFailed,
			Attempts: i + 2,
			Errors: []workflow.AttemptError{
				{Attempt: 1, At: at(d + 1), Error: "503 Service Unavailable " + variant, Transient: true},
				{Attempt: 2, At: at(d + 2), Error: "429 Too Many Requests", Transient: true},
			},
			StartedAt:        at(d + 3),
			FinishedAt:       at(d + 4),
			NextAttemptAt:    at(d + 5),
			RetriedAtAttempt: i + 1,
			Required:         i + 1,
			Deadline:         at(24*time.Hour + d),
			RemindAt:         at(18*time.Hour + d),
			Nonce:            fmt.Sprintf("nonce-%d-%s", i, variant),
		})
	}
	return r
}

// storeFullEvent returns an event with every field set.
func storeFullEvent(msg string) workflow.Event {
	return workflow.Event{
		RunID:   -7, // the store assigns RunID and Seq
		Seq:     99,
		At:      storeTime.Add(time.Millisecond + 1),
		Type:    workflow.EventResourceCreated,
		Step:    workflow.StepAuthentikProvider,
		Actor:   "U0ACTOR",
		Message: msg,
		Data:    map[string]string{"provider_id": "42", "note": "\"quoted\" ✓"},
	}
}

// storeZeroFields lists the fields of v that hold their zero value (empty
// slices and maps included), so that the round trip test keeps covering
// every field as Run grows.
func storeZeroFields(path string, v reflect.Value, out *[]string) {
	if v.Type() == reflect.TypeFor[time.Time]() {
		if v.Interface().(time.Time).IsZero() {
			*out = append(*out, path)
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			*out = append(*out, path)
			return
		}
		storeZeroFields(path, v.Elem(), out)
	case reflect.Struct:
		for i := range v.NumField() {
			if f := v.Type().Field(i); f.IsExported() {
				storeZeroFields(path+"."+f.Name, v.Field(i), out)
			}
		}
	case reflect.Slice:
		if v.Len() == 0 {
			*out = append(*out, path)
		}
		for i := range v.Len() {
			storeZeroFields(fmt.Sprintf("%s[%d]", path, i), v.Index(i), out)
		}
	case reflect.Map:
		if v.Len() == 0 {
			*out = append(*out, path)
		}
	default:
		if v.IsZero() {
			*out = append(*out, path)
		}
	}
}

// storeDiff compares want and got field by field: times with Equal (so a
// location or monotonic reading does not matter), nil and empty slices and
// maps as equal. It returns one line per difference.
func storeDiff(want, got any) []string {
	var out []string
	storeDiffValue("", reflect.ValueOf(want), reflect.ValueOf(got), &out)
	return out
}

func storeDiffValue(path string, want, got reflect.Value, out *[]string) {
	if !want.IsValid() || !got.IsValid() {
		if want.IsValid() != got.IsValid() {
			*out = append(*out, fmt.Sprintf("%s: want %v, got %v", path, want, got))
		}
		return
	}
	if want.Type() == reflect.TypeFor[time.Time]() {
		w, g := want.Interface().(time.Time), got.Interface().(time.Time)
		if !w.Equal(g) {
			*out = append(*out, fmt.Sprintf("%s: want %s, got %s", path, w.Format(time.RFC3339Nano), g.Format(time.RFC3339Nano)))
		}
		return
	}
	switch want.Kind() {
	case reflect.Pointer:
		if want.IsNil() || got.IsNil() {
			if want.IsNil() != got.IsNil() {
				*out = append(*out, fmt.Sprintf("%s: want nil=%t, got nil=%t", path, want.IsNil(), got.IsNil()))
			}
			return
		}
		storeDiffValue(path, want.Elem(), got.Elem(), out)
	case reflect.Struct:
		for i := range want.NumField() {
			if f := want.Type().Field(i); f.IsExported() {
				storeDiffValue(path+"."+f.Name, want.Field(i), got.Field(i), out)
			}
		}
	case reflect.Slice:
		if want.Len() != got.Len() {
			*out = append(*out, fmt.Sprintf("%s: want %d elements, got %d", path, want.Len(), got.Len()))
			return
		}
		for i := range want.Len() {
			storeDiffValue(fmt.Sprintf("%s[%d]", path, i), want.Index(i), got.Index(i), out)
		}
	case reflect.Map:
		if want.Len() != got.Len() {
			*out = append(*out, fmt.Sprintf("%s: want %d entries, got %d", path, want.Len(), got.Len()))
			return
		}
		for _, k := range want.MapKeys() {
			g := got.MapIndex(k)
			if !g.IsValid() {
				*out = append(*out, fmt.Sprintf("%s[%v]: missing", path, k))
				continue
			}
			storeDiffValue(fmt.Sprintf("%s[%v]", path, k), want.MapIndex(k), g, out)
		}
	default:
		if !reflect.DeepEqual(want.Interface(), got.Interface()) {
			*out = append(*out, fmt.Sprintf("%s: want %#v, got %#v", path, want.Interface(), got.Interface()))
		}
	}
}

// storeRequireSame fails the test when got differs from want.
func storeRequireSame(t *testing.T, what string, want, got any) {
	t.Helper()
	if d := storeDiff(want, got); len(d) > 0 {
		t.Fatalf("%s differs:\n%s", what, strings.Join(d, "\n"))
	}
}

// storeIDs lists the runs' IDs in order.
func storeIDs(runs []*workflow.Run) []int64 {
	ids := make([]int64, 0, len(runs))
	for _, r := range runs {
		ids = append(ids, r.ID)
	}
	return ids
}

// storeCheckEvents checks that events belong to run id, have strictly
// increasing positive Seq, and carry the messages wanted, in order.
func storeCheckEvents(t *testing.T, events []workflow.Event, id int64, messages ...string) {
	t.Helper()
	got := make([]string, 0, len(events))
	var last uint64
	for i, e := range events {
		got = append(got, e.Message)
		if e.RunID != id {
			t.Errorf("event %d (%q): RunID %d, want %d", i, e.Message, e.RunID, id)
		}
		if e.Seq <= last {
			t.Errorf("event %d (%q): Seq %d does not increase (previous %d)", i, e.Message, e.Seq, last)
		}
		last = e.Seq
	}
	if !slices.Equal(got, messages) {
		t.Fatalf("events of run %d: messages %q, want %q", id, got, messages)
	}
}
