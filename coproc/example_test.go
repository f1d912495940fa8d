package coproc_test

import (
	"crypto/ed25519"
	"fmt"
	"os"

	"github.com/vmledger/vmledger/coproc"
)

// A verifier's view: parse the log entry strictly, check the signature with
// the enrolled key, read the statement.
func ExampleVerifyStatement() {
	entry, err := os.ReadFile("testdata/golden-ed25519.json")
	if err != nil {
		panic(err)
	}
	enrolled := ed25519.NewKeyFromSeed(make32(3)).Public() // from `vmledger coproc info`

	env, err := coproc.ParseEnvelope(entry)
	if err != nil {
		fmt.Println("refused:", err)
		return
	}
	st, err := coproc.VerifyStatement(env, enrolled)
	if err != nil {
		fmt.Println("refused:", err)
		return
	}
	fmt.Println("vm:", st.VMID())
	fmt.Printf("root: %x\n", st.ConfigRoot())
	fmt.Println("counter:", st.Predicate.Coprocessor.Counter)
	fmt.Println("after:", st.Predicate.Freshness.Origin, st.Predicate.Freshness.Size)

	env.Payload[len(env.Payload)-3] ^= 1
	fmt.Println("tampered:", coproc.Verify(env, enrolled) != nil)
	// Output:
	// vm: web-01
	// root: 1e28f6dba8456d2c98ef3da5bda8d2793bd76ef221a3bff70fa8d2beb0b8adc2
	// counter: 7
	// after: example.com/ledger 8
	// tampered: true
}

func make32(b byte) []byte {
	s := make([]byte, 32)
	for i := range s {
		s[i] = b
	}
	return s
}
