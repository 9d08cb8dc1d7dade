package certificate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// ErrNotCanonical is wrapped by every error that reports input which is valid JSON but not
// in its RFC 8785 canonical form (a manifest line, a proof leaf).
var ErrNotCanonical = errors.New("not canonical JSON (RFC 8785)")

// maxJSONDepth bounds nesting so hostile input cannot exhaust the stack.
const maxJSONDepth = 512

// maxSafeInteger is 2^53: integers beyond it cannot be represented exactly as an IEEE 754
// double, which is what RFC 8785 (and I-JSON, RFC 7493) numbers are.
const maxSafeInteger = 1 << 53

// Canonicalize marshals v with encoding/json and returns its RFC 8785 (JCS) form: object
// members sorted by the UTF-16 code units of their names, no insignificant whitespace,
// numbers in ECMAScript (ES6) form, strings with JCS escaping. Note that encoding/json
// silently replaces invalid UTF-8 in Go strings with U+FFFD; callers that must not lose
// bytes validate their strings first (MarshalLine does).
func Canonicalize(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return CanonicalizeJSON(b)
}

// CanonicalizeJSON parses one JSON text strictly and returns its RFC 8785 form. It rejects
// what RFC 8785 cannot canonicalize: invalid UTF-8, lone surrogates, duplicate member
// names, numbers that overflow a double, integer literals whose magnitude exceeds 2^53
// (they would silently lose precision), and trailing data.
func CanonicalizeJSON(b []byte) ([]byte, error) {
	p := jsonParser{data: b}
	p.skipSpace()
	var out bytes.Buffer
	out.Grow(len(b))
	if err := p.value(&out, 0); err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos != len(p.data) {
		return nil, p.errorf("unexpected data after the JSON value")
	}
	return out.Bytes(), nil
}

type jsonParser struct {
	data []byte
	pos  int
}

func (p *jsonParser) errorf(format string, args ...any) error {
	return fmt.Errorf("json: offset %d: %s", p.pos, fmt.Sprintf(format, args...))
}

func (p *jsonParser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *jsonParser) value(out *bytes.Buffer, depth int) error {
	if depth > maxJSONDepth {
		return p.errorf("nesting deeper than %d", maxJSONDepth)
	}
	if p.pos >= len(p.data) {
		return p.errorf("unexpected end of input")
	}
	switch c := p.data[p.pos]; {
	case c == '{':
		return p.object(out, depth)
	case c == '[':
		return p.array(out, depth)
	case c == '"':
		s, err := p.str()
		if err != nil {
			return err
		}
		writeJCSString(out, s)
		return nil
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number(out)
	default:
		for _, lit := range []string{"true", "false", "null"} {
			if bytes.HasPrefix(p.data[p.pos:], []byte(lit)) {
				p.pos += len(lit)
				out.WriteString(lit)
				return nil
			}
		}
		return p.errorf("invalid character %q", c)
	}
}

type jsonMember struct {
	name  string
	key   []uint16
	value []byte
}

func (p *jsonParser) object(out *bytes.Buffer, depth int) error {
	p.pos++ // '{'
	var members []jsonMember
	seen := map[string]bool{}
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		out.WriteString("{}")
		return nil
	}
	for {
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return p.errorf("expected a member name")
		}
		name, err := p.str()
		if err != nil {
			return err
		}
		if seen[name] {
			return p.errorf("duplicate member name %q", name)
		}
		seen[name] = true
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return p.errorf("expected ':' after member name")
		}
		p.pos++
		p.skipSpace()
		var v bytes.Buffer
		if err := p.value(&v, depth+1); err != nil {
			return err
		}
		members = append(members, jsonMember{name: name, key: utf16.Encode([]rune(name)), value: v.Bytes()})
		p.skipSpace()
		if p.pos >= len(p.data) {
			return p.errorf("unexpected end of input in object")
		}
		if p.data[p.pos] == ',' {
			p.pos++
			continue
		}
		if p.data[p.pos] == '}' {
			p.pos++
			break
		}
		return p.errorf("expected ',' or '}' in object")
	}
	sort.Slice(members, func(i, j int) bool { return lessUTF16(members[i].key, members[j].key) })
	out.WriteByte('{')
	for i, m := range members {
		if i > 0 {
			out.WriteByte(',')
		}
		writeJCSString(out, m.name)
		out.WriteByte(':')
		out.Write(m.value)
	}
	out.WriteByte('}')
	return nil
}

