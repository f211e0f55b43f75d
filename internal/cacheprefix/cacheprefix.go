// Package cacheprefix finds a Messages request's prompt-cache prefixes the way the
// API defines them, for the emulator's cache and for the runner's scheduling: one
// mechanism, so what the runner groups by is exactly what the emulator caches.
//
// # Model
//
// The API caches a request's prompt in a fixed order: tools, then system, then the
// messages' content blocks. A block with cache_control (a breakpoint; the top-level
// cache_control marks the last block) caches everything up to and including it, for
// 5 minutes (the default) or 1 hour. A breakpoint also looks back at most
// LookbackBlocks blocks for an earlier prefix already cached. A prefix shorter than
// the model's minimum cacheable length (catalog min_cache_tokens) is not cached.
//
// Scan walks a parsed request once: its token count under the emulator's rule (the
// rule intake's estimate follows; docs/emulator.md), and, when the request has a
// breakpoint, a Point per block with the Key of the prefix that ends there. A Key is a
// SHA-256 of the model and of each block's canonical bytes: its JSON with the
// cache_control member removed, keys sorted, whitespace dropped (string content counts
// as one text block), each message's role marked. Requests without cache_control get
// no points and no hashing. The tokens come from the parsed request; the canonical
// bytes from one scan of the body's bytes, hashed as they are read, without a second
// decode (layout.go; FuzzOfMatchesOracle holds it to the encoding/json
// implementation it replaced, so keys stored by earlier versions still match).
package cacheprefix

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"hash"
	"time"

	"github.com/clade-dev/clade/internal/wire"
)

// LookbackBlocks is how many blocks before a breakpoint the API checks for an earlier
// cached prefix.
const LookbackBlocks = 20

// Token counting rule (docs/emulator.md): no Claude tokenizer exists offline.
//
//	text                     ceil(UTF-8 bytes / 4)
//	each message             +4
//	system prompt            +2 when present
//	request                  +3
//	image or document block  1,500
//	tools                    +300 when any, plus ceil(bytes of each definition / 4)
const (
	TokensPerRequest = 3
	TokensPerMessage = 4
	TokensPerSystem  = 2
	TokensPerMedia   = 1500
	TokensForTools   = 300
)

// TextTokens counts a text under the rule.
func TextTokens(s string) int64 { return int64((len(s) + 3) / 4) }

// Key identifies a prefix: the first 16 bytes of the SHA-256 of its canonical bytes.
type Key [16]byte

// String is the key in hex (32 characters), as stored with a job.
func (k Key) String() string { return hex.EncodeToString(k[:]) }

// ParseKey reads a key written by String.
func ParseKey(s string) (Key, bool) {
	var k Key
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(k) {
		return Key{}, false
	}
	copy(k[:], b)
	return k, true
}

// Point is a block boundary: the prefix up to and including one block.
type Point struct {
	Tokens int64              // input tokens of the prefix
	Key    Key                // the prefix's identity
	CC     *wire.CacheControl // the block's breakpoint; nil when it has none
}

// TTL is the point's cache lifetime: 1 hour for ttl "1h", else 5 minutes.
func (p Point) TTL() time.Duration { return TTL(p.CC) }

// TTL is the lifetime a breakpoint asks for: 1 hour for ttl "1h", else 5 minutes.
func TTL(cc *wire.CacheControl) time.Duration {
	if cc != nil && cc.TTL == "1h" {
		return time.Hour
	}
	return 5 * time.Minute
}

// Scan is one request's counted input and cache points.
type Scan struct {
	// Total is the request's input tokens.
	Total int64
	// Points has one entry per block in cache order when the request has a
	// breakpoint; nil otherwise.
	Points []Point
	// Breakpoints are the indexes in Points of the blocks with cache_control, in
	// order.
	Breakpoints []int
}

// Breakpoint is one of Scan's breakpoints that can be cached.
type Breakpoint struct {
	Index int // in Scan.Points
	Point
}

// Eligible returns the breakpoints whose prefix is at least minTokens long (the
// model's min_cache_tokens): those the API caches.
func (s Scan) Eligible(minTokens int64) []Breakpoint {
	var out []Breakpoint
	for _, i := range s.Breakpoints {
		if p := s.Points[i]; p.Tokens >= minTokens {
			out = append(out, Breakpoint{Index: i, Point: p})
		}
	}
	return out
}

// Lookback returns the points a read at breakpoint b may hit, nearest first: b itself
// and up to LookbackBlocks blocks before it.
func (s Scan) Lookback(b Breakpoint) []Point {
	lo := max(0, b.Index-LookbackBlocks)
	out := make([]Point, 0, b.Index-lo+1)
	for i := b.Index; i >= lo; i-- {
		out = append(out, s.Points[i])
	}
	return out
}

// Prefix is the prefix a request is scheduled by: its last cacheable breakpoint.
type Prefix struct {
	Key    Key
	Tokens int64
	TTL    time.Duration
}

