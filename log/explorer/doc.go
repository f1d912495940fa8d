// Package explorer is a web explorer of a vmledger log that reads only the
// log's public HTTP API, so it can explore any log: `vmledger log serve`
// serves it at / next to the API (through HandlerTransport), and
// `vmledger explore --log URL` serves it for a log run by someone else.
//
// # Pages
//
//	/                              the latest checkpoint and its signers
//	                               (the log, and each witness with the time
//	                               of its cosignature), the tree size over
//	                               time (see below), recent entries read
//	                               from the entry tiles, the number of keys
//	/search?q=…&kind=auto|vm|root|key|index
//	                               the search box; redirects to a page below
//	/vms/{id}                      the attestations of a VM
//	/roots/{hex}                   the attestations of a config root
//	/keys, /keys/{keyid}           enrolled and revoked co-processor keys
//	/attestations/{index}          one entry: statement, counter, freshness
//	                               anchor, TPM NV indices, inclusion proof,
//	                               checkpoint and witnesses, and the form
//	                               that verifies it in the browser
//	/attestations/{index}/bundle.json  the log's bundle, verbatim
//	/verify                        the same form for any bundle file
//	/assets/…                      CSS, JavaScript and the verifier
//
// Lists page with ?after=, as the log's search endpoints do.
//
// What the pages show is read from the log and is not verified: signature
// lines are parsed to name the signers and date the cosignatures, no more.
// Verification happens in the browser, with the customer's own trust file,
// by package inbrowser (the client package's Verify) compiled to
// WebAssembly: the picked files never leave the page. The pages need no
// resource from another origin (their Content-Security-Policy forbids it),
// so the explorer works offline and behind a firewall.
//
// # The tree growing over time
//
// The home page's chart plots tree size against time from the log's
// Rekor-compatible reads: GET /api/v1/log/entries?logIndex=N answers
// integratedTime, when the log signed its first checkpoint holding entry N,
// so the tree had at least N+1 entries then. At most MaxGrowthSamples
// entries are read (0, step, 2·step, … and the last, step a power of two,
// so the sample stays put as the tree grows), each once: their times never
// change. The latest cosignature adds a point at the checkpoint's size. A
// log without the endpoint, or whose answers are unusable (another entry,
// no time, times going backwards), gets the page without the chart and
// the reason.
//
// # Building the verifier
//
// go generate ./log/explorer builds assets/verify.wasm (./wasm, GOOS=js
// GOARCH=wasm, -trimpath) and copies the toolchain's wasm_exec.js next to
// it; both are embedded by the next go build. They are not committed: the
// WebAssembly file is 13 MB and must match the client code and the Go
// toolchain it is built with. Without them the explorer works and says that
// in-browser verification is not built in.
package explorer
