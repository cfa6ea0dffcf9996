package slacktest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/ssobot/ssobot/bot/slacktest"
)

// newServer starts a fake with one channel the bot is in (C1), one it is not
// in (C2) and two people.
func newServer(t *testing.T, opts ...slacktest.Option) (*slacktest.Server, *slack.Client) {
	t.Helper()
	srv := slacktest.NewServer(opts...)
	t.Cleanup(srv.Close)
	srv.AddChannel("C1", "sso", true)
	srv.AddChannel("C2", "random", false)
	srv.AddUser(slacktest.User{ID: "U1", Name: "alice", RealName: "Alice A", Email: "alice@example.com", IsAdmin: true})
	srv.AddUser(slacktest.User{ID: "U2", Name: "bob", RealName: "Bob B"})
	return srv, slack.New(srv.BotToken(), slack.OptionAPIURL(srv.APIURL()))
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func slackErr(err error) string {
	var e slack.SlackErrorResponse
	if errors.As(err, &e) {
		return e.Err
	}
	if err != nil {
		return "other: " + err.Error()
	}
	return ""
}

func section(text string) slack.Block {
	return slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, text, false, false), nil, nil)
}

func TestAPIURLHasTrailingSlash(t *testing.T) {
	srv, _ := newServer(t)
	if !strings.HasSuffix(srv.APIURL(), "/api/") || !strings.HasPrefix(srv.APIURL(), srv.URL()) {
		t.Fatalf("APIURL = %q, URL = %q", srv.APIURL(), srv.URL())
	}
}

func TestAuthTokens(t *testing.T) {
	srv, _ := newServer(t)
	tests := []struct {
		name  string
		token string
		want  string
	}{
		{"bot token", srv.BotToken(), ""},
		{"unknown token", "xoxb-wrong", "invalid_auth"},
		{"app token on bot method", srv.AppToken(), "not_allowed_token_type"},
		{"no token", "", "not_authed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := slack.New(tt.token, slack.OptionAPIURL(srv.APIURL()))
			resp, err := api.AuthTestContext(testCtx(t))
			if got := slackErr(err); got != tt.want {
				t.Fatalf("error = %q, want %q", got, tt.want)
			}
			if tt.want == "" && (resp.UserID != srv.BotUserID() || resp.TeamID != srv.TeamID()) {
				t.Fatalf("auth.test = %+v", resp)
			}
		})
	}
}

func TestPostReplyAndThread(t *testing.T) {
	srv, api := newServer(t)
	ctx := testCtx(t)

	ch, root, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("run #1 pending", false),
		slack.MsgOptionBlocks(section("*Grafana* awaiting approval")))
	if err != nil || ch != "C1" {
		t.Fatalf("post root: ch=%q err=%v", ch, err)
	}
	_, r1, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("preflight ok", false), slack.MsgOptionTS(root))
	if err != nil {
		t.Fatalf("reply 1: %v", err)
	}
	// A reply to a reply files under the root, as in Slack.
	_, r2, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("done", false), slack.MsgOptionTS(r1), slack.MsgOptionBroadcast())
	if err != nil {
		t.Fatalf("reply 2: %v", err)
	}
	if !(root < r1 && r1 < r2) {
		t.Fatalf("timestamps not increasing: %s %s %s", root, r1, r2)
	}

	thread := srv.Thread("C1", root)
	if len(thread) != 3 || thread[0].TS != root || thread[1].TS != r1 || thread[2].TS != r2 {
		t.Fatalf("thread = %+v", thread)
	}
	if thread[1].ThreadTS != root || thread[2].ThreadTS != root || !thread[2].ReplyBroadcast || thread[1].ReplyBroadcast {
		t.Fatalf("replies = %+v", thread[1:])
	}
	m, ok := srv.Message("C1", root)
	if !ok || m.Text != "run #1 pending" || len(m.Blocks) != 1 || !strings.Contains(m.PlainText(), "*Grafana* awaiting approval") {
		t.Fatalf("root = %+v ok=%v", m, ok)
	}
	if got := len(srv.Messages("C1")); got != 3 {
		t.Fatalf("Messages = %d, want 3", got)
	}
	calls := srv.Calls("chat.postMessage")
	if len(calls) != 3 || calls[2].Param("reply_broadcast") != "true" || calls[1].Param("thread_ts") != root {
		t.Fatalf("calls = %v", calls)
	}
}

