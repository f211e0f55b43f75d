package cli

import (
	"testing"
	"time"
)

func TestParseDeadline(t *testing.T) {
	now := time.Date(2026, 11, 26, 14, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		in   string
		want time.Time
	}{
		{"3h", now.Add(3 * time.Hour)},
		{"90m", now.Add(90 * time.Minute)},
		{"15:30", time.Date(2026, 11, 26, 15, 30, 0, 0, time.UTC)},
		{"09:15:30", time.Date(2026, 11, 27, 9, 15, 30, 0, time.UTC)}, // past today: tomorrow
		{"2026-11-27T09:00:00Z", time.Date(2026, 11, 27, 9, 0, 0, 0, time.UTC)},
	} {
		got, err := parseDeadline(tt.in, now)
		if err != nil || !got.Equal(tt.want) {
			t.Errorf("parseDeadline(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "0s", "-1h", "2026-11-25T09:00:00Z", "tomorrow", "25:00"} {
		if _, err := parseDeadline(bad, now); err == nil {
			t.Errorf("parseDeadline(%q) accepted", bad)
		}
	}
}
