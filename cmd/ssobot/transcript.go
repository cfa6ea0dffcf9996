//go:build !ssobot_server

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/slack-go/slack"
)

// transcript prints the demo's conversation as readable terminal text:
// Slack's mrkdwn and Block Kit rendered as lines, with colours on a terminal.
type transcript struct {
	w        io.Writer
	color    bool
	start    time.Time
	names    map[string]string // user ID → name
	channels map[string]string // channel ID → name
	shown    map[string][]line // message ts → the lines printed last
}

// line is one rendered line; context lines (footers) are left out of diffs.
type line struct {
	text    string
	context bool
}

func newTranscript(w io.Writer) *transcript {
	return &transcript{w: w, color: isTerminal(w), start: time.Now(), shown: map[string][]line{}}
}

// isTerminal reports whether w is a terminal that wants colours.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || os.Getenv("NO_COLOR") != "" || os.Getenv("TERM") == "dumb" {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

const (
	ansiReset   = "\x1b[0m"
	ansiBold    = "\x1b[1m"
	ansiDim     = "\x1b[2m"
	ansiItalic  = "\x1b[3m"
	ansiRed     = "\x1b[31m"
	ansiGreen   = "\x1b[32m"
	ansiYellow  = "\x1b[33m"
	ansiBlue    = "\x1b[34m"
	ansiMagenta = "\x1b[35m"
	ansiCyan    = "\x1b[36m"
)

func (t *transcript) style(s string, codes ...string) string {
	if !t.color || s == "" {
		return s
	}
	return strings.Join(codes, "") + s + ansiReset
}

func (t *transcript) stamp() string {
	return t.style(fmt.Sprintf("%6.2fs", time.Since(t.start).Seconds()), ansiDim)
}

const indent = "         " // the width of a stamp and two spaces

func (t *transcript) title(s string) { fmt.Fprintln(t.w, t.style(s, ansiBold)) }
func (t *transcript) blank()         { fmt.Fprintln(t.w) }
func (t *transcript) line(s string)  { fmt.Fprintln(t.w, s) }
func (t *transcript) note(format string, a ...any) {
	fmt.Fprintln(t.w, t.style(fmt.Sprintf(format, a...), ansiDim))
}
func (t *transcript) success(s string) { fmt.Fprintln(t.w, t.style("✔ "+s, ansiBold, ansiGreen)) }
func (t *transcript) fail(err error) {
	fmt.Fprintln(t.w, t.style("✘ demo failed: "+err.Error(), ansiBold, ansiRed))
}

// user prints what a person typed or clicked.
func (t *transcript) user(name, where, text string) {
	fmt.Fprintf(t.w, "%s  %s %s %s\n", t.stamp(), t.style(name, ansiBold, ansiBlue), t.style("in "+where+":", ansiDim), text)
}

// bot prints a new message of the bot in a channel.
func (t *transcript) bot(where string, lines []line, ts string) {
	fmt.Fprintf(t.w, "%s  %s %s\n", t.stamp(), t.style("ssobot", ansiBold, ansiMagenta), t.style("posted in "+where+":", ansiDim))
	t.box(lines)
	t.shown[ts] = lines
}

// update prints what changed in an edited message.
func (t *transcript) update(lines []line, ts string) {
	prev := t.shown[ts]
	t.shown[ts] = lines
	var changed []line
	for _, l := range lines {
		if l.context || slices.ContainsFunc(prev, func(p line) bool { return p.text == l.text }) {
			continue
		}
		changed = append(changed, l)
	}
	if len(changed) == 0 {
		return
	}
	fmt.Fprintf(t.w, "%s  %s %s\n", t.stamp(), t.style("ssobot", ansiBold, ansiMagenta), t.style("edited its message:", ansiDim))
	t.box(changed)
}

// thread prints a reply in the run's thread.
func (t *transcript) thread(lines []line) {
	for i, l := range lines {
		prefix := indent
		if i == 0 {
			prefix = t.stamp() + "  " + t.style("ssobot", ansiBold, ansiMagenta) + t.style(" in the thread: ", ansiDim)
		} else {
			prefix += "  "
		}
		fmt.Fprintln(t.w, prefix+l.text)
	}
}

