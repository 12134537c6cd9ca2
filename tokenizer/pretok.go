package tokenizer

import (
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
)

// The two pre-tokenizer patterns that have hand-written scanners. Any other
// Split pattern falls back to regexp2 (correct, but several times slower).
const (
	// GPT2Pattern is the pattern of GPT-2's ByteLevel pre-tokenizer
	// (use_regex=true) and of tiktoken's r50k_base/p50k_base.
	GPT2Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
	// Llama3Pattern is the Split pattern of LLaMA 3's tokenizer.json (and of
	// tiktoken's cl100k_base).
	Llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// Character classes the patterns distinguish. \s is Unicode White_Space
// (Go's unicode.IsSpace, which is what regexp2 and Oniguruma use), \p{L} and
// \p{N} are the Unicode general categories.
const (
	clsOther = iota
	clsLetter
	clsNumber
	clsSpace
)

func classOf(r rune) uint8 {
	if r < utf8.RuneSelf {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
			return clsLetter
		case r >= '0' && r <= '9':
			return clsNumber
		case r == ' ', r >= '\t' && r <= '\r':
			return clsSpace
		}
		return clsOther
	}
	switch {
	case unicode.IsLetter(r):
		return clsLetter
	case unicode.Is(unicode.N, r):
		return clsNumber
	case unicode.IsSpace(r):
		return clsSpace
	}
	return clsOther
}

// runeAt decodes the rune at byte offset i. Invalid UTF-8 yields
// utf8.RuneError with width 1, which classifies as "other", as the U+FFFD
// that regexp2 sees there does.
func runeAt(s string, i int) (rune, int) {
	if c := s[i]; c < utf8.RuneSelf {
		return rune(c), 1
	}
	return utf8.DecodeRuneInString(s[i:])
}

// classAt is runeAt followed by classOf.
func classAt(s string, i int) (uint8, int) {
	r, w := runeAt(s, i)
	return classOf(r), w
}

// runEnd returns the end of the run of class cl starting at i.
func runEnd(s string, i int, cl uint8) int {
	for i < len(s) {
		c, w := classAt(s, i)
		if c != cl {
			break
		}
		i += w
	}
	return i
}

// spaceRun scans the whitespace run starting at i (s[i] is whitespace) and
// returns its end and the start of its last rune.
func spaceRun(s string, i int) (end, lastStart int) {
	end, lastStart = i, i
	for end < len(s) {
		c, w := classAt(s, end)
		if c != clsSpace {
			break
		}
		lastStart = end
		end += w
	}
	return end, lastStart
}

// contraction reports the length of an English contraction ('s 't 're 've
// 'm 'll 'd) at s[i] == '\”, or 0. fold makes the letters case-insensitive
// (LLaMA 3's (?i:...)); only ASCII letters fold to these in regexp2.
func contraction(s string, i int, fold bool) int {
	if i+1 >= len(s) {
		return 0
	}
	lower := func(c byte) byte {
		if fold && c >= 'A' && c <= 'Z' {
			return c + ('a' - 'A')
		}
		return c
	}
	switch lower(s[i+1]) {
	case 's', 't', 'm', 'd':
		return 2
	case 'r', 'v':
		if i+2 < len(s) && lower(s[i+2]) == 'e' {
			return 3
		}
	case 'l':
		if i+2 < len(s) && lower(s[i+2]) == 'l' {
			return 3
		}
	}
	return 0
}

// trailingSpace implements `\s+(?!\S)|\s+` at whitespace s[i]: the whole run
// when it ends the text or is one character long, else all but its last
// character (which then prefixes the next word).
func trailingSpace(s string, i int) int {
	end, last := spaceRun(s, i)
	if end == len(s) || last == i {
		return end
	}
	return last
}

// gpt2Next returns the end of the GPT2Pattern match that starts at i. The
// pattern matches everywhere, so the text is covered by consecutive matches.
func gpt2Next(s string, i int) int {
	if s[i] == '\'' {
		if n := contraction(s, i, false); n > 0 {
			return i + n
		}
	}
	// ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`
	if s[i] == ' ' && i+1 < len(s) {
		if c, _ := classAt(s, i+1); c != clsSpace {
			return runEnd(s, i+1, c)
		}
	}
	c, _ := classAt(s, i)
	if c != clsSpace {
		return runEnd(s, i, c)
	}
	return trailingSpace(s, i)
}