func TestPostErrors(t *testing.T) {
	srv, api := newServer(t)
	_, root, err := api.PostMessage("C1", slack.MsgOptionText("root", false))
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 3001)
	tests := []struct {
		name    string
		channel string
		opts    []slack.MsgOption
		want    string
	}{
		{"not in channel", "C2", []slack.MsgOption{slack.MsgOptionText("hi", false)}, "not_in_channel"},
		{"unknown channel", "C404", []slack.MsgOption{slack.MsgOptionText("hi", false)}, "channel_not_found"},
		{"no text", "C1", nil, "no_text"},
		{"empty blocks and no text", "C1", []slack.MsgOption{slack.MsgOptionBlocks()}, "no_text"},
		{"text too long", "C1", []slack.MsgOption{slack.MsgOptionText(strings.Repeat("a", 40001), false)}, "msg_too_long"},
		{"section text too long", "C1", []slack.MsgOption{slack.MsgOptionBlocks(section(long))}, "invalid_blocks"},
		{"too many blocks", "C1", []slack.MsgOption{slack.MsgOptionBlocks(manySections(51)...)}, "invalid_blocks"},
		{"button label too long", "C1", []slack.MsgOption{slack.MsgOptionBlocks(slack.NewActionBlock("a",
			slack.NewButtonBlockElement("approve", "v", slack.NewTextBlockObject(slack.PlainTextType, strings.Repeat("b", 76), false, false))))}, "invalid_blocks"},
		{"unknown thread", "C1", []slack.MsgOption{slack.MsgOptionText("hi", false), slack.MsgOptionTS("1.000000")}, "thread_not_found"},
		{"limits are inclusive", "C1", []slack.MsgOption{slack.MsgOptionText(strings.Repeat("a", 40000), false),
			slack.MsgOptionBlocks(section(long[:3000])), slack.MsgOptionTS(root)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := api.PostMessageContext(testCtx(t), tt.channel, tt.opts...)
			if got := slackErr(err); got != tt.want {
				t.Fatalf("error = %q, want %q", got, tt.want)
			}
		})
	}
	if got := len(srv.Messages("C1")); got != 2 {
		t.Fatalf("failed posts changed state: %d messages, want 2", got)
	}
}

func manySections(n int) []slack.Block {
	out := make([]slack.Block, n)
	for i := range out {
		out[i] = section(fmt.Sprintf("s%d", i))
	}
	return out
}

func TestInvalidBlocksDetail(t *testing.T) {
	_, api := newServer(t)
	_, _, err := api.PostMessage("C1", slack.MsgOptionBlocks(section(strings.Repeat("x", 3001))))
	var e slack.SlackErrorResponse
	if !errors.As(err, &e) || e.Err != "invalid_blocks" || len(e.ResponseMetadata.Messages) == 0 ||
		!strings.Contains(e.ResponseMetadata.Messages[0], "/blocks/0/text") {
		t.Fatalf("err = %#v", err)
	}
}

func TestPostToUserOpensDM(t *testing.T) {
	srv, api := newServer(t)
	ch, ts, err := api.PostMessage("U2", slack.MsgOptionText("your run succeeded", false))
	if err != nil {
		t.Fatal(err)
	}
	if ch != slacktest.DMChannel("U2") {
		t.Fatalf("channel = %q", ch)
	}
	if m, ok := srv.Message(ch, ts); !ok || m.Text != "your run succeeded" {
		t.Fatalf("DM = %+v %v", m, ok)
	}
}

