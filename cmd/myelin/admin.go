package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"time"

	"myelin/account"
	"myelin/internal/apierr"
)

// cliError renders an account error for a terminal: the Matrix message only
// (it never contains the password), not the wrapped internals.
func cliError(err error) error {
	if e, ok := apierr.As(err); ok {
		return fmt.Errorf("%s: %s", e.Code, e.Msg)
	}
	return err
}

func openAccounts(cfgPath string) (*account.Service, func(), error) {
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		return nil, nil, err
	}
	db, err := openDatabase(context.Background(), cfg)
	if err != nil {
		return nil, nil, err
	}
	svc, err := account.New(cfg, db)
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return svc, func() { db.Close() }, nil
}

// cmdUser implements `myelin user create NAME [--admin] [--password P]`.
func cmdUser(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		return fmt.Errorf("usage: myelin user create NAME [--admin] [--password P] [--config FILE]")
	}
	args = args[1:]
	var name string
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		name, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("user create", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	admin := fs.Bool("admin", false, "make the user a server admin")
	password := fs.String("password", "", "the password (generated and printed when empty)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if name == "" && fs.NArg() > 0 {
		name = fs.Arg(0)
	}
	if name == "" {
		return fmt.Errorf("usage: myelin user create NAME [--admin] [--password P] [--config FILE]")
	}
	svc, closeDB, err := openAccounts(*cfgPath)
	if err != nil {
		return err
	}
	defer closeDB()
	generated := *password == ""
	if generated {
		*password = rand.Text()
	}
	userID, err := svc.CreateUser(context.Background(), name, *password, *admin)
	if err != nil {
		return cliError(err)
	}
	fmt.Fprintf(stdout, "created %s (admin: %v)\n", userID, *admin)
	if generated {
		// Printed once, to the operator's terminal only; it is never logged.
		fmt.Fprintf(stdout, "password: %s\n", *password)
	}
	return nil
}

// cmdRegistrationToken implements `myelin registration-token create`.
func cmdRegistrationToken(args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		return fmt.Errorf("usage: myelin registration-token create [--uses N] [--expires DURATION] [--token T] [--config FILE]")
	}
	fs := flag.NewFlagSet("registration-token create", flag.ContinueOnError)
	cfgPath := configFlag(fs)
	uses := fs.Int("uses", 0, "how many registrations it allows (0 = unlimited)")
	expires := fs.Duration("expires", 0, "how long it stays valid (0 = forever)")
	token := fs.String("token", "", "the token text (generated when empty)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *uses < 0 || *expires < 0 {
		return fmt.Errorf("--uses and --expires must not be negative")
	}
	svc, closeDB, err := openAccounts(*cfgPath)
	if err != nil {
		return err
	}
	defer closeDB()
	var usesAllowed *int
	if *uses > 0 {
		usesAllowed = uses
	}
	var expiry time.Time
	if *expires > 0 {
		expiry = time.Now().Add(*expires)
	}
	tok, err := svc.CreateRegistrationToken(context.Background(), *token, usesAllowed, expiry)
	if err != nil {
		return cliError(err)
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
