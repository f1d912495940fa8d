package notekey

import (
	"crypto/rand"
	"errors"
	"testing"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
)

func TestCheckNotPublic(t *testing.T) {
	skey, vkey, err := note.GenerateKey(rand.Reader, "example.com/ledger")
	if err != nil {
		t.Fatal(err)
	}
	cosigVKey, err := fnote.VKeyToCosignatureV1(vkey) // as witness serve prints it
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, text string
		public     bool
	}{
		{"private key", skey + "\n", false},
		{"verifier key", vkey + "\n", true},
		{"cosignature verifier key", cosigVKey, true},
		{"PEM public key", "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAgTl3Dqh9F19Wo1Rmw0x+zMuNipG07jeiXfYPW4/Js5Q=\n-----END PUBLIC KEY-----\n", true},
		{"PEM private key", "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIAICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgIC\n-----END PRIVATE KEY-----\n", false},
		{"empty", "", false},
		{"garbage", "hello+world+!!", false},
		{"bad key id", "example.com/ledger+zzzzzzzz+AQID", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckNotPublic(tc.text)
			if got := errors.Is(err, ErrPublicKey); got != tc.public {
				t.Errorf("CheckNotPublic(%q) = %v, want public %v", tc.text, err, tc.public)
			}
		})
	}
}
