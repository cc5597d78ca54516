package resiliency

import (
	"errors"
	"fmt"
	"strconv"
)

// DefaultTrip is the trip expression of a circuit breaker that sets none, as in Dapr.
const DefaultTrip = "consecutiveFailures > 5"

// Limits of a trip expression: they keep parsing and evaluation cheap and the recursion
// shallow whatever a file holds.
const (
	maxTripLen   = 1024
	maxTripDepth = 64
)

// Counts are a circuit breaker's counters in its current generation, the variables of a trip
// expression. A generation starts whenever the breaker changes state and, in the closed state,
// every interval.
type Counts struct {
	// Requests counts the calls let through.
	Requests uint32
	// TotalSuccesses counts the calls that succeeded.
	TotalSuccesses uint32
	// TotalFailures counts the calls that failed.
	TotalFailures uint32
	// ConsecutiveSuccesses counts the successes since the last failure.
	ConsecutiveSuccesses uint32
	// ConsecutiveFailures counts the failures since the last success.
	ConsecutiveFailures uint32
}

// Trip is a compiled trip expression: the subset of CEL that Dapr users write over a circuit
// breaker's counts. It holds the variables requests, totalSuccesses, totalFailures,
// consecutiveSuccesses and consecutiveFailures, decimal integer literals, the comparisons
// > >= < <= == !=, the logical operators && || ! and parentheses, with CEL's precedence
// (! binds tightest, then the comparisons, left-associative, then &&, then ||). The
// expression must be of type bool. A Trip is immutable and safe for concurrent use.
type Trip struct {
	src  string
	root *tripNode
}

// ParseTrip compiles a trip expression. Anything outside the subset Trip describes, and any
// type error such as "requests && 1", is an error naming the offset at fault.
func ParseTrip(src string) (*Trip, error) {
	if len(src) > maxTripLen {
		return nil, fmt.Errorf("longer than %d bytes", maxTripLen)
	}
	p := &tripParser{src: src}
	if err := p.next(); err != nil {
		return nil, err
	}
	if p.tok.kind == tokEOF {
		return nil, errors.New("empty expression")
	}
	root, err := p.parseOr(0)
	if err != nil {
		return nil, err
	}
	if p.tok.kind != tokEOF {
		return nil, p.unexpected()
	}
	if root.typ != typeBool {
		return nil, errors.New("must be a condition (of type bool), not a number")
	}
	return &Trip{src: src, root: root}, nil
}

// String returns the expression as written.
func (t *Trip) String() string { return t.src }

// Eval reports whether the counts trip the breaker.
func (t *Trip) Eval(c Counts) bool {
	_, b := t.root.eval(&c)
	return b
}

type tripType int

const (
	typeInt tripType = iota + 1
	typeBool
)

func (t tripType) String() string {
	if t == typeBool {
		return "bool"
	}
	return "int"
}

type tripOp int

const (
	opVar tripOp = iota + 1
	opLit
	opNot
	opAnd
	opOr
	opGT
	opGE
	opLT
	opLE
	opEQ
	opNE
)

type tripVar int

const (
	varRequests tripVar = iota + 1
	varTotalSuccesses
	varTotalFailures
	varConsecutiveSuccesses
	varConsecutiveFailures
)

func lookupVar(name string) (tripVar, bool) {
	switch name {
	case "requests":
		return varRequests, true
	case "totalSuccesses":
		return varTotalSuccesses, true
	case "totalFailures":
		return varTotalFailures, true
	case "consecutiveSuccesses":
		return varConsecutiveSuccesses, true
	case "consecutiveFailures":
		return varConsecutiveFailures, true
	default:
		return 0, false
	}
}

type tripNode struct {
	op   tripOp
	typ  tripType
	v    tripVar
	lit  int64
	l, r *tripNode
}

