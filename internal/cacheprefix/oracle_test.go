package cacheprefix

import (
	"crypto/sha256"
	"encoding/json"
	"hash"

	"github.com/clade-dev/clade/internal/wire"
)

// ofOracle is Of as it was before the one-pass scan (layout.go): a second decode
// of the body with encoding/json, and each block canonicalised by decoding it into
// a map and encoding it again. Kept as the oracle the scan must equal
// (FuzzOfMatchesOracle, TestOfMatchesOracleOnRandomBodies) and as the baseline of
// BenchmarkOf.
func ofOracle(model string, req *wire.MessageRequest, body []byte) Scan {
	var s Scan
	w := oracleWalker{s: &s}
	if HasCacheControl(req) {
		var raw oracleRequest
		if json.Unmarshal(body, &raw) == nil && len(raw.Tools) == len(req.Tools) && len(raw.Messages) == len(req.Messages) {
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

type oracleRequest struct {
	Tools    []json.RawMessage `json:"tools"`
	System   json.RawMessage   `json:"system"`
	Messages []struct {
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
}

type oracleWalker struct {
	s   *Scan
	h   hash.Hash
	raw *oracleRequest
	buf []byte
}

func (w *oracleWalker) point(tokens int64, tag byte, canon []byte, cc *wire.CacheControl) {
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

func (w *oracleWalker) tool(i int) []byte {
	if w.h == nil {
		return nil
	}
	return oracleCanonical(w.raw.Tools[i])
}

func (w *oracleWalker) rawSystem() json.RawMessage {
	if w.raw == nil {
		return nil
	}
	return w.raw.System
}

func (w *oracleWalker) blocks(raw json.RawMessage) []json.RawMessage {
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

func (w *oracleWalker) at(blocks []json.RawMessage, i int, b wire.Block) []byte {
	if w.h == nil {
		return nil
	}
	if i < len(blocks) {
		return oracleCanonical(blocks[i])
	}
	c, _ := json.Marshal(map[string]string{"type": b.Type, "text": b.Text})
	return c
}

func oracleCanonical(raw json.RawMessage) []byte {
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
