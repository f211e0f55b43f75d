package upstream

import (
	"encoding/json"

	"github.com/clade-dev/clade/internal/wire"
)

// MessageUsage reads the usage of a Messages answer (a Message object), from
// which the gateway settles and prices every call it relays. The fast scan reads
// the top-level "usage" member and skips the rest of the message without decoding
// it (the content, most of the bytes); what it does not read (escapes in keys, a
// count that is not a plain integer, another shape) goes to encoding/json, as do
// results lines (parseResult). ok is false when body is not JSON or has no usage
// object.
func MessageUsage(body []byte) (u Usage, ok bool) {
	if !json.Valid(body) {
		return Usage{}, false
	}
	s := scanner{wire.NewScanner(body)}
	var found *Usage
	fast := s.object(func(key []byte) bool {
		if string(key) == "usage" && s.at('{') {
			var ok bool
			found, ok = s.usage()
			return ok
		}
		return !folds(key, "usage") && s.skip()
	})
	if fast && found != nil {
		return *found, true
	}
	var m struct {
		Usage *Usage `json:"usage"`
	}
	if json.Unmarshal(body, &m) != nil || m.Usage == nil {
		return Usage{}, false
	}
	return *m.Usage, true
}
