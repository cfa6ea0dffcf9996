package bot

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/ssobot/ssobot/bot/slacktest"
	"github.com/ssobot/ssobot/workflow/workflowtest"
)

func newTestApprovers(t *testing.T, users, groups []string) (*approvers, *slacktest.Server, *testClock, *workflowtest.Buffer) {
	t.Helper()
	srv := slacktest.NewServer()
	t.Cleanup(srv.Close)
	for _, u := range []slacktest.User{
		{ID: "U1", Name: "alice"},
		{ID: "U2", Name: "bob"},
		{ID: "U3", Name: "carol"},
		{ID: "UDEL", Name: "gone", Deleted: true},
		{ID: "UBOT", Name: "robot", IsBot: true},
		{ID: "UAPP", Name: "app", IsAppUser: true},
		{ID: "UGST", Name: "guest", IsRestricted: true},
		{ID: "UGS1", Name: "single-channel guest", IsRestricted: true, IsUltraRestricted: true},
	} {
		srv.AddUser(u)
	}
	srv.AddUserGroup("S1", "U3", "UDEL", "UBOT")
	clock := newTestClock()
	logs := &workflowtest.Buffer{}
	a := newApprovers(slack.New(srv.BotToken(), slack.OptionAPIURL(srv.APIURL())), users, groups, time.Minute, clock,
		slog.New(slog.NewTextHandler(logs, nil)))
	return a, srv, clock, logs
}

func TestEligible(t *testing.T) {
	tests := []struct {
		name         string
		users        []string
		groups       []string
		noGroups     bool
		user         string
		want         bool
		reasonHas    string
		wantAPICalls []string // methods called, in order
	}{
		{name: "explicit user", users: []string{"U2"}, user: "U2", want: true, wantAPICalls: []string{"users.info"}},
		{name: "group member", groups: []string{"S1"}, user: "U3", want: true, wantAPICalls: []string{"usergroups.users.list", "users.info"}},
		{name: "non-approver", users: []string{"U2"}, groups: []string{"S1"}, user: "U1",
			reasonHas: "you are not an approver: ask <@U2> or a member of <!subteam^S1>", wantAPICalls: []string{"usergroups.users.list"}},
		{name: "deleted explicit user", users: []string{"UDEL"}, user: "UDEL", reasonHas: "deactivated"},
		{name: "deleted group member", groups: []string{"S1"}, user: "UDEL", reasonHas: "deactivated"},
		{name: "bot group member", groups: []string{"S1"}, user: "UBOT", reasonHas: "bots cannot approve"},
		{name: "app user", users: []string{"UAPP"}, user: "UAPP", reasonHas: "bots cannot approve"},
		{name: "unknown user", users: []string{"UNOPE"}, user: "UNOPE", reasonHas: "not found"},
		{name: "guest", users: []string{"UGST"}, user: "UGST", reasonHas: "guest accounts cannot approve"},
		{name: "single-channel guest", users: []string{"UGS1"}, user: "UGS1", reasonHas: "guest accounts cannot approve"},
		{name: "groups unavailable: explicit IDs still work", users: []string{"U2"}, groups: []string{"S1"}, noGroups: true, user: "U2", want: true},
		{name: "groups unavailable: group member is not eligible", users: []string{"U2"}, groups: []string{"S1"}, noGroups: true, user: "U3", reasonHas: "you are not an approver"},
		{name: "no approvers configured", user: "U1", reasonHas: "no approvers are configured"},
		{name: "empty user", users: []string{"U2"}, user: "", reasonHas: "no Slack user"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, srv, _, _ := newTestApprovers(t, tt.users, tt.groups)
			srv.SetUserGroupsUnavailable(tt.noGroups)
			ok, reason, err := a.Eligible(context.Background(), tt.user)
			if err != nil {
				t.Fatalf("Eligible: %v", err)
			}
			if ok != tt.want {
				t.Fatalf("Eligible(%s) = %v (%q); want %v", tt.user, ok, reason, tt.want)
			}
			if !ok && !strings.Contains(reason, tt.reasonHas) {
				t.Fatalf("reason %q; want it to contain %q", reason, tt.reasonHas)
			}
			if tt.wantAPICalls != nil {
				var got []string
				for _, c := range srv.Calls() {
					got = append(got, c.Method)
				}
				if strings.Join(got, ",") != strings.Join(tt.wantAPICalls, ",") {
					t.Fatalf("Slack calls %v; want %v", got, tt.wantAPICalls)
				}
			}
		})
	}
}

