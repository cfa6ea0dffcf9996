package slacktest

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/slack-go/slack"
)

// Sign returns Slack's request signature for body sent at ts:
// "v0=" + hex(HMAC-SHA256(secret, "v0:<unix ts>:<body>")).
func Sign(signingSecret string, ts time.Time, body []byte) string {
	mac := hmac.New(sha256.New, []byte(signingSecret))
	fmt.Fprintf(mac, "v0:%d:", ts.Unix())
	mac.Write(body)
	return "v0=" + hex.EncodeToString(mac.Sum(nil))
}

// SignedRequest builds a form POST of body to url signed like Slack does
// (X-Slack-Request-Timestamp, X-Slack-Signature). It works both with an
// http.Client and with a handler's ServeHTTP. Like httptest.NewRequest it
// panics on an invalid URL, which is a bug in the caller.
func SignedRequest(url, signingSecret string, body []byte, ts time.Time) *http.Request {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		panic(fmt.Sprintf("slacktest: signed request: %v", err))
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Slack-Request-Timestamp", strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set("X-Slack-Signature", Sign(signingSecret, ts, body))
	return req
}

// SlashCommand is what Slack sends when someone runs a slash command. Its
// JSON form is the Socket Mode payload, so it can be passed to SendEnvelope
// as is.
type SlashCommand struct {
	Command     string `json:"command"`
	Text        string `json:"text"`
	UserID      string `json:"user_id"`
	UserName    string `json:"user_name"`
	ChannelID   string `json:"channel_id"`
	ChannelName string `json:"channel_name"`
	TeamID      string `json:"team_id"`
	TeamDomain  string `json:"team_domain"`
	ResponseURL string `json:"response_url"`
	TriggerID   string `json:"trigger_id"`
	APIAppID    string `json:"api_app_id"`
}

// SlashCommandForm is the form body Slack POSTs for a slash command in HTTP
// mode.
func SlashCommandForm(cmd SlashCommand) url.Values {
	return url.Values{
		"command":               {cmd.Command},
		"text":                  {cmd.Text},
		"user_id":               {cmd.UserID},
		"user_name":             {cmd.UserName},
		"channel_id":            {cmd.ChannelID},
		"channel_name":          {cmd.ChannelName},
		"team_id":               {cmd.TeamID},
		"team_domain":           {cmd.TeamDomain},
		"response_url":          {cmd.ResponseURL},
		"trigger_id":            {cmd.TriggerID},
		"api_app_id":            {cmd.APIAppID},
		"is_enterprise_install": {"false"},
	}
}

// BlockAction describes one click on a button (or other element) for a
// block_actions payload.
type BlockAction struct {
	UserID     string
	UserName   string
	TeamID     string
	TeamDomain string
	APIAppID   string

	// ChannelID and MessageTS locate the message holding the button;
	// ThreadTS is set when that message is a reply.
	ChannelID   string
	ChannelName string
	MessageTS   string
	ThreadTS    string
	IsEphemeral bool
	// ViewID, when set, makes the click come from a modal instead.
	ViewID string

	ActionID   string
	BlockID    string
	Value      string
	ActionType string // default "button"
	Text       string // the button's label
	ActionTS   string

	ResponseURL string
	TriggerID   string
	// Message is the message object Slack includes; when nil a minimal one
	// (type and ts) is sent.
	Message json.RawMessage
	// State holds input values (block_id -> action_id -> value), if any.
	State map[string]map[string]StateValue
}

// StateValue is the state of one input element, as in state.values.
type StateValue struct {
	Type            string                    `json:"type"`
	Value           string                    `json:"value,omitempty"`
	SelectedOption  *slack.OptionBlockObject  `json:"selected_option,omitempty"`
	SelectedOptions []slack.OptionBlockObject `json:"selected_options,omitempty"`
	SelectedUser    string                    `json:"selected_user,omitempty"`
	SelectedUsers   []string                  `json:"selected_users,omitempty"`
	SelectedChannel string                    `json:"selected_channel,omitempty"`
	SelectedConv    string                    `json:"selected_conversation,omitempty"`
	SelectedDate    string                    `json:"selected_date,omitempty"`
}

func stateJSON(values map[string]map[string]StateValue) map[string]any {
	if values == nil {
		values = map[string]map[string]StateValue{}
	}
	return map[string]any{"values": values}
}

