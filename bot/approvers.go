package bot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/slack-go/slack"

	"github.com/ssobot/ssobot/workflow"
)

// approvers decides eligibility from the configured user and group IDs and
// from Slack: group members come from usergroups.users.list, and users.info
// rules out deleted users and bots. Both are cached for ttl, and so is
// users.info's user_not_found.
type approvers struct {
	client *slack.Client
	users  []string
	groups []string
	ttl    time.Duration
	clock  workflow.Clock
	log    *slog.Logger

	mu          sync.Mutex
	groupCache  map[string]cached[map[string]bool]
	userCache   map[string]cached[userLookup]
	usersPaused time.Time // users.info answered 429: no call before then
	planWarned  bool
	fetchGroups sync.Mutex // one fetch of a group at a time; lookups wait for it
}

type cached[T any] struct {
	v       T
	expires time.Time
}

// userLookup is users.info's answer: the user, or user_not_found.
type userLookup struct {
	u   slack.User
	err error
}

func newApprovers(c *slack.Client, users, groups []string, ttl time.Duration, clock workflow.Clock, log *slog.Logger) *approvers {
	return &approvers{
		client:     c,
		users:      slices.Clone(users),
		groups:     slices.Clone(groups),
		ttl:        ttl,
		clock:      clock,
		log:        log,
		groupCache: map[string]cached[map[string]bool]{},
		userCache:  map[string]cached[userLookup]{},
	}
}

// Slack error codes the bot acts on.
const (
	errCodePlanUpgrade     = "plan_upgrade_required"
	errCodeUserNotFound    = "user_not_found"
	errCodeNotInChannel    = "not_in_channel"
	errCodeChannelNotFound = "channel_not_found"
	errCodeIsArchived      = "is_archived"
	errCodeMessageNotFound = "message_not_found"
)

// slackCode is the error code of a Slack API error response, or "".
func slackCode(err error) string {
	var e slack.SlackErrorResponse
	if errors.As(err, &e) {
		return e.Err
	}
	var pe *slack.SlackErrorResponse
	if errors.As(err, &pe) && pe != nil {
		return pe.Err
	}
	return ""
}

// Eligible implements workflow.Approvers.
func (a *approvers) Eligible(ctx context.Context, user string) (bool, string, error) {
	if user == "" {
		return false, "no Slack user given", nil
	}
	member, err := a.isMember(ctx, user)
	if err != nil {
		return false, "", err
	}
	if !member {
		return false, a.notApprover(), nil
	}
	u, err := a.userInfo(ctx, user)
	if slackCode(err) == errCodeUserNotFound {
		return false, "your Slack account was not found, so it cannot approve", nil
	}
	if err != nil {
		return false, "", fmt.Errorf("look up user %s: %w", user, err)
	}
	switch {
	case u.Deleted:
		return false, "deactivated Slack accounts cannot approve", nil
	case u.IsBot || u.IsAppUser || u.IsWorkflowBot:
		return false, "bots cannot approve", nil
	case u.IsRestricted || u.IsUltraRestricted:
		// An approver listed by ID whose account became a guest's (an
		// employee turned contractor) no longer changes the identity setup.
		return false, "guest accounts cannot approve", nil
	}
	return true, "", nil
}

