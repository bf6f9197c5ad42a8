// Command myelin is the one Myelin binary: the homeserver (serve), schema
// migration (migrate) and admin subcommands. It is the composition root: the
// only place that knows every package and wires them together.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"myelin/config"
	"myelin/storage"
	"myelin/storage/postgres"
	"myelin/storage/sqlite"
)

const usage = `myelin — a Matrix homeserver for veterinary and health practices

Usage:
  myelin [serve] [--config FILE]           run the server (default)
  myelin migrate [--config FILE]           apply database migrations and exit
  myelin user create NAME [--admin] [--password P] [--config FILE]
                                           create an account (prompts for nothing:
                                           a password is generated and printed if not given)
  myelin registration-token create [--uses N] [--config FILE]
                                           create a registration token
  myelin version                           print the version

The config file defaults to ./config.yaml.
`

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "myelin:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return cmdServe(args, stderr)
	case "migrate":
		return cmdMigrate(args, stdout)
	case "user":
		return cmdUser(args, stdout)
	case "registration-token":
		return cmdRegistrationToken(args, stdout)
	case "version":
		fmt.Fprintln(stdout, "myelin", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// loadConfig parses --config from fs's args and returns a verified config.
func loadConfig(path string) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if err := cfg.Verify(); err != nil {
		return nil, fmt.Errorf("config %s:\n%w", path, err)
	}
	return &cfg, nil
}

func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", "config.yaml", "path to the config file")
}

// openDatabase opens the configured engine and applies pending migrations.
func openDatabase(ctx context.Context, cfg *config.Config) (*storage.DB, error) {
	var (
		db  *storage.DB
		err error
	)
	relaxed := cfg.Database.Durability == config.DurabilityRelaxed
	if relaxed {
		slog.Warn("database.durability is relaxed: a power loss may lose the last acknowledged messages")
	}
	switch cfg.Database.Engine {
	case "sqlite":
		path := cfg.Database.DSN
		if !filepath.IsAbs(path) {
			path = filepath.Join(cfg.DataDir, path)
		}
		db, err = sqlite.OpenWith(path, cfg.Database.MaxOpenConns, sqlite.Options{Relaxed: relaxed})
	case "postgres":
		db, err = postgres.OpenWith(cfg.Database.DSN, cfg.Database.MaxOpenConns, postgres.Options{Relaxed: relaxed})
	default:
		err = fmt.Errorf("unknown database engine %q", cfg.Database.Engine)
	}
	if err != nil {
		return nil, err
	}
	if err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("migrate: %w", err)
	}
	return db, nil
}

func cmdMigrate(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadConfig(*cfgPath)
	if err != nil {
		return err
	}
	db, err := openDatabase(context.Background(), cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	fmt.Fprintf(stdout, "database (%s) is up to date\n", db.Engine)
	return nil
}

// newLogger builds the process logger. Handlers never log request bodies;
// the level and format come from config.
func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.Logging.Level)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Logging.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
