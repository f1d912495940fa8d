package client

import (
	"bytes"
	"crypto"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/vmledger/vmledger/coproc"
	"github.com/vmledger/vmledger/witness/policy"
)

// Trust is what a customer trusts: the logs, the witnesses and the quorum
// among them, and the co-processor keys allowed to attest.
type Trust struct {
	// Policy holds the trusted logs (their verifier keys) and the witness
	// policy, parsed strictly by package policy.
	Policy *policy.Policy
	// Coprocessors maps a co-processor key id (lowercase hex SHA-256 of the
	// DER SPKI) to its public key and the name the trust file gave it.
	Coprocessors map[string]TrustedKey
	// MaxAge, if non-zero, bounds how old a checkpoint may be: the newest
	// cosignature from a witness of the policy must be at most MaxAge old.
	MaxAge time.Duration
}

// TrustedKey is a co-processor key named in a trust file.
type TrustedKey struct {
	Name   string
	KeyID  string
	Public crypto.PublicKey
}

// ErrTrustFile is wrapped by every ParseTrust error.
var ErrTrustFile = errors.New("trust file")

// ParseTrust parses a trust file.
//
// A trust file is a C2SP tlog-policy (https://c2sp.org/tlog-policy) with two
// extra line types. Lines, in any order except that a name may only refer to
// an earlier line:
//
//	log <vkey> [<url>]                 a trusted log (its checkpoint verifier key)
//	witness <name> <vkey> [<url>]      a witness (Ed25519 or cosignature/v1 key)
//	group <name> <k|any|all> <member>… a threshold of witnesses or groups
//	quorum <name|none>                 what must cosign every checkpoint
//	coprocessor <name> <base64 DER SPKI | PEM file path>
//	                                   a co-processor key allowed to attest
//	max-age <duration>                 optional: reject checkpoints whose newest
//	                                   cosignature is older (Go duration, e.g. 24h)
//	# comment
//
// For example:
//
//	log demo.vmledger.dev/log+5a0c6b3e+AXl0…
//	witness w1 w1.example+9a1f2b3c+AR3…  http://127.0.0.1:7001
//	witness w2 w2.example+0b4e5d6f+AQ9…  http://127.0.0.1:7002
//	witness w3 w3.example+77c1a0e2+AcH…  http://127.0.0.1:7003
//	group two-of-three 2 w1 w2 w3
//	quorum two-of-three
//	coprocessor host-a MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE…
//	max-age 24h
//
// `vmledger coproc info` prints the coprocessor line of a co-processor. A
// relative PEM path is taken relative to baseDir.
func ParseTrust(text []byte, baseDir string) (*Trust, error) {
	t := &Trust{Coprocessors: map[string]TrustedKey{}}
	lines := strings.Split(string(text), "\n")
	names := map[string]bool{}
	sawMaxAge := false
	// The extension lines are handed to the policy parser as comments, so that
	// its line numbers stay those of the file.
	for i, line := range lines {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "coprocessor":
			if len(f) != 3 {
				return nil, fmt.Errorf("%w: line %d: want `coprocessor <name> <base64 DER SPKI or PEM file>`", ErrTrustFile, i+1)
			}
			if names[f[1]] {
				return nil, fmt.Errorf("%w: line %d: co-processor name %q used twice", ErrTrustFile, i+1, f[1])
			}
			names[f[1]] = true
			pub, err := loadKey(f[2], baseDir)
			if err != nil {
				return nil, fmt.Errorf("%w: line %d: co-processor %s: %v", ErrTrustFile, i+1, f[1], err)
			}
			id, err := coproc.KeyID(pub)
			if err != nil {
				return nil, fmt.Errorf("%w: line %d: co-processor %s: %v", ErrTrustFile, i+1, f[1], err)
			}
			if _, dup := t.Coprocessors[id]; dup {
				return nil, fmt.Errorf("%w: line %d: co-processor key %s listed twice", ErrTrustFile, i+1, id)
			}
			t.Coprocessors[id] = TrustedKey{Name: f[1], KeyID: id, Public: pub}
			lines[i] = "#"
		case "max-age":
			if len(f) != 2 || sawMaxAge {
				return nil, fmt.Errorf("%w: line %d: want one `max-age <duration>` line", ErrTrustFile, i+1)
			}
			d, err := time.ParseDuration(f[1])
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("%w: line %d: max-age %q: want a positive Go duration such as 24h", ErrTrustFile, i+1, f[1])
			}
			t.MaxAge, sawMaxAge = d, true
			lines[i] = "#"
		}
	}
	p, err := policy.Parse([]byte(strings.Join(lines, "\n")))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTrustFile, err)
	}
	if len(p.Logs) == 0 {
		return nil, fmt.Errorf("%w: no `log` line: which log's checkpoints do you trust?", ErrTrustFile)
	}
	if len(t.Coprocessors) == 0 {
		return nil, fmt.Errorf("%w: no `coprocessor` line: which co-processor keys may attest?", ErrTrustFile)
	}
	t.Policy = p
	return t, nil
}

// LoadTrust reads and parses a trust file.
func LoadTrust(path string) (*Trust, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dir := "."
	if i := strings.LastIndexByte(path, '/'); i >= 0 {
		dir = path[:i]
	}
	return ParseTrust(b, dir)
}

func loadKey(arg, baseDir string) (crypto.PublicKey, error) {
	if der, err := base64.StdEncoding.Strict().DecodeString(arg); err == nil && len(der) > 0 {
		return cryptoutils.UnmarshalPEMToPublicKey(cryptoutils.PEMEncode(cryptoutils.PublicKeyPEMType, der))
	}
	path := arg
	if !strings.HasPrefix(path, "/") {
		path = baseDir + "/" + path
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("neither base64 DER nor a readable PEM file: %w", err)
	}
	if !bytes.Contains(pem, []byte("-----BEGIN PUBLIC KEY-----")) {
		return nil, fmt.Errorf("%s holds no PEM PUBLIC KEY block", path)
	}
	return cryptoutils.UnmarshalPEMToPublicKey(pem)
}

// TrustLine returns the trust-file line that names pub as co-processor name.
func TrustLine(name string, pub crypto.PublicKey) (string, error) {
	der, err := cryptoutils.MarshalPublicKeyToDER(pub)
	if err != nil {
		return "", err
	}
	return "coprocessor " + name + " " + base64.StdEncoding.EncodeToString(der), nil
}
