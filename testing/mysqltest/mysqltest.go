// Package mysqltest gives each test its own database on the MySQL-compatible
// server that .ci/run starts (a throw-away MariaDB on loopback), named in
// the environment as
//
//	VMLEDGER_TEST_MYSQL_DSN="vmledger:vmledger@tcp(127.0.0.1:PORT)/"
//
// (a DSN without a database name). Without it, tests skip with a message,
// unless VMLEDGER_REQUIRE_MYSQL=1 is set (CI does): then they fail.
package mysqltest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// EnvDSN and EnvRequire are the environment variables this package reads.
const (
	EnvDSN     = "VMLEDGER_TEST_MYSQL_DSN"
	EnvRequire = "VMLEDGER_REQUIRE_MYSQL"
)

// NewDatabase creates a database with a unique name, drops it when the test
// ends (after the test's other cleanups, which are registered later and so
// run first), and returns a DSN that names it.
func NewDatabase(t testing.TB) string {
	t.Helper()
	base := os.Getenv(EnvDSN)
	if base == "" {
		if os.Getenv(EnvRequire) == "1" {
			t.Fatalf("%s is not set and %s=1: run the tests through .ci/run, which starts MariaDB", EnvDSN, EnvRequire)
		}
		t.Skipf("%s is not set: no MySQL/MariaDB to test against (bash .ci/run starts one; %s=1 makes this a failure)", EnvDSN, EnvRequire)
	}
	cfg, err := mysql.ParseDSN(base)
	if err != nil {
		t.Fatalf("%s: %v", EnvDSN, err)
	}
	if cfg.DBName != "" {
		t.Fatalf("%s names database %q: it must name none (tests create their own)", EnvDSN, cfg.DBName)
	}
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	var b [8]byte
	rand.Read(b[:])
	name := "vmledger_test_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE `"+name+"`"); err != nil {
		db.Close()
		t.Fatalf("mysqltest: creating database on %s: %v", cfg.Addr, err)
	}
	t.Cleanup(func() {
		defer db.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, "DROP DATABASE `"+name+"`"); err != nil {
			t.Errorf("mysqltest: dropping database %s: %v", name, err)
		}
	})
	cfg.DBName = name
	return cfg.FormatDSN()
}
