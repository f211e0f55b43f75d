package wire

// MaxCustomIDLen is the longest custom_id the API accepts.
const MaxCustomIDLen = 64

// ValidCustomID reports whether s matches ^[a-zA-Z0-9_-]{1,64}$, the custom_id rule.
func ValidCustomID(s string) bool {
	if len(s) == 0 || len(s) > MaxCustomIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
