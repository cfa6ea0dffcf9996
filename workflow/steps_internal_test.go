package workflow

import (
	"errors"
	"fmt"
	"testing"
)

// TestOpErr: a step names its operation once, whether the adapter's error
// already does or not, and the error stays matchable.
func TestOpErr(t *testing.T) {
	api := &APIError{System: "authentik", Op: "create application (needs add_application)", Status: 403, Message: "denied"}
	plain := errors.New("connection reset")
	tests := []struct {
		err  error
		want string
	}{
		{api, "authentik: create application (needs add_application): 403 Forbidden: denied"},
		{fmt.Errorf("retrying: %w", api), "retrying: authentik: create application (needs add_application): 403 Forbidden: denied"},
		{&APIError{System: "cloudflare", Op: "list login methods", Status: 500}, "create application: cloudflare: list login methods: 500 Internal Server Error"},
		{plain, "create application: connection reset"},
	}
	for _, tt := range tests {
		got := opErr("create application", tt.err)
		if got.Error() != tt.want || !errors.Is(got, tt.err) {
			t.Errorf("opErr(%q) = %q; want %q, wrapping the error", tt.err, got, tt.want)
		}
	}
}

// TestAdoptLoginMethod: of several login methods of the run, the one
// recorded is kept when listed, else the first listed; the rest are
// duplicates, and another client's with the same name is none of them.
func TestAdoptLoginMethod(t *testing.T) {
	p := Params{LoginMethodName: "authentik (Grafana)", ClientID: "ours"}
	own := func(id string) IdentityProvider {
		return IdentityProvider{ID: id, Name: p.LoginMethodName, Type: "oidc", Config: OIDCConfig{ClientID: p.ClientID}}
	}
	other := IdentityProvider{ID: "x", Name: p.LoginMethodName, Type: "oidc", Config: OIDCConfig{ClientID: "theirs"}}
	listed := []IdentityProvider{other, own("a"), own("b"), own("c")}
	tests := []struct {
		recorded, kept string
		extras         []string
	}{
		{"", "a", []string{"b", "c"}},
		{"b", "b", []string{"a", "c"}},
		{"gone", "a", []string{"b", "c"}},
	}
	for _, tt := range tests {
		named := loginMethodsNamed(listed, p)
		kept, extras := named.adopt(tt.recorded)
		var ids []string
		for _, x := range extras {
			ids = append(ids, x.ID)
		}
		if kept.ID != tt.kept || fmt.Sprint(ids) != fmt.Sprint(tt.extras) || named.others != 1 {
			t.Errorf("recorded %q: kept %s, extras %v, others %d; want %s, %v, 1", tt.recorded, kept.ID, ids, named.others, tt.kept, tt.extras)
		}
	}
}
