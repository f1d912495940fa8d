// Package admission is the write side and the customer API of the vmledger
// Attestation Service (docs/architecture.md): admission of co-processor
// attestations, enrolment and revocation of co-processor keys, the search
// index and offline bundles. It runs on an [engine.Engine] and a
// [Publisher] (log/publish), and adds its routes to a log/server.Server:
//
//	svc, err := admission.New(ctx, admission.Config{
//		Engine: eng, Publisher: pub, Dir: filepath.Join(data, "index"),
//		AdminToken: token, Registry: srv.Registry(), Logger: logger,
//	})
//	svc.Register(srv)
//	// on shutdown: http.Server.Shutdown, then svc.Close(), then eng.Close()
//
// # Endpoints
//
//	POST   /v1/attestations[?wait=1]   body: the canonical DSSE envelope (coproc)
//	       202 {"index": N}                        admitted (no wait)
//	       201 {"index": N, "bundle": {…}}         admitted, in a published checkpoint (wait=1)
//	       200 the same shapes                     an exact duplicate: the existing index
//	GET    /v1/attestations?root=<hex>|key=<keyid>[&after=N][&limit=L]
//	GET    /v1/vms/<vm id>/attestations[?after=N][&limit=L]
//	       200 {"attestations": [{"index", "vm_id", "config_root", "keyid",
//	            "counter", "time"}, …], "next_after": N}   (next_after only if the page is full)
//	GET    /v1/bundles/<index>             200 the log/bundle JSON against the latest
//	                                       published checkpoint; 404 if not published yet
//	GET    /v1/vms/<vm id>/bundle          the same for the VM's latest published attestation
//	GET    /v1/coprocessors                200 {"coprocessors": [Key, …]} (public)
//	POST   /v1/coprocessors                admin; {"name": "…", "public_key": "<PEM>"}; a
//	                                       "VMLEDGER TPM IDENTITY" block after the key (as
//	                                       `vmledger coproc info` prints) enrols its TPM identity
//	                                       201 Key (enrolled; answered once a published
//	                                       checkpoint includes the record, or after 10 s)
//	                                       / 200 Key (already enrolled)
//	DELETE /v1/coprocessors/<keyid>        admin; 200 Key (revoked, or already revoked)
//
// A VM id containing "/" is percent-encoded in the path (web%2F01). Search
// results are in index order, DefaultLimit (100) per page, at most MaxLimit
// (1000) with ?limit=; ?after=N continues after index N. The admin
// endpoints need "Authorization: Bearer <token>" (compared in constant
// time); without Config.AdminToken they answer 401 to everyone.
//
// Every refusal is its own status with a JSON body {"error": "<text>",
// "reason": "<code>"}:
//
//	400 malformed         not the canonical envelope (or not the endpoint's JSON)
//	400 bad-statement     not a well-formed vm-config statement, or its keyid ≠ the signature's
//	400 bad-key           enrolment: not a P-256 or Ed25519 PEM public key, or a bad name
//	400 bad-request       bad query or path parameter
//	401 unauthorized      admin token missing or wrong
//	403 unknown-key       the signing key is not enrolled
//	403 revoked-key       the signing key was revoked (also: re-enrolling a revoked key)
//	403 bad-signature     the DSSE signature does not verify under the enrolled key
//	403 bad-evidence      the key was enrolled with a TPM identity and the statement's TPM
//	                      evidence is missing or wrong; the error names the part that failed
//	404 not-found         no such bundle (yet), VM or key
//	409 replayed-counter  the counter is not above the key's last admitted counter
//	409 stale-freshness   the anchor is no longer fresh (see below)
//	409 unknown-anchor    the anchor is not a checkpoint this log published
//	409 empty-anchor      the anchor is the empty tree (size 0): it proves nothing
//	413 too-large         body above 65,535 bytes
//	429 overloaded        Config.MaxInFlight admissions in flight; Retry-After: 1
//	503 pushback          the engine refuses new entries for now; Retry-After: 1
//	503 shared-state-unavailable  Config.Claims (the front-ends' shared state) failed; Retry-After: 1
//	503 unavailable       shutting down
//
// # Admission
//
// In order: the body is read up to 65,536 bytes (more is 413) and parsed
// with coproc.ParseEnvelope, which accepts only the canonical encoding, so
// the log entry is exactly the bytes received. An entry whose RFC 6962 leaf
// hash is already in the log answers its index (200), and identical
// submissions that race wait for the first one's outcome instead of
// appending again (an in-memory map of leaf hashes being admitted, kept
// until the index has them). So a POST may be resent safely: the agent
// sends an Idempotency-Key header (the entry's leaf hash, in hex; the server
// does not read it), which lets Go's net/http, and other clients that honour
// it, resend a request whose pooled connection the server had closed. Then: statement, enrolled and not revoked key,
// signature (verified in the request's goroutine, no lock), freshness
// anchor, and the counter. The counter is reserved under the key's mutex —
// it must exceed both the highest admitted counter and every counter of
// that key between its check and its append — and the append runs without
// any lock, so appends of all keys share the engine's group commit. If the
// append fails the reservation is dropped and the same envelope can be
// retried. The response is sent once the entry is durable in the log (the
// engine's Add), and with ?wait=1 once a published checkpoint includes it;
// the search index follows within moments ([Service.Sync] waits for it).
//
// # Several front-ends
//
// Front-ends of one log (the Tessera engine: one database, several
// `vmledger log serve`) each keep their own index, which reads what the
// others appended from the log about once a second. What must not wait for
// that is shared through Config.Claims (tesseralog's Engine.Claims, one
// row per key in the log's database):
//
//   - Counter floor. After the local reservation, admission claims the
//     counter in the shared state; the claim succeeds only if the counter
//     is above the shared floor and the key is not revoked there, and
//     raises the floor to it. An append that fails releases the claim
//     (compare-and-set back to the previous floor, so a newer claim stays),
//     and the same envelope can be retried at any front-end.
//   - Duplicates. The claim records the entry's leaf hash. When a claim is
//     refused, the front-end brings its index up to the engine's latest
//     checkpoint and looks the leaf up: an append returns only once a
//     published checkpoint covers it, so an envelope admitted through
//     another front-end is found and answered 200 with its index. If the
//     floor is this very envelope and not yet in the log, another
//     front-end is appending it: the request waits (polling every 100 ms,
//     up to 30 s) for it to appear or be released. Otherwise the answer is
//     409 replayed-counter.
//   - Revocation. A revocation marks the key revoked in the shared state
//     before anything else, so every front-end refuses it at once, then
//     waits for the appends of the key that any front-end claimed before
//     the mark (the shared pending count; at most 30 s, for front-ends that
//     died holding a claim), then appends the record. The mark stays if
//     that append fails: the key stays refused until the revocation is
//     retried.
//
// The shared state holds no lock across an append. If it cannot be reached
// the admission is 503 shared-state-unavailable and nothing is appended.
// What still lags by the index's second: search and bundle endpoints, the
// key list and enrolment (a key enrolled through one front-end is
// unknown-key at another until its index has the record), and an envelope
// whose counter another envelope of the key has already overtaken while
// the first was still being appended elsewhere (409 instead of 200; it is
// in the log all the same). As with one front-end, an append that fails
// after the engine may have sequenced the entry (tesseralog: a failed read
// of the published checkpoint) releases the claim, and a retry before the
// index sees the entry appends it again. Without Config.Claims (the embedded engine,
// one process) admission works as described above, per front-end.
//
// Freshness: an anchor must name this log's origin, a size above 0 (the
// empty tree is the same for every log and anyone can name it in advance,
// so a log admits attestations only once it has published a non-empty
// checkpoint, e.g. after its first enrolment record), a size at which the
// engine signed a checkpoint with the anchor's root, and a checkpoint the
// publisher published that is still the latest or was replaced by a newer
// one less than Config.FreshnessWindow ago (default 10 minutes). (Counting
// from when it was first published would refuse every anchor of a quiet
// log.) Replacement times are kept in memory, fed by Publisher.Wait and
// pruned past the window: after a restart only the current published
// checkpoint is a valid anchor, and an agent holding an older one gets
// stale-freshness and retries with the checkpoint it reads now.
//
// # Enrolment records
//
// Enrolment and revocation are log entries of their own, so that an auditor
// can see which keys were valid when and the whole admission state derives
// from the log. A record is compact JSON with the members in this order, no
// HTML escaping (Record.Marshal, ParseRecord accepts only that encoding):
//
//	{"_type":"https://vmledger.dev/log/enrolment/v1","action":"enrol",
//	 "keyid":"<lowercase hex SHA-256 of the DER SPKI>",
//	 "public_key":"<standard base64 of the DER SPKI>","name":"host-a",
//	 "tpm_identity":"<standard base64 of the TPM identity>",
//	 "time":"2026-11-28T12:00:00Z"}
//	{"_type":"https://vmledger.dev/log/enrolment/v1","action":"revoke",
//	 "keyid":"<keyid>","time":"2026-11-28T12:05:00Z"}
//
// name is omitted when empty; tpm_identity (package coproc/evidence: the
// AK's TPMT_PUBLIC and the Names of the root and counter NV indexes) only
// when the enrolment PEM carried a "VMLEDGER TPM IDENTITY" block. A key
// enrolled with one is admitted only with TPM evidence that verifies under
// it (403 bad-evidence otherwise); a key enrolled without one is a software
// key to the log. A key keeps the identity (or its absence) it was enrolled
// with: enrolling it again with another is 400 bad-key. time is the log's clock (RFC 3339 UTC,
// seconds). A key is valid for attestations appended after its enrol
// record and before its revoke record; the service appends a revocation
// only after the admissions of that key already past their checks are
// durable, and refuses new ones from the moment the revocation starts.
// Revocation is final: the same key cannot be enrolled again. Enrolling an
// enrolled key appends nothing. An entry is a record if it starts with
// `{"_type":"https://vmledger.dev/log/enrolment/v1"`; it can never parse as
// a DSSE envelope.
//
// # The index
//
// A badger database in Config.Dir, written without fsync (see index.go for
// the keys): per key its enrolment, revocation and highest admitted
// counter; leaf hash → index; VM id, config root and key id → attestations.
// It records how many log entries it has applied. New applies the entries
// from there to the engine's latest checkpoint (reading entry bundles and
// tlog.ParseBundle) before serving, so a crash between an append and the
// index update loses nothing, and an empty directory is rebuilt from the
// whole log. While running, one indexer goroutine applies the entries that
// admission, enrolment and revocation hand it after their appends (with the
// statement already parsed), and every second reads whatever else the
// engine has from its entry bundles (entries appended otherwise). Entries
// that are neither envelopes nor records (the server's raw test endpoint)
// are skipped. An envelope that this service did not hand over (appended
// through another front-end, before a crash, or behind admission's back)
// takes effect only if its key was enrolled earlier in the log and its
// signature verifies under that key; otherwise it is logged and ignored
// (no search result, no counter floor), so that the index never takes
// state from an attestation admission did not check. Enrolment records
// carry no signature: only admission may append them, which is why `log
// serve` refuses raw entries together with an admin token and its raw
// endpoint refuses records and envelopes ([RefuseRawEntry]).
package admission