// eval returns the node's value: an int, or a bool.
func (n *tripNode) eval(c *Counts) (int64, bool) {
	switch n.op {
	case opVar:
		switch n.v {
		case varTotalSuccesses:
			return int64(c.TotalSuccesses), false
		case varTotalFailures:
			return int64(c.TotalFailures), false
		case varConsecutiveSuccesses:
			return int64(c.ConsecutiveSuccesses), false
		case varConsecutiveFailures:
			return int64(c.ConsecutiveFailures), false
		default:
			return int64(c.Requests), false
		}
	case opLit:
		return n.lit, false
	case opNot:
		_, b := n.l.eval(c)
		return 0, !b
	case opAnd:
		if _, b := n.l.eval(c); !b {
			return 0, false
		}
		_, b := n.r.eval(c)
		return 0, b
	case opOr:
		if _, b := n.l.eval(c); b {
			return 0, true
		}
		_, b := n.r.eval(c)
		return 0, b
	}
	li, lb := n.l.eval(c)
	ri, rb := n.r.eval(c)
	switch n.op {
	case opGT:
		return 0, li > ri
	case opGE:
		return 0, li >= ri
	case opLT:
		return 0, li < ri
	case opLE:
		return 0, li <= ri
	case opEQ:
		return 0, li == ri && lb == rb
	default: // opNE
		return 0, li != ri || lb != rb
	}
}

type tokKind int

const (
	tokEOF tokKind = iota
	tokIdent
	tokInt
	tokOp
	tokLParen
	tokRParen
)

type token struct {
	kind tokKind
	text string
	pos  int
}

type tripParser struct {
	src string
	pos int
	tok token
}

