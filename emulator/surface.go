package emulator

import (
	"bytes"
	"encoding/json"
	"strings"

	"github.com/clade-dev/clade/internal/wire"
)

// The request surface current clients send beyond the core fields: checked as the
// API checks it, and answered as it would be (docs/emulator.md, "Request surface").

// efforts are output_config.effort's values.
var efforts = map[string]bool{"low": true, "medium": true, "high": true, "xhigh": true, "max": true}

// checkSurface answers the API's 400 for an output_config.effort it does not know
// and a context_management that is not {edits: [{type: …}, …]}.
func checkSurface(body []byte) *wire.Error {
	hasEffort := bytes.Contains(body, []byte(`"effort"`))
	hasCM := bytes.Contains(body, []byte(`"context_management"`))
	if !hasEffort && !hasCM {
		return nil
	}
	var r struct {
		OutputConfig struct {
			Effort *string `json:"effort"`
		} `json:"output_config"`
		ContextManagement json.RawMessage `json:"context_management"`
	}
	if json.Unmarshal(body, &r) != nil {
		return nil // the request parser judges the shape
	}
	if e := r.OutputConfig.Effort; e != nil && !efforts[*e] {
		return wire.Errorf(wire.InvalidRequest, "output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'")
	}
	if cm := r.ContextManagement; len(cm) > 0 && string(cm) != "null" {
		var v struct {
			Edits []map[string]json.RawMessage `json:"edits"`
		}
		if json.Unmarshal(cm, &v) != nil {
			return wire.Errorf(wire.InvalidRequest, "context_management: Input should be a valid dictionary with a list of edits")
		}
		for i, e := range v.Edits {
			var typ string
			if json.Unmarshal(e["type"], &typ) != nil || typ == "" {
				return wire.Errorf(wire.InvalidRequest, "context_management.edits.%d.type: Field required", i)
			}
		}
	}
	return nil
}

// serverToolPrefixes are the type prefixes of the API's server tools: the API runs
// them itself, so the model never answers them with a client tool_use.
var serverToolPrefixes = []string{"web_search_", "web_fetch_", "code_execution_", "tool_search_tool_"}

// callable returns req with only the tools the model may call with a tool_use
// block: not those with defer_loading (they are hidden until a tool search finds
// them) nor server tools. req itself is not changed.
func callable(req *wire.MessageRequest) *wire.MessageRequest {
	keep := req.Tools[:0:0]
	for _, t := range req.Tools {
		var d struct {
			Type         string `json:"type"`
			DeferLoading bool   `json:"defer_loading"`
		}
		json.Unmarshal(t.Raw, &d)
		server := false
		for _, p := range serverToolPrefixes {
			server = server || strings.HasPrefix(d.Type, p)
		}
		if !d.DeferLoading && !server {
			keep = append(keep, t)
		}
	}
	if len(keep) == len(req.Tools) {
		return req
	}
	out := *req
	out.Tools = keep
	return &out
}
