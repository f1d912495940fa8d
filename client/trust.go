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
	"github.com/vmledger/vmledger/coproc/evidence"
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
	// Identity is the key's TPM identity (AK public area, NV index Names):
	// its statements must carry TPM evidence that verifies under it. Nil
	// for a key without one.
	Identity *evidence.Identity
	// Software: this key's software-attested statements are accepted.
	Software bool
	// V1: this key's statements of predicate v1 (made before TPM
	// evidence; they carry none) are accepted.
	V1 bool
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
//	coprocessor <name> <base64 DER SPKI | PEM file path> [tpm=<identity>] [software] [v1]
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
//
// What a co-processor's statements must carry to be accepted is said on
// its line, each option at most once:
//
//	tpm=<identity>  the TPM identity (standard base64, package
//	                coproc/evidence): statements must carry TPM evidence
//	                (TPM2_NV_Certify by the AK of the enrolled NV indexes)
//	                that verifies under it. A PEM file that holds a
//	                "VMLEDGER TPM IDENTITY" block after the key, as
//	                `vmledger coproc info` prints, gives the same.
//	software        accept this key's software-attested statements (soft
//	                backend: nothing but the key vouches for root and counter)
//	v1              accept this key's statements of predicate v1, made before
//	                TPM evidence existed (they carry none)
//
// A statement that none of its key's options accepts fails the "tpm
// evidence" check of Verify.
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
			if len(f) < 3 {
				return nil, fmt.Errorf("%w: line %d: want `coprocessor <name> <base64 DER SPKI or PEM file> [tpm=<identity>] [software] [v1]`", ErrTrustFile, i+1)
			}
			if names[f[1]] {
				return nil, fmt.Errorf("%w: line %d: co-processor name %q used twice", ErrTrustFile, i+1, f[1])
			}
			names[f[1]] = true
			pub, ident, err := loadKey(f[2], baseDir)
			if err != nil {
				return nil, fmt.Errorf("%w: line %d: co-processor %s: %v", ErrTrustFile, i+1, f[1], err)
			}
			tk := TrustedKey{Name: f[1], Identity: ident}
			if err := parseKeyOptions(&tk, f[3:]); err != nil {
				return nil, fmt.Errorf("%w: line %d: co-processor %s: %v", ErrTrustFile, i+1, f[1], err)
			}
			id, err := coproc.KeyID(pub)
			if err != nil {
				return nil, fmt.Errorf("%w: line %d: co-processor %s: %v", ErrTrustFile, i+1, f[1], err)
			}
			if _, dup := t.Coprocessors[id]; dup {
				return nil, fmt.Errorf("%w: line %d: co-processor key %s listed twice", ErrTrustFile, i+1, id)
			}
			tk.KeyID, tk.Public = id, pub
			t.Coprocessors[id] = tk
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

func loadKey(arg, baseDir string) (crypto.PublicKey, *evidence.Identity, error) {
	if der, err := base64.StdEncoding.Strict().DecodeString(arg); err == nil && len(der) > 0 {
		pub, err := cryptoutils.UnmarshalPEMToPublicKey(cryptoutils.PEMEncode(cryptoutils.PublicKeyPEMType, der))
		return pub, nil, err
	}
	path := arg
	if !strings.HasPrefix(path, "/") {
		path = baseDir + "/" + path
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("neither base64 DER nor a readable PEM file: %w", err)
	}
	if !bytes.Contains(pem, []byte("-----BEGIN PUBLIC KEY-----")) {
		return nil, nil, fmt.Errorf("%s holds no PEM PUBLIC KEY block", path)
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pem)
	if err != nil {
		return nil, nil, err
	}
	ident, err := evidence.FindPEM(pem)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return pub, ident, nil
}

// TrustLine returns the trust-file line that names pub as co-processor
// name, a software key: its software-attested statements are accepted.
func TrustLine(name string, pub crypto.PublicKey) (string, error) {
	return TrustLineTPM(name, pub, nil)
}

// TrustLineTPM returns the trust-file line for a co-processor key with its
// TPM identity; with a nil identity, the line of a software key.
func TrustLineTPM(name string, pub crypto.PublicKey, ident *evidence.Identity) (string, error) {
	der, err := cryptoutils.MarshalPublicKeyToDER(pub)
	if err != nil {
		return "", err
	}
	line := "coprocessor " + name + " " + base64.StdEncoding.EncodeToString(der)
	if ident == nil {
		return line + " " + optSoftware, nil
	}
	return line + " " + optTPM + ident.String(), nil
}