// private prints a message only one person sees.
func (t *transcript) private(who, text string) {
	label := "replied privately:"
	if who != "" {
		label = "replied to " + who + " only:"
	}
	for i, l := range strings.Split(text, "\n") {
		if i == 0 {
			fmt.Fprintf(t.w, "%s  %s %s %s\n", t.stamp(), t.style("ssobot", ansiBold, ansiMagenta), t.style(label, ansiDim), l)
			continue
		}
		fmt.Fprintln(t.w, indent+"  "+l)
	}
}

func (t *transcript) box(lines []line) {
	bar := t.style("│", ansiDim)
	for _, l := range lines {
		text := l.text
		if l.context {
			text = t.style(text, ansiDim)
		}
		fmt.Fprintf(t.w, "%s%s %s\n", indent, bar, text)
	}
}

func (t *transcript) name(id string) string {
	if n, ok := t.names[id]; ok {
		return n
	}
	return id
}

func (t *transcript) channelName(id string) string {
	if n, ok := t.channels[id]; ok {
		return "#" + n
	}
	return id
}

// messageText renders a message payload (text and blocks) as plain lines.
func (t *transcript) messageText(msg map[string]any) string {
	text, _ := msg["text"].(string)
	var blocks string
	if b, ok := msg["blocks"]; ok {
		raw, _ := json.Marshal(b)
		blocks = string(raw)
	}
	return joinLines(t.render(text, blocks))
}

func joinLines(lines []line) string {
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		out = append(out, l.text)
	}
	return strings.Join(out, "\n")
}

// render turns a message into lines: its blocks when it has any, else its
// text (which is then only the notification fallback).
func (t *transcript) render(text, blocksJSON string) []line {
	var blocks slack.Blocks
	if blocksJSON != "" && blocksJSON != "null" {
		if err := json.Unmarshal([]byte(blocksJSON), &blocks); err != nil {
			blocks = slack.Blocks{}
		}
	}
	var out []line
	add := func(s string, context bool) {
		for _, l := range strings.Split(s, "\n") {
			if strings.TrimSpace(l) != "" {
				out = append(out, line{text: l, context: context})
			}
		}
	}
	for _, b := range blocks.BlockSet {
		switch b := b.(type) {
		case *slack.HeaderBlock:
			if b.Text != nil {
				add(t.style(b.Text.Text, ansiBold), false)
			}
		case *slack.SectionBlock:
			if b.Text != nil {
				add(t.text(b.Text), false)
			}
			for _, f := range b.Fields {
				// Fields are "*Label*\nvalue": one line each.
				label, value, ok := strings.Cut(t.text(f), "\n")
				if ok {
					add(label+": "+strings.ReplaceAll(value, "\n", " "), false)
				} else {
					add(label, false)
				}
			}
			if b.Accessory != nil && b.Accessory.ButtonElement != nil && b.Accessory.ButtonElement.Text != nil {
				add(t.button(b.Accessory.ButtonElement), false)
			}
		case *slack.ContextBlock:
			var parts []string
			for _, e := range b.ContextElements.Elements {
				if tb, ok := e.(*slack.TextBlockObject); ok {
					parts = append(parts, t.text(tb))
				}
			}
			add(strings.Join(parts, " · "), true)
		case *slack.ActionBlock:
			var parts []string
			if b.Elements != nil {
				for _, e := range b.Elements.ElementSet {
					if btn, ok := e.(*slack.ButtonBlockElement); ok && btn.Text != nil {
						parts = append(parts, t.button(btn))
					}
				}
			}
			add(strings.Join(parts, " "), false)
		case *slack.RichTextBlock, *slack.DividerBlock:
		}
	}
	if len(out) == 0 && text != "" {
		add(t.mrkdwn(text), false)
	}
	return out
}

func (t *transcript) button(b *slack.ButtonBlockElement) string {
	label := "[ " + b.Text.Text + " ]"
	switch b.Style {
	case slack.StylePrimary:
		return t.style(label, ansiBold, ansiGreen)
	case slack.StyleDanger:
		return t.style(label, ansiBold, ansiRed)
	}
	return t.style(label, ansiBold)
}