func TestEligibleCachesWithTTL(t *testing.T) {
	a, srv, clock, _ := newTestApprovers(t, nil, []string{"S1"})
	ctx := context.Background()
	for range 3 {
		if ok, reason, err := a.Eligible(ctx, "U3"); !ok || err != nil {
			t.Fatalf("Eligible = %v %q %v", ok, reason, err)
		}
	}
	if n := len(srv.Calls("usergroups.users.list")); n != 1 {
		t.Fatalf("usergroups.users.list called %d times within the TTL; want 1", n)
	}
	if n := len(srv.Calls("users.info")); n != 1 {
		t.Fatalf("users.info called %d times within the TTL; want 1", n)
	}
	// Membership changes show after the TTL.
	srv.AddUserGroup("S1", "U1")
	if ok, _, _ := a.Eligible(ctx, "U3"); !ok {
		t.Fatal("cached membership should still hold within the TTL")
	}
	clock.Advance(time.Minute)
	if ok, _, _ := a.Eligible(ctx, "U3"); ok {
		t.Fatal("U3 left the group; still eligible after the TTL")
	}
	if ok, _, _ := a.Eligible(ctx, "U1"); !ok {
		t.Fatal("U1 joined the group; not eligible after the TTL")
	}
	if n := len(srv.Calls("usergroups.users.list")); n != 2 {
		t.Fatalf("usergroups.users.list called %d times; want 2", n)
	}
}

func TestEligibleGroupsUnavailableLoggedOnce(t *testing.T) {
	a, srv, clock, logs := newTestApprovers(t, []string{"U2"}, []string{"S1"})
	srv.SetUserGroupsUnavailable(true)
	for range 3 {
		_, _, _ = a.Eligible(context.Background(), "U1")
		clock.Advance(2 * time.Minute)
	}
	if n := strings.Count(logs.String(), "user groups are not available"); n != 1 {
		t.Fatalf("plan warning logged %d times; want once:\n%s", n, logs.String())
	}
}

func TestEligibleGroupErrorIsReturned(t *testing.T) {
	a, srv, _, _ := newTestApprovers(t, nil, []string{"S1"})
	srv.FailNext("usergroups.users.list", 1, "internal_error")
	if _, _, err := a.Eligible(context.Background(), "U3"); err == nil {
		t.Fatal("Eligible hid a failure to read the group")
	}
	// The failure is not cached.
	if ok, _, err := a.Eligible(context.Background(), "U3"); !ok || err != nil {
		t.Fatalf("Eligible after recovery = %v, %v", ok, err)
	}
}

// TestEligibleWaitsOutRateLimits: a rate-limited lookup is tried again
// after the wait Slack asks for, so a click does not fail for a burst.
func TestEligibleWaitsOutRateLimits(t *testing.T) {
	a, srv, clock, _ := newTestApprovers(t, []string{"U2"}, []string{"S1"})
	srv.RateLimitNext("usergroups.users.list", 1, 2)
	srv.RateLimitNext("users.info", 1, 1)
	ok, reason, err := a.Eligible(context.Background(), "U3")
	if err != nil || !ok {
		t.Fatalf("Eligible(U3) = %v %q %v; want eligible once the limits pass", ok, reason, err)
	}
	if w := clock.Waits(); len(w) != 2 || w[0] != 2*time.Second || w[1] != time.Second {
		t.Errorf("waits %v; want Slack's 2s then 1s", w)
	}
}

// TestEligibleWaitsForAKnownRateLimit: once users.info has answered 429
// (here to a name looked up for a card), an eligibility check waits for
// the Retry-After instead of calling Slack into the limit again.
func TestEligibleWaitsForAKnownRateLimit(t *testing.T) {
	a, srv, clock, _ := newTestApprovers(t, []string{"U2"}, nil)
	srv.RateLimitNext("users.info", 1, 5)
	if _, err := a.names(context.Background(), []string{"U1"}); err == nil {
		t.Fatal("names hid the rate limit")
	}
	if ok, reason, err := a.Eligible(context.Background(), "U2"); err != nil || !ok {
		t.Fatalf("Eligible(U2) = %v %q %v; want eligible once the limit passed", ok, reason, err)
	}
	if w := clock.Waits(); len(w) != 1 || w[0] != 5*time.Second {
		t.Errorf("waits %v; want Slack's 5s", w)
	}
	if n := len(srv.Calls("users.info")); n != 2 {
		t.Errorf("users.info called %d times; want 2 (the limited one, then U2 after the wait)", n)
	}
}

// TestEligibleRemembersUnknownUsers: users.info's user_not_found is cached
// like a user found, for the same time.
func TestEligibleRemembersUnknownUsers(t *testing.T) {
	a, srv, clock, _ := newTestApprovers(t, []string{"UNONE"}, nil)
	for i, want := range []int{1, 1, 2} {
		if i == 2 {
			clock.Advance(time.Minute)
		}
		ok, reason, err := a.Eligible(context.Background(), "UNONE")
		if ok || err != nil || !strings.Contains(reason, "not found") {
			t.Fatalf("check %d: Eligible(UNONE) = %v %q %v; want refused as not found", i+1, ok, reason, err)
		}
		if n := len(srv.Calls("users.info")); n != want {
			t.Errorf("check %d: users.info called %d times in all; want %d", i+1, n, want)
		}
	}
}
