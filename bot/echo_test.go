package bot

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/slack-go/slack"

	"github.com/ssobot/ssobot/bot/slacktest"
)

// The echoed message is blanked in the answers of chat.postMessage and
// chat.update, and nothing else is touched: other fields, other methods,
// errors, and answers too large to hold.
func TestWithoutEchoes(t *testing.T) {
	echo := `{"ok":true,"channel":"C1","ts":"1.2","message":{"type":"message","text":"hi \"x\" }","blocks":[{"type":"section","text":{"type":"mrkdwn","text":"{\"message\":1}"}}]},"warning":"w"}`
	big := `{"ok":true,"channel":"C1","ts":"1.2","message":{"text":"` + strings.Repeat("a", maxEchoedAnswer) + `"}}`
	for _, tc := range []struct {
		name   string
		method string
		status int
		body   string
		want   string // "" for unchanged
	}{
		{"postMessage", "chat.postMessage", 200, echo, `{"ok":true,"channel":"C1","ts":"1.2","message":null,"warning":"w"}`},
		{"update", "chat.update", 200, echo, `{"ok":true,"channel":"C1","ts":"1.2","message":null,"warning":"w"}`},
		{"spaced", "chat.update", 200, "{ \"ok\" : true ,\n \"message\" : {\"ts\":\"1\"} , \"ts\":\"1\" }", "{ \"ok\" : true ,\n \"message\" : null , \"ts\":\"1\" }"},
		{"other method", "users.info", 200, echo, ""},
		{"error answer", "chat.update", 200, `{"ok":false,"error":"message_not_found"}`, ""},
		{"message not an object", "chat.postMessage", 200, `{"ok":true,"message":"x"}`, ""},
		{"nested only", "chat.postMessage", 200, `{"ok":true,"x":{"message":{"a":1}}}`, ""},
		{"not JSON", "chat.postMessage", 200, `<html>`, ""},
		{"server error", "chat.postMessage", 500, echo, ""},
		{"too large to hold", "chat.postMessage", 200, big, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Content-Length", strconv.Itoa(len(tc.body)))
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			defer srv.Close()
			client := &http.Client{Transport: WithoutEchoes(http.DefaultTransport)}
			resp, err := client.Post(srv.URL+"/api/"+tc.method, "application/x-www-form-urlencoded", strings.NewReader("token=x"))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.want
			if want == "" {
				want = tc.body
			}
			if string(got) != want {
				t.Errorf("answer\n%.200s\nwant\n%.200s", got, want)
			}
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if resp.ContentLength != -1 && resp.ContentLength != int64(len(got)) {
				t.Errorf("ContentLength %d for %d bytes", resp.ContentLength, len(got))
			}
			if cl := resp.Header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(got)) {
				t.Errorf("Content-Length header %s for %d bytes", cl, len(got))
			}
		})
	}
}

// slack-go's calls work through the transport against the fake: the ts
// comes back, and Slack keeps the message as posted.
func TestWithoutEchoesWithSlackGo(t *testing.T) {
	srv := slacktest.NewServer()
	defer srv.Close()
	srv.AddChannel("C1", "platform", true)
	api := slack.New(srv.BotToken(), slack.OptionAPIURL(srv.APIURL()),
		slack.OptionHTTPClient(&http.Client{Transport: WithoutEchoes(http.DefaultTransport)}))
	blocks := slack.MsgOptionBlocks(slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, "*run 1*", false, false), nil, nil))
	ch, ts, err := api.PostMessageContext(t.Context(), "C1", slack.MsgOptionText("run 1", false), blocks)
	if err != nil || ch != "C1" || ts == "" {
		t.Fatalf("PostMessage = %q, %q, %v", ch, ts, err)
	}
	updated := slack.MsgOptionBlocks(slack.NewSectionBlock(slack.NewTextBlockObject(slack.MarkdownType, "*run 1* done", false, false), nil, nil))
	ch2, ts2, text, err := api.UpdateMessageContext(t.Context(), "C1", ts, slack.MsgOptionText("run 1 done", false), updated)
	if err != nil || ch2 != "C1" || ts2 != ts || text != "run 1 done" {
		t.Fatalf("UpdateMessage = %q, %q, %q, %v", ch2, ts2, text, err)
	}
	m, ok := srv.Message("C1", ts)
	if !ok {
		t.Fatal("the message is not stored")
	}
	var got []map[string]any
	if err := json.Unmarshal(m.BlocksJSON, &got); err != nil {
		t.Fatal(err)
	}
	want := []map[string]any{{"type": "section", "text": map[string]any{"type": "mrkdwn", "text": "*run 1* done"}}}
	if !reflect.DeepEqual(got, want) || m.Text != "run 1 done" {
		t.Errorf("stored %q %v, want %q %v", m.Text, got, "run 1 done", want)
	}
}
