package workflow

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// MaxSlugLength bounds derived and given slugs.
const MaxSlugLength = 50

// ReservedSlugs are paths under /application/o/ that authentik refuses as slugs.
var ReservedSlugs = []string{"authorize", "token", "device", "userinfo", "introspect", "revoke"}

var slugPattern = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

// Slugify derives an application slug from a name: lowercase ASCII letters,
// digits and single dashes, at most MaxSlugLength characters. Accented
// letters lose their accents; anything else separates words.
func Slugify(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range norm.NFKD.String(name) {
		switch {
		case unicode.Is(unicode.Mn, r): // combining accent left by NFKD
		case r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r)):
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(unicode.ToLower(r))
		default:
			dash = true
		}
	}
	s := b.String()
	if len(s) > MaxSlugLength {
		s = strings.TrimRight(s[:MaxSlugLength], "-")
	}
	return s
}

// ValidateSlug explains what is wrong with a slug, or returns nil.
func ValidateSlug(slug string) error {
	switch {
	case slug == "":
		return fmt.Errorf("%w: the slug is empty", ErrInvalidRequest)
	case len(slug) > MaxSlugLength:
		return fmt.Errorf("%w: the slug %q is longer than %d characters", ErrInvalidRequest, slug, MaxSlugLength)
	case !slugPattern.MatchString(slug):
		return fmt.Errorf("%w: the slug %q may contain only lowercase letters, digits and single dashes between them", ErrInvalidRequest, slug)
	case slices.Contains(ReservedSlugs, slug):
		return fmt.Errorf("%w: the slug %q is reserved by authentik; choose another with slug=<slug>", ErrInvalidRequest, slug)
	}
	return nil
}

var teamPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// NormalizeTeamDomain accepts "company" or "company.cloudflareaccess.com"
// (any case, with or without https:// and a trailing slash) and returns the
// full team domain.
func NormalizeTeamDomain(team string) (string, error) {
	t := strings.ToLower(strings.TrimSpace(team))
	t = strings.TrimPrefix(t, "https://")
	t = strings.TrimSuffix(t, "/")
	t = strings.TrimSuffix(t, ".cloudflareaccess.com")
	if !teamPattern.MatchString(t) {
		return "", fmt.Errorf("%w: %q is not a team domain; give the team name (company) or company.cloudflareaccess.com", ErrInvalidRequest, team)
	}
	return t + ".cloudflareaccess.com", nil
}

// isSpoofing reports the invisible characters that change how a name reads
// or hide in it: the bidirectional marks, embeddings, overrides and
// isolates, zero-width space, word joiner and byte order mark. The
// zero-width joiner and non-joiner stay allowed: Persian, Indic scripts and
// emoji sequences need them.
func isSpoofing(r rune) bool {
	switch {
	case r >= 0x202A && r <= 0x202E, r >= 0x2066 && r <= 0x2069:
		return true
	}
	switch r {
	case 0x200E, 0x200F, 0x061C, 0x200B, 0x2060, 0xFEFF:
		return true
	}
	return false
}

// MaxNameLength bounds application and login method names.
const MaxNameLength = 100

// ValidateName checks a human-given name.
func ValidateName(what, name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return fmt.Errorf("%w: the %s is empty", ErrInvalidRequest, what)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: the %s is not valid UTF-8", ErrInvalidRequest, what)
	case utf8.RuneCountInString(name) > MaxNameLength:
		return fmt.Errorf("%w: the %s is longer than %d characters", ErrInvalidRequest, what, MaxNameLength)
	case strings.ContainsFunc(name, unicode.IsControl):
		return fmt.Errorf("%w: the %s contains control characters", ErrInvalidRequest, what)
	case strings.ContainsFunc(name, isSpoofing):
		// A right-to-left override makes approvers read a name other than
		// the one that is created; zero-width spaces hide in names.
		return fmt.Errorf("%w: the %s contains invisible direction or zero-width characters (such as a right-to-left override); type it again without them", ErrInvalidRequest, what)
	}
	return nil
}
