package serve

import (
	"net/url"
	"path"
	"strings"
	"testing"
)

// FuzzPlainPath: a path plainPath accepts means the same to every party that reads
// it: decoding and cleaning leave it as it is, and a URL parser sees exactly it, so
// the path the mux matched is the path the upstream resolves.
func FuzzPlainPath(f *testing.F) {
	for _, p := range []string{"/", "/v1/models", "/v1/messages/batches/msgbatch_01HkcTjaV5uDC8jWR4ZsDV8d/results",
		"/v1/models/claude-sonnet-4-5-20250929", "/v1/messages/batches/..%2f..%2fmodels", "/v1/models/.%2e",
		"//v1/models", "/v1/models/", `/v1/a\b`, "/v1/a;b", "/v1/a%3Fb", "/v1/./a", "/v1/../a", "/v1/a@b:c~d"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if !plainPath(p) {
			return
		}
		if dec, err := url.PathUnescape(p); err != nil || dec != p {
			t.Errorf("plainPath(%q) = true, but it decodes to %q (%v)", p, dec, err)
		}
		if c := path.Clean(p); c != p {
			t.Errorf("plainPath(%q) = true, but it cleans to %q", p, c)
		}
		if strings.ContainsAny(p, `\?#;%`) {
			t.Errorf("plainPath(%q) = true, want false for a path holding any of \\?#;%%", p)
		}
		u, err := url.ParseRequestURI(p)
		if err != nil {
			t.Fatalf("plainPath(%q) = true, but url.ParseRequestURI fails: %v", p, err)
		}
		if u.Path != p || u.EscapedPath() != p || u.RawQuery != "" {
			t.Errorf("plainPath(%q) = true, but url.ParseRequestURI reads path %q, escaped %q, query %q", p, u.Path, u.EscapedPath(), u.RawQuery)
		}
	})
}
