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

func isFormat(r rune) bool { return unicode.Is(unicode.Cf, r) }

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
	case strings.ContainsFunc(name, isFormat):
		// Invisible, and a right-to-left override makes approvers read a
		// name other than the one that is created.
		return fmt.Errorf("%w: the %s contains invisible formatting characters (such as a direction override or a zero-width space); type it again without them", ErrInvalidRequest, what)
	}
	return nil
}
