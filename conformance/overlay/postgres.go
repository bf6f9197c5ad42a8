//go:build myelin_overlay

// A new file in Complement's root package (added through the overlay): when
// the runner provides a PostgreSQL server (`run.sh run -db postgres`), every
// Myelin server of every deployment gets its own fresh database on it,
// dropped again when the deployment is destroyed.

package complement

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

const (
	// envPostgres is a DSN (URL or key=value) of a database on the server
	// the deployer may create databases on.
	envPostgres = "MYELIN_CONFORMANCE_POSTGRES"
	// envPostgresBin is the directory holding createdb and dropdb.
	envPostgresBin = "MYELIN_CONFORMANCE_POSTGRES_BIN"
)

// postgresAdmin creates and drops the servers' databases with PostgreSQL's
// own client tools, which take the maintenance DSN as is.
type postgresAdmin struct {
	dsn string
	bin string
}

// postgresFromEnv returns the admin the runner configured, or nil for SQLite.
func postgresFromEnv() (*postgresAdmin, error) {
	dsn := os.Getenv(envPostgres)
	if dsn == "" {
		return nil, nil
	}
	p := &postgresAdmin{dsn: dsn, bin: os.Getenv(envPostgresBin)}
	if _, err := os.Stat(filepath.Join(p.bin, "createdb")); err != nil {
		return nil, fmt.Errorf("%s: no createdb: %w", envPostgresBin, err)
	}
	return p, nil
}

func (p *postgresAdmin) run(tool string, args ...string) error {
	cmd := exec.Command(filepath.Join(p.bin, tool), append([]string{"--maintenance-db=" + p.dsn}, args...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s", tool, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// create makes an empty database and returns Myelin's DSN for it.
func (p *postgresAdmin) create(name string) (string, error) {
	if err := p.run("createdb", name); err != nil {
		return "", err
	}
	return dsnWithDatabase(p.dsn, name), nil
}

// drop removes a database, disconnecting whoever still uses it.
func (p *postgresAdmin) drop(name string) error {
	return p.run("dropdb", "--if-exists", "--force", name)
}

// dsnWithDatabase points a DSN at another database: the path of a URL, or
// a dbname key appended to a key=value string (the last one counts).
func dsnWithDatabase(dsn, name string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		base, query, hasQuery := strings.Cut(dsn, "?")
		scheme, rest, _ := strings.Cut(base, "://")
		host, _, _ := strings.Cut(rest, "/")
		out := scheme + "://" + host + "/" + name
		if hasQuery {
			out += "?" + query
		}
		return out
	}
	return dsn + " dbname=" + name
}
