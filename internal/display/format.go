package display

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Total is the first line of a progress block, at most width columns (default
// DefaultWidth): a bar, the share done, done/total and the ok and err counts,
// "[████░░░░]  41.1%  1,234/3,000  ok 1,230  err 4". A total of 0 is 100 %.
func Total(width int, done, total, ok, bad int64) string {
	if width <= 0 {
		width = DefaultWidth
	}
	tail := fmt.Sprintf(" %5.1f%%  %s/%s  ok %s  err %s", Percent(done, total), Count(done), Count(total), Count(ok), Count(bad))
	barWidth := min(width-utf8.RuneCountInString(tail)-2, 40)
	if barWidth < 5 { // too narrow for a bar: the numbers
		return Cut(strings.TrimLeft(tail, " "), width)
	}
	return "[" + Bar(Percent(done, total)/100, barWidth) + "]" + tail
}

// Fit joins parts with sep while the line stays within width columns: the first
// always, each next one if it fits. Rows put what matters most first.
func Fit(width int, sep string, parts ...string) string {
	var b strings.Builder
	for i, p := range parts {
		if i > 0 && utf8.RuneCountInString(b.String())+utf8.RuneCountInString(sep+p) > width {
			continue
		}
		if i > 0 {
			b.WriteString(sep)
		}
		b.WriteString(p)
	}
	return b.String()
}

// Percent is done as a percentage of total; 100 when total is 0.
func Percent(done, total int64) float64 {
	if total <= 0 {
		return 100
	}
	return 100 * float64(done) / float64(total)
}

// Round formats d for people: 12s, 3m04s, 1h02m.
func Round(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()+0.5))
	case d < time.Hour:
		d = d.Round(time.Second)
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	default:
		d = d.Round(time.Minute)
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
}

// Short formats n as 950, 12.3k or 4.5M.
func Short(n float64) string {
	switch {
	case n >= 1e6:
		return fmt.Sprintf("%.1fM", n/1e6)
	case n >= 1e4:
		return fmt.Sprintf("%.0fk", n/1e3)
	case n >= 1e3:
		return fmt.Sprintf("%.1fk", n/1e3)
	default:
		return fmt.Sprintf("%.0f", n)
	}
}

// Count formats n as 12,345.
func Count(n int64) string {
	s := fmt.Sprint(n)
	if n < 0 || len(s) <= 3 {
		return s
	}
	var b strings.Builder
	pre := len(s) % 3
	b.WriteString(s[:pre])
	for i := pre; i < len(s); i += 3 {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s[i : i+3])
	}
	return b.String()
}
