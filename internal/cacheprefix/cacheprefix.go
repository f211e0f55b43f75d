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
// no points and no hashing.
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

// rawRequest is the part of the body whose bytes are cached.
type rawRequest struct {
	Tools    []json.RawMessage `json:"tools"`
	System   json.RawMessage   `json:"system"`
	Messages []struct {
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
}

// Of scans req, parsed from body (wire.ParseMessageRequest) for model: model is the
// id the request is sent with (caches are per model).
func Of(model string, req *wire.MessageRequest, body []byte) Scan {
	var s Scan
	w := walker{s: &s}
	if HasCacheControl(req) {
		var raw rawRequest
		if json.Unmarshal(body, &raw) == nil && aligned(req, &raw) {
			w.h = sha256.New()
			w.h.Write([]byte(model))
			w.raw = &raw
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
		blocks := w.blocks(w.rawSystem())
		for i, b := range req.System {
			n += BlockTokens(b)
			w.point(n, 's', w.at(blocks, i, b), b.CacheControl)
		}
	}
	for mi, m := range req.Messages {
		n += TokensPerMessage
		if w.h != nil {
			w.h.Write([]byte{'m'})
			w.h.Write([]byte(m.Role))
		}
		var blocks []json.RawMessage
		if w.raw != nil {
			blocks = w.blocks(w.raw.Messages[mi].Content)
		}
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

// aligned reports whether the raw decode has the parsed request's shape.
func aligned(req *wire.MessageRequest, raw *rawRequest) bool {
	return len(raw.Tools) == len(req.Tools) && len(raw.Messages) == len(req.Messages)
}

type walker struct {
	s   *Scan
	h   hash.Hash // nil: no hashing
	raw *rawRequest
	buf []byte
}

func (w *walker) point(tokens int64, tag byte, canon []byte, cc *wire.CacheControl) {
	if w.h == nil {
		return
	}
	w.h.Write([]byte{tag})
	var n [8]byte
	l := len(canon)
	for i := range n {
		n[i] = byte(l >> (8 * i))
	}
	w.h.Write(n[:])
	w.h.Write(canon)
	var p Point
	p.Tokens, p.CC = tokens, cc
	w.buf = w.h.Sum(w.buf[:0])
	copy(p.Key[:], w.buf)
	if cc != nil {
		w.s.Breakpoints = append(w.s.Breakpoints, len(w.s.Points))
	}
	w.s.Points = append(w.s.Points, p)
}

func (w *walker) tool(i int) []byte {
	if w.h == nil {
		return nil
	}
	return canonical(w.raw.Tools[i])
}

func (w *walker) rawSystem() json.RawMessage {
	if w.raw == nil {
		return nil
	}
	return w.raw.System
}

// blocks splits a content value (a string or a list of blocks) into blocks.
func (w *walker) blocks(raw json.RawMessage) []json.RawMessage {
	if w.h == nil || len(raw) == 0 {
		return nil
	}
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) == nil {
		return list
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		b, _ := json.Marshal(map[string]string{"type": "text", "text": s})
		return []json.RawMessage{b}
	}
	return nil
}

// at is block i's canonical bytes; the parsed block's type and text when the raw
// decode does not have it.
func (w *walker) at(blocks []json.RawMessage, i int, b wire.Block) []byte {
	if w.h == nil {
		return nil
	}
	if i < len(blocks) {
		return canonical(blocks[i])
	}
	c, _ := json.Marshal(map[string]string{"type": b.Type, "text": b.Text})
	return c
}

// canonical is a block's bytes without cache_control, keys sorted, compact.
func canonical(raw json.RawMessage) []byte {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return raw
	}
	delete(m, "cache_control")
	b, err := json.Marshal(m)
	if err != nil {
		return raw
	}
	return b
}
