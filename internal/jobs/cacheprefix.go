package jobs

import (
	"context"
	"fmt"
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

// HasCachePrefixes reports whether any of the run's requests has a prompt-cache
// prefix (an index probe: clade_request_run_prefix).
func (s *Store) HasCachePrefixes(ctx context.Context, runID int64) (bool, error) {
	var n int64
	err := s.b.reader().queryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM clade_request
		WHERE run_id = $1 AND cache_prefix IS NOT NULL LIMIT 1) p`, runID).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("cache prefixes of run %d: %w", runID, err)
	}
	return n > 0, nil
}