// BlockActionsJSON is the block_actions payload for a click, the JSON Slack
// puts in the form field "payload" (HTTP) or the envelope payload (Socket
// Mode).
func BlockActionsJSON(a BlockAction) json.RawMessage {
	typ := a.ActionType
	if typ == "" {
		typ = "button"
	}
	actionTS := a.ActionTS
	if actionTS == "" {
		actionTS = "1700000000.000001"
	}
	action := map[string]any{
		"action_id": a.ActionID,
		// slack-go tells block actions from attachment actions by the
		// presence of block_id, and Slack always sends one.
		"block_id":  a.BlockID,
		"type":      typ,
		"action_ts": actionTS,
	}
	if typ == "button" {
		action["value"] = a.Value
		action["text"] = map[string]any{"type": "plain_text", "text": a.Text, "emoji": true}
	}
	p := map[string]any{
		"type":                  "block_actions",
		"user":                  map[string]any{"id": a.UserID, "username": a.UserName, "name": a.UserName, "team_id": a.TeamID},
		"api_app_id":            a.APIAppID,
		"token":                 "",
		"trigger_id":            a.TriggerID,
		"team":                  map[string]any{"id": a.TeamID, "domain": a.TeamDomain},
		"enterprise":            nil,
		"is_enterprise_install": false,
		"state":                 stateJSON(a.State),
		"actions":               []any{action},
	}
	if a.ViewID != "" {
		p["container"] = map[string]any{"type": "view", "view_id": a.ViewID}
		p["view"] = map[string]any{"id": a.ViewID, "type": "modal"}
	} else {
		container := map[string]any{
			"type":         "message",
			"message_ts":   a.MessageTS,
			"channel_id":   a.ChannelID,
			"is_ephemeral": a.IsEphemeral,
		}
		if a.ThreadTS != "" {
			container["thread_ts"] = a.ThreadTS
		}
		p["container"] = container
		p["channel"] = map[string]any{"id": a.ChannelID, "name": a.ChannelName}
		p["response_url"] = a.ResponseURL
		if len(a.Message) > 0 {
			p["message"] = a.Message
		} else {
			msg := map[string]any{"type": "message", "ts": a.MessageTS}
			if a.ThreadTS != "" {
				msg["thread_ts"] = a.ThreadTS
			}
			p["message"] = msg
		}
	}
	return marshalPayload(p)
}

// BlockActionsPayload is the form body Slack POSTs for a click in HTTP mode:
// payload=<BlockActionsJSON>.
func BlockActionsPayload(a BlockAction) url.Values {
	return url.Values{"payload": {string(BlockActionsJSON(a))}}
}

// ViewSubmission describes a modal's submission.
type ViewSubmission struct {
	UserID     string
	UserName   string
	TeamID     string
	TeamDomain string
	APIAppID   string
	TriggerID  string

	ViewID          string
	ExternalID      string
	CallbackID      string
	PrivateMetadata string
	Hash            string
	// Blocks are the view's blocks as JSON (optional).
	Blocks json.RawMessage
	// Values is state.values: block_id -> action_id -> value.
	Values map[string]map[string]StateValue
}

// ViewSubmissionJSON is the view_submission payload.
func ViewSubmissionJSON(v ViewSubmission) json.RawMessage {
	view := map[string]any{
		"id":               v.ViewID,
		"team_id":          v.TeamID,
		"type":             "modal",
		"callback_id":      v.CallbackID,
		"private_metadata": v.PrivateMetadata,
		"hash":             v.Hash,
		"external_id":      v.ExternalID,
		"root_view_id":     v.ViewID,
		"app_id":           v.APIAppID,
		"state":            stateJSON(v.Values),
	}
	if len(v.Blocks) > 0 {
		view["blocks"] = v.Blocks
	}
	p := map[string]any{
		"type":                  "view_submission",
		"team":                  map[string]any{"id": v.TeamID, "domain": v.TeamDomain},
		"user":                  map[string]any{"id": v.UserID, "username": v.UserName, "name": v.UserName, "team_id": v.TeamID},
		"api_app_id":            v.APIAppID,
		"token":                 "",
		"trigger_id":            v.TriggerID,
		"view":                  view,
		"response_urls":         []any{},
		"enterprise":            nil,
		"is_enterprise_install": false,
	}
	return marshalPayload(p)
}

// ViewSubmissionPayload is the form body Slack POSTs for a view submission in
// HTTP mode: payload=<ViewSubmissionJSON>.
func ViewSubmissionPayload(v ViewSubmission) url.Values {
	return url.Values{"payload": {string(ViewSubmissionJSON(v))}}
}

