package runner

import (
	"fmt"
	"os"
	"path"

	"go.yaml.in/yaml/v3"

	"github.com/clade-dev/clade/catalog"
)

// Routing picks the model of each request. Rules are tried in order; the first whose
// conditions all hold sets the model. An empty Routing keeps each line's own model
// (with clade's aliases resolved).
type Routing struct {
	// Override, when set, is the model of every request (--model).
	Override string `yaml:"model"`
	Rules    []Rule `yaml:"routes"`
	// Fallback, when set, is used for a request that got FallbackAfter 529s in a row.
	Fallback      string `yaml:"fallback"`
	FallbackAfter int    `yaml:"fallback_after"`
}

// Rule is one routing rule. Zero conditions are not checked.
type Rule struct {
	// CustomID is a path.Match glob on the custom_id (e.g. "summ-*").
	CustomID string `yaml:"custom_id"`
	// FromModel matches the line's own model (id or alias).
	FromModel string `yaml:"from_model"`
	// MinInputTokens and MaxInputTokens bound the estimated input tokens.
	MinInputTokens int64 `yaml:"min_input_tokens"`
	MaxInputTokens int64 `yaml:"max_input_tokens"`
	// Model is the model to use (id or alias).
	Model string `yaml:"model"`
}

// LoadRouting reads a routing file (YAML; see docs/run.md).
func LoadRouting(file string, cat *catalog.Catalog) (*Routing, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read routing: %w", err)
	}
	var r Routing
	if err := yaml.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("routing %s: %w", file, err)
	}
	if err := r.Validate(cat); err != nil {
		return nil, fmt.Errorf("routing %s: %w", file, err)
	}
	return &r, nil
}

// Validate checks every model name against the catalog and every glob's syntax.
func (r *Routing) Validate(cat *catalog.Catalog) error {
	check := func(what, name string) error {
		if name == "" {
			return nil
		}
		if _, err := cat.Resolve(name); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
	if err := check("model", r.Override); err != nil {
		return err
	}
	if err := check("fallback", r.Fallback); err != nil {
		return err
	}
	for i, rule := range r.Rules {
		if rule.Model == "" {
			return fmt.Errorf("routes[%d].model: required", i)
		}
		if err := check(fmt.Sprintf("routes[%d].model", i), rule.Model); err != nil {
			return err
		}
		if rule.CustomID != "" {
			if _, err := path.Match(rule.CustomID, ""); err != nil {
				return fmt.Errorf("routes[%d].custom_id: %w", i, err)
			}
		}
	}
	return nil
}

// Pick returns the model name a request should use, before alias resolution.
func (r *Routing) Pick(customID, lineModel string, estInput int64) string {
	if r == nil {
		return lineModel
	}
	if r.Override != "" {
		return r.Override
	}
	for _, rule := range r.Rules {
		if rule.CustomID != "" {
			if ok, _ := path.Match(rule.CustomID, customID); !ok {
				continue
			}
		}
		if rule.FromModel != "" && rule.FromModel != lineModel {
			continue
		}
		if rule.MinInputTokens > 0 && estInput < rule.MinInputTokens {
			continue
		}
		if rule.MaxInputTokens > 0 && estInput > rule.MaxInputTokens {
			continue
		}
		return rule.Model
	}
	return lineModel
}
