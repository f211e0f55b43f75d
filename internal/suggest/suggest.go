// Package suggest finds what a user probably meant: the closest of the known
// names to a mistyped one ("did you mean …?"), for flags and model names alike.
package suggest

import "strings"

// Closest returns the candidate closest to typed by edit distance, compared
// without case, if it is within maxDist edits, else "". Ties go to the earlier
// candidate.
func Closest(typed string, candidates []string, maxDist int) string {
	best, dist := "", maxDist+1
	t := strings.ToLower(typed)
	for _, c := range candidates {
		if d := Distance(t, strings.ToLower(c)); d < dist {
			best, dist = c, d
		}
	}
	return best
}

// Distance is the Levenshtein distance between a and b, in bytes.
func Distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
