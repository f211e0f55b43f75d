package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/clade-dev/clade/catalog"
	"github.com/clade-dev/clade/internal/suggest"
	"github.com/clade-dev/clade/internal/upstream"
	"github.com/clade-dev/clade/internal/wire"
)

// Before any request of `run` and `batch`: the API is reachable and takes the
// key (one GET /v1/models, never billed), and the input's models are ones the
// catalog knows. Each problem is reported up front, with what to try, instead of
// as an errored line per request after the run.

// probeTimeout bounds the probe call.
const probeTimeout = 15 * time.Second

// probeAPI makes one unbilled call (GET /v1/models?limit=1) and turns an
// unreachable API or a refused key into an error saying what to check.
func probeAPI(ctx context.Context, client *upstream.Client, baseURL string) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	resp, err := client.Proxy(ctx, upstream.ProxyRequest{Method: http.MethodGet, Path: "/v1/models", RawQuery: "limit=1"})
	where := upstreamBase(baseURL)
	if err != nil {
		return failure("check the network and --base-url (or ANTHROPIC_BASE_URL); clade run --emulate tier-1 works offline",
			fmt.Errorf("the API at %s cannot be reached: %v", where, err))
	}
	if resp.StatusCode/100 == 2 {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return nil
	}
	ae := client.ReadAPIError(resp)
	switch {
	case resp.StatusCode == http.StatusUnauthorized || ae.Type == wire.Authentication:
		return usageErr("the API refused the key: check ANTHROPIC_API_KEY (and ANTHROPIC_BASE_URL or --base-url); nothing was sent",
			"the API at %s refused the key (%d %s: %s)", where, resp.StatusCode, ae.Type, ae.Message)
	case resp.StatusCode == http.StatusForbidden || ae.Type == wire.Permission:
		return usageErr("the key is not allowed this call: check its workspace and permissions in the Console; nothing was sent",
			"the API at %s does not let this key in (%d %s: %s)", where, resp.StatusCode, ae.Type, ae.Message)
	}
	// Anything else (a 429, a 529, a 5xx) is the API being busy, not a setup
	// problem: the run paces and retries its calls.
	return nil
}

// modelUse is how many lines of the input name one model, and the first.
type modelUse struct {
	lines int64
	first int64
}

// checkModels reads the input's models (params.model of each line) and reports
// those the catalog does not know: each such line would end errored without a
// call. When no line's model is known, nothing would run: that is an error. When
// some are, it is a warning on w, or an error under --strict. A --model override or
// a --routing file decides the models instead, and skips the check; so does an
// input that is not on this host (another host imports it).
func checkModels(cmd *cobra.Command, input string, cat *catalog.Catalog, w io.Writer) error {
	for _, name := range []string{"model", "routing"} {
		if f := cmd.Flags().Lookup(name); f != nil && f.Value.String() != "" {
			return nil
		}
	}
	f, err := os.Open(input)
	if err != nil {
		return nil // the import reports it, or joins another host's run
	}
	defer f.Close()
	models := map[string]*modelUse{}
	var total int64
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 1<<20), 256<<20)
	var line int64
	for sc.Scan() {
		line++
		var l struct {
			Params struct {
				Model string `json:"model"`
			} `json:"params"`
		}
		b := sc.Bytes()
		if len(strings.TrimSpace(string(b))) == 0 || json.Unmarshal(b, &l) != nil || l.Params.Model == "" {
			continue // a bad line: the import reports it, with its line and field
		}
		total++
		u := models[l.Params.Model]
		if u == nil {
			u = &modelUse{first: line}
			models[l.Params.Model] = u
		}
		u.lines++
	}
	if err := sc.Err(); err != nil {
		return nil // the import reports a line it cannot read
	}
	var unknown []string
	var bad int64
	for m, u := range models {
		if _, err := cat.Resolve(m); errors.Is(err, catalog.ErrUnknownModel) {
			unknown = append(unknown, m)
			bad += u.lines
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Slice(unknown, func(i, j int) bool { return models[unknown[i]].first < models[unknown[j]].first })
	known := append(cat.ModelIDs(), aliasNames(cat)...)
	var msgs []string
	try := "fix params.model in those lines, or give --model NAME, or add the model to a --catalog file (docs/catalog.md)"
	for _, m := range unknown {
		u := models[m]
		msg := fmt.Sprintf("%s: %d %s (first: line %d) name model %q, which the catalog does not know", input, u.lines, plural(u.lines, "line", "lines"), u.first, m)
		if s := suggest.Closest(m, known, 4); s != "" {
			msg += fmt.Sprintf(" (did you mean %s?)", s)
			try = fmt.Sprintf("fix params.model in those lines, or give --model %s, or add the model to a --catalog file (docs/catalog.md)", s)
		}
		msgs = append(msgs, msg)
	}
	strict, _ := cmd.Flags().GetBool("strict")
	if bad == total || strict {
		why := "no line names a model the catalog knows: nothing would run"
		if bad < total {
			why = "--strict: nothing is sent while a line would fail"
		}
		return usageErr(try, "%s; %s", strings.Join(msgs, "; "), why)
	}
	for _, m := range msgs {
		fmt.Fprintf(w, "warning: %s: those lines will end errored without a call\n", m)
	}
	fmt.Fprintf(w, "Try: %s\n", try)
	return nil
}

func aliasNames(cat *catalog.Catalog) []string {
	out := make([]string, 0, len(cat.Aliases))
	for a := range cat.Aliases {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
