// Package deps pins the project's dependencies while the packages that use
// them are written. It is removed once every dependency has a real importer.
package deps

import (
	_ "github.com/dgraph-io/badger/v4"
	_ "github.com/google/go-tpm-tools/simulator"
	_ "github.com/google/go-tpm/tpm2"
	_ "github.com/google/go-tpm/tpm2/transport"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/schollz/progressbar/v3"
	_ "github.com/sigstore/rekor/pkg/generated/models"
	_ "github.com/sigstore/rekor/pkg/verify"
	_ "github.com/sigstore/sigstore/pkg/cryptoutils"
	_ "github.com/sigstore/sigstore/pkg/signature"
	_ "github.com/spf13/cobra"
	_ "github.com/transparency-dev/formats/log"
	_ "github.com/transparency-dev/formats/note"
	_ "github.com/transparency-dev/merkle/compact"
	_ "github.com/transparency-dev/merkle/proof"
	_ "github.com/transparency-dev/merkle/rfc6962"
	_ "github.com/transparency-dev/tessera"
	_ "github.com/transparency-dev/tessera/api/layout"
	_ "github.com/transparency-dev/tessera/client"
	_ "github.com/transparency-dev/tessera/storage/mysql"
	_ "github.com/transparency-dev/tessera/storage/posix"
	_ "golang.org/x/mod/sumdb/note"
	_ "golang.org/x/mod/sumdb/tlog"
	_ "golang.org/x/sync/errgroup"
	_ "github.com/go-sql-driver/mysql"
	_ "golang.org/x/term"
)