func marshalPayload(p map[string]any) json.RawMessage {
	b, err := json.Marshal(p)
	if err != nil {
		// Every value above is a string, bool, map, slice or RawMessage
		// that was itself produced by encoding/json or the caller; a
		// RawMessage that is not JSON is the only way to get here.
		return json.RawMessage(`{"type":"invalid_payload"}`)
	}
	return b
}

// TypedText is text as Slack delivers what a person typed: &, < and > as
// HTML entities, so that the only < in a payload opens Slack's own markup.
// NewSlashCommand takes its text as delivered.
func TypedText(s string) string { return typedEscaper.Replace(s) }

var typedEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// NewSlashCommand builds the slash command userID would send from channelID,
// with a fresh trigger_id and a response_url tied to that channel and user.
// text is as delivered: see TypedText.
func (s *Server) NewSlashCommand(command, text, userID, channelID string) SlashCommand {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := SlashCommand{
		Command:     command,
		Text:        text,
		UserID:      userID,
		UserName:    s.users[userID].Name,
		ChannelID:   channelID,
		TeamID:      s.cfg.teamID,
		TeamDomain:  s.cfg.teamDomain,
		ResponseURL: s.newResponseURLLocked(channelID, "", userID),
		TriggerID:   s.newTriggerIDLocked(),
		APIAppID:    s.cfg.appID,
	}
	if ch := s.channels[channelID]; ch != nil {
		cmd.ChannelName = ch.name
	}
	return cmd
}

// ClickButton builds the click of userID on the first button with actionID
// in the stored message (channel, ts), with a fresh trigger_id and a
// response_url tied to the message. It fails with ErrNotFound when the
// message or the button does not exist, which is what a person would see.
func (s *Server) ClickButton(channel, ts, actionID, userID string) (BlockAction, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.findLocked(channel, ts)
	if st == nil || st.deleted {
		return BlockAction{}, fmt.Errorf("click %s on %s/%s: message: %w", actionID, channel, ts, ErrNotFound)
	}
	msg := st.public()
	btn, ok := msg.Button(actionID)
	if !ok {
		return BlockAction{}, fmt.Errorf("click %s on %s/%s: button: %w", actionID, channel, ts, ErrNotFound)
	}
	a := BlockAction{
		UserID:      userID,
		UserName:    s.users[userID].Name,
		TeamID:      s.cfg.teamID,
		TeamDomain:  s.cfg.teamDomain,
		APIAppID:    s.cfg.appID,
		ChannelID:   channel,
		MessageTS:   ts,
		ThreadTS:    st.ThreadTS,
		IsEphemeral: st.Ephemeral,
		ActionID:    btn.ActionID,
		BlockID:     btn.BlockID,
		Value:       btn.Value,
		Text:        btn.Text,
		ActionTS:    slackTS(s.cfg.now()),
		ResponseURL: s.newResponseURLLocked(channel, ts, userID),
		TriggerID:   s.newTriggerIDLocked(),
		Message:     marshalPayload(s.messageJSON(st)),
	}
	if ch := s.channels[channel]; ch != nil {
		a.ChannelName = ch.name
	}
	return a, nil
}

// SubmitView builds userID's submission of the opened view viewID with the
// given input values.
func (s *Server) SubmitView(viewID, userID string, values map[string]map[string]StateValue) (ViewSubmission, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.views[viewID]
	if !ok {
		return ViewSubmission{}, fmt.Errorf("submit view %s: %w", viewID, ErrNotFound)
	}
	var m struct {
		Blocks json.RawMessage `json:"blocks"`
	}
	_ = json.Unmarshal(v.JSON, &m)
	return ViewSubmission{
		UserID:          userID,
		UserName:        s.users[userID].Name,
		TeamID:          s.cfg.teamID,
		TeamDomain:      s.cfg.teamDomain,
		APIAppID:        s.cfg.appID,
		TriggerID:       s.newTriggerIDLocked(),
		ViewID:          v.ID,
		ExternalID:      v.ExternalID,
		CallbackID:      v.CallbackID,
		PrivateMetadata: v.PrivateMetadata,
		Hash:            v.Hash,
		Blocks:          m.Blocks,
		Values:          values,
	}, nil
}

// slackTS formats t the way Slack writes timestamps.
func slackTS(t time.Time) string {
	return fmt.Sprintf("%d.%06d", t.Unix(), t.Nanosecond()/1000)
}
