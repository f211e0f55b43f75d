// Package catalog holds clade's one source of truth for models, model classes, tier limits
// and prices.
//
// The data lives in catalog.yaml, embedded in the binary. A user's file in the same format
// can override or extend it (Load). The emulator, the rate limiter, the planner and cost
// reports all read a *Catalog; no number from the file is copied anywhere else in clade.
//
// Numbers that rest on weak or conflicting sources carry an Uncertain reason; commands
// that print limits or prices show it.
package catalog

import (
	_ "embed"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"
)

//go:embed catalog.yaml
var defaultYAML []byte

// ErrUnknownModel is returned by Resolve and Model lookups for a name the catalog lacks.
var ErrUnknownModel = errors.New("unknown model")

// ErrUnknownTier is returned by Tier for a name the catalog lacks.
var ErrUnknownTier = errors.New("unknown tier")

// Catalog is the parsed data file. Treat it as read-only once loaded.
type Catalog struct {
	Version int               `yaml:"version"`
	Pricing Pricing           `yaml:"pricing"`
	Classes map[string]*Class `yaml:"classes"`
	Models  map[string]*Model `yaml:"models"`
	// Aliases are clade's shorthand (haiku, sonnet, opus) for --model and routing
	// rules. The API does not accept them.
	Aliases map[string]string `yaml:"aliases"`
	Tiers   map[string]*Tier  `yaml:"tiers"`

	byID map[string]*Model // every accepted id, including dated variants
}

// Pricing holds the multipliers applied to a model's base input (cache) or to both
// input and output (batch).
type Pricing struct {
	CacheWrite5m float64 `yaml:"cache_write_5m"`
	CacheWrite1h float64 `yaml:"cache_write_1h"`
	CacheRead    float64 `yaml:"cache_read"`
	Batch        float64 `yaml:"batch"`
}

// Class is one rate-limit pool: the models in it share one set of buckets.
type Class struct {
	Name        string  `yaml:"-"`
	DisplayName string  `yaml:"display_name"`
	Latency     Latency `yaml:"latency"`
	// MinCacheTokens is the shortest prefix a cache_control breakpoint caches.
	MinCacheTokens int64 `yaml:"min_cache_tokens"`
	// CacheReadsCountITPM marks the classes (the † models) whose cache reads count
	// toward the input-tokens-per-minute limit.
	CacheReadsCountITPM bool `yaml:"cache_reads_count_itpm"`
}

// Latency is the emulator's model of a class's speed.
type Latency struct {
	// TTFTMillis is the time to the first output token, in milliseconds.
	TTFTMillis float64 `yaml:"ttft_ms"`
	// OutputTokensPerSec is the generation speed after the first token.
	OutputTokensPerSec float64 `yaml:"output_tokens_per_sec"`
}

// Model is one model the API accepts.
type Model struct {
	// ID is the canonical id (the map key in the file).
	ID string `yaml:"-"`
	// IDs are further ids the API accepts for the same model (dated snapshots).
	IDs            []string  `yaml:"ids"`
	Class          string    `yaml:"class"`
	DisplayName    string    `yaml:"display_name"`
	Line           string    `yaml:"line"`
	CreatedAt      time.Time `yaml:"created_at"`
	MaxInputTokens int64     `yaml:"max_input_tokens"`
	MaxTokens      int64     `yaml:"max_tokens"`
	Price          Price     `yaml:"price"`
	// Lifecycle is active (default), deprecated or retired.
	Lifecycle string `yaml:"lifecycle"`
	Uncertain string `yaml:"uncertain"`
}

// Price is in USD per million tokens.
type Price struct {
	Input  float64 `yaml:"input"`
	Output float64 `yaml:"output"`
	// CacheRead, when set, is this model's cache-hit multiplier in place of
	// Pricing.CacheRead (Fable 5.1 and Opus 5.5 differ from the usual 0.1).
	CacheRead float64 `yaml:"cache_read"`
}

// Tier is one account tier's limits.
type Tier struct {
	Name        string            `yaml:"-"`
	Description string            `yaml:"description"`
	CreditUSD   float64           `yaml:"credit_usd"`
	SpendCapUSD float64           `yaml:"spend_cap_usd"`
	Batch       *BatchLimits      `yaml:"batch"`
	Limits      map[string]Limits `yaml:"limits"`
}

// Limits are one class's per-minute limits on a tier.
type Limits struct {
	RPM       int64  `yaml:"rpm"`
	ITPM      int64  `yaml:"itpm"`
	OTPM      int64  `yaml:"otpm"`
	Uncertain string `yaml:"uncertain"`
}

