package policy_test

import (
	"fmt"

	"github.com/vmledger/vmledger/witness/policy"
)

// A customer's policy: the log of docs/formats.md's worked examples and one
// witness that must cosign. The checkpoint is their size-0 example with the log's
// signature and the witness's cosignature/v1 line.
func ExamplePolicy_Verify() {
	p, err := policy.Parse([]byte(`
log example.com/ledger+edb3e1ea+AYE5dw6ofRdfVqNUZsNMfszLjYqRtO43ol32D1uPybOU
witness w1 witness.example/w1+0ad7d35e+BIqI4910CfGV/VLbLTy6XXLKZwm/HZQSG/N0iAG0D29c
quorum w1
`))
	if err != nil {
		panic(err)
	}
	logSigned := "example.com/ledger\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n\n" +
		"— example.com/ledger 7bPh6itnAtUnXDTh1NVcEpbC1yTIEw+6VEMAQIXvFNf1R9NmnSnCw4c9fHGcxeizhFpjzoOJEvGPAQaFlPrHGmndhQA=\n"
	cosignature := "— witness.example/w1 CtfTXgAAAABlU/EAq7i4X463xsjOJDoTY4mArJYgntCbeFaLuZ4a5CQ4pL1Trme7plkBVxxyNYLyHmdA/p4MXXNqnr1EGl6o5jVqCw==\n"
	v, err := p.Verify([]byte(logSigned + cosignature))
	fmt.Println(v.Log.Origin, len(v.Cosigners), v.QuorumMet, err)

	// Without the cosignature the log's signature holds, the quorum does not.
	v, err = p.Verify([]byte(logSigned))
	fmt.Println(v.QuorumMet, err)
	// Output:
	// example.com/ledger 1 true <nil>
	// false policy: witness quorum not met: 0 witnesses cosigned
}
