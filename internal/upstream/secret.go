package upstream

import (
	"bytes"
	"log/slog"
	"net/http"
	"strings"
)

const redacted = "[REDACTED]"

// minScrubLen is the shortest key scrubbed from error text: shorter "keys" (tests,
// local emulators) would match ordinary words.
const minScrubLen = 8

// Secret holds an API key. It cannot be printed, logged or marshalled by accident:
// String, GoString, LogValue and MarshalJSON all give "[REDACTED]", and the value sits
// behind a pointer so that even %+v of a struct reaching it through unexported fields
// prints an address, not the key. Reveal is the one way out, used to set the auth header.
//
// The zero Secret is empty.
type Secret struct {
	v *secretValue
}

type secretValue struct{ s string }

// NewSecret wraps key. Surrounding spaces are trimmed (keys pasted from files often
// carry a newline).
func NewSecret(key string) Secret {
	key = strings.TrimSpace(key)
	if key == "" {
		return Secret{}
	}
	return Secret{v: &secretValue{s: key}}
}

// Reveal returns the key. Call it only to put the key on the wire.
func (s Secret) Reveal() string {
	if s.v == nil {
		return ""
	}
	return s.v.s
}

// IsZero reports whether no key is set.
func (s Secret) IsZero() bool { return s.v == nil || s.v.s == "" }

// String returns "[REDACTED]", or "" for an empty Secret.
func (s Secret) String() string {
	if s.IsZero() {
		return ""
	}
	return redacted
}

// GoString keeps %#v from printing the key.
func (s Secret) GoString() string { return "upstream.Secret(" + `"` + s.String() + `"` + ")" }

// LogValue keeps slog from printing the key.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON keeps JSON dumps of a config from carrying the key.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + s.String() + `"`), nil }

// MarshalText keeps text encoders (YAML, TOML, slog's text handler) from printing it.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// scrub replaces every occurrence of the key in b, for error bodies a misbehaving proxy
// might echo the request headers into.
func (s Secret) scrub(b []byte) []byte {
	k := s.Reveal()
	if len(k) < minScrubLen || !bytes.Contains(b, []byte(k)) {
		return b
	}
	return bytes.ReplaceAll(b, []byte(k), []byte(redacted))
}

func (s Secret) scrubString(v string) string {
	k := s.Reveal()
	if len(k) < minScrubLen || !strings.Contains(v, k) {
		return v
	}
	return strings.ReplaceAll(v, k, redacted)
}

// scrubHeader returns h, or a copy of it with the key replaced in every value when a
// value holds it (a misbehaving proxy echoing the request's headers).
func (s Secret) scrubHeader(h http.Header) http.Header {
	k := s.Reveal()
	if len(k) < minScrubLen {
		return h
	}
	for _, vs := range h {
		for _, v := range vs {
			if strings.Contains(v, k) {
				out := h.Clone()
				for name, vs := range out {
					for i := range vs {
						vs[i] = strings.ReplaceAll(vs[i], k, redacted)
					}
					out[name] = vs
				}
				return out
			}
		}
	}
	return h
}