func TestUpdate(t *testing.T) {
	srv, api := newServer(t)
	ctx := testCtx(t)
	_, ts, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("pending", false),
		slack.MsgOptionBlocks(section("pending"), slack.NewActionBlock("gate",
			slack.NewButtonBlockElement("approve", "run-1", slack.NewTextBlockObject(slack.PlainTextType, "Approve", false, false)))))
	if err != nil {
		t.Fatal(err)
	}

	_, _, _, err = api.UpdateMessageContext(ctx, "C1", ts, slack.MsgOptionText("approved", false), slack.MsgOptionBlocks(section("approved by <@U1>")))
	if err != nil {
		t.Fatalf("update: %v", err)
	}
	m, _ := srv.Message("C1", ts)
	if m.Text != "approved" || m.Updates != 1 || len(m.Buttons()) != 0 || !strings.Contains(m.PlainText(), "approved by <@U1>") {
		t.Fatalf("after update: %+v", m)
	}

	// Text only keeps the blocks, as Slack does when blocks are absent.
	if _, _, _, err := api.UpdateMessageContext(ctx, "C1", ts, slack.MsgOptionText("approved!", false)); err != nil {
		t.Fatal(err)
	}
	m, _ = srv.Message("C1", ts)
	if m.Text != "approved!" || len(m.Blocks) != 1 || m.Updates != 2 {
		t.Fatalf("after text update: %+v", m)
	}

	tests := []struct {
		name, channel, ts, want string
	}{
		{"unknown ts", "C1", "1.000000", "message_not_found"},
		{"unknown channel", "C404", ts, "channel_not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, _, err := api.UpdateMessageContext(ctx, tt.channel, tt.ts, slack.MsgOptionText("x", false))
			if got := slackErr(err); got != tt.want {
				t.Fatalf("error = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDeleteMessageThenUpdate(t *testing.T) {
	srv, api := newServer(t)
	_, ts, err := api.PostMessage("C1", slack.MsgOptionText("root", false))
	if err != nil {
		t.Fatal(err)
	}
	srv.DeleteMessage("C1", ts)

	_, _, _, err = api.UpdateMessage("C1", ts, slack.MsgOptionText("edit", false))
	if got := slackErr(err); got != "message_not_found" {
		t.Fatalf("update after delete: %q", got)
	}
	if _, ok := srv.Message("C1", ts); ok {
		t.Fatal("deleted message still visible")
	}
	// Slack keeps a tombstone: the thread stays usable.
	if _, _, err := api.PostMessage("C1", slack.MsgOptionText("reply", false), slack.MsgOptionTS(ts)); err != nil {
		t.Fatalf("reply under deleted root: %v", err)
	}
}

func TestChatDelete(t *testing.T) {
	srv, api := newServer(t)
	_, ts, err := api.PostMessage("C1", slack.MsgOptionText("root", false))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := api.DeleteMessage("C1", ts); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if len(srv.Messages("C1")) != 0 {
		t.Fatal("message not deleted")
	}
	if _, _, err := api.DeleteMessage("C1", ts); slackErr(err) != "message_not_found" {
		t.Fatalf("second delete: %v", err)
	}
}

func TestEphemeral(t *testing.T) {
	srv, api := newServer(t)
	ctx := testCtx(t)
	ts, err := api.PostEphemeralContext(ctx, "C1", "U2", slack.MsgOptionText("already decided by <@U1>", false))
	if err != nil {
		t.Fatalf("ephemeral: %v", err)
	}
	m, ok := srv.Message("C1", ts)
	if !ok || !m.Ephemeral || m.User != "U2" || m.Text != "already decided by <@U1>" {
		t.Fatalf("ephemeral = %+v", m)
	}
	if _, err := api.PostEphemeralContext(ctx, "C1", "U404", slack.MsgOptionText("x", false)); slackErr(err) != "user_not_in_channel" {
		t.Fatalf("unknown user: %v", err)
	}
	if _, err := api.PostEphemeralContext(ctx, "C2", "U2", slack.MsgOptionText("x", false)); slackErr(err) != "not_in_channel" {
		t.Fatalf("channel without bot: %v", err)
	}
	// Ephemerals cannot be edited with chat.update.
	if _, _, _, err := api.UpdateMessageContext(ctx, "C1", ts, slack.MsgOptionText("x", false)); slackErr(err) != "message_not_found" {
		t.Fatalf("update ephemeral: %v", err)
	}
}

func modalRequest(title string) slack.ModalViewRequest {
	return slack.ModalViewRequest{
		Type:       slack.VTModal,
		Title:      slack.NewTextBlockObject(slack.PlainTextType, title, false, false),
		Submit:     slack.NewTextBlockObject(slack.PlainTextType, "Start", false, false),
		CallbackID: "sso_new",
		Blocks: slack.Blocks{BlockSet: []slack.Block{
			slack.NewInputBlock("name", slack.NewTextBlockObject(slack.PlainTextType, "Application name", false, false), nil,
				slack.NewPlainTextInputBlockElement(nil, "name_input")),
		}},
	}
}

// newClockedServer is newServer on a clock the test moves with advance.
func newClockedServer(t *testing.T) (srv *slacktest.Server, api *slack.Client, advance func(time.Duration)) {
	t.Helper()
	now := time.Unix(1_700_000_000, 0)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance = func(d time.Duration) { mu.Lock(); defer mu.Unlock(); now = now.Add(d) }
	srv, api = newServer(t, slacktest.WithClock(clock))
	return srv, api, advance
}

func TestViews(t *testing.T) {
	srv, api, advance := newClockedServer(t)
	ctx := testCtx(t)

	trig := srv.NewTriggerID()
	resp, err := api.OpenViewContext(ctx, trig, modalRequest("New SSO app"))
	if err != nil {
		t.Fatalf("views.open: %v", err)
	}
	if resp.View.ID == "" || resp.View.Hash == "" || resp.View.CallbackID != "sso_new" {
		t.Fatalf("view = %+v", resp.View)
	}
	v, ok := srv.View(resp.View.ID)
	if !ok || v.Title != "New SSO app" || v.TriggerID != trig || len(v.Blocks()) != 1 {
		t.Fatalf("stored view = %+v", v)
	}

	// The trigger is single use.
	if _, err := api.OpenViewContext(ctx, trig, modalRequest("again")); slackErr(err) != "exchanged_trigger_id" {
		t.Fatalf("reused trigger: %v", err)
	}
	// And lasts 3 seconds.
	old := srv.NewTriggerID()
	advance(4 * time.Second)
	if _, err := api.OpenViewContext(ctx, old, modalRequest("late")); slackErr(err) != "expired_trigger_id" {
		t.Fatalf("expired trigger: %v", err)
	}
	// One the fake did not issue is taken once, also when it starts like
	// one it did.
	next := srv.NewTriggerID()
	first, _, _ := strings.Cut(next, ".")
	for _, foreign := range []string{"12345.98765.abcdef", first + ".1.0"} {
		if _, err := api.OpenViewContext(ctx, foreign, modalRequest("foreign")); err != nil {
			t.Fatalf("foreign trigger %s: %v", foreign, err)
		}
		if _, err := api.OpenViewContext(ctx, foreign, modalRequest("foreign")); slackErr(err) != "exchanged_trigger_id" {
			t.Fatalf("foreign trigger %s again: %v", foreign, err)
		}
	}
	if _, err := api.OpenViewContext(ctx, next, modalRequest("issued")); err != nil {
		t.Fatalf("issued trigger after the foreign ones: %v", err)
	}
	if _, err := api.OpenViewContext(ctx, srv.NewTriggerID(), modalRequest("a title longer than 24 chars")); slackErr(err) != "invalid_arguments" {
		t.Fatalf("long title: %v", err)
	}

	up, err := api.UpdateViewContext(ctx, modalRequest("Updated"), "", resp.View.Hash, resp.View.ID)
	if err != nil {
		t.Fatalf("views.update: %v", err)
	}
	if up.View.Hash == resp.View.Hash {
		t.Fatal("hash did not change on update")
	}
	if _, err := api.UpdateViewContext(ctx, modalRequest("Stale"), "", resp.View.Hash, resp.View.ID); slackErr(err) != "hash_conflict" {
		t.Fatalf("stale hash: %v", err)
	}
	if _, err := api.UpdateViewContext(ctx, modalRequest("x"), "", "", "V404"); slackErr(err) != "not_found" {
		t.Fatalf("unknown view: %v", err)
	}
	if v, _ := srv.View(resp.View.ID); v.Title != "Updated" || v.Updates != 1 {
		t.Fatalf("after update: %+v", v)
	}
	if n := len(srv.Views()); n != 4 {
		t.Fatalf("Views = %d", n)
	}
}

// slack-go refuses an empty trigger_id before sending, so this goes raw.
func TestViewsOpenEmptyTrigger(t *testing.T) {
	srv, _ := newServer(t)
	body := `{"trigger_id":"","view":{"type":"modal","title":{"type":"plain_text","text":"x"},"blocks":[]}}`
	req, err := http.NewRequestWithContext(testCtx(t), http.MethodPost, srv.APIURL()+"views.open", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+srv.BotToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.OK || got.Error != "invalid_trigger_id" {
		t.Fatalf("got %+v", got)
	}
	calls := srv.Calls("views.open")
	if len(calls) != 1 || calls[0].JSON == nil || calls[0].Token != srv.BotToken() {
		t.Fatalf("calls = %v", calls)
	}
}

func TestUsersInfo(t *testing.T) {
	srv, api := newServer(t)
	srv.AddUser(slacktest.User{ID: "U3", Name: "carol", Deleted: true})
	tests := []struct {
		id          string
		wantErr     string
		wantBot     bool
		wantDeleted bool
	}{
		{id: "U1"},
		{id: srv.BotUserID(), wantBot: true},
		{id: "U3", wantDeleted: true},
		{id: "U404", wantErr: "user_not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			u, err := api.GetUserInfoContext(testCtx(t), tt.id)
			if got := slackErr(err); got != tt.wantErr {
				t.Fatalf("error = %q, want %q", got, tt.wantErr)
			}
			if err != nil {
				return
			}
			if u.ID != tt.id || u.IsBot != tt.wantBot || u.Deleted != tt.wantDeleted {
				t.Fatalf("user = %+v", u)
			}
		})
	}
	u, _ := api.GetUserInfo("U1")
	if u.Profile.Email != "alice@example.com" || !u.IsAdmin || u.RealName != "Alice A" {
		t.Fatalf("U1 = %+v", u)
	}
}

func TestUserGroups(t *testing.T) {
	srv, api := newServer(t)
	srv.AddUserGroup("S1", "U1", "U2")
	ctx := testCtx(t)

	got, err := api.GetUserGroupMembersContext(ctx, "S1")
	if err != nil || strings.Join(got, ",") != "U1,U2" {
		t.Fatalf("members = %v, %v", got, err)
	}
	if _, err := api.GetUserGroupMembersContext(ctx, "S404"); slackErr(err) != "no_such_subteam" {
		t.Fatalf("unknown group: %v", err)
	}
	srv.SetUserGroupsUnavailable(true)
	if _, err := api.GetUserGroupMembersContext(ctx, "S1"); slackErr(err) != "plan_upgrade_required" {
		t.Fatalf("free plan: %v", err)
	}
}

func TestConversationsInfo(t *testing.T) {
	_, api := newServer(t)
	ch, err := api.GetConversationInfo(&slack.GetConversationInfoInput{ChannelID: "C2"})
	if err != nil || ch.Name != "random" || ch.IsMember {
		t.Fatalf("C2 = %+v, %v", ch, err)
	}
	if _, err := api.GetConversationInfo(&slack.GetConversationInfoInput{ChannelID: "C404"}); slackErr(err) != "channel_not_found" {
		t.Fatalf("unknown channel: %v", err)
	}
}

func TestFailNext(t *testing.T) {
	srv, api := newServer(t)
	srv.FailNext("chat.postMessage", 2, "fatal_error")
	for i := range 2 {
		if _, _, err := api.PostMessage("C1", slack.MsgOptionText("x", false)); slackErr(err) != "fatal_error" {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if _, _, err := api.PostMessage("C1", slack.MsgOptionText("x", false)); err != nil {
		t.Fatalf("third call: %v", err)
	}
	if n := len(srv.Messages("C1")); n != 1 {
		t.Fatalf("failed calls changed state: %d messages", n)
	}
	calls := srv.Calls("chat.postMessage")
	if len(calls) != 3 || calls[0].Error != "fatal_error" || calls[2].Error != "" {
		t.Fatalf("calls = %v", calls)
	}
}

func TestRateLimitNext(t *testing.T) {
	srv, api := newServer(t)
	srv.RateLimitNext("chat.update", 1, 7)
	_, ts, err := api.PostMessage("C1", slack.MsgOptionText("x", false))
	if err != nil {
		t.Fatal(err)
	}
	_, _, _, err = api.UpdateMessage("C1", ts, slack.MsgOptionText("y", false))
	var rl *slack.RateLimitedError
	if !errors.As(err, &rl) || rl.RetryAfter != 7*time.Second {
		t.Fatalf("err = %#v, want *slack.RateLimitedError(7s)", err)
	}
	if _, _, _, err := api.UpdateMessage("C1", ts, slack.MsgOptionText("y", false)); err != nil {
		t.Fatalf("after the limit: %v", err)
	}
	if c := srv.Calls("chat.update"); len(c) != 2 || c[0].Status != http.StatusTooManyRequests {
		t.Fatalf("calls = %v", c)
	}
}

func TestFailNextStatus(t *testing.T) {
	srv, api := newServer(t)
	_, ts, err := api.PostMessage("C1", slack.MsgOptionText("x", false))
	if err != nil {
		t.Fatal(err)
	}
	srv.FailNextStatus("chat.update", 1, http.StatusServiceUnavailable)
	_, _, _, err = api.UpdateMessage("C1", ts, slack.MsgOptionText("y", false))
	var sc slack.StatusCodeError
	if !errors.As(err, &sc) || sc.Code != http.StatusServiceUnavailable {
		t.Fatalf("err = %#v, want slack.StatusCodeError(503)", err)
	}
	if m, _ := srv.Message("C1", ts); m.Text != "x" {
		t.Fatalf("the failed update changed the message to %q", m.Text)
	}
	if _, _, _, err := api.UpdateMessage("C1", ts, slack.MsgOptionText("y", false)); err != nil {
		t.Fatalf("after the outage: %v", err)
	}
	c := srv.Calls("chat.update")
	if len(c) != 2 || c[0].Status != http.StatusServiceUnavailable || c[0].Error != "service_unavailable" || c[1].Status != http.StatusOK {
		t.Fatalf("calls = %v", c)
	}
}

// PassNext lets calls through ahead of the faults queued after it, so a
// fault can be aimed at a later call.
func TestPassNext(t *testing.T) {
	srv, api := newServer(t)
	srv.PassNext("chat.postMessage", 2)
	srv.FailNext("chat.postMessage", 1, "internal_error")
	var errs []string
	for range 4 {
		_, _, err := api.PostMessage("C1", slack.MsgOptionText("x", false))
		errs = append(errs, slackErr(err))
	}
	if got := strings.Join(errs, ","); got != ",,internal_error," {
		t.Fatalf("errors %q; want the third call failed only", got)
	}
	if n := len(srv.Messages("C1")); n != 3 {
		t.Fatalf("%d messages; want the 3 calls let through", n)
	}
}

func TestUnknownMethod(t *testing.T) {
	srv, api := newServer(t)
	_, err := api.GetBotInfo(slack.GetBotInfoParameters{Bot: "B1"})
	if slackErr(err) != "unknown_method" {
		t.Fatalf("err = %v", err)
	}
	if c := srv.Calls("bots.info"); len(c) != 1 || c[0].Error != "unknown_method" {
		t.Fatalf("calls = %v", c)
	}
}

func TestResponseURL(t *testing.T) {
	srv, api := newServer(t)
	ctx := testCtx(t)

	t.Run("recorded", func(t *testing.T) {
		u := srv.NewResponseURL()
		_, _, err := api.PostMessageContext(ctx, "", slack.MsgOptionResponseURL(u, slack.ResponseTypeEphemeral),
			slack.MsgOptionText("Started run #1", false))
		if err != nil {
			t.Fatalf("post: %v", err)
		}
		calls := srv.Calls(slacktest.MethodResponseURL)
		last := calls[len(calls)-1]
		if last.URL != u || last.Param("text") != "Started run #1" || last.Param("response_type") != "ephemeral" {
			t.Fatalf("call = %v", last)
		}
	})

	t.Run("ephemeral to the user", func(t *testing.T) {
		u := srv.NewResponseURLFor("C1", "", "U2")
		if _, _, err := api.PostMessageContext(ctx, "", slack.MsgOptionResponseURL(u, slack.ResponseTypeEphemeral),
			slack.MsgOptionText("not allowed", false)); err != nil {
			t.Fatal(err)
		}
		msgs := srv.Messages("C1")
		last := msgs[len(msgs)-1]
		if !last.Ephemeral || last.User != "U2" || last.Text != "not allowed" {
			t.Fatalf("last = %+v", last)
		}
	})

	t.Run("replace and delete original", func(t *testing.T) {
		_, ts, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("pending", false))
		if err != nil {
			t.Fatal(err)
		}
		u := srv.NewResponseURLFor("C1", ts, "U1")
		if _, _, err := api.PostMessageContext(ctx, "", slack.MsgOptionReplaceOriginal(u), slack.MsgOptionText("approved", false)); err != nil {
			t.Fatalf("replace: %v", err)
		}
		if m, _ := srv.Message("C1", ts); m.Text != "approved" || m.Updates != 1 {
			t.Fatalf("after replace: %+v", m)
		}
		if _, _, err := api.PostMessageContext(ctx, "", slack.MsgOptionDeleteOriginal(u)); err != nil {
			t.Fatalf("delete: %v", err)
		}
		if _, ok := srv.Message("C1", ts); ok {
			t.Fatal("original not deleted")
		}
	})

	t.Run("five uses", func(t *testing.T) {
		u := srv.NewResponseURL()
		for i := range 5 {
			if _, _, err := api.PostMessageContext(ctx, "", slack.MsgOptionResponseURL(u, ""), slack.MsgOptionText("x", false)); err != nil {
				t.Fatalf("use %d: %v", i+1, err)
			}
		}
		_, _, err := api.PostMessageContext(ctx, "", slack.MsgOptionResponseURL(u, ""), slack.MsgOptionText("x", false))
		var sc slack.StatusCodeError
		if !errors.As(err, &sc) || sc.Code != http.StatusNotFound {
			t.Fatalf("sixth use: %#v", err)
		}
		calls := srv.Calls(slacktest.MethodResponseURL)
		if calls[len(calls)-1].Error != "used_url" {
			t.Fatalf("last call = %v", calls[len(calls)-1])
		}
	})

	// URLs are numbered; only the exact number of one handed out is one.
	t.Run("not handed out", func(t *testing.T) {
		u := srv.NewResponseURL()
		base := u[:strings.LastIndex(u, "/")+1]
		last := u[len(base):]
		n, err := strconv.Atoi(last)
		if err != nil {
			t.Fatalf("response URL %s does not end in a number", u)
		}
		for _, id := range []string{"0", "-1", "+" + last, "0" + last, strconv.Itoa(n + 1), "x"} {
			_, _, err := api.PostMessageContext(ctx, "", slack.MsgOptionResponseURL(base+id, ""), slack.MsgOptionText("x", false))
			var sc slack.StatusCodeError
			if !errors.As(err, &sc) || sc.Code != http.StatusNotFound {
				t.Fatalf("%s: %#v", id, err)
			}
			calls := srv.Calls(slacktest.MethodResponseURL)
			if got := calls[len(calls)-1].Error; got != "invalid_url" {
				t.Fatalf("%s: error %q, want invalid_url", id, got)
			}
		}
		if _, _, err := api.PostMessageContext(ctx, "", slack.MsgOptionResponseURL(u, ""), slack.MsgOptionText("x", false)); err != nil {
			t.Fatalf("the URL handed out: %v", err)
		}
	})
}

func TestResponseURLExpires(t *testing.T) {
	srv, api, advance := newClockedServer(t)
	ctx := testCtx(t)

	fresh, old := srv.NewResponseURL(), srv.NewResponseURL()
	advance(29 * time.Minute)
	fresh2 := srv.NewResponseURL()
	advance(2 * time.Minute)
	for _, c := range []struct {
		url     string
		wantErr string
	}{{old, "expired_url"}, {fresh2, ""}, {fresh, "expired_url"}} {
		_, _, err := api.PostMessageContext(ctx, "", slack.MsgOptionResponseURL(c.url, ""), slack.MsgOptionText("x", false))
		calls := srv.Calls(slacktest.MethodResponseURL)
		if got := calls[len(calls)-1].Error; got != c.wantErr || (err == nil) != (c.wantErr == "") {
			t.Fatalf("%s: error %q (%v), want %q", c.url, got, err, c.wantErr)
		}
	}
}

func TestWaitForWakesOnCall(t *testing.T) {
	srv, api := newServer(t)
	ctx := testCtx(t)

	type res struct {
		calls []slacktest.Call
		err   error
	}
	got := make(chan res, 1)
	firstCheck := make(chan struct{})
	var once sync.Once
	go func() {
		calls, err := srv.WaitFor(ctx, func(cs []slacktest.Call) bool {
			once.Do(func() { close(firstCheck) })
			return len(slacktest.FilterCalls(cs, "chat.update")) > 0
		})
		got <- res{calls, err}
	}()
	// The predicate has failed once, so WaitFor can only return by being
	// woken by the calls below.
	<-firstCheck
	_, ts, err := api.PostMessage("C1", slack.MsgOptionText("a", false))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := api.UpdateMessage("C1", ts, slack.MsgOptionText("b", false)); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.err != nil || len(r.calls) != 2 || r.calls[1].Method != "chat.update" {
		t.Fatalf("WaitFor = %v, %v", r.calls, r.err)
	}
}

func TestWaitForContextDone(t *testing.T) {
	srv, _ := newServer(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := srv.WaitFor(ctx, func([]slacktest.Call) bool { return false })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
}

func TestWaitForReleasedByClose(t *testing.T) {
	srv := slacktest.NewServer()
	done := make(chan error, 1)
	go func() {
		_, err := srv.WaitFor(context.Background(), func([]slacktest.Call) bool { return false })
		done <- err
	}()
	srv.Close()
	if err := <-done; !errors.Is(err, slacktest.ErrClosed) {
		t.Fatalf("err = %v", err)
	}
}

func TestSubscribe(t *testing.T) {
	srv, api := newServer(t)
	_, _ = api.AuthTest() // before subscribing: not in the feed
	feed, stop := srv.Subscribe()
	defer stop()

	_, ts, err := api.PostMessage("C1", slack.MsgOptionText("a", false))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := api.UpdateMessage("C1", ts, slack.MsgOptionText("b", false)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"chat.postMessage", "chat.update"} {
		c := <-feed
		if c.Method != want {
			t.Fatalf("got %s, want %s", c.Method, want)
		}
	}
	stop()
	for range feed {
		// Drain until the feed closes: stop must end it.
	}
}

// TestLatency: with a latency set, a call is handled only once the timer the
// fake asked for (of that latency) has fired; without one, no timer is asked.
func TestLatency(t *testing.T) {
	asked := make(chan time.Duration, 4)
	elapse := make(chan time.Time)
	srv, api := newServer(t, slacktest.WithTimer(func(d time.Duration) <-chan time.Time {
		asked <- d
		return elapse
	}))
	const d = 30 * time.Millisecond
	srv.SetLatency(d)
	done := make(chan error, 1)
	go func() { _, err := api.AuthTest(); done <- err }()
	select {
	case got := <-asked:
		if got != d {
			t.Errorf("fake waited %v, want %v", got, d)
		}
	case err := <-done:
		t.Fatalf("answered without waiting (err %v)", err)
	}
	if n := len(srv.Calls("auth.test")); n != 0 {
		t.Errorf("%d calls handled before the latency elapsed", n)
	}
	select {
	case elapse <- time.Time{}:
	case err := <-done:
		t.Fatalf("answered before the latency elapsed (err %v)", err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	close(elapse) // from now on a wait would end at once, and show in asked
	srv.SetLatency(0)
	if _, err := api.AuthTest(); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-asked:
		t.Errorf("latency 0 still waited %v", got)
	default:
	}
	if n := len(srv.Calls("auth.test")); n != 2 {
		t.Errorf("%d calls recorded, want 2", n)
	}
}

// TestLatencyRealTimer: the default timer ends the wait (no duration is
// asserted).
func TestLatencyRealTimer(t *testing.T) {
	srv, api := newServer(t)
	srv.SetLatency(time.Millisecond)
	if _, err := api.AuthTest(); err != nil {
		t.Fatal(err)
	}
}

func TestCallNeverShowsToken(t *testing.T) {
	srv, api := newServer(t)
	if _, _, err := api.PostMessage("C1", slack.MsgOptionText("hello", false)); err != nil {
		t.Fatal(err)
	}
	c := srv.Calls("chat.postMessage")[0]
	if c.Token != srv.BotToken() {
		t.Fatalf("Token = %q", c.Token)
	}
	if c.Form.Has("token") {
		t.Fatal("token left in Form")
	}
	for _, s := range []string{c.String(), fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c)} {
		if strings.Contains(s, srv.BotToken()) {
			t.Fatalf("token printed: %s", s)
		}
	}
	if !strings.Contains(c.String(), "chat.postMessage") || !strings.Contains(c.String(), "text=hello") {
		t.Fatalf("String = %q", c.String())
	}
}

func TestClickButton(t *testing.T) {
	srv, api := newServer(t)
	_, ts, err := api.PostMessage("C1", slack.MsgOptionText("pending", false), slack.MsgOptionBlocks(
		section("Grafana needs approval"),
		slack.NewActionBlock("gate:authentik",
			slack.NewButtonBlockElement("approve", "run-1:v3", slack.NewTextBlockObject(slack.PlainTextType, "Approve", false, false)).WithStyle(slack.StylePrimary),
			slack.NewButtonBlockElement("reject", "run-1:v3", slack.NewTextBlockObject(slack.PlainTextType, "Reject", false, false)).WithStyle(slack.StyleDanger),
		)))
	if err != nil {
		t.Fatal(err)
	}
	m, _ := srv.Message("C1", ts)
	if btns := m.Buttons(); len(btns) != 2 || btns[0].ActionID != "approve" || btns[1].Style != "danger" || btns[0].Text != "Approve" {
		t.Fatalf("buttons = %+v", btns)
	}
	if want := "pending\nGrafana needs approval\nApprove\nReject"; m.PlainText() != want {
		t.Fatalf("PlainText = %q, want %q", m.PlainText(), want)
	}

	a, err := srv.ClickButton("C1", ts, "approve", "U1")
	if err != nil {
		t.Fatal(err)
	}
	if a.BlockID != "gate:authentik" || a.Value != "run-1:v3" || a.UserName != "alice" || a.ResponseURL == "" || a.TriggerID == "" {
		t.Fatalf("action = %+v", a)
	}
	if _, err := srv.ClickButton("C1", ts, "nope", "U1"); !errors.Is(err, slacktest.ErrNotFound) {
		t.Fatalf("missing button: %v", err)
	}
}

func TestPermalink(t *testing.T) {
	srv, api := newServer(t)
	_, ts, err := api.PostMessage("C1", slack.MsgOptionText("root", false))
	if err != nil {
		t.Fatal(err)
	}
	link, err := api.GetPermalink(&slack.PermalinkParameters{Channel: "C1", Ts: ts})
	want := "https://slacktest.slack.com/archives/C1/p" + strings.ReplaceAll(ts, ".", "")
	if err != nil || link != want || link != slacktest.Permalink("slacktest", "C1", ts) {
		t.Fatalf("permalink = %q, %v", link, err)
	}
	if _, err := api.GetPermalink(&slack.PermalinkParameters{Channel: "C1", Ts: "1.000000"}); slackErr(err) != "message_not_found" {
		t.Fatalf("unknown message: %v", err)
	}
	if c := srv.Calls("chat.getPermalink"); len(c) != 2 || c[0].Token != srv.BotToken() {
		t.Fatalf("calls = %v", c)
	}
}

func TestWithoutHistory(t *testing.T) {
	srv, api := newServer(t, slacktest.WithoutHistory())
	if _, err := api.AuthTest(); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.Calls()); n != 0 {
		t.Fatalf("%d calls kept with no subscriber, want 0", n)
	}
	feed, stop := srv.Subscribe()
	defer stop()
	for range 3 {
		if _, _, err := api.PostMessage("C1", slack.MsgOptionText("a", false)); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(srv.Calls()); n != 3 {
		t.Fatalf("%d calls kept for the subscriber, want 3", n)
	}
	for range 3 {
		if c := <-feed; c.Method != "chat.postMessage" {
			t.Fatalf("got %s", c.Method)
		}
	}
	// The last call is let go once it was received; the feed takes the
	// next call only after that.
	if _, err := api.AuthTest(); err != nil {
		t.Fatal(err)
	}
	if c := <-feed; c.Method != "auth.test" {
		t.Fatalf("got %s, want auth.test", c.Method)
	}
	if n := len(srv.Calls("chat.postMessage")); n != 0 {
		t.Errorf("%d delivered calls still kept, want 0", n)
	}
}
