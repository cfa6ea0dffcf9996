package slacktest_test

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/ssobot/ssobot/bot/slacktest"
)

// A bot posts a run message with buttons, a person clicks Approve (here the
// click is only built; a test would POST it to the bot, signed, or send it
// over Socket Mode), and the bot edits the message in place.
func Example() {
	srv := slacktest.NewServer()
	defer srv.Close()
	srv.AddChannel("C1", "sso", true)
	srv.AddUser(slacktest.User{ID: "U1", Name: "alice"})
	api := slack.New(srv.BotToken(), slack.OptionAPIURL(srv.APIURL()))

	approve := slack.NewButtonBlockElement("approve", "run-1", slack.NewTextBlockObject(slack.PlainTextType, "Approve", false, false))
	_, ts, err := api.PostMessage("C1",
		slack.MsgOptionText("Grafana: awaiting approval", false),
		slack.MsgOptionBlocks(slack.NewActionBlock("gate", approve)))
	if err != nil {
		fmt.Println(err)
		return
	}

	click, err := srv.ClickButton("C1", ts, "approve", "U1")
	if err != nil {
		fmt.Println(err)
		return
	}
	form := slacktest.BlockActionsPayload(click)
	req := slacktest.SignedRequest("http://bot.invalid/slack/interactions", "signing-secret", []byte(form.Encode()), time.Now())
	fmt.Println(req.Header.Get("X-Slack-Signature") != "", click.Value)

	// What the bot would do on the click:
	if _, _, _, err := api.UpdateMessage("C1", ts, slack.MsgOptionText("Grafana: approved by <@U1>", false), slack.MsgOptionBlocks()); err != nil {
		fmt.Println(err)
		return
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	calls, err := srv.WaitFor(ctx, func(cs []slacktest.Call) bool {
		return len(slacktest.FilterCalls(cs, "chat.update")) == 1
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, c := range calls {
		fmt.Println(c.Method, c.Error == "")
	}
	m, _ := srv.Message("C1", ts)
	fmt.Println(m.Text, len(m.Buttons()), m.Updates, strings.HasPrefix(ts, "1700000000."))
	// Output:
	// true run-1
	// chat.postMessage true
	// chat.update true
	// Grafana: approved by <@U1> 0 1 true
}