func (t *transcript) text(tb *slack.TextBlockObject) string {
	if tb.Type == slack.PlainTextType {
		return tb.Text
	}
	return t.mrkdwn(tb.Text)
}

var (
	reUser    = regexp.MustCompile(`<@([A-Z0-9]+)(?:\|[^>]*)?>`)
	reChannel = regexp.MustCompile(`<#([A-Z0-9]+)(?:\|([^>]*))?>`)
	reDate    = regexp.MustCompile(`<!date\^[^|>]*\|([^>]*)>`)
	reSpecial = regexp.MustCompile(`<!(here|channel|everyone)>`)
	reLink    = regexp.MustCompile(`<([^|>]+)\|([^>]+)>`)
	reURL     = regexp.MustCompile(`<([^>]+)>`)
	reBold    = regexp.MustCompile(`\*([^*\n]+)\*`)
	reItalic  = regexp.MustCompile(`(^|[\s(])_([^_\n]+)_`)
	reCode    = regexp.MustCompile("`([^`\n]+)`")
	reEmoji   = regexp.MustCompile(`:([a-z0-9_+-]+):`)
)

var emoji = map[string]string{
	"white_check_mark": "✅", "x": "❌", "raised_hand": "✋", "hourglass_flowing_sand": "⏳",
	"gear": "⚙️", "mag": "🔍", "no_entry_sign": "🚫", "no_entry": "⛔", "alarm_clock": "⏰", "heavy_minus_sign": "➖",
	"white_circle": "⚪", "point_right": "👉", "tada": "🎉", "clipboard": "📋", "arrow_forward": "▶️",
	"package": "📦", "warning": "⚠️", "ballot_box_with_check": "☑️", "repeat": "🔁", "memo": "📝",
	"lock": "🔒", "key": "🔑", "wave": "👋", "information_source": "ℹ️", "hourglass": "⌛",
	"large_green_circle": "🟢", "red_circle": "🔴", "link": "🔗", "eyes": "👀", "thumbsup": "👍",
}

// Escaped formatting characters (wrapped in zero-width spaces so they do
// not pair up) are parked on private-use runes while markup is rendered.
var (
	parkEscaped   = strings.NewReplacer("\u200b*\u200b", "\ue000", "\u200b_\u200b", "\ue001", "\u200b~\u200b", "\ue002", "\u200b`\u200b", "\ue003")
	unparkEscaped = strings.NewReplacer("\ue000", "*", "\ue001", "_", "\ue002", "~", "\ue003", "`", "\u200b", "")
)

// mrkdwn renders Slack's markup for a terminal.
func (t *transcript) mrkdwn(s string) string {
	s = parkEscaped.Replace(s)
	s = reUser.ReplaceAllStringFunc(s, func(m string) string {
		return t.style("@"+t.name(reUser.FindStringSubmatch(m)[1]), ansiBold, ansiBlue)
	})
	s = reChannel.ReplaceAllStringFunc(s, func(m string) string {
		sm := reChannel.FindStringSubmatch(m)
		if sm[2] != "" {
			return "#" + sm[2]
		}
		return t.channelName(sm[1])
	})
	s = reDate.ReplaceAllString(s, "$1")
	s = reSpecial.ReplaceAllString(s, "@$1")
	s = reLink.ReplaceAllStringFunc(s, func(m string) string {
		return t.style(reLink.FindStringSubmatch(m)[2], ansiCyan)
	})
	s = reURL.ReplaceAllString(s, "$1")
	s = reCode.ReplaceAllStringFunc(s, func(m string) string {
		return t.style(reCode.FindStringSubmatch(m)[1], ansiYellow)
	})
	s = reBold.ReplaceAllStringFunc(s, func(m string) string {
		return t.style(reBold.FindStringSubmatch(m)[1], ansiBold)
	})
	s = reItalic.ReplaceAllStringFunc(s, func(m string) string {
		sm := reItalic.FindStringSubmatch(m)
		return sm[1] + t.style(sm[2], ansiItalic)
	})
	s = reEmoji.ReplaceAllStringFunc(s, func(m string) string {
		if e, ok := emoji[m[1:len(m)-1]]; ok {
			return e
		}
		return m
	})
	s = unparkEscaped.Replace(s)
	return strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&").Replace(s)
}
