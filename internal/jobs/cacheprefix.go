package jobs

import (
	"time"

	"github.com/clade-dev/clade/internal/cacheprefix"
	"github.com/clade-dev/clade/internal/intake"
)

// anyPrefix reports whether any of reqs has a prompt-cache prefix.
func anyPrefix(reqs []*intake.Request) bool {
	for _, r := range reqs {
		if r.Cache.Key != (cacheprefix.Key{}) {
			return true
		}
	}
	return false
}

// prefixColumns are a request's cache_prefix, cache_prefix_tokens and cache_ttl
// values: NULLs for none.
func prefixColumns(p cacheprefix.Prefix) (key, tokens, ttl any) {
	if p.Key == (cacheprefix.Key{}) {
		return nil, nil, nil
	}
	return p.Key.String(), p.Tokens, int64(p.TTL / time.Second)
}

// scanPrefix is the Prefix of a request row's cache columns.
func scanPrefix(key *string, tokens, ttl *int64) cacheprefix.Prefix {
	if key == nil || tokens == nil || ttl == nil {
		return cacheprefix.Prefix{}
	}
	k, ok := cacheprefix.ParseKey(*key)
	if !ok {
		return cacheprefix.Prefix{}
	}
	return cacheprefix.Prefix{Key: k, Tokens: *tokens, TTL: time.Duration(*ttl) * time.Second}
}
