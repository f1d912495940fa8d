package tesseralog

import (
	"context"
	"database/sql"
	"fmt"
)

// tesseraSchema creates the tables that Tessera v1.0.4's MySQL driver
// expects (its storage/mysql/schema.sql, compatibility version 1). The
// driver checks the version row at start-up but does not create anything,
// so Open applies these statements; every one is idempotent, so front-ends
// that start together on an empty database do not race. TestSchemaMatchesTessera
// compares the resulting tables with the ones Tessera's own file creates.
var tesseraSchema = []string{
	"CREATE TABLE IF NOT EXISTS `Tessera` (" +
		"`id` TINYINT UNSIGNED NOT NULL, " +
		"`compatibilityVersion` BIGINT UNSIGNED NOT NULL, " +
		"PRIMARY KEY (`id`))",
	"INSERT IGNORE INTO `Tessera` (`id`, `compatibilityVersion`) VALUES (0, 1)",
	"CREATE TABLE IF NOT EXISTS `Checkpoint` (" +
		"`id` TINYINT UNSIGNED NOT NULL, " +
		"`note` MEDIUMBLOB NOT NULL, " +
		"`published_at` BIGINT NOT NULL, " +
		"PRIMARY KEY (`id`))",
	"CREATE TABLE IF NOT EXISTS `TreeState` (" +
		"`id` TINYINT UNSIGNED NOT NULL, " +
		"`size` BIGINT UNSIGNED NOT NULL, " +
		"`root` TINYBLOB NOT NULL, " +
		"PRIMARY KEY (`id`))",
	"CREATE TABLE IF NOT EXISTS `Subtree` (" +
		"`level` TINYINT UNSIGNED NOT NULL, " +
		"`index` BIGINT UNSIGNED NOT NULL, " +
		"`nodes` MEDIUMBLOB NOT NULL, " +
		"PRIMARY KEY (`level`, `index`))",
	"CREATE TABLE IF NOT EXISTS `TiledLeaves` (" +
		"`tile_index` BIGINT UNSIGNED NOT NULL, " +
		"`size` SMALLINT UNSIGNED NOT NULL, " +
		"`data` LONGBLOB NOT NULL, " +
		"PRIMARY KEY (`tile_index`))",
}

// historySchema is vmledger's own table: every checkpoint ever signed, by
// size (see the package documentation).
var historySchema = []string{
	"CREATE TABLE IF NOT EXISTS `vmledger_checkpoints` (" +
		"`size` BIGINT UNSIGNED NOT NULL, " +
		"`root` BINARY(32) NOT NULL, " +
		"`note` BLOB NOT NULL, " +
		"`signed_at` BIGINT NOT NULL, " +
		"PRIMARY KEY (`size`))",
}

// applySchema creates the tables that do not exist yet.
func applySchema(ctx context.Context, db *sql.DB) error {
	for _, stmts := range [][]string{tesseraSchema, historySchema, claimsSchema} {
		for _, s := range stmts {
			if _, err := db.ExecContext(ctx, s); err != nil {
				return fmt.Errorf("applying schema: %w", err)
			}
		}
	}
	return nil
}
