package rekorcompat_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"

	"github.com/vmledger/vmledger/log/badgerlog"
	"github.com/vmledger/vmledger/log/rekorcompat"
	"github.com/vmledger/vmledger/log/server"
	"github.com/vmledger/vmledger/log/tlog"
)

var (
	integratedTime       = regexp.MustCompile(`"integratedTime": [1-9][0-9]*,`)
	signedEntryTimestamp = regexp.MustCompile(`"signedEntryTimestamp": "[A-Za-z0-9+/]{86}=="`)
)

// Wiring the Rekor-compatible endpoints into a log server, and what they
// answer for the worked example of docs/formats.md: the key with seed 0x02 × 32
// named example.com/ledger, and the entries "vmcfg 0" … "vmcfg 4" (the
// root at size 5 is iOmzfHUe… in base64, 88e9b37c… in hex).
func Example() {
	ctx := context.Background()
	seed := bytes.Repeat([]byte{2}, 32)
	skey := "PRIVATE+KEY+example.com/ledger+edb3e1ea+" + base64.StdEncoding.EncodeToString(append([]byte{1}, seed...))

	// What vmledger log serve does with its --key file.
	noteSigner, _, err := tlog.NewSigner(skey)
	if err != nil {
		log.Fatal(err)
	}
	origin, key, err := rekorcompat.ParseNoteKey(skey)
	if err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "rekorcompat-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	eng, err := badgerlog.Open(ctx, badgerlog.Config{Dir: dir, Signer: noteSigner, MemoryBudget: 64 << 20})
	if err != nil {
		log.Fatal(err)
	}
	defer eng.Close()
	srv, err := server.New(server.Config{Engine: eng})
	if err != nil {
		log.Fatal(err)
	}
	h, err := rekorcompat.New(rekorcompat.Config{
		Engine:    eng,
		Published: eng.Checkpoint, // a witnessed log passes its publisher's Latest
		Signer:    key,
		Origin:    origin,
		// TreeID 0: DefaultTreeID, derived from the key.
	})
	if err != nil {
		log.Fatal(err)
	}
	h.Register(srv)
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()

	for i := range 5 {
		if _, err := eng.Add(ctx, fmt.Appendf(nil, "vmcfg %d", i)); err != nil {
			log.Fatal(err)
		}
	}
	for _, path := range []string{
		"/api/v1/log",
		"/api/v1/log/proof?firstSize=2&lastSize=5",
		"/api/v1/log/entries?logIndex=2",
		"/api/v1/log/entries?logIndex=5",
		"/api/v1/log/publicKey",
	} {
		resp, err := http.Get(hs.URL + path)
		if err != nil {
			log.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var out bytes.Buffer
		if json.Indent(&out, b, "", "  ") != nil {
			out.Write(b) // the PEM key
		}
		// The integration time (when the log signed its checkpoint of
		// size 3, Unix seconds) and the SET over it differ per run.
		o := integratedTime.ReplaceAll(out.Bytes(), []byte(`"integratedTime": <time>,`))
		o = signedEntryTimestamp.ReplaceAll(o, []byte(`"signedEntryTimestamp": "<base64 Ed25519 signature>"`))
		fmt.Printf("GET %s → %d\n%s\n", path, resp.StatusCode, o)
	}
	// Output:
	// GET /api/v1/log → 200
	// {
	//   "inactiveShards": [],
	//   "rootHash": "88e9b37c751e0867dfc42c5aed4a30f7006ff89a8dea55c52bfd34464779c862",
	//   "signedTreeHead": "example.com/ledger\n5\niOmzfHUeCGffxCxa7Uow9wBv+JqN6lXFK/00Rkd5yGI=\n\n— example.com/ledger R96ljub0RXIk518oX7k1WQQrC0He43B5Abu1cxiXaWixnrWXFxssXDdw8pY+TbbhRlq94+CBczJApi5IbD5nSi+jNw4=\n",
	//   "treeID": "5178758653511970452",
	//   "treeSize": 5
	// }
	//
	// GET /api/v1/log/proof?firstSize=2&lastSize=5 → 200
	// {
	//   "hashes": [
	//     "a7d85077fe29308166a15450224d7019f0dafc307c0699885cf94fab6104210f",
	//     "ac5af52ecb0ca5d47d7f5ecb279729a7b38686380d3eda92f1bb19a24d2a39ff"
	//   ],
	//   "rootHash": "88e9b37c751e0867dfc42c5aed4a30f7006ff89a8dea55c52bfd34464779c862"
	// }
	//
	// GET /api/v1/log/entries?logIndex=2 → 200
	// {
	//   "47dea58ea00fae941f0525e619e610216eb27a895851ebe732c9bec7cbdba7043cce07db145c04ee": {
	//     "body": "dm1jZmcgMg==",
	//     "integratedTime": <time>,
	//     "logID": "47dea58ea00fae9417ee19d76755bfef690899021132effb04fe1f9e4f0c8059",
	//     "logIndex": 2,
	//     "verification": {
	//       "inclusionProof": {
	//         "checkpoint": "example.com/ledger\n5\niOmzfHUeCGffxCxa7Uow9wBv+JqN6lXFK/00Rkd5yGI=\n\n— example.com/ledger R96ljub0RXIk518oX7k1WQQrC0He43B5Abu1cxiXaWixnrWXFxssXDdw8pY+TbbhRlq94+CBczJApi5IbD5nSi+jNw4=\n",
	//         "hashes": [
	//           "ea0c25e553668d39a39c7828dabf431c9a8ddfff2fa2ad839415c6b31ea7a424",
	//           "602c7a4d98e91e34dfec83f085e3d35fc9912ab1844a4073b3987b60a6e01ae6",
	//           "ac5af52ecb0ca5d47d7f5ecb279729a7b38686380d3eda92f1bb19a24d2a39ff"
	//         ],
	//         "logIndex": 2,
	//         "rootHash": "88e9b37c751e0867dfc42c5aed4a30f7006ff89a8dea55c52bfd34464779c862",
	//         "treeSize": 5
	//       },
	//       "signedEntryTimestamp": "<base64 Ed25519 signature>"
	//     }
	//   }
	// }
	//
	// GET /api/v1/log/entries?logIndex=5 → 404
	// {
	//   "code": 404,
	//   "message": "not found: logIndex 5 is not in the log (tree size 5)"
	// }
	//
	// GET /api/v1/log/publicKey → 200
	// -----BEGIN PUBLIC KEY-----
	// MCowBQYDK2VwAyEAgTl3Dqh9F19Wo1Rmw0x+zMuNipG07jeiXfYPW4/Js5Q=
	// -----END PUBLIC KEY-----
}
