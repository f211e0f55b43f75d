package cli_test

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/clade-dev/clade/internal/cli"
)

// TestBenchAdmitPrintsThreeClients runs `clade bench admit` for one shape over a
// 2-second window (about 3 s) and checks the table has a row per client, each of
// which sent requests in the window.
func TestBenchAdmitPrintsThreeClients(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for 3 s")
	}
	t.Parallel()
	args := []string{"bench", "admit", "--shape", "rpm", "--warmup", "1s", "--window", "2s"}
	var stdout, stderr bytes.Buffer
	if code := cli.Run(context.Background(), args, strings.NewReader(""), &stdout, &stderr); code != cli.ExitOK {
		t.Fatalf("clade %s exit code = %d, want 0\nstderr:\n%s", strings.Join(args, " "), code, stderr.String())
	}
	for _, client := range []string{"admit", `semaphore\(10\)`, "none"} {
		// | rpm ×64 | client | RPM | **u** | ÷ | ÷ | rpm | itpm | otpm | requests | …
		row := regexp.MustCompile(`(?m)^\| rpm ×64 \| ` + client + ` \| RPM \| \*\*[0-9.]+\*\* \|[^|]*\|[^|]*\|[^|]*\|[^|]*\|[^|]*\| ([0-9]+) \|`)
		m := row.FindStringSubmatch(stdout.String())
		if m == nil {
			t.Errorf("no row for client %s in:\n%s", client, stdout.String())
			continue
		}
		if m[1] == "0" {
			t.Errorf("client %s: 0 requests in the window, want some:\n%s", client, stdout.String())
		}
	}
}

func TestBenchAdmitRefusesUnknownShape(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	if code := cli.Run(context.Background(), []string{"bench", "admit", "--shape", "tpm"}, strings.NewReader(""), &stdout, &stderr); code != cli.ExitUsage {
		t.Fatalf("clade bench admit --shape tpm exit code = %d, want %d\nstderr:\n%s", code, cli.ExitUsage, stderr.String())
	}
	if !strings.Contains(stderr.String(), "want rpm, otpm or stream") {
		t.Errorf("stderr = %q, want it to name the shapes", stderr.String())
	}
}
