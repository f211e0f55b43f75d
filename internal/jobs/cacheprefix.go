package jobs

import (
	"slices"
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

// groupByPrefix reorders a batch of lines so that the requests of one
// prompt-cache prefix are consecutive, at the place of the prefix's first line;
// lines without a prefix keep their order around them. Jobs are worked in the
// order stored, so a prefix's requests then run together, within its TTL, after
// its warming request (docs/run.md). A batch with no prefix, or with a custom_id
// twice (the first line must stay the one stored), is left as it is.
func groupByPrefix(reqs []*intake.Request) {
	if !anyPrefix(reqs) {
		return
	}
	first := make(map[cacheprefix.Key]int)
	ids := make(map[string]bool, len(reqs))
	rank := make(map[*intake.Request]int, len(reqs))
	for i, r := range reqs {
		if ids[r.CustomID] {
			return
		}
		ids[r.CustomID] = true
		rank[r] = i
		if k := r.Cache.Key; k != (cacheprefix.Key{}) {
			if f, ok := first[k]; ok {
				rank[r] = f
			} else {
				first[k] = i
			}
		}
	}
	slices.SortStableFunc(reqs, func(a, b *intake.Request) int { return rank[a] - rank[b] })
}
