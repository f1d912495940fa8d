package tesseralog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// claimsSchema is the admission state that front-ends of one log share
// (see Claims). One row per co-processor key that was ever claimed or
// revoked.
var claimsSchema = []string{
	"CREATE TABLE IF NOT EXISTS `vmledger_admission` (" +
		"`keyid` CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL, " +
		"`counter` BIGINT UNSIGNED NOT NULL DEFAULT 0, " +
		"`leaf` BINARY(32) NOT NULL DEFAULT '', " +
		"`revoked` BOOL NOT NULL DEFAULT FALSE, " +
		"`pending` INT NOT NULL DEFAULT 0, " +
		"PRIMARY KEY (`keyid`))",
}

// Claims is the admission state that every front-end of the log shares
// through its database, so that the counter floor and revocation of a
// co-processor key hold across front-ends at once (log/admission's
// Config.Claims; it implements admission.Claims). Per key, the table
// vmledger_admission holds:
//
//	counter  the highest counter claimed by any front-end (the floor)
//	leaf     the leaf hash of the envelope that claimed it
//	revoked  a revocation of the key has started somewhere
//	pending  claims whose append has not finished (Claim … Done/Release)
//
// Every method is one short transaction or one statement: no lock is held
// across a Tessera append. Get it with [Engine.Claims].
type Claims struct {
	db *sql.DB
}

// Claims returns the shared admission state in the engine's database.
func (e *Engine) Claims() *Claims { return &Claims{db: e.db} }

// Claim raises keyID's floor to counter and records leaf as its holder if
// the key is not revoked and counter is above the floor, and counts the
// claim as pending. On success ok is true and floor and holder are the
// values it replaced (for Release); otherwise they are the stored ones,
// and revoked says whether the key is revoked.
func (c *Claims) Claim(ctx context.Context, keyID string, counter uint64, leaf [32]byte) (ok bool, floor uint64, holder [32]byte, revoked bool, err error) {
	for range 2 {
		ok, found, floor, holder, revoked, err := c.claim(ctx, keyID, counter, leaf)
		if err != nil || found {
			return ok, floor, holder, revoked, err
		}
		// A key nobody claimed yet: create its row outside the
		// transaction (INSERT IGNORE then SELECT … FOR UPDATE in one
		// transaction deadlocks when two front-ends race), then claim.
		if err := c.ensure(ctx, keyID); err != nil {
			return false, 0, holder, false, err
		}
	}
	return false, 0, holder, false, fmt.Errorf("tesseralog: claim of key %s: its row vanished", keyID)
}

func (c *Claims) claim(ctx context.Context, keyID string, counter uint64, leaf [32]byte) (ok, found bool, floor uint64, holder [32]byte, revoked bool, err error) {
	tx, err := c.db.BeginTx(ctx, nil)
	if err != nil {
		return false, false, 0, holder, false, fmt.Errorf("tesseralog: claim: %w", err)
	}
	defer tx.Rollback()
	var h []byte
	err = tx.QueryRowContext(ctx, "SELECT `counter`, `leaf`, `revoked` FROM `vmledger_admission` WHERE `keyid` = ? FOR UPDATE", keyID).Scan(&floor, &h, &revoked)
	if errors.Is(err, sql.ErrNoRows) {
		return false, false, 0, holder, false, nil
	}
	if err != nil {
		return false, false, 0, holder, false, fmt.Errorf("tesseralog: claim: %w", err)
	}
	copy(holder[:], h)
	if revoked || counter <= floor {
		return false, true, floor, holder, revoked, nil
	}
	if _, err := tx.ExecContext(ctx, "UPDATE `vmledger_admission` SET `counter` = ?, `leaf` = ?, `pending` = `pending` + 1 WHERE `keyid` = ?", counter, leaf[:], keyID); err != nil {
		return false, true, 0, holder, false, fmt.Errorf("tesseralog: claim: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return false, true, 0, holder, false, fmt.Errorf("tesseralog: claim: %w", err)
	}
	return true, true, floor, holder, false, nil
}

func (c *Claims) ensure(ctx context.Context, keyID string) error {
	if _, err := c.db.ExecContext(ctx, "INSERT IGNORE INTO `vmledger_admission` (`keyid`) VALUES (?)", keyID); err != nil {
		return fmt.Errorf("tesseralog: claim state of key %s: %w", keyID, err)
	}
	return nil
}

// Release ends a claim whose append failed: if the floor is still that
// claim (counter and leaf), it goes back to prevCounter and prevLeaf (what
// Claim replaced), so the same envelope can be admitted on a retry; a
// newer claim stays. The pending count drops either way.
func (c *Claims) Release(ctx context.Context, keyID string, counter uint64, leaf [32]byte, prevCounter uint64, prevLeaf [32]byte) error {
	res, err := c.db.ExecContext(ctx, "UPDATE `vmledger_admission` SET `counter` = ?, `leaf` = ?, `pending` = IF(`pending` > 0, `pending` - 1, 0) "+
		"WHERE `keyid` = ? AND `counter` = ? AND `leaf` = ?", prevCounter, prevLeaf[:], keyID, counter, leaf[:])
	if err != nil {
		return fmt.Errorf("tesseralog: releasing the claim of key %s at %d: %w", keyID, counter, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 1 {
		return nil
	}
	return c.Done(ctx, keyID)
}

// Done ends a claim whose append succeeded: the floor stays, the pending
// count drops.
func (c *Claims) Done(ctx context.Context, keyID string) error {
	if _, err := c.db.ExecContext(ctx, "UPDATE `vmledger_admission` SET `pending` = IF(`pending` > 0, `pending` - 1, 0) WHERE `keyid` = ?", keyID); err != nil {
		return fmt.Errorf("tesseralog: ending a claim of key %s: %w", keyID, err)
	}
	return nil
}

// Revoke marks keyID revoked, so that no front-end claims it again, and
// returns how many claims are still pending (appends that started before
// the mark). It is idempotent: call it again to poll the count.
func (c *Claims) Revoke(ctx context.Context, keyID string) (pending int, err error) {
	if err := c.ensure(ctx, keyID); err != nil {
		return 0, err
	}
	if _, err := c.db.ExecContext(ctx, "UPDATE `vmledger_admission` SET `revoked` = TRUE WHERE `keyid` = ?", keyID); err != nil {
		return 0, fmt.Errorf("tesseralog: marking key %s revoked: %w", keyID, err)
	}
	if err := c.db.QueryRowContext(ctx, "SELECT `pending` FROM `vmledger_admission` WHERE `keyid` = ?", keyID).Scan(&pending); err != nil {
		return 0, fmt.Errorf("tesseralog: marking key %s revoked: %w", keyID, err)
	}
	return pending, nil
}