// Last is the longest cacheable prefix of s (its last breakpoint of at least
// minTokens), and false when there is none.
func (s Scan) Last(minTokens int64) (Prefix, bool) {
	e := s.Eligible(minTokens)
	if len(e) == 0 {
		return Prefix{}, false
	}
	b := e[len(e)-1]
	return Prefix{Key: b.Key, Tokens: b.Tokens, TTL: b.TTL()}, true
}

// HasCacheControl reports whether req has any breakpoint.
func HasCacheControl(req *wire.MessageRequest) bool {
	if req.CacheControl != nil {
		return true
	}
	for _, t := range req.Tools {
		if t.CacheControl != nil {
			return true
		}
	}
	for _, b := range req.System {
		if b.CacheControl != nil {
			return true
		}
	}
	for _, m := range req.Messages {
		for _, b := range m.Content {
			if b.CacheControl != nil {
				return true
			}
		}
	}
	return false
}

// Of scans req, parsed from body (wire.ParseMessageRequest) for model: model is the
// id the request is sent with (caches are per model). The tokens come from req; the
// keys from one scan of body's bytes (layout.go), made only when req has a
// breakpoint.
func Of(model string, req *wire.MessageRequest, body []byte) Scan {
	var s Scan
	w := walker{s: &s}
	if HasCacheControl(req) {
		l := getLayout()
		defer l.release()
		if l.read(body) && l.tools.len() == len(req.Tools) && len(l.msgs) == len(req.Messages) {
			if l.h == nil {
				l.h = sha256.New()
			} else {
				l.h.Reset()
			}
			w.h, w.l = l.h, l
			w.write(append(l.scratch[:0], model...))
		}
	}
	n := int64(TokensPerRequest)
	if len(req.Tools) > 0 {
		n += TokensForTools
		for i, t := range req.Tools {
			n += TextTokens(string(t.Raw))
			w.point(n, 't', w.tool(i), t.CacheControl)
		}
	}
	if len(req.System) > 0 {
		n += TokensPerSystem
		blocks := w.system()
		for i, b := range req.System {
			n += BlockTokens(b)
			w.point(n, 's', w.at(blocks, i, b), b.CacheControl)
		}
	}
	for mi, m := range req.Messages {
		n += TokensPerMessage
		if w.h != nil {
			w.write(append(append(w.l.scratch[:0], 'm'), m.Role...))
		}
		blocks := w.content(mi)
		for i, b := range m.Content {
			n += BlockTokens(b)
			w.point(n, 'b', w.at(blocks, i, b), b.CacheControl)
		}
	}
	if req.CacheControl != nil && len(s.Points) > 0 {
		// Top-level cache_control (automatic caching) marks the last block.
		last := len(s.Points) - 1
		if s.Points[last].CC == nil {
			s.Points[last].CC = req.CacheControl
			s.Breakpoints = append(s.Breakpoints, last)
		}
	}
	if w.h == nil {
		s.Points, s.Breakpoints = nil, nil
	}
	s.Total = n
	return s
}

// BlockTokens counts one content block under the rule.
func BlockTokens(b wire.Block) int64 {
	n := TextTokens(b.Text)
	if b.Media {
		n += TokensPerMedia
	}
	return n
}

type walker struct {
	s *Scan
	h hash.Hash // nil: no hashing
	l *layout
}

// write hashes b, a slice of the layout's scratch (kept for the next write).
func (w *walker) write(b []byte) {
	w.h.Write(b)
	w.l.scratch = b[:0]
}

func (w *walker) point(tokens int64, tag byte, canon []byte, cc *wire.CacheControl) {
	if w.h == nil {
		return
	}
	hdr := append(w.l.scratch[:0], tag)
	for i := range 8 { // the length, little-endian
		hdr = append(hdr, byte(len(canon)>>(8*i)))
	}
	w.write(hdr)
	w.h.Write(canon)
	var p Point
	p.Tokens, p.CC = tokens, cc
	sum := w.h.Sum(w.l.scratch[:0])
	copy(p.Key[:], sum)
	w.l.scratch = sum[:0]
	if cc != nil {
		w.s.Breakpoints = append(w.s.Breakpoints, len(w.s.Points))
	}
	w.s.Points = append(w.s.Points, p)
}

// tool is tool i's canonical bytes (the layout has as many tools as req).
func (w *walker) tool(i int) []byte {
	if w.h == nil {
		return nil
	}
	return w.l.block(w.l.tools, i)
}

// system is the system prompt's blocks; none when nothing is hashed.
func (w *walker) system() section {
	if w.h == nil {
		return section{}
	}
	return w.l.system
}

// content is message i's blocks; none when nothing is hashed.
func (w *walker) content(i int) section {
	if w.h == nil {
		return section{}
	}
	return w.l.msgs[i]
}

// at is block i's canonical bytes; the parsed block's type and text when the body's
// value does not have it.
func (w *walker) at(sec section, i int, b wire.Block) []byte {
	if w.h == nil {
		return nil
	}
	if i < sec.len() {
		return w.l.block(sec, i)
	}
	c, _ := json.Marshal(map[string]string{"type": b.Type, "text": b.Text})
	return c
}
