package tokenizer

import "unicode/utf8"

// byteLevel is GPT-2's reversible byte↔character table: every byte gets a
// printable Unicode character so that vocabularies stay valid JSON strings.
// Bytes that are printable Latin-1 map to themselves; the others (control
// codes, space, 127–160, 173) map to U+0100 upward in byte order. It is
// built per Tokenizer (no package state) and never changes afterwards.
type byteLevel struct {
	toRune [256]rune
	toByte map[rune]byte
}

func newByteLevel() *byteLevel {
	bl := &byteLevel{toByte: make(map[rune]byte, 256)}
	n := rune(0)
	for b := 0; b < 256; b++ {
		printable := (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
		r := rune(b)
		if !printable {
			r = 256 + n
			n++
		}
		bl.toRune[b] = r
		bl.toByte[r] = byte(b)
	}
	return bl
}

// encode maps raw bytes to their byte-level string form (as stored in vocab).
func (bl *byteLevel) encode(raw []byte) string {
	buf := make([]byte, 0, len(raw)*2)
	for _, b := range raw {
		buf = utf8.AppendRune(buf, bl.toRune[b])
	}
	return string(buf)
}

// decode maps a byte-level vocabulary string back to raw bytes. ok is false
// when the string holds a character outside the table (not a byte-level
// token, e.g. an added token stored verbatim in vocab).
func (bl *byteLevel) decode(s string) (raw []byte, ok bool) {
	raw = make([]byte, 0, len(s))
	for _, r := range s {
		b, found := bl.toByte[r]
		if !found {
			return nil, false
		}
		raw = append(raw, b)
	}
	return raw, true
}
