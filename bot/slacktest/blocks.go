package slacktest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/slack-go/slack"
)

// Block Kit limits from Slack's reference; the fake enforces the ones a bot
// can plausibly exceed so that truncation code is tested.
const (
	maxMessageBlocks   = 50
	maxModalBlocks     = 100
	maxSectionText     = 3000
	maxSectionFields   = 10
	maxFieldText       = 2000
	maxHeaderText      = 150
	maxMarkdownText    = 12000
	maxActionsElements = 25
	maxContextElements = 10
	maxButtonText      = 75
	maxButtonValue     = 2000
	maxButtonURL       = 3000
	maxID              = 255 // block_id, action_id
	maxInputLabel      = 2000
)

// validateBlocks checks a blocks array and returns the number of blocks and
// the problems found, worded like Slack's response_metadata.messages.
func validateBlocks(raw json.RawMessage, limit int) (int, []string) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || trimmed[0] != '[' {
		return 0, []string{"[ERROR] blocks must be a JSON array"}
	}
	var blocks slack.Blocks
	if err := json.Unmarshal(trimmed, &blocks); err != nil {
		return 0, []string{fmt.Sprintf("[ERROR] blocks do not parse: %v", err)}
	}
	v := blockValidator{ids: map[string]bool{}}
	if len(blocks.BlockSet) > limit {
		v.addf("", "no more than %d items allowed", limit)
	}
	for i, b := range blocks.BlockSet {
		v.block(fmt.Sprintf("/blocks/%d", i), b)
	}
	return len(blocks.BlockSet), v.problems
}

type blockValidator struct {
	problems []string
	ids      map[string]bool
}

func (v *blockValidator) addf(ptr, format string, args ...any) {
	v.problems = append(v.problems, fmt.Sprintf("[ERROR] "+format+" [json-pointer:%s]", append(args, ptr)...))
}

func (v *blockValidator) text(ptr string, t *slack.TextBlockObject, limit int, plainOnly bool) {
	if t == nil || t.Text == "" {
		v.addf(ptr, "must be more than 0 characters")
		return
	}
	if t.Type != slack.PlainTextType && (plainOnly || t.Type != slack.MarkdownType) {
		v.addf(ptr+"/type", "invalid text type %q", t.Type)
	}
	if n := utf8.RuneCountInString(t.Text); n > limit {
		v.addf(ptr+"/text", "must be less than %d characters", limit+1)
	}
}

func (v *blockValidator) id(ptr, id string) {
	if id == "" {
		return
	}
	if utf8.RuneCountInString(id) > maxID {
		v.addf(ptr, "must be less than %d characters", maxID+1)
	}
}

func (v *blockValidator) block(ptr string, b slack.Block) {
	if id := b.ID(); id != "" {
		v.id(ptr+"/block_id", id)
		if v.ids[id] {
			v.addf(ptr+"/block_id", "duplicate block_id %q", id)
		}
		v.ids[id] = true
	}
	switch b := b.(type) {
	case *slack.SectionBlock:
		if b.Text == nil && len(b.Fields) == 0 {
			v.addf(ptr, "must provide text or fields")
		}
		if b.Text != nil {
			v.text(ptr+"/text", b.Text, maxSectionText, false)
		}
		if len(b.Fields) > maxSectionFields {
			v.addf(ptr+"/fields", "no more than %d items allowed", maxSectionFields)
		}
		for i, f := range b.Fields {
			v.text(fmt.Sprintf("%s/fields/%d", ptr, i), f, maxFieldText, false)
		}
		if b.Accessory != nil && b.Accessory.ButtonElement != nil {
			v.button(ptr+"/accessory", b.Accessory.ButtonElement)
		}
	case *slack.HeaderBlock:
		v.text(ptr+"/text", b.Text, maxHeaderText, true)
	case *slack.MarkdownBlock:
		if b.Text == "" {
			v.addf(ptr+"/text", "must be more than 0 characters")
		}
		if utf8.RuneCountInString(b.Text) > maxMarkdownText {
			v.addf(ptr+"/text", "must be less than %d characters", maxMarkdownText+1)
		}
	case *slack.ActionBlock:
		if b.Elements == nil || len(b.Elements.ElementSet) == 0 {
			v.addf(ptr+"/elements", "must provide at least 1 item")
			return
		}
		if len(b.Elements.ElementSet) > maxActionsElements {
			v.addf(ptr+"/elements", "no more than %d items allowed", maxActionsElements)
		}
		actions := map[string]bool{}
		for i, el := range b.Elements.ElementSet {
			btn, ok := el.(*slack.ButtonBlockElement)
			if !ok {
				continue
			}
			ep := fmt.Sprintf("%s/elements/%d", ptr, i)
			v.button(ep, btn)
			if btn.ActionID != "" && actions[btn.ActionID] {
				v.addf(ep+"/action_id", "duplicate action_id %q", btn.ActionID)
			}
			actions[btn.ActionID] = true
		}
	case *slack.ContextBlock:
		n := len(b.ContextElements.Elements)
		if n == 0 {
			v.addf(ptr+"/elements", "must provide at least 1 item")
		}
		if n > maxContextElements {
			v.addf(ptr+"/elements", "no more than %d items allowed", maxContextElements)
		}
	case *slack.InputBlock:
		v.text(ptr+"/label", b.Label, maxInputLabel, true)
		if b.Element == nil {
			v.addf(ptr+"/element", "must provide an element")
		}
	case *slack.UnknownBlock:
		v.addf(ptr+"/type", "unsupported block type %q", string(b.Type))
	}
}

func (v *blockValidator) button(ptr string, b *slack.ButtonBlockElement) {
	v.text(ptr+"/text", b.Text, maxButtonText, true)
	v.id(ptr+"/action_id", b.ActionID)
	if utf8.RuneCountInString(b.Value) > maxButtonValue {
		v.addf(ptr+"/value", "must be less than %d characters", maxButtonValue+1)
	}
	if utf8.RuneCountInString(b.URL) > maxButtonURL {
		v.addf(ptr+"/url", "must be less than %d characters", maxButtonURL+1)
	}
	switch b.Style {
	case "", slack.StylePrimary, slack.StyleDanger:
	default:
		v.addf(ptr+"/style", "invalid style %q", string(b.Style))
	}
}
