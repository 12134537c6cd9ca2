package tokenizer

import (
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// addedMatcher finds added tokens in text, leftmost first and longest
// among those starting at the same place (HF uses a leftmost-longest
// Aho-Corasick automaton; with a handful of tokens, a first-byte filter
// and prefix tests are as fast and far simpler).
type addedMatcher struct {
	first   [256]bool
	byFirst map[byte][]AddedToken
}

func newAddedMatcher(tokens []AddedToken, includeSpecial bool) *addedMatcher {
	m := &addedMatcher{byFirst: make(map[byte][]AddedToken)}
	for _, tok := range tokens {
		if tok.Content == "" || (tok.Special && !includeSpecial) {
			continue
		}
		c := tok.Content[0]
		m.first[c] = true
		m.byFirst[c] = append(m.byFirst[c], tok)
	}
	for c, list := range m.byFirst {
		sort.SliceStable(list, func(i, j int) bool { return len(list[i].Content) > len(list[j].Content) })
		m.byFirst[c] = list
	}
	return m
}

// find returns the span of the first added token in s (widened by its
// lstrip/rstrip whitespace) and its id, or start = -1.
func (m *addedMatcher) find(s string) (start, end int, id int32) {
	if len(m.byFirst) == 0 {
		return -1, -1, 0
	}
	for i := 0; i < len(s); i++ {
		if !m.first[s[i]] {
			continue
		}
		for _, tok := range m.byFirst[s[i]] {
			if !strings.HasPrefix(s[i:], tok.Content) {
				continue
			}
			e := i + len(tok.Content)
			if tok.SingleWord && (isWordBefore(s, i) || isWordAfter(s, e)) {
				continue
			}
			st := i
			if tok.LStrip {
				st = len(strings.TrimRightFunc(s[:i], unicode.IsSpace))
			}
			if tok.RStrip {
				e = len(s) - len(strings.TrimLeftFunc(s[e:], unicode.IsSpace))
			}
			return st, e, tok.ID
		}
	}
	return -1, -1, 0
}

func isWordRune(r rune) bool { return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) }

func isWordBefore(s string, i int) bool {
	if i == 0 {
		return false
	}
	r, _ := utf8.DecodeLastRuneInString(s[:i])
	return isWordRune(r)
}

func isWordAfter(s string, e int) bool {
	if e >= len(s) {
		return false
	}
	r, _ := utf8.DecodeRuneInString(s[e:])
	return isWordRune(r)
}
