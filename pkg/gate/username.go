package gate

import (
	"strings"
	"sync"
	"unicode"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"
	"golang.org/x/text/unicode/rangetable"
)

// folders pools case folders: a cases.Caser is not safe for concurrent use.
var folders = sync.Pool{New: func() any { c := cases.Fold(); return &c }}

// NormalizeUsername turns what a client typed into the identity the gate
// counts: invalid UTF-8 replaced, control and format characters and every
// default-ignorable code point (zero-width and joiner characters,
// variation selectors, Hangul fillers, ...) removed, Unicode NFKC with case
// folding applied (and Turkish İ and ı taken for i), spaces trimmed, and
// the result capped at maxLen characters. So "Alice", " alice " and the full-width "ａｌｉｃｅ" are one
// identity, and no invisible character makes a new one. Empty means "no
// username".
func NormalizeUsername(s string, maxLen int) string {
	// What leads the name is dropped by the normalisation anyway: drop it
	// before bounding the work, or padding in front would push the name
	// itself past the bound ("<2000 spaces>alice", which an application
	// that trims logs in as alice, would count as no username at all).
	s = strings.TrimLeftFunc(s, invisible)
	// Bound the work whatever the client sends.
	if limit := 4 * (maxLen + 8); len(s) > limit {
		s = s[:limit]
	}
	if ascii, ok := asciiFold(s); ok {
		return capRunes(ascii, maxLen)
	}
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		switch {
		case dropped(r):
			if unicode.IsSpace(r) {
				return ' '
			}
			return -1
		}
		return turkishI(r)
	}, s)
	s = norm.NFKC.String(s)
	f := folders.Get().(*cases.Caser)
	s = f.String(s)
	folders.Put(f)
	s = strings.Map(cherokeeFold, s)
	s = norm.NFKC.String(s)
	if strings.ContainsRune(s, 'ı') { // made by NFKC, e.g. of U+1D6A4
		s = norm.NFKC.String(strings.Map(turkishI, s))
	}
	s = strings.TrimFunc(s, unicode.IsSpace)
	return capRunes(s, maxLen)
}

// turkishI takes the Turkish dotted capital and dotless small i for i: an
// application that compares names with strings.ToLower or ToUpper takes
// "kİwi" and "kıwi" for "kiwi", while case folding keeps them apart, so
// each spelling had a failure budget of its own.
func turkishI(r rune) rune {
	if r == 'İ' || r == 'ı' {
		return 'i'
	}
	return r
}

// invisible reports a character NormalizeUsername removes, or trims at
// the ends: a space, or one that dropped reports.
func invisible(r rune) bool {
	return unicode.IsSpace(r) || dropped(r)
}

// dropped reports a character that is no part of an identity: a control
// or format character, or a default-ignorable code point (which renders
// as nothing, so "caro\u034Fl" shows as "carol").
func dropped(r rune) bool {
	return unicode.Is(unicode.Cc, r) || unicode.Is(unicode.Cf, r) || unicode.Is(defaultIgnorable(), r)
}

// defaultIgnorable is Unicode's Default_Ignorable_Code_Point, derived as
// DerivedCoreProperties.txt defines it:
//
//	Other_Default_Ignorable_Code_Point + Cf + Variation_Selector
//	- White_Space - FFF9..FFFB - 13430..13440 - Prepended_Concatenation_Mark
//
// Go's unicode package has the parts but not the whole (its
// Other_Default_Ignorable_Code_Point alone misses U+200B or U+FE0F, say).
// TestDefaultIgnorableMatchesUnicode compares it with Unicode's own data.
var defaultIgnorable = sync.OnceValue(func() *unicode.RangeTable {
	var rs []rune
	for _, t := range []*unicode.RangeTable{unicode.Other_Default_Ignorable_Code_Point, unicode.Cf, unicode.Variation_Selector} {
		rangetable.Visit(t, func(r rune) {
			switch {
			case unicode.Is(unicode.White_Space, r), 0xFFF9 <= r && r <= 0xFFFB, 0x13430 <= r && r <= 0x13440,
				unicode.Is(unicode.Prepended_Concatenation_Mark, r):
			default:
				rs = append(rs, r)
			}
		})
	}
	return rangetable.New(rs...)
})

// cherokeeFold completes case folding for Cherokee: Unicode folds the
// small letters to the capitals, but x/text's Fold swaps the two cases,
// so folding twice would change a name again and one name would have two
// identities. The capitals are kept.
func cherokeeFold(r rune) rune {
	switch {
	case 0xAB70 <= r && r <= 0xABBF:
		return r - 0xAB70 + 0x13A0
	case 0x13F8 <= r && r <= 0x13FD:
		return r - 0x13F8 + 0x13F0
	}
	return r
}

// asciiFold is the fast path for printable ASCII, where NFKC is the
// identity and case folding is lowercasing.
func asciiFold(s string) (string, bool) {
	upper := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f {
			return "", false
		}
		if 'A' <= c && c <= 'Z' {
			upper = true
		}
	}
	s = strings.TrimSpace(s)
	if upper {
		s = strings.ToLower(s)
	}
	return s, true
}

// capRunes truncates s to at most n characters, then trims the spaces the
// cut may have exposed.
func capRunes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	count := 0
	for i := range s {
		if count == n {
			return strings.TrimRightFunc(s[:i], unicode.IsSpace)
		}
		count++
	}
	return s
}
