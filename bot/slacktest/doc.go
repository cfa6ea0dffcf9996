// Package slacktest is a small, complete fake of the parts of Slack that the
// ssobot bot uses: the Web API methods it calls, response_url endpoints,
// Socket Mode, and helpers that build signed slash-command and interaction
// requests the way Slack sends them.
//
// It is a normal package (not _test) so that both tests and the `ssobot demo`
// command can use it; nothing in it needs a testing.T.
//
// A typical test:
//
//	srv := slacktest.NewServer()
//	defer srv.Close()
//	srv.AddChannel("C1", "sso", true)
//	api := slack.New(srv.BotToken(), slack.OptionAPIURL(srv.APIURL()))
//	_, ts, _ := api.PostMessage("C1", slack.MsgOptionText("hello", false))
//	msg, _ := srv.Message("C1", ts)
//
// The fake keeps state the way Slack does: messages posted, updated and
// deleted; threads; ephemerals; opened views. Every request is recorded as a
// Call (without its token) and can be awaited with WaitFor or followed live
// with Subscribe. Faults are injected per method with FailNext,
// FailNextStatus and RateLimitNext, and queue up in order; PassNext lets
// calls through ahead of them.
//
// Where Slack's exact behaviour is not documented the fake picks a strict,
// plausible answer and says so on the method (for example thread_not_found
// for an unknown thread_ts).
package slacktest
