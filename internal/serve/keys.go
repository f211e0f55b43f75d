package serve

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/clade-dev/clade/internal/jobs"
	"github.com/clade-dev/clade/internal/spend"
)

// DefaultTeam is the team of every client when no client keys are configured.
const DefaultTeam = "default"

// Team is a group of clients that share one fair-queue slot.
type Team struct {
	Name string
	// Weight is the team's share when admission is the bottleneck: a team of weight 2
	// is served twice the tokens of a team of weight 1. Default 1.
	Weight int
	// Budget is the team's USD limit per period (day, week, month), all its keys'
	// Messages calls together; nil for none.
	Budget Budget
	// Cap is the most of each limit of each model class (RPM, ITPM, OTPM) the team is
	// admitted while another team under its cap waits, as a share in (0, 1]: 0.3 is
	// 30 %. It is measured by buckets of the limiter's shape (see fairQueue). When no
	// team under its cap waits, a capped team borrows what is free. 0: no cap.
	Cap float64
}

// Budget is a USD limit in micro-dollars per period ("day", "week", "month");
// a period not in the map has no limit.
type Budget map[string]spend.Micros

// client is what one client key stands for.
type client struct {
	team *Team
	// label names the key in metrics, status and errors: its configured label, or
	// "sha256:" and the first 8 hex digits of its SHA-256.
	label  string
	budget Budget
	// prio is the priority of the key's calls without an x-clade-priority header.
	prio int
}

// Keys maps client keys to teams. A nil *Keys accepts any non-empty key as
// DefaultTeam.
type Keys struct {
	byHash map[[32]byte]*client
	teams  []*Team   // sorted by name
	keyed  []*client // the keys with a budget, by label
	aging  time.Duration
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

// keyEntry is one entry of a client-keys file: "team" or {team: T, weight: W,
// label: L, budget: {day: USD, ...}}.
type keyEntry struct {
	Team     string        `yaml:"team"`
	Weight   int           `yaml:"weight"`
	Label    string        `yaml:"label"`
	Budget   budgetEntry   `yaml:"budget"`
	Priority priorityEntry `yaml:"priority"`
	line     int
}

func (e *keyEntry) UnmarshalYAML(n *yaml.Node) error {
	e.line = n.Line
	if n.Kind == yaml.ScalarNode {
		return n.Decode(&e.Team)
	}
	if n.Kind == yaml.MappingNode {
		// n.Decode does not inherit the decoder's KnownFields: a misspelt "weight"
		// would silently leave the team at weight 1.
		if err := knownFields(n, "team", "weight", "label", "budget", "priority"); err != nil {
			return err
		}
	}
	type plain keyEntry
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	p.line = n.Line
	*e = keyEntry(p)
	return nil
}

// teamEntry is one entry of a client-keys file's "teams:": {weight: W, budget: {...},
// cap: SHARE}.
type teamEntry struct {
	Weight int         `yaml:"weight"`
	Budget budgetEntry `yaml:"budget"`
	Cap    capEntry    `yaml:"cap"`
	line   int
}

func (e *teamEntry) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: a team: want {budget: {day: USD, week: USD, month: USD}, weight: N, cap: SHARE}", n.Line)
	}
	if err := knownFields(n, "weight", "budget", "cap"); err != nil {
		return err
	}
	type plain teamEntry
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	p.line = n.Line
	*e = teamEntry(p)
	return nil
}

// budgetEntry is a "budget:" mapping from period to USD.
type budgetEntry struct{ b Budget }

func (e *budgetEntry) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: budget: want a mapping of day, week or month to USD, e.g. {day: 5, month: 100}", n.Line)
	}
	if err := knownFields(n, jobs.Periods...); err != nil {
		return err
	}
	e.b = Budget{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i].Value, n.Content[i+1]
		usd, err := strconv.ParseFloat(v.Value, 64)
		if v.Kind != yaml.ScalarNode || err != nil || math.IsNaN(usd) || math.IsInf(usd, 0) || usd < 0 || usd > 1e9 {
			return fmt.Errorf("line %d: budget.%s %q: want USD, a number from 0 to 1e9", v.Line, k, truncateField(v.Value))
		}
		if _, dup := e.b[k]; dup {
			return fmt.Errorf("line %d: budget.%s given twice", v.Line, k)
		}
		e.b[k] = spend.FromUSD(usd)
	}
	return nil
}

