package emulator

import (
	"net/http"
	"strconv"
	"time"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/wire"
)

// ModelInfo is a /v1/models item.
type ModelInfo struct {
	ID             string         `json:"id"`
	Type           string         `json:"type"`
	DisplayName    string         `json:"display_name"`
	CreatedAt      string         `json:"created_at"`
	MaxInputTokens int64          `json:"max_input_tokens"`
	MaxTokens      int64          `json:"max_tokens"`
	Lifecycle      string         `json:"lifecycle"`
	Line           *string        `json:"line"`
	DeprecatedAt   *string        `json:"deprecated_at"`
	RetiresAt      *string        `json:"retires_at"`
	Capabilities   map[string]any `json:"capabilities"`
}

// Page is a paginated list response.
type Page[T any] struct {
	Data    []T     `json:"data"`
	HasMore bool    `json:"has_more"`
	FirstID *string `json:"first_id"`
	LastID  *string `json:"last_id"`
}

func modelInfo(m *catalog.Model) ModelInfo {
	supported := map[string]any{"supported": true}
	info := ModelInfo{
		ID: m.ID, Type: "model", DisplayName: m.DisplayName,
		CreatedAt:      m.CreatedAt.UTC().Format(time.RFC3339),
		MaxInputTokens: m.MaxInputTokens, MaxTokens: m.MaxTokens, Lifecycle: m.Lifecycle,
		Capabilities: map[string]any{
			"batch": supported, "citations": supported, "code_execution": supported,
			"context_management": supported, "effort": supported, "image_input": supported,
			"pdf_input": supported, "server_tools": supported, "structured_outputs": supported,
			"thinking": supported,
		},
	}
	if m.Line != "" {
		line := m.Line
		info.Line = &line
	}
	return info
}

func (s *Server) handleModelList(w http.ResponseWriter, r *http.Request, c *call) {
	if s.injectFault(w, r, c) {
		return
	}
	ids := s.cat.ModelIDs()
	page, werr := paginate(r, ids)
	if werr != nil {
		s.writeError(w, c.requestID, werr)
		return
	}
	out := Page[ModelInfo]{Data: make([]ModelInfo, 0, len(page.ids)), HasMore: page.hasMore}
	for _, id := range page.ids {
		m, _ := s.cat.Model(id)
		out.Data = append(out.Data, modelInfo(m))
	}
	out.FirstID, out.LastID = page.first(), page.last()
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleModelGet(w http.ResponseWriter, r *http.Request, c *call) {
	if s.injectFault(w, r, c) {
		return
	}
	id := r.PathValue("id")
	m, ok := s.cat.Model(id)
	if !ok {
		s.writeError(w, c.requestID, wire.Errorf(wire.NotFound, "model: %s", id))
		return
	}
	info := modelInfo(m)
	info.ID = id
	writeJSON(w, http.StatusOK, info)
}

// pageOf is one page of ids out of a newest-first list.
type pageOf struct {
	ids     []string
	hasMore bool
}

func (p pageOf) first() *string {
	if len(p.ids) == 0 {
		return nil
	}
	return &p.ids[0]
}

func (p pageOf) last() *string {
	if len(p.ids) == 0 {
		return nil
	}
	return &p.ids[len(p.ids)-1]
}

// paginate applies limit (1–1000, default 20), after_id and before_id to ids, which
// are in list order (newest first), as the API's list endpoints do.
func paginate(r *http.Request, ids []string) (pageOf, *wire.Error) {
	q := r.URL.Query()
	limit := 20
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return pageOf{}, wire.Errorf(wire.InvalidRequest, "limit: Input should be a valid integer")
		}
		if n < 1 || n > 1000 {
			return pageOf{}, wire.Errorf(wire.InvalidRequest, "limit: Input should be greater than or equal to 1 and less than or equal to 1000")
		}
		limit = n
	}
	after, before := q.Get("after_id"), q.Get("before_id")
	if after != "" && before != "" {
		return pageOf{}, wire.Errorf(wire.InvalidRequest, "Only one of before_id and after_id may be specified")
	}
	index := func(id string) int {
		for i, x := range ids {
			if x == id {
				return i
			}
		}
		return -1
	}
	switch {
	case after != "":
		i := index(after)
		if i < 0 {
			return pageOf{}, wire.Errorf(wire.InvalidRequest, "after_id: %s not found", after)
		}
		rest := ids[i+1:]
		if len(rest) > limit {
			return pageOf{ids: rest[:limit], hasMore: true}, nil
		}
		return pageOf{ids: rest}, nil
	case before != "":
		i := index(before)
		if i < 0 {
			return pageOf{}, wire.Errorf(wire.InvalidRequest, "before_id: %s not found", before)
		}
		head := ids[:i]
		if len(head) > limit {
			return pageOf{ids: head[len(head)-limit:], hasMore: true}, nil
		}
		return pageOf{ids: head}, nil
	default:
		if len(ids) > limit {
			return pageOf{ids: ids[:limit], hasMore: true}, nil
		}
		return pageOf{ids: ids}, nil
	}
}