// llama3Next returns the end of the Llama3Pattern match that starts at i.
func llama3Next(s string, i int) int {
	if s[i] == '\'' {
		if n := contraction(s, i, true); n > 0 {
			return i + n
		}
	}
	r, w := runeAt(s, i)
	c := classOf(r)
	// `[^\r\n\p{L}\p{N}]?\p{L}+`
	if c == clsLetter {
		return runEnd(s, i, clsLetter)
	}
	if c != clsNumber && r != '\r' && r != '\n' && i+w < len(s) {
		if c2, _ := classAt(s, i+w); c2 == clsLetter {
			return runEnd(s, i+w, clsLetter)
		}
	}
	// `\p{N}{1,3}`
	if c == clsNumber {
		j := i
		for k := 0; k < 3 && j < len(s); k++ {
			cj, wj := classAt(s, j)
			if cj != clsNumber {
				break
			}
			j += wj
		}
		return j
	}
	// ` ?[^\s\p{L}\p{N}]+[\r\n]*`
	p := i
	if s[i] == ' ' && i+1 < len(s) {
		p = i + 1
	}
	if cp, _ := classAt(s, p); cp == clsOther {
		j := runEnd(s, p, clsOther)
		for j < len(s) && (s[j] == '\r' || s[j] == '\n') {
			j++
		}
		return j
	}
	// s[i] is whitespace from here on. `\s*[\r\n]+`: up to the run's last
	// line break.
	end, _ := spaceRun(s, i)
	for j := end - 1; j >= i; j-- {
		if s[j] == '\r' || s[j] == '\n' {
			return j + 1
		}
	}
	return trailingSpace(s, i)
}

// preStep is one stage of a pre-tokenizer pipeline: it cuts each piece that
// reaches it into smaller pieces.
type preStep struct {
	// next, when set, is a hand-written scanner for a known pattern.
	next func(s string, i int) int
	// re is the regexp2 fallback for Split patterns without a scanner.
	re *regexp2.Regexp
	// literal is a Split "String" pattern.
	literal string
	// prefixSpace is ByteLevel's add_prefix_space.
	prefixSpace bool
	// whole passes the piece through (ByteLevel with use_regex=false).
	whole bool
}

// preTokenizer cuts a text segment into the pieces BPE encodes one by one.
type preTokenizer struct {
	steps []preStep
}

// run calls emit with each piece of s, in order. Pieces concatenate to s
// (plus any prefix space ByteLevel adds).
func (p *preTokenizer) run(s string, emit func(string)) {
	p.runFrom(0, s, emit)
}

func (p *preTokenizer) runFrom(k int, s string, emit func(string)) {
	if k == len(p.steps) {
		if s != "" {
			emit(s)
		}
		return
	}
	st := &p.steps[k]
	if st.prefixSpace && (s == "" || s[0] != ' ') {
		s = " " + s
	}
	switch {
	case st.next != nil:
		for i := 0; i < len(s); {
			j := st.next(s, i)
			p.runFrom(k+1, s[i:j], emit)
			i = j
		}
	case st.re != nil:
		for _, piece := range regexSplit(st.re, s) {
			p.runFrom(k+1, piece, emit)
		}
	case st.literal != "":
		for s != "" {
			j := indexOf(s, st.literal)
			if j < 0 {
				p.runFrom(k+1, s, emit)
				return
			}
			if j > 0 {
				p.runFrom(k+1, s[:j], emit)
			}
			p.runFrom(k+1, s[j:j+len(st.literal)], emit)
			s = s[j+len(st.literal):]
		}
	default:
		p.runFrom(k+1, s, emit)
	}
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// regexSplit splits s into the matches of re and the gaps between them
// (HF's Split with behavior "Isolated"). regexp2 reports rune offsets, which
// are mapped back to byte offsets.
func regexSplit(re *regexp2.Regexp, s string) []string {
	runes := []rune(s)
	byteOff := make([]int, len(runes)+1)
	off := 0
	for i, r := range runes {
		byteOff[i] = off
		if r == utf8.RuneError {
			// Invalid bytes decode to U+FFFD one byte at a time.
			_, w := utf8.DecodeRuneInString(s[off:])
			off += w
		} else {
			off += utf8.RuneLen(r)
		}
	}
	byteOff[len(runes)] = off
	var out []string
	prev := 0
	m, err := re.FindRunesMatch(runes)
	for err == nil && m != nil {
		start, end := m.Index, m.Index+m.Length
		if start > prev {
			out = append(out, s[byteOff[prev]:byteOff[start]])
		}
		if end > start {
			out = append(out, s[byteOff[start]:byteOff[end]])
		}
		prev = end
		m, err = re.FindNextMatch(m)
	}
	if prev < len(runes) {
		out = append(out, s[byteOff[prev]:])
	}
	return out
}

// splitStep builds the step for an HF Split pattern: a scanner when the
// pattern is one we know, regexp2 otherwise.
func splitStep(pattern string, isRegex bool) (preStep, error) {
	if !isRegex {
		if pattern == "" {
			return preStep{}, fmt.Errorf("empty Split string pattern")
		}
		return preStep{literal: pattern}, nil
	}
	switch pattern {
	case GPT2Pattern:
		return preStep{next: gpt2Next}, nil
	case Llama3Pattern:
		return preStep{next: llama3Next}, nil
	}
	// regexp2.None keeps .NET semantics: \s is Unicode White_Space, as in
	// Oniguruma, which HF tokenizers uses.
	re, err := regexp2.Compile(pattern, regexp2.None)
	if err != nil {
		return preStep{}, fmt.Errorf("compile Split pattern %q: %w", pattern, err)
	}
	return preStep{re: re}, nil
}
