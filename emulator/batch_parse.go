package emulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"

	"github.com/clade-dev/clade/internal/wire"
)

// batchItem is one request of a batch, kept compact: its custom_id and its params
// exactly as sent. Params are validated in the background and answered only when the
// results are downloaded (generation is deterministic for the seed and the body).
type batchItem struct {
	customID string
	params   json.RawMessage
}

// parseBatchCreate checks a create body the way the API does synchronously: a JSON
// object with only "requests"; 1 to maxRequests items; each item an object with only
// custom_id (matching ^[a-zA-Z0-9_-]{1,64}$, unique in the batch) and params (a JSON
// object, otherwise unchecked here). The first problem fails the whole create with a
// 400 whose message names the item's index (requests.N...) and, for custom_id, the id.
//
// It streams the body with a json.Decoder so a 256 MB body is not copied whole more
// than once; each params value is the only copy kept.
func parseBatchCreate(body []byte, maxRequests int) ([]batchItem, *wire.Error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return nil, bodyProblem(err)
	}
	if tok != json.Delim('{') {
		return nil, wire.Errorf(wire.InvalidRequest, "Input should be a valid dictionary or object to extract fields from")
	}
	var items []batchItem
	seen := false
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, bodyProblem(err)
		}
		key, _ := tok.(string)
		if key != "requests" {
			return nil, wire.Errorf(wire.InvalidRequest, "%s: Extra inputs are not permitted", key)
		}
		seen = true
		var werr *wire.Error
		if items, werr = parseBatchRequests(dec, maxRequests); werr != nil {
			return nil, werr
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, bodyProblem(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if err == nil {
			err = errors.New("extra data after the JSON object")
		}
		return nil, bodyProblem(err)
	}
	if !seen {
		return nil, wire.Errorf(wire.InvalidRequest, "requests: Field required")
	}
	if len(items) == 0 {
		return nil, wire.Errorf(wire.InvalidRequest, "requests: List should have at least 1 item after validation, not 0")
	}
	return items, nil
}

func parseBatchRequests(dec *json.Decoder, maxRequests int) ([]batchItem, *wire.Error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, bodyProblem(err)
	}
	if tok != json.Delim('[') {
		return nil, wire.Errorf(wire.InvalidRequest, "requests: Input should be a valid list")
	}
	var items []batchItem
	first := make(map[string]int)
	for i := 0; dec.More(); i++ {
		if i >= maxRequests {
			// Count the rest cheaply so the message gives the real total.
			n := i
			for ; dec.More(); n++ {
				var skip struct{}
				if err := dec.Decode(&skip); err != nil {
					var te *json.UnmarshalTypeError
					if !errors.As(err, &te) {
						return nil, bodyProblem(err)
					}
				}
			}
			return nil, wire.Errorf(wire.InvalidRequest, "requests: List should have at most %d items after validation, not %d", maxRequests, n)
		}
		var m map[string]json.RawMessage
		if err := dec.Decode(&m); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) {
				return nil, wire.Errorf(wire.InvalidRequest, "requests.%d: Input should be a valid dictionary or object to extract fields from", i)
			}
			return nil, bodyProblem(err)
		}
		if m == nil {
			return nil, wire.Errorf(wire.InvalidRequest, "requests.%d: Input should be a valid dictionary or object to extract fields from", i)
		}
		it, werr := parseBatchItem(m, i, first)
		if werr != nil {
			return nil, werr
		}
		items = append(items, it)
	}
	if _, err := dec.Token(); err != nil { // the closing bracket
		return nil, bodyProblem(err)
	}
	return slices.Clip(items), nil
}

func parseBatchItem(m map[string]json.RawMessage, i int, first map[string]int) (batchItem, *wire.Error) {
	var extra []string
	for k := range m {
		if k != "custom_id" && k != "params" {
			extra = append(extra, k)
		}
	}
	if len(extra) > 0 {
		slices.Sort(extra) // a stable message whatever the map order
		return batchItem{}, wire.Errorf(wire.InvalidRequest, "requests.%d.%s: Extra inputs are not permitted", i, extra[0])
	}
	raw, ok := m["custom_id"]
	if !ok {
		return batchItem{}, wire.Errorf(wire.InvalidRequest, "requests.%d.custom_id: Field required", i)
	}
	var id string
	if bytes.Equal(raw, []byte("null")) || json.Unmarshal(raw, &id) != nil {
		return batchItem{}, wire.Errorf(wire.InvalidRequest, "requests.%d.custom_id: Input should be a valid string", i)
	}
	if !wire.ValidCustomID(id) {
		return batchItem{}, wire.Errorf(wire.InvalidRequest, "requests.%d.custom_id: String should match pattern '^[a-zA-Z0-9_-]{1,64}$' (got %q)", i, id)
	}
	if j, dup := first[id]; dup {
		return batchItem{}, wire.Errorf(wire.InvalidRequest, "requests.%d.custom_id: Duplicate custom_id %q (first used by requests.%d); custom_id must be unique within a batch", i, id, j)
	}
	first[id] = i
	params, ok := m["params"]
	if !ok {
		return batchItem{}, wire.Errorf(wire.InvalidRequest, "requests.%d.params: Field required", i)
	}
	if p := bytes.TrimSpace(params); len(p) == 0 || p[0] != '{' {
		return batchItem{}, wire.Errorf(wire.InvalidRequest, "requests.%d.params: Input should be a valid dictionary or object to extract fields from", i)
	}
	return batchItem{customID: id, params: params}, nil
}

func bodyProblem(err error) *wire.Error {
	msg := "invalid JSON"
	if err != nil {
		msg = strings.TrimPrefix(err.Error(), "json: ")
	}
	if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
		msg = "unexpected end of JSON input"
	}
	return wire.Errorf(wire.InvalidRequest, "There was an error parsing the body of your request: %s", msg)
}
