package measure

import (
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
)

// Digest is a SHA-256 digest: of an image, a package manifest, a leaf or a
// tree. Its text form (JSON, YAML) is 64 lowercase hex characters.
type Digest [32]byte

// String returns the lowercase hex form.
func (d Digest) String() string { return hex.EncodeToString(d[:]) }

// MarshalText implements encoding.TextMarshaler (lowercase hex).
func (d Digest) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler; see ParseDigest.
func (d *Digest) UnmarshalText(b []byte) error {
	v, err := ParseDigest(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// ParseDigest parses 64 hex characters (either case) into a Digest.
func ParseDigest(s string) (Digest, error) {
	var d Digest
	if len(s) != 64 {
		return d, fmt.Errorf("sha256 %q: want 64 hex characters, got %d", abbrev(s), len(s))
	}
	if _, err := hex.Decode(d[:], []byte(s)); err != nil {
		return d, fmt.Errorf("sha256 %q: not hex: %w", abbrev(s), err)
	}
	return d, nil
}

// MAC is an IEEE 802 MAC-48 address. Its text form is six colon-separated
// lowercase hex octets, "52:54:00:12:34:56".
type MAC [6]byte

func (m MAC) String() string { return net.HardwareAddr(m[:]).String() }

// MarshalText implements encoding.TextMarshaler.
func (m MAC) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler; see ParseMAC.
func (m *MAC) UnmarshalText(b []byte) error {
	v, err := ParseMAC(string(b))
	if err != nil {
		return err
	}
	*m = v
	return nil
}

// ParseMAC parses a MAC-48 address written as six colon- or hyphen-separated
// pairs of hex digits (either case). Other forms net.ParseMAC accepts (dotted,
// EUI-64, InfiniBand) are refused.
func ParseMAC(s string) (MAC, error) {
	var m MAC
	if len(s) != 17 {
		return m, fmt.Errorf("MAC %q: want six hex octets like 52:54:00:12:34:56", abbrev(s))
	}
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 || strings.Contains(s, ".") {
		return m, fmt.Errorf("MAC %q: want six hex octets like 52:54:00:12:34:56", abbrev(s))
	}
	copy(m[:], hw)
	return m, nil
}

// HexBytes is a byte string whose text form is lowercase hex.
type HexBytes []byte

// MarshalText implements encoding.TextMarshaler.
func (h HexBytes) MarshalText() ([]byte, error) {
	return []byte(hex.EncodeToString(h)), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *HexBytes) UnmarshalText(b []byte) error {
	v, err := hex.DecodeString(string(b))
	if err != nil {
		return fmt.Errorf("hex value: %w", err)
	}
	*h = v
	return nil
}

// Secret is the 32-byte per-VM secret from which every salt is derived. It
// never has a text form: String and %v print "[redacted]".
type Secret [32]byte

// String hides the secret.
func (Secret) String() string { return "[redacted]" }

// GoString hides the secret from %#v too.
func (Secret) GoString() string { return "measure.Secret{[redacted]}" }

// IsZero reports whether every byte is zero: a demo secret, never for real VMs.
func (s Secret) IsZero() bool { return s == Secret{} }

func abbrev(s string) string {
	if len(s) > 80 {
		return s[:77] + "..."
	}
	return s
}

// ParseSecret reads a VM secret file's contents: exactly 32 raw bytes, or 64
// hex characters optionally surrounded by blanks and newlines. An all-zero
// secret is refused (see the demo flag of `vmledger agent measure`).
func ParseSecret(data []byte) (Secret, error) {
	var s Secret
	switch t := strings.TrimSpace(string(data)); {
	case len(data) == 32:
		copy(s[:], data)
	case len(t) == 64:
		if _, err := hex.Decode(s[:], []byte(t)); err != nil {
			return s, fmt.Errorf("VM secret: 64 characters but not hex: %w", err)
		}
	default:
		return s, fmt.Errorf("VM secret: %d bytes; want 32 raw bytes or 64 hex characters (make one with: head -c 32 /dev/urandom > vm.secret)", len(data))
	}
	if s.IsZero() {
		return s, errors.New("VM secret is all zeros: every salt would be public")
	}
	return s, nil
}
