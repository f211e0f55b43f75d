package serve

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"regexp"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"
)

// DefaultTeam is the team of every client when no client keys are configured.
const DefaultTeam = "default"

// Team is a group of clients that share one fair-queue slot.
type Team struct {
	Name string
	// Weight is the team's share when admission is the bottleneck: a team of weight 2
	// is served twice the tokens of a team of weight 1. Default 1.
	Weight int
}

// Keys maps client keys to teams. A nil *Keys accepts any non-empty key as
// DefaultTeam.
type Keys struct {
	byHash map[[32]byte]*Team
	teams  []*Team // sorted by name
}

// teamName is what a team may be called: it becomes a metric label value.
var teamName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

// Parts of yaml's errors that quote a mapping key, that is a client key.
var (
	unknownTop   = regexp.MustCompile(`field .* not found in type struct.*`)
	duplicateKey = regexp.MustCompile(`mapping key ".*" already defined at line (\d+)`)
)

// truncateField shortens a field name quoted in an error.
func truncateField(s string) string {
	if len(s) > 20 {
		return s[:20] + "…"
	}
	return s
}

// maxWeight bounds a team's weight.
const maxWeight = 1000

// keyEntry is one entry of a client-keys file: "team" or {team: T, weight: W}.
type keyEntry struct {
	Team   string `yaml:"team"`
	Weight int    `yaml:"weight"`
}

func (e *keyEntry) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		return n.Decode(&e.Team)
	}
	if n.Kind == yaml.MappingNode {
		// n.Decode does not inherit the decoder's KnownFields: a misspelt "weight"
		// would silently leave the team at weight 1.
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i].Value; k != "team" && k != "weight" {
				return fmt.Errorf("line %d: unknown field %q: want team and weight", n.Content[i].Line, truncateField(k))
			}
		}
	}
	type plain keyEntry
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*e = keyEntry(p)
	return nil
}

// LoadKeys reads a client-keys file (see ParseKeys).
func LoadKeys(path string) (*Keys, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("client keys: %w", err)
	}
	k, err := ParseKeys(b)
	if err != nil {
		return nil, fmt.Errorf("client keys %s: %w", path, err)
	}
	return k, nil
}

// ParseKeys parses a client-keys file: a YAML map under "keys" from client key to its
// team, given as a name or as {team: NAME, weight: N}:
//
//	keys:
//	  ck-search-7f3a: search
//	  ck-ads-91b2: {team: ads, weight: 2}
//
// A team's weight is the largest given for any of its keys (default 1). Team names
// are 1–64 letters, digits, '.', '_' or '-'; keys are at least 8 characters.
func ParseKeys(data []byte) (*Keys, error) {
	var f struct {
		Keys map[string]keyEntry `yaml:"keys"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		// yaml's messages quote mapping keys, and here the keys are secrets.
		msg := unknownTop.ReplaceAllString(err.Error(), `an entry outside "keys:" (indent each client key under "keys:")`)
		msg = duplicateKey.ReplaceAllString(msg, "a client key given twice (at line $1)")
		return nil, fmt.Errorf("parse: %s", msg)
	}
	if len(f.Keys) == 0 {
		return nil, errors.New(`no keys: want "keys:" mapping each client key to a team`)
	}
	k := &Keys{byHash: make(map[[32]byte]*Team, len(f.Keys))}
	teams := map[string]*Team{}
	for key, e := range f.Keys {
		if len(strings.TrimSpace(key)) < 8 {
			return nil, fmt.Errorf("a key of team %q is shorter than 8 characters", e.Team)
		}
		if !teamName.MatchString(e.Team) {
			return nil, fmt.Errorf("team %q: want 1-64 letters, digits, '.', '_' or '-'", e.Team)
		}
		if e.Weight < 0 || e.Weight > maxWeight {
			return nil, fmt.Errorf("team %s: weight %d: want 1 to %d", e.Team, e.Weight, maxWeight)
		}
		t := teams[e.Team]
		if t == nil {
			t = &Team{Name: e.Team, Weight: 1}
			teams[e.Team] = t
			k.teams = append(k.teams, t)
		}
		t.Weight = max(t.Weight, e.Weight)
		k.byHash[sha256.Sum256([]byte(strings.TrimSpace(key)))] = t
	}
	sort.Slice(k.teams, func(i, j int) bool { return k.teams[i].Name < k.teams[j].Name })
	return k, nil
}

// Lookup returns the team of a client key, or nil when the key is unknown. Keys are
// looked up by their SHA-256: the gateway keeps no client key in clear.
func (k *Keys) Lookup(key string) *Team {
	if key == "" {
		return nil
	}
	if k == nil {
		return defaultTeam
	}
	return k.byHash[sha256.Sum256([]byte(key))]
}

// Teams returns the configured teams by name; with no keys, DefaultTeam alone.
func (k *Keys) Teams() []Team {
	if k == nil {
		return []Team{*defaultTeam}
	}
	out := make([]Team, len(k.teams))
	for i, t := range k.teams {
		out[i] = *t
	}
	return out
}

var defaultTeam = &Team{Name: DefaultTeam, Weight: 1}
