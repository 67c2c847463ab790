package testenv

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/go-sql-driver/mysql" // the MariaDB driver, as tessera uses it

	"github.com/attestd/attestd/internal/app"
	"github.com/attestd/attestd/storage/auditlog"
)

// SharedLog makes a fresh audit log for replicas on the MariaDB that
// scripts/with-services starts (ATTESTD_TEST_MARIADB_URL), with one log key
// file, and returns its URL and key file. It fails under CI and skips
// elsewhere when there is no MariaDB.
func SharedLog(t testing.TB) (url, keyFile string) {
	t.Helper()
	base := os.Getenv("ATTESTD_TEST_MARIADB_URL")
	if base == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("ATTESTD_TEST_MARIADB_URL is not set: scripts/with-services starts MariaDB")
		}
		t.Skip("ATTESTD_TEST_MARIADB_URL is not set: a MariaDB URL, started by scripts/with-services")
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "t_" + hex.EncodeToString(b)
	dsn, err := auditlog.MySQLDSN(strings.TrimSuffix(base, "/") + "/mysql")
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE DATABASE " + name); err != nil {
		t.Fatal(err)
	}
	keyFile = filepath.Join(t.TempDir(), "log.key")
	if _, err := auditlog.EnsureKey(keyFile, "attestd/replicas.test"); err != nil {
		t.Fatal(err)
	}
	return strings.TrimSuffix(base, "/") + "/" + name, keyFile
}

// WithSharedLog is SharedLog as a configuration change.
func WithSharedLog(t testing.TB) func(*app.Config) {
	t.Helper()
	url, keyFile := SharedLog(t)
	return func(c *app.Config) { c.LogDatabaseURL, c.LogKeyFile = url, keyFile }
}