func (a *approvers) isMember(ctx context.Context, user string) (bool, error) {
	if slices.Contains(a.users, user) {
		return true, nil
	}
	var firstErr error
	for _, g := range a.groups {
		members, err := a.groupMembers(ctx, g)
		if err != nil {
			firstErr = cmpErr(firstErr, err)
			continue
		}
		if members[user] {
			return true, nil
		}
	}
	// An unreadable group might have held the user: say so rather than refuse.
	if firstErr != nil {
		return false, firstErr
	}
	return false, nil
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func (a *approvers) groupMembers(ctx context.Context, group string) (map[string]bool, error) {
	if m, ok := a.cachedGroup(group); ok {
		return m, nil
	}
	a.fetchGroups.Lock()
	defer a.fetchGroups.Unlock()
	if m, ok := a.cachedGroup(group); ok { // fetched while we waited
		return m, nil
	}
	var ids []string
	err := retryRateLimited(ctx, a.clock, eligibilityAttempts, maxEligibilityWait, func() (err error) {
		ids, err = a.client.GetUserGroupMembersContext(ctx, group)
		return err
	})
	members := map[string]bool{}
	switch {
	case slackCode(err) == errCodePlanUpgrade:
		// Free workspaces have no user groups: explicit user IDs keep working.
		a.mu.Lock()
		warn := !a.planWarned
		a.planWarned = true
		a.mu.Unlock()
		if warn {
			a.log.Warn("user groups are not available on this Slack plan; only explicit approver user IDs are eligible", slog.String("group", group))
		}
	case err != nil:
		return nil, fmt.Errorf("list members of user group %s: %w", group, err)
	default:
		for _, id := range ids {
			members[id] = true
		}
	}
	a.mu.Lock()
	a.groupCache[group] = cached[map[string]bool]{v: members, expires: a.clock.Now().Add(a.ttl)}
	a.mu.Unlock()
	return members, nil
}

func (a *approvers) cachedGroup(group string) (map[string]bool, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	c, ok := a.groupCache[group]
	if !ok || !a.clock.Now().Before(c.expires) {
		return nil, false
	}
	return c.v, true
}

func (a *approvers) userInfo(ctx context.Context, user string) (slack.User, error) {
	return a.lookUp(ctx, user, eligibilityAttempts)
}

// lookUp is users.info through the cache, in attempts calls at most (see
// retryRateLimited). A found user and a user_not_found are cached; other
// failures are not. After a 429 no lookup calls Slack before its
// Retry-After has passed: each one meets the rate limit at once instead,
// and waits it out or gives up as retryRateLimited decides.
func (a *approvers) lookUp(ctx context.Context, user string, attempts int) (slack.User, error) {
	a.mu.Lock()
	c, ok := a.userCache[user]
	a.mu.Unlock()
	if ok && a.clock.Now().Before(c.expires) {
		return c.v.u, c.v.err
	}
	var u *slack.User
	err := retryRateLimited(ctx, a.clock, attempts, maxEligibilityWait, func() (err error) {
		a.mu.Lock()
		wait := a.usersPaused.Sub(a.clock.Now())
		a.mu.Unlock()
		if wait > 0 {
			return &slack.RateLimitedError{RetryAfter: wait}
		}
		u, err = a.client.GetUserInfoContext(ctx, user)
		if rl := (*slack.RateLimitedError)(nil); errors.As(err, &rl) {
			a.mu.Lock()
			// Concurrent lookups may meet the limit at once: the latest end holds.
			if until := a.clock.Now().Add(rl.RetryAfter); until.After(a.usersPaused) {
				a.usersPaused = until
			}
			a.mu.Unlock()
		}
		return err
	})
	var found userLookup
	switch {
	case slackCode(err) == errCodeUserNotFound:
		found.err = err
	case err != nil:
		return slack.User{}, err
	default:
		found.u = *u
	}
	a.mu.Lock()
	a.userCache[user] = cached[userLookup]{v: found, expires: a.clock.Now().Add(a.ttl)}
	a.mu.Unlock()
	return found.u, found.err
}

// names looks users up (users.info, through the cache eligibility uses)
// all at once, one attempt each (a rate limit is not waited out: the name
// is only shown), and returns those named before ctx ends, with the first
// error: a lookup that failed or did not finish in time leaves its user
// out (those still running end with ctx).
func (a *approvers) names(ctx context.Context, users []string) (names, error) {
	type found struct {
		user string
		u    slack.User
		err  error
	}
	results := make(chan found, len(users)) // buffered: a lookup cut off never blocks
	for _, user := range users {
		go func() {
			u, err := a.lookUp(ctx, user, 1)
			results <- found{user, u, err}
		}()
	}
	out := names{}
	var firstErr error
	for left := len(users); left > 0; left-- {
		select {
		case f := <-results:
			if f.err != nil {
				firstErr = cmpErr(firstErr, fmt.Errorf("look up user %s: %w", f.user, f.err))
			} else if name := displayName(f.u); name != "" {
				out[f.user] = name
			}
		case <-ctx.Done():
			return out, cmpErr(firstErr, fmt.Errorf("look up %d user(s): %w", left, ctx.Err()))
		}
	}
	return out, firstErr
}

// An eligibility check waits out Slack's rate limits (usergroups.users.list
// is Tier 2, 20 calls a minute) so that a click does not fail for a short
// burst: twice at most, and a Retry-After of up to maxEligibilityWait;
// beyond it the person is asked to try again.
const (
	eligibilityAttempts = 3
	maxEligibilityWait  = 10 * time.Second
)

// notApprover tells a person whom to ask instead.
func (a *approvers) notApprover() string {
	var who []string
	for _, u := range a.users {
		who = append(who, mention(u))
	}
	for _, g := range a.groups {
		if slackGroupID.MatchString(g) {
			who = append(who, "a member of <!subteam^"+g+">")
		}
	}
	if len(who) == 0 {
		return "no approvers are configured; ask an administrator of ssobot"
	}
	return "you are not an approver: ask " + joinOr(who)
}

func joinOr(items []string) string {
	if len(items) == 1 {
		return items[0]
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}