func lessUTF16(a, b []uint16) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return len(a) < len(b)
}

func (p *jsonParser) array(out *bytes.Buffer, depth int) error {
	p.pos++ // '['
	out.WriteByte('[')
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		out.WriteByte(']')
		return nil
	}
	for i := 0; ; i++ {
		if i > 0 {
			out.WriteByte(',')
		}
		p.skipSpace()
		if err := p.value(out, depth+1); err != nil {
			return err
		}
		p.skipSpace()
		if p.pos >= len(p.data) {
			return p.errorf("unexpected end of input in array")
		}
		if p.data[p.pos] == ',' {
			p.pos++
			continue
		}
		if p.data[p.pos] == ']' {
			p.pos++
			out.WriteByte(']')
			return nil
		}
		return p.errorf("expected ',' or ']' in array")
	}
}

// str parses a JSON string at p.pos (which is '"') and returns its decoded value.
func (p *jsonParser) str() (string, error) {
	p.pos++ // opening quote
	var sb strings.Builder
	for {
		if p.pos >= len(p.data) {
			return "", p.errorf("unterminated string")
		}
		c := p.data[p.pos]
		switch {
		case c == '"':
			p.pos++
			return sb.String(), nil
		case c == '\\':
			if p.pos+1 >= len(p.data) {
				return "", p.errorf("unterminated escape")
			}
			e := p.data[p.pos+1]
			p.pos += 2
			switch e {
			case '"', '\\', '/':
				sb.WriteByte(e)
			case 'b':
				sb.WriteByte('\b')
			case 'f':
				sb.WriteByte('\f')
			case 'n':
				sb.WriteByte('\n')
			case 'r':
				sb.WriteByte('\r')
			case 't':
				sb.WriteByte('\t')
			case 'u':
				r, err := p.hex4()
				if err != nil {
					return "", err
				}
				if utf16.IsSurrogate(r) {
					if r >= 0xDC00 {
						return "", p.errorf("lone low surrogate \\u%04x", r)
					}
					if p.pos+1 >= len(p.data) || p.data[p.pos] != '\\' || p.data[p.pos+1] != 'u' {
						return "", p.errorf("lone high surrogate \\u%04x", r)
					}
					p.pos += 2
					r2, err := p.hex4()
					if err != nil {
						return "", err
					}
					if r2 < 0xDC00 || r2 > 0xDFFF {
						return "", p.errorf("high surrogate \\u%04x not followed by a low surrogate", r)
					}
					r = utf16.DecodeRune(r, r2)
				}
				sb.WriteRune(r)
			default:
				return "", p.errorf("invalid escape \\%c", e)
			}
		case c < 0x20:
			return "", p.errorf("control character 0x%02x in string", c)
		case c < utf8.RuneSelf:
			sb.WriteByte(c)
			p.pos++
		default:
			r, size := utf8.DecodeRune(p.data[p.pos:])
			if r == utf8.RuneError && size <= 1 {
				return "", p.errorf("invalid UTF-8 in string")
			}
			sb.Write(p.data[p.pos : p.pos+size])
			p.pos += size
		}
	}
}

func (p *jsonParser) hex4() (rune, error) {
	if p.pos+4 > len(p.data) {
		return 0, p.errorf("short \\u escape")
	}
	var r rune
	for _, c := range p.data[p.pos : p.pos+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, p.errorf("invalid \\u escape")
		}
	}
	p.pos += 4
	return r, nil
}

