package intake

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
)

// Fingerprint identifies the bytes of an input file: its size and SHA-256.
type Fingerprint struct {
	Size   int64
	SHA256 [sha256.Size]byte
}

// String returns the fingerprint as "sha256:<hex>/<size>".
func (f Fingerprint) String() string {
	return fmt.Sprintf("sha256:%s/%d", hex.EncodeToString(f.SHA256[:]), f.Size)
}

// Hex returns the SHA-256 in lowercase hex.
func (f Fingerprint) Hex() string { return hex.EncodeToString(f.SHA256[:]) }

// ReadFingerprint hashes r to its end, streaming (32 KiB at a time).
func ReadFingerprint(r io.Reader) (Fingerprint, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	if err != nil {
		return Fingerprint{}, err
	}
	var f Fingerprint
	f.Size = n
	h.Sum(f.SHA256[:0])
	return f, nil
}

// FileFingerprint returns the fingerprint of the file at path.
func FileFingerprint(path string) (Fingerprint, error) {
	f, err := os.Open(path)
	if err != nil {
		return Fingerprint{}, err
	}
	defer f.Close()
	fp, err := ReadFingerprint(f)
	if err != nil {
		return Fingerprint{}, fmt.Errorf("fingerprint %s: %w", path, err)
	}
	return fp, nil
}