// next reads the next token into p.tok.
func (p *tripParser) next() error {
	for p.pos < len(p.src) {
		switch p.src[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
			continue
		}
		break
	}
	start := p.pos
	if p.pos >= len(p.src) {
		p.tok = token{kind: tokEOF, pos: start}
		return nil
	}
	c := p.src[p.pos]
	switch {
	case isLetter(c):
		for p.pos < len(p.src) && (isLetter(p.src[p.pos]) || isDigit(p.src[p.pos])) {
			p.pos++
		}
		p.tok = token{kind: tokIdent, text: p.src[start:p.pos], pos: start}
		return nil
	case isDigit(c):
		for p.pos < len(p.src) && isDigit(p.src[p.pos]) {
			p.pos++
		}
		if p.pos < len(p.src) && (isLetter(p.src[p.pos]) || p.src[p.pos] == '.') {
			return fmt.Errorf("offset %d: only decimal integer literals are supported", start)
		}
		p.tok = token{kind: tokInt, text: p.src[start:p.pos], pos: start}
		return nil
	case c == '(':
		p.pos++
		p.tok = token{kind: tokLParen, text: "(", pos: start}
		return nil
	case c == ')':
		p.pos++
		p.tok = token{kind: tokRParen, text: ")", pos: start}
		return nil
	}
	for _, op := range []string{">=", "<=", "==", "!=", "&&", "||", ">", "<", "!"} {
		if len(p.src)-p.pos >= len(op) && p.src[p.pos:p.pos+len(op)] == op {
			p.pos += len(op)
			p.tok = token{kind: tokOp, text: op, pos: start}
			return nil
		}
	}
	r := []rune(p.src[p.pos:])[0]
	return fmt.Errorf("offset %d: unsupported character %q (supported: variables, integers, > >= < <= == != && || ! and parentheses)", start, r)
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func (p *tripParser) unexpected() error {
	if p.tok.kind == tokEOF {
		return fmt.Errorf("offset %d: unexpected end of expression", p.tok.pos)
	}
	return fmt.Errorf("offset %d: unexpected %q", p.tok.pos, p.tok.text)
}

func (p *tripParser) parseOr(depth int) (*tripNode, error) {
	return p.parseLogical(depth, "||", opOr, p.parseAnd)
}

func (p *tripParser) parseAnd(depth int) (*tripNode, error) {
	return p.parseLogical(depth, "&&", opAnd, p.parseRelation)
}

func (p *tripParser) parseLogical(depth int, sym string, op tripOp, operand func(int) (*tripNode, error)) (*tripNode, error) {
	left, err := operand(depth)
	if err != nil {
		return nil, err
	}
	for p.tok.kind == tokOp && p.tok.text == sym {
		pos := p.tok.pos
		if err := p.next(); err != nil {
			return nil, err
		}
		right, err := operand(depth)
		if err != nil {
			return nil, err
		}
		if left.typ != typeBool || right.typ != typeBool {
			return nil, fmt.Errorf("offset %d: %s needs conditions on both sides, got %s and %s", pos, sym, left.typ, right.typ)
		}
		left = &tripNode{op: op, typ: typeBool, l: left, r: right}
	}
	return left, nil
}

func relOp(text string) (tripOp, bool) {
	switch text {
	case ">":
		return opGT, true
	case ">=":
		return opGE, true
	case "<":
		return opLT, true
	case "<=":
		return opLE, true
	case "==":
		return opEQ, true
	case "!=":
		return opNE, true
	default:
		return 0, false
	}
}

func (p *tripParser) parseRelation(depth int) (*tripNode, error) {
	left, err := p.parseUnary(depth)
	if err != nil {
		return nil, err
	}
	for p.tok.kind == tokOp {
		op, ok := relOp(p.tok.text)
		if !ok {
			break
		}
		sym, pos := p.tok.text, p.tok.pos
		if err := p.next(); err != nil {
			return nil, err
		}
		right, err := p.parseUnary(depth)
		if err != nil {
			return nil, err
		}
		ordering := op != opEQ && op != opNE
		switch {
		case ordering && (left.typ != typeInt || right.typ != typeInt):
			return nil, fmt.Errorf("offset %d: %s compares numbers, got %s and %s", pos, sym, left.typ, right.typ)
		case left.typ != right.typ:
			return nil, fmt.Errorf("offset %d: %s compares values of one type, got %s and %s", pos, sym, left.typ, right.typ)
		}
		left = &tripNode{op: op, typ: typeBool, l: left, r: right}
	}
	return left, nil
}

func (p *tripParser) parseUnary(depth int) (*tripNode, error) {
	if depth >= maxTripDepth {
		return nil, fmt.Errorf("offset %d: nested deeper than %d levels", p.tok.pos, maxTripDepth)
	}
	if p.tok.kind == tokOp && p.tok.text == "!" {
		pos := p.tok.pos
		if err := p.next(); err != nil {
			return nil, err
		}
		operand, err := p.parseUnary(depth + 1)
		if err != nil {
			return nil, err
		}
		if operand.typ != typeBool {
			return nil, fmt.Errorf("offset %d: ! needs a condition, got %s", pos, operand.typ)
		}
		return &tripNode{op: opNot, typ: typeBool, l: operand}, nil
	}
	return p.parsePrimary(depth)
}

func (p *tripParser) parsePrimary(depth int) (*tripNode, error) {
	tok := p.tok
	switch tok.kind {
	case tokIdent:
		v, ok := lookupVar(tok.text)
		if !ok {
			return nil, fmt.Errorf("offset %d: unknown variable %q (want requests, totalSuccesses, totalFailures, "+
				"consecutiveSuccesses or consecutiveFailures)", tok.pos, tok.text)
		}
		if err := p.next(); err != nil {
			return nil, err
		}
		return &tripNode{op: opVar, typ: typeInt, v: v}, nil
	case tokInt:
		n, err := strconv.ParseInt(tok.text, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("offset %d: integer %s out of range", tok.pos, tok.text)
		}
		if err := p.next(); err != nil {
			return nil, err
		}
		return &tripNode{op: opLit, typ: typeInt, lit: n}, nil
	case tokLParen:
		if err := p.next(); err != nil {
			return nil, err
		}
		inner, err := p.parseOr(depth + 1)
		if err != nil {
			return nil, err
		}
		if p.tok.kind != tokRParen {
			return nil, p.unexpected()
		}
		if err := p.next(); err != nil {
			return nil, err
		}
		return inner, nil
	default:
		return nil, p.unexpected()
	}
}
