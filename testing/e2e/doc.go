// Package e2e holds the end-to-end tests of vmledger: they build the real
// vmledger binary once and run every part of a deployment as its own process
// on loopback — three witnesses (vmledger witness serve), the log (vmledger
// log serve with a 2-of-3 witness policy), a swtpm — and then drive the
// agent, the customer's verifier and the monitor through the command line,
// exactly as an operator would. The package has no non-test code.
//
// Tests whose names end in Tessera run the same deployment with the log on
// the Tessera engine (log serve --engine tessera --mysql-dsn) and a database
// of their own on the MariaDB that .ci/run starts.
//
// The tests need swtpm (Debian package swtpm): without it they skip, and
// with VMLEDGER_REQUIRE_SWTPM=1 they fail. See coproc/tpm/swtpmtest. The
// Tessera ones also need VMLEDGER_TEST_MYSQL_DSN; see testing/mysqltest.
package e2e