// BatchLimits are the Message Batches limits of a tier, shared by all models.
type BatchLimits struct {
	// RPM counts requests to every batch endpoint.
	RPM int64 `yaml:"rpm"`
	// Queue is the most batch requests (items, not batches) in processing at once.
	Queue int64 `yaml:"queue"`
	// MaxRequests is the most requests in one batch.
	MaxRequests int64  `yaml:"max_requests"`
	Uncertain   string `yaml:"uncertain"`
}

var (
	defaultOnce sync.Once
	defaultCat  *Catalog
)

// Default returns the embedded catalog. It panics if the embedded file is invalid, which
// a test guards against.
func Default() *Catalog {
	defaultOnce.Do(func() {
		c, err := Parse(defaultYAML)
		if err != nil {
			panic(fmt.Sprintf("catalog: embedded catalog.yaml: %v", err))
		}
		defaultCat = c
	})
	return defaultCat
}

// Parse reads a complete catalog from YAML and validates it.
func Parse(data []byte) (*Catalog, error) {
	var c Catalog
	if err := yaml.Unmarshal(data, &c); err != nil {
		return nil, err
	}
	if err := c.index(); err != nil {
		return nil, err
	}
	return &c, nil
}

// Load returns the embedded catalog with the file at path laid over it, or the
// embedded one when path is empty. The file uses the same format and may hold any part:
// a model, class or alias replaces the entry of the same name; a tier's limits are
// replaced class by class, and its other fields when set.
func Load(path string) (*Catalog, error) {
	if path == "" {
		return Default(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read catalog: %w", err)
	}
	c, err := Overlay(Default(), data)
	if err != nil {
		return nil, fmt.Errorf("catalog %s: %w", path, err)
	}
	return c, nil
}

// Overlay returns a new catalog: base with the YAML in data laid over it (see Load).
func Overlay(base *Catalog, data []byte) (*Catalog, error) {
	var o Catalog
	if err := yaml.Unmarshal(data, &o); err != nil {
		return nil, err
	}
	c := base.clone()
	if o.Pricing.CacheWrite5m != 0 {
		c.Pricing.CacheWrite5m = o.Pricing.CacheWrite5m
	}
	if o.Pricing.CacheWrite1h != 0 {
		c.Pricing.CacheWrite1h = o.Pricing.CacheWrite1h
	}
	if o.Pricing.CacheRead != 0 {
		c.Pricing.CacheRead = o.Pricing.CacheRead
	}
	if o.Pricing.Batch != 0 {
		c.Pricing.Batch = o.Pricing.Batch
	}
	for k, v := range o.Classes {
		c.Classes[k] = v
	}
	for k, v := range o.Models {
		c.Models[k] = v
	}
	for k, v := range o.Aliases {
		c.Aliases[k] = v
	}
	for name, ot := range o.Tiers {
		t, ok := c.Tiers[name]
		if !ok {
			c.Tiers[name] = ot
			continue
		}
		if ot.Description != "" {
			t.Description = ot.Description
		}
		if ot.CreditUSD != 0 {
			t.CreditUSD = ot.CreditUSD
		}
		if ot.SpendCapUSD != 0 {
			t.SpendCapUSD = ot.SpendCapUSD
		}
		if ot.Batch != nil {
			t.Batch = ot.Batch
		}
		for cls, l := range ot.Limits {
			t.Limits[cls] = l
		}
	}
	if err := c.index(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Catalog) clone() *Catalog {
	n := &Catalog{
		Version: c.Version,
		Pricing: c.Pricing,
		Classes: make(map[string]*Class, len(c.Classes)),
		Models:  make(map[string]*Model, len(c.Models)),
		Aliases: make(map[string]string, len(c.Aliases)),
		Tiers:   make(map[string]*Tier, len(c.Tiers)),
	}
	for k, v := range c.Classes {
		cv := *v
		n.Classes[k] = &cv
	}
	for k, v := range c.Models {
		mv := *v
		mv.IDs = append([]string(nil), v.IDs...)
		n.Models[k] = &mv
	}
	for k, v := range c.Aliases {
		n.Aliases[k] = v
	}
	for k, v := range c.Tiers {
		tv := *v
		if v.Batch != nil {
			b := *v.Batch
			tv.Batch = &b
		}
		tv.Limits = make(map[string]Limits, len(v.Limits))
		for cls, l := range v.Limits {
			tv.Limits[cls] = l
		}
		n.Tiers[k] = &tv
	}
	return n
}

// index fills names and the id index and checks references.
func (c *Catalog) index() error {
	if c.Classes == nil || c.Models == nil || c.Tiers == nil {
		return errors.New("catalog needs classes, models and tiers")
	}
	if c.Aliases == nil {
		c.Aliases = map[string]string{}
	}
	var errs []error
	for name, cl := range c.Classes {
		if cl == nil {
			errs = append(errs, fmt.Errorf("class %s: empty", name))
			continue
		}
		cl.Name = name
	}
	c.byID = make(map[string]*Model, len(c.Models)*2)
	for id, m := range c.Models {
		if m == nil {
			errs = append(errs, fmt.Errorf("model %s: empty", id))
			continue
		}
		m.ID = id
		if _, ok := c.Classes[m.Class]; !ok {
			errs = append(errs, fmt.Errorf("model %s: unknown class %q", id, m.Class))
		}
		if m.MaxTokens <= 0 {
			errs = append(errs, fmt.Errorf("model %s: max_tokens must be positive", id))
		}
		if m.Lifecycle == "" {
			m.Lifecycle = "active"
		}
		for _, alt := range append([]string{id}, m.IDs...) {
			if prev, dup := c.byID[alt]; dup && prev != m {
				errs = append(errs, fmt.Errorf("model id %s: listed twice", alt))
			}
			c.byID[alt] = m
		}
	}
	for a, target := range c.Aliases {
		if _, ok := c.byID[target]; !ok {
			errs = append(errs, fmt.Errorf("alias %s: unknown model %q", a, target))
		}
	}
	for name, t := range c.Tiers {
		if t == nil {
			errs = append(errs, fmt.Errorf("tier %s: empty", name))
			continue
		}
		t.Name = name
		if _, ok := t.Limits["default"]; !ok {
			errs = append(errs, fmt.Errorf("tier %s: needs a default limits entry", name))
		}
		for cls, l := range t.Limits {
			if cls != "default" {
				if _, ok := c.Classes[cls]; !ok {
					errs = append(errs, fmt.Errorf("tier %s: unknown class %q", name, cls))
				}
			}
			if l.RPM <= 0 || l.ITPM <= 0 || l.OTPM <= 0 {
				errs = append(errs, fmt.Errorf("tier %s class %s: rpm, itpm and otpm must be positive", name, cls))
			}
		}
		if t.Batch == nil || t.Batch.RPM <= 0 || t.Batch.Queue <= 0 || t.Batch.MaxRequests <= 0 {
			errs = append(errs, fmt.Errorf("tier %s: batch rpm, queue and max_requests must be positive", name))
		}
	}
	return errors.Join(errs...)
}

// Model returns the model the API knows by id (canonical or dated), or false.
func (c *Catalog) Model(id string) (*Model, bool) {
	m, ok := c.byID[id]
	return m, ok
}

// Resolve maps a clade alias (haiku, sonnet, opus) or an API id to a model.
func (c *Catalog) Resolve(name string) (*Model, error) {
	if m, ok := c.byID[name]; ok {
		return m, nil
	}
	if target, ok := c.Aliases[strings.ToLower(name)]; ok {
		return c.byID[target], nil
	}
	return nil, fmt.Errorf("%w %q", ErrUnknownModel, name)
}

// Class returns the class a model belongs to.
func (c *Catalog) Class(m *Model) *Class { return c.Classes[m.Class] }

// Tier returns the named tier.
func (c *Catalog) Tier(name string) (*Tier, error) {
	t, ok := c.Tiers[name]
	if !ok {
		return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknownTier, name, strings.Join(c.TierNames(), ", "))
	}
	return t, nil
}

// CautiousTier is the tier with the lowest default-class RPM (then ITPM): what
// clade assumes of an account whose tier it has not learnt yet ("tier-1" in the
// embedded catalog).
func (c *Catalog) CautiousTier() string {
	best := ""
	var bl Limits
	for _, name := range c.TierNames() {
		l := c.Tiers[name].ClassLimits("default")
		if best == "" || l.RPM < bl.RPM || (l.RPM == bl.RPM && l.ITPM < bl.ITPM) {
			best, bl = name, l
		}
	}
	return best
}

// TierNames returns the tier names in a stable order.
func (c *Catalog) TierNames() []string {
	names := make([]string, 0, len(c.Tiers))
	for n := range c.Tiers {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ModelIDs returns every canonical model id, newest first (then by id).
func (c *Catalog) ModelIDs() []string {
	ids := make([]string, 0, len(c.Models))
	for id := range c.Models {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool {
		a, b := c.Models[ids[i]], c.Models[ids[j]]
		if !a.CreatedAt.Equal(b.CreatedAt) {
			return a.CreatedAt.After(b.CreatedAt)
		}
		return a.ID < b.ID
	})
	return ids
}

// Limits returns the tier's limits for a class, falling back to the tier's default.
func (t *Tier) ClassLimits(class string) Limits {
	if l, ok := t.Limits[class]; ok {
		return l
	}
	return t.Limits["default"]
}