// knownFields refuses a mapping node with a field not in want, naming it and its
// line (a field's name is never a client key here).
func knownFields(n *yaml.Node, want ...string) error {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i].Value; !slices.Contains(want, k) {
			return fmt.Errorf("line %d: unknown field %q: want %s", n.Content[i].Line, truncateField(k), strings.Join(want, ", "))
		}
	}
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
// team, given as a name or as {team: NAME, weight: N, label: L, budget: B, priority:
// P}, optionally a map under "teams" from team name to {weight: N, budget: B, cap:
// SHARE}, where a budget B maps periods (day, week, month: UTC, weeks from Monday)
// to USD, and optionally priority_aging, the wait that raises a call's priority by
// one level (default DefaultPriorityAging):
//
//	priority_aging: 10s
//	teams:
//	  research: {budget: {day: 50, month: 2000}}
//	  batch: {cap: 0.3}
//	keys:
//	  ck-search-7f3a: search
//	  ck-ads-91b2: {team: ads, weight: 2}
//	  ck-research-alice: {team: research, label: alice, budget: {day: 5}}
//	  ck-batch-nightly: {team: batch, priority: low}
//
// A team's weight is the largest given for it or any of its keys (default 1). Team
// names and key labels are 1–64 letters, digits, '.', '_' or '-'; keys are at least
// 8 characters. A key's label names it in metrics, status and errors (default
// "sha256:" and the first 8 hex digits of the key's SHA-256); labels are unique.
func ParseKeys(data []byte) (*Keys, error) {
	var f struct {
		Teams map[string]teamEntry `yaml:"teams"`
		Keys  map[string]keyEntry  `yaml:"keys"`
		Aging durationEntry        `yaml:"priority_aging"`
	}
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		// yaml's messages quote mapping keys, and here the keys are secrets.
		msg := unknownTop.ReplaceAllString(err.Error(), `an entry outside "keys:" and "teams:" (indent each client key under "keys:")`)
		msg = duplicateKey.ReplaceAllString(msg, "a client key given twice (at line $1)")
		return nil, fmt.Errorf("parse: %s", msg)
	}
	if len(f.Keys) == 0 {
		return nil, errors.New(`no keys: want "keys:" mapping each client key to a team`)
	}
	k := &Keys{byHash: make(map[[32]byte]*client, len(f.Keys)), aging: DefaultPriorityAging}
	if f.Aging.set {
		if f.Aging.d < time.Second || f.Aging.d > time.Hour {
			return nil, fmt.Errorf("line %d: priority_aging %q: want a duration from 1s to 1h, e.g. 10s", f.Aging.line, truncateField(f.Aging.raw))
		}
		k.aging = f.Aging.d
	}
	teams := map[string]*Team{}
	for key, e := range f.Keys {
		if len(strings.TrimSpace(key)) < 8 {
			return nil, fmt.Errorf("line %d: a key of team %q is shorter than 8 characters", e.line, e.Team)
		}
		if !teamName.MatchString(e.Team) {
			return nil, fmt.Errorf("line %d: team %q: want 1-64 letters, digits, '.', '_' or '-'", e.line, truncateField(e.Team))
		}
		if e.Weight < 0 || e.Weight > maxWeight {
			return nil, fmt.Errorf("line %d: team %s: weight %d: want 1 to %d", e.line, e.Team, e.Weight, maxWeight)
		}
		t := teams[e.Team]
		if t == nil {
			t = &Team{Name: e.Team, Weight: 1}
			teams[e.Team] = t
			k.teams = append(k.teams, t)
		}
		t.Weight = max(t.Weight, e.Weight)
		h := sha256.Sum256([]byte(strings.TrimSpace(key)))
		c := &client{team: t, label: e.Label, budget: e.Budget.b, prio: DefaultPriority}
		if e.Priority.set {
			c.prio = e.Priority.p
		}
		if c.label == "" {
			c.label = "sha256:" + hex.EncodeToString(h[:4])
		} else if !teamName.MatchString(c.label) || strings.HasPrefix(c.label, "sha256:") {
			return nil, fmt.Errorf("line %d: label %q: want 1-64 letters, digits, '.', '_' or '-'", e.line, truncateField(c.label))
		}
		k.byHash[h] = c
		if len(c.budget) > 0 {
			k.keyed = append(k.keyed, c)
		}
	}
	labels := map[string]bool{}
	for _, c := range k.byHash {
		if e := c.label; labels[e] {
			return nil, fmt.Errorf("label %q names two keys: want one label per key", truncateField(e))
		}
		labels[c.label] = true
	}
	for name, e := range f.Teams {
		t := teams[name]
		if t == nil {
			return nil, fmt.Errorf("line %d: teams.%s: no key of this team under \"keys:\"", e.line, truncateField(name))
		}
		if e.Weight < 0 || e.Weight > maxWeight {
			return nil, fmt.Errorf("line %d: teams.%s.weight %d: want 1 to %d", e.line, name, e.Weight, maxWeight)
		}
		t.Weight = max(t.Weight, e.Weight)
		t.Budget = e.Budget.b
		if e.Cap.set {
			if math.IsNaN(e.Cap.v) || e.Cap.v <= 0 || e.Cap.v > 1 {
				return nil, fmt.Errorf("line %d: teams.%s.cap %s: want a share of each limit, more than 0 and at most 1 (0.3: 30 %%)", e.Cap.line, name, truncateField(e.Cap.raw))
			}
			t.Cap = e.Cap.v
		}
	}
	sort.Slice(k.teams, func(i, j int) bool { return k.teams[i].Name < k.teams[j].Name })
	sort.Slice(k.keyed, func(i, j int) bool { return k.keyed[i].label < k.keyed[j].label })
	return k, nil
}

