package plan_test

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/clade-dev/clade/internal/plan"
)

// FuzzPlanScanSample checks that the sampling reader, asked for every line, sees the
// file exactly as intake.Reader does: the same lines, models, totals and problems.
func FuzzPlanScanSample(f *testing.F) {
	f.Add([]byte(line("a", "claude-haiku-4-5", 10, 40) + "\n\n" + line("b", "haiku", 5, 3) + "\r\n"))
	f.Add([]byte("\xef\xbb\xbf" + line("a", "claude-haiku-4-5", 10, 40)))
	f.Add([]byte("not json\n \t\n{\"custom_id\":\"x\"}\n"))
	f.Add([]byte(`{"custom_id":"a","params":{"model":"m","max_tokens":1,"messages":[{"content":[{"type":"image"}]}],"tools":[{}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "in.jsonl")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		full, err := plan.Scan(path, plan.ScanOptions{})
		if err != nil {
			t.Fatal(err)
		}
		every, err := plan.Scan(path, plan.ScanOptions{Sample: 1 << 40})
		if err != nil {
			t.Fatal(err)
		}
		every.Stride = 0
		if !reflect.DeepEqual(full, every) {
			t.Errorf("Scan(every line) = %+v\nScan(sample all) = %+v", full, every)
		}
	})
}