func (p *jsonParser) number(out *bytes.Buffer) error {
	start := p.pos
	isInt := true
	if p.data[p.pos] == '-' {
		p.pos++
	}
	digits := func() int {
		n := 0
		for p.pos < len(p.data) && p.data[p.pos] >= '0' && p.data[p.pos] <= '9' {
			p.pos++
			n++
		}
		return n
	}
	if p.pos < len(p.data) && p.data[p.pos] == '0' {
		p.pos++
	} else if digits() == 0 {
		return p.errorf("invalid number")
	}
	if p.pos < len(p.data) && p.data[p.pos] == '.' {
		isInt = false
		p.pos++
		if digits() == 0 {
			return p.errorf("invalid number: no digits after '.'")
		}
	}
	if p.pos < len(p.data) && (p.data[p.pos] == 'e' || p.data[p.pos] == 'E') {
		isInt = false
		p.pos++
		if p.pos < len(p.data) && (p.data[p.pos] == '+' || p.data[p.pos] == '-') {
			p.pos++
		}
		if digits() == 0 {
			return p.errorf("invalid number: no digits in exponent")
		}
	}
	lit := string(p.data[start:p.pos])
	f, err := strconv.ParseFloat(lit, 64)
	if err != nil {
		return p.errorf("number %s out of range", lit)
	}
	s, err := FormatES6Number(f)
	if err != nil {
		return p.errorf("%v", err)
	}
	// An integer literal must survive the trip through a double unchanged (I-JSON,
	// RFC 7493): below 2^53 every integer does; above, only those spelled the way the
	// double prints (as RFC 8785 itself writes 1e20, say).
	if isInt && math.Abs(f) >= maxSafeInteger && s != lit {
		return p.errorf("integer %s cannot be represented exactly (it would become %s)", truncate(lit, 40), s)
	}
	out.WriteString(s)
	return nil
}

// FormatES6Number formats f the way ECMAScript's Number.prototype.toString does (ECMA-262
// 7.1.12.1), which is what RFC 8785 requires: the shortest digits that round-trip, plain
// notation for exponents in [-7, 21), exponent notation ("1e+21", "5e-324") otherwise.
// NaN and infinities are not JSON and are rejected.
func FormatES6Number(f float64) (string, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return "", fmt.Errorf("number %v is not representable in JSON", f)
	}
	if f == 0 {
		return "0", nil // also -0
	}
	sign := ""
	if f < 0 {
		sign = "-"
		f = -f
	}
	// strconv's shortest 'e' form is d[.ddd]e±XX; digits and exponent follow from it.
	e := strconv.FormatFloat(f, 'e', -1, 64)
	mant, expStr, _ := strings.Cut(e, "e")
	digits := strings.Replace(mant, ".", "", 1)
	exp, err := strconv.Atoi(expStr)
	if err != nil {
		return "", err
	}
	k := len(digits)
	n := exp + 1 // value = 0.digits × 10^n
	var s string
	switch {
	case k <= n && n <= 21:
		s = digits + strings.Repeat("0", n-k)
	case 0 < n && n <= 21:
		s = digits[:n] + "." + digits[n:]
	case -6 < n && n <= 0:
		s = "0." + strings.Repeat("0", -n) + digits
	default:
		es := "+"
		if n-1 < 0 {
			es = "-"
		}
		ex := n - 1
		if ex < 0 {
			ex = -ex
		}
		if k == 1 {
			s = digits + "e" + es + strconv.Itoa(ex)
		} else {
			s = digits[:1] + "." + digits[1:] + "e" + es + strconv.Itoa(ex)
		}
	}
	return sign + s, nil
}

// writeJCSString writes s as a JSON string the way RFC 8785 section 3.2.2.2 prescribes:
// '"' and '\' escaped, U+0000..U+001F as \b \t \n \f \r or \u00xx (lowercase hex), every
// other code point as its UTF-8 bytes. s must be valid UTF-8.
func writeJCSString(out *bytes.Buffer, s string) {
	const hexDigits = "0123456789abcdef"
	out.WriteByte('"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		out.WriteString(s[start:i])
		switch c {
		case '"':
			out.WriteString(`\"`)
		case '\\':
			out.WriteString(`\\`)
		case '\b':
			out.WriteString(`\b`)
		case '\t':
			out.WriteString(`\t`)
		case '\n':
			out.WriteString(`\n`)
		case '\f':
			out.WriteString(`\f`)
		case '\r':
			out.WriteString(`\r`)
		default:
			out.WriteString(`\u00`)
			out.WriteByte(hexDigits[c>>4])
			out.WriteByte(hexDigits[c&0xF])
		}
		start = i + 1
	}
	out.WriteString(s[start:])
	out.WriteByte('"')
}