// capEntry is a team's "cap:", a share of each limit.
type capEntry struct {
	v    float64
	raw  string
	line int
	set  bool
}

func (e *capEntry) UnmarshalYAML(n *yaml.Node) error {
	e.raw, e.line, e.set = n.Value, n.Line, true
	v, err := strconv.ParseFloat(n.Value, 64)
	if n.Kind != yaml.ScalarNode || err != nil {
		return fmt.Errorf("line %d: cap %q: want a share of each limit, more than 0 and at most 1 (0.3: 30 %%)", n.Line, truncateField(n.Value))
	}
	e.v = v
	return nil
}

// priorityEntry is a key's "priority:" (see ParsePriority).
type priorityEntry struct {
	p   int
	set bool
}

func (e *priorityEntry) UnmarshalYAML(n *yaml.Node) error {
	p, err := ParsePriority(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		return fmt.Errorf("line %d: priority %q: want low, normal, high or 0 to %d", n.Line, truncateField(n.Value), MaxPriority)
	}
	e.p, e.set = p, true
	return nil
}

// durationEntry is a duration such as "10s".
type durationEntry struct {
	d    time.Duration
	raw  string
	line int
	set  bool
}

func (e *durationEntry) UnmarshalYAML(n *yaml.Node) error {
	e.raw, e.line, e.set = n.Value, n.Line, true
	d, err := time.ParseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		return fmt.Errorf("line %d: %q: want a duration, e.g. 10s", n.Line, truncateField(n.Value))
	}
	e.d = d
	return nil
}

// HasCaps reports whether a team has a cap (Team.Cap).
func (k *Keys) HasCaps() bool {
	if k == nil {
		return false
	}
	for _, t := range k.teams {
		if t.Cap > 0 {
			return true
		}
	}
	return false
}

// PriorityAging is how long a waiting call takes to gain one priority level
// (priority_aging; default DefaultPriorityAging).
func (k *Keys) PriorityAging() time.Duration {
	if k == nil || k.aging == 0 {
		return DefaultPriorityAging
	}
	return k.aging
}

// HasBudgets reports whether a team or a key has a budget: the gateway then
// needs a spend store (Config.Spend).
func (k *Keys) HasBudgets() bool {
	if k == nil {
		return false
	}
	if len(k.keyed) > 0 {
		return true
	}
	for _, t := range k.teams {
		if len(t.Budget) > 0 {
			return true
		}
	}
	return false
}

// lookup returns what a client key stands for, or nil when it is unknown.
func (k *Keys) lookup(key string) *client {
	if key == "" {
		return nil
	}
	if k == nil {
		return defaultClient
	}
	return k.byHash[sha256.Sum256([]byte(key))]
}

// Lookup returns the team of a client key, or nil when the key is unknown. Keys are
// looked up by their SHA-256: the gateway keeps no client key in clear.
func (k *Keys) Lookup(key string) *Team {
	if key == "" {
		return nil
	}
	if c := k.lookup(key); c != nil {
		return c.team
	}
	return nil
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

var (
	defaultTeam   = &Team{Name: DefaultTeam, Weight: 1}
	defaultClient = &client{team: defaultTeam, label: DefaultTeam, prio: DefaultPriority}
)
