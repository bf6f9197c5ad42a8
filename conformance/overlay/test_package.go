//go:build myelin_overlay

// This file replaces Complement's test_package.go through `go test -overlay`.
// It keeps Complement's Deployment interface (the tests program against it)
// and implements it with Myelin processes. A deployment occupies a slot k;
// its hsN listens on 127.0.(10+k).N:8008 (client API, plain HTTP) and
// 127.0.(10+k).N:8448 (federation, TLS with a certificate for hsN signed by
// Complement's per-run CA, which the servers trust through SSL_CERT_FILE).
// Each server resolves hsN to its own deployment's addresses (namespace.go).

package complement

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/template"
	"time"

	"github.com/matrix-org/complement/client"
	"github.com/matrix-org/complement/ct"
	"github.com/matrix-org/complement/helpers"
	"github.com/matrix-org/complement/internal/config"
	"github.com/sirupsen/logrus"
)

// Deployment is Complement's view of a set of running homeservers. The method
// set is Complement's API and must stay as it is.
type Deployment interface {
	// UnauthenticatedClient returns a client without an access token.
	UnauthenticatedClient(t ct.TestLike, serverName string) *client.CSAPI
	// Register creates a new user on the given server and returns its client.
	Register(t ct.TestLike, hsName string, opts helpers.RegistrationOpts) *client.CSAPI
	// Login logs in again as the user of an existing client.
	Login(t ct.TestLike, hsName string, existing *client.CSAPI, opts helpers.LoginOpts) *client.CSAPI
	// AppServiceUser returns a client for an application service user
	// configured by a blueprint.
	AppServiceUser(t ct.TestLike, hsName, appServiceUserID string) *client.CSAPI
	// Restart restarts every homeserver, keeping their data.
	Restart(t ct.TestLike) error
	// StopServer stops one homeserver, keeping its data.
	StopServer(t ct.TestLike, hsName string)
	// StartServer starts a homeserver stopped by StopServer.
	StartServer(t ct.TestLike, hsName string)
	// PauseServer suspends a homeserver; its sockets stay bound.
	PauseServer(t ct.TestLike, hsName string)
	// UnpauseServer resumes a paused homeserver.
	UnpauseServer(t ct.TestLike, hsName string)
	// ContainerID identifies the server instance (here: its process).
	ContainerID(t ct.TestLike, hsName string) string
	// Destroy stops every homeserver and removes their data.
	Destroy(t ct.TestLike)
	// GetConfig returns the Complement configuration of this run.
	GetConfig() *config.Complement
	// RoundTripper routes federation requests addressed to hsN (and to
	// Complement's own host name) to the right listener.
	RoundTripper() http.RoundTripper
	// Network names the network the servers share.
	Network() string
}

// Environment variables the process deployer reads; conformance/run.sh sets
// them.
const (
	envBinary   = "MYELIN_BIN"                         // the myelin binary to start
	envTemplate = "MYELIN_CONFORMANCE_CONFIG_TEMPLATE" // text/template of a server's config.yaml
	envWorkDir  = "MYELIN_CONFORMANCE_WORKDIR"         // where server data directories go
	envKeep     = "MYELIN_CONFORMANCE_KEEP"            // "1" keeps data directories after Destroy
)

const (
	clientPort     = 8008
	federationPort = 8448
	// sharedSecret is what Complement's client signs
	// /_synapse/admin/v1/register requests with.
	sharedSecret = "complement"
	// defaultPassword is the password Complement's Docker deployer uses when
	// a test gives none.
	defaultPassword = "complement_meets_min_password_req"
	stopGrace       = 10 * time.Second
	logTailLines    = 60
)

// serverIndex returns N for a name "hsN" (1 ≤ N ≤ 250), otherwise 0.
func serverIndex(name string) int {
	n, err := strconv.Atoi(strings.TrimPrefix(name, "hs"))
	if !strings.HasPrefix(name, "hs") || err != nil || n < 1 || n > 250 {
		return 0
	}
	return n
}

// processDeployer starts deployments for one test package.
type processDeployer struct {
	cfg      *config.Complement
	binary   string
	root     string // data directories of this package's deployments
	keep     bool
	caFile   string
	caPool   *x509.CertPool
	template *template.Template
	counter  atomic.Uint64
	// The ports every hsN listens on; fixed because federation finds hsN
	// by name alone, which means port 8448.
	clientPort, federationPort int

	// launch starts a command in a new mount namespace (namespace.go).
	launch []string
	// postgres, if set, gives every server its own PostgreSQL database;
	// otherwise they use SQLite in their data directory.
	postgres *postgresAdmin
	// baseHosts is the machine's /etc/hosts, the start of every slot's.
	baseHosts  []byte
	resolvFile string

	mu    sync.Mutex
	slots map[int]*processDeployment // live deployments by address slot
}

func newProcessDeployer(namespace string) (*processDeployer, error) {
	// The image name only labels the run: nothing is pulled.
	cfg := config.NewConfigFromEnvVars(namespace, "myelin-process")
	// gomatrixserverlib logs through logrus; only errors belong in test output.
	logrus.SetLevel(logrus.ErrorLevel)

	binary := os.Getenv(envBinary)
	if binary == "" {
		return nil, fmt.Errorf("%s must name the myelin binary", envBinary)
	}
	tmplPath := os.Getenv(envTemplate)
	if tmplPath == "" {
		return nil, fmt.Errorf("%s must name the homeserver config template", envTemplate)
	}
	base := os.Getenv(envWorkDir)
	if base == "" {
		base = os.TempDir()
	}
	d, err := setupDeployer(cfg, binary, tmplPath, base, namespace)
	if err != nil {
		return nil, err
	}
	d.keep = os.Getenv(envKeep) == "1"
	if d.postgres, err = postgresFromEnv(); err != nil {
		return nil, err
	}
	return d, nil
}

// setupDeployer prepares a deployer: the package's directory under base, the
// CA file servers trust, the parsed config template.
func setupDeployer(cfg *config.Complement, binary, tmplPath, base, namespace string) (*processDeployer, error) {
	if _, err := os.Stat(binary); err != nil {
		return nil, fmt.Errorf("myelin binary: %w", err)
	}
	tmpl, err := template.New(filepath.Base(tmplPath)).Option("missingkey=error").ParseFiles(tmplPath)
	if err != nil {
		return nil, fmt.Errorf("parse config template: %w", err)
	}
	launch, err := launcher()
	if err != nil {
		return nil, err
	}
	baseHosts, err := os.ReadFile("/etc/hosts")
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read /etc/hosts: %w", err)
	}
	d := &processDeployer{
		cfg:            cfg,
		binary:         binary,
		template:       tmpl,
		clientPort:     clientPort,
		federationPort: federationPort,
		launch:         launch,
		baseHosts:      baseHosts,
		slots:          map[int]*processDeployment{},
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return nil, fmt.Errorf("create work dir: %w", err)
	}
	d.root, err = os.MkdirTemp(base, namespace+"-")
	if err != nil {
		return nil, fmt.Errorf("create package dir: %w", err)
	}
	caPEM, err := cfg.CACertificateBytes()
	if err != nil {
		return nil, fmt.Errorf("encode CA certificate: %w", err)
	}
	d.caFile = filepath.Join(d.root, "complement-ca.pem")
	if err := os.WriteFile(d.caFile, caPEM, 0o644); err != nil {
		return nil, fmt.Errorf("write CA certificate: %w", err)
	}
	d.caPool = x509.NewCertPool()
	d.caPool.AddCert(cfg.CACertificate)
	d.resolvFile = filepath.Join(d.root, "resolv.conf")
	if err := os.WriteFile(d.resolvFile, []byte(resolvConf), 0o644); err != nil {
		return nil, fmt.Errorf("write resolv.conf: %w", err)
	}
	return d, nil
}

// close stops whatever deployments are still running when the package ends.
func (d *processDeployer) close() {
	d.mu.Lock()
	var live []*processDeployment
	for _, dep := range d.slots {
		live = append(live, dep)
	}
	d.mu.Unlock()
	for _, dep := range live {
		dep.destroy(nil, false)
	}
	if !d.keep {
		os.RemoveAll(d.root)
	}
}

// claimSlot reserves the lowest free address slot for dep. A slot is also
// locked machine-wide (flock on a file in the temp directory), so two test
// binaries running at once — two packages, or two people's runs — never
// start servers on the same addresses.
func (d *processDeployer) claimSlot(dep *processDeployment) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for slot := 0; slot < maxSlots; slot++ {
		if d.slots[slot] != nil {
			continue
		}
		lock, err := lockSlot(slot)
		if err != nil {
			return 0, err
		}
		if lock == nil {
			continue // another process holds it
		}
		d.slots[slot] = dep
		dep.slotLock = lock
		return slot, nil
	}
	return 0, fmt.Errorf("all %d address slots are in use", maxSlots)
}

// lockSlot takes the machine-wide lock of a slot; nil means it is held
// elsewhere. The kernel drops the lock if this process dies.
func lockSlot(slot int) (*os.File, error) {
	path := filepath.Join(os.TempDir(), fmt.Sprintf("myelin-complement-slot-%d.lock", slot))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, fmt.Errorf("open slot lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil
		}
		return nil, fmt.Errorf("lock slot %d: %w", slot, err)
	}
	return f, nil
}

func (d *processDeployer) releaseSlot(dep *processDeployment) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.slots[dep.slot] == dep {
		delete(d.slots, dep.slot)
		dep.slotLock.Close()
	}
}

// deploy starts fresh servers with the given names and waits until every
// one answers /versions.
func (d *processDeployer) deploy(t ct.TestLike, names []string) *processDeployment {
	t.Helper()
	start := time.Now()
	dep := &processDeployment{
		deployer:   d,
		id:         d.counter.Add(1),
		servers:    map[string]*homeserver{},
		transports: map[string]*http.Transport{},
	}
	slot, err := d.claimSlot(dep)
	if err != nil {
		ct.Fatalf(t, "Deploy: %v", err)
	}
	dep.slot = slot
	dep.dir = filepath.Join(d.root, strconv.FormatUint(dep.id, 10))
	if c, ok := t.(interface{ Cleanup(func()) }); ok {
		// Tests normally defer Destroy; this stops servers a test forgot.
		c.Cleanup(func() { dep.destroy(nil, false) })
	}
	if err := os.MkdirAll(dep.dir, 0o755); err != nil {
		dep.destroy(nil, false)
		ct.Fatalf(t, "Deploy: create deployment dir: %v", err)
	}
	hosts := filepath.Join(dep.dir, "hosts")
	if err := os.WriteFile(hosts, hostsFile(d.baseHosts, slot, d.cfg.HostnameRunningComplement), 0o644); err != nil {
		dep.destroy(nil, false)
		ct.Fatalf(t, "Deploy: write hosts file: %v", err)
	}
	for _, name := range names {
		hs, err := d.prepare(dep.dir, slot, hosts, name)
		if err != nil {
			dep.destroy(nil, false)
			ct.Fatalf(t, "Deploy: %v", err)
		}
		dep.servers[name] = hs
		dep.order = append(dep.order, name)
	}
	if err := dep.startAll(); err != nil {
		logs := dep.logTails()
		dep.destroy(nil, false)
		ct.Fatalf(t, "Deploy: %v\n%s", err, logs)
	}
	t.Logf("Deploy: %d Myelin server(s) %v up in %v (addresses 127.0.%d.N)", len(names), names,
		time.Since(start).Round(time.Millisecond), 10+slot)
	return dep
}

// configData fills the homeserver config template.
type configData struct {
	ServerName     string
	DataDir        string
	ClientAddr     string
	FederationAddr string
	TLSCert        string
	TLSKey         string
	SharedSecret   string
	DatabaseEngine string // "sqlite" or "postgres"
	DatabaseDSN    string
}

// prepare writes a server's directory: config, TLS certificate and key.
func (d *processDeployer) prepare(depDir string, slot int, hostsPath, name string) (*homeserver, error) {
	n := serverIndex(name)
	if n == 0 || n > maxServersPerDeployment {
		return nil, fmt.Errorf("homeserver name %q is not of the form hsN with N ≤ %d", name, maxServersPerDeployment)
	}
	dir := filepath.Join(depDir, name)
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o755); err != nil {
		return nil, fmt.Errorf("create %s dir: %w", name, err)
	}
	ip := slotIP(slot, n)
	data := configData{
		ServerName:     name,
		DataDir:        filepath.Join(dir, "data"),
		ClientAddr:     net.JoinHostPort(ip, strconv.Itoa(d.clientPort)),
		FederationAddr: net.JoinHostPort(ip, strconv.Itoa(d.federationPort)),
		TLSCert:        filepath.Join(dir, "tls.crt"),
		TLSKey:         filepath.Join(dir, "tls.key"),
		SharedSecret:   sharedSecret,
		DatabaseEngine: "sqlite",
		DatabaseDSN:    "myelin.db",
	}
	var database string
	if d.postgres != nil {
		// Database names are unique per test binary run, deployment and
		// server; PostgreSQL folds them to lower case anyway.
		database = fmt.Sprintf("complement_%d_%s_%s", os.Getpid(), filepath.Base(depDir), name)
		dsn, err := d.postgres.create(database)
		if err != nil {
			return nil, fmt.Errorf("create database for %s: %w", name, err)
		}
		data.DatabaseEngine, data.DatabaseDSN = "postgres", dsn
	}
	if err := d.writeCertificate(name, ip, data.TLSCert, data.TLSKey); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := d.template.Execute(&buf, data); err != nil {
		return nil, fmt.Errorf("render config for %s: %w", name, err)
	}
	configPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(configPath, buf.Bytes(), 0o644); err != nil {
		return nil, fmt.Errorf("write config for %s: %w", name, err)
	}
	return &homeserver{
		name:       name,
		binary:     d.binary,
		configPath: configPath,
		logPath:    filepath.Join(dir, "server.log"),
		launch:     d.launch,
		database:   database,
		env: append(os.Environ(),
			"SSL_CERT_FILE="+d.caFile,
			envNamespaceHosts+"="+hostsPath,
			envNamespaceResolv+"="+d.resolvFile),
		baseURL: "http://" + data.ClientAddr,
		fedAddr: data.FederationAddr,
	}, nil
}

// writeCertificate issues the federation certificate for hsN from
// Complement's CA, which Complement's mock servers and the other Myelin
// servers (through SSL_CERT_FILE) trust.
func (d *processDeployer) writeCertificate(name, ip, certPath, keyPath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate %s key: %w", name, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return fmt.Errorf("generate %s serial: %w", name, err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		IPAddresses:  []net.IP{net.ParseIP(ip)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, d.cfg.CACertificate, &key.PublicKey, d.cfg.CAPrivateKey)
	if err != nil {
		return fmt.Errorf("sign %s certificate: %w", name, err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode %s key: %w", name, err)
	}
	if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return fmt.Errorf("write %s certificate: %w", name, err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return fmt.Errorf("write %s key: %w", name, err)
	}
	return nil
}

// processDeployment is one set of running servers.
type processDeployment struct {
	deployer  *processDeployer
	id        uint64
	slot      int      // address block, see processDeployer.claimSlot
	slotLock  *os.File // holds the slot's machine-wide lock
	dir       string
	servers   map[string]*homeserver
	order     []string // servers in start order
	localpart atomic.Int64

	transportsMu sync.Mutex
	transports   map[string]*http.Transport // by TLS server name

	destroyOnce sync.Once
}

// startAll starts every server at once and waits for all of them.
func (dep *processDeployment) startAll() error {
	timeout := dep.deployer.cfg.SpawnHSTimeout
	errs := make([]error, len(dep.order))
	var wg sync.WaitGroup
	for i, name := range dep.order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = dep.servers[name].start(timeout)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (dep *processDeployment) server(t ct.TestLike, method, hsName string) *homeserver {
	t.Helper()
	hs, ok := dep.servers[hsName]
	if !ok {
		ct.Fatalf(t, "%s: homeserver %q is not part of this deployment", method, hsName)
	}
	return hs
}

func (dep *processDeployment) newClient(t ct.TestLike, hs *homeserver) *client.CSAPI {
	return &client.CSAPI{
		BaseURL:          hs.baseURL,
		Client:           client.NewLoggedClient(t, hs.name, nil),
		SyncUntilTimeout: 5 * time.Second,
		Debug:            dep.deployer.cfg.DebugLoggingEnabled,
	}
}

func (dep *processDeployment) UnauthenticatedClient(t ct.TestLike, hsName string) *client.CSAPI {
	t.Helper()
	return dep.newClient(t, dep.server(t, "UnauthenticatedClient", hsName))
}

func (dep *processDeployment) Register(t ct.TestLike, hsName string, opts helpers.RegistrationOpts) *client.CSAPI {
	t.Helper()
	c := dep.newClient(t, dep.server(t, "Register", hsName))
	c.Password = opts.Password
	if c.Password == "" {
		c.Password = defaultPassword
	}
	localpart := fmt.Sprintf("user-%d", dep.localpart.Add(1))
	if opts.LocalpartSuffix != "" {
		localpart += "-" + opts.LocalpartSuffix
	}
	if opts.IsAdmin {
		c.UserID, c.AccessToken, c.DeviceID = c.RegisterSharedSecret(t, localpart, c.Password, true)
	} else {
		c.UserID, c.AccessToken, c.DeviceID = c.RegisterUser(t, localpart, c.Password)
	}
	return c
}

func (dep *processDeployment) Login(t ct.TestLike, hsName string, existing *client.CSAPI, opts helpers.LoginOpts) *client.CSAPI {
	t.Helper()
	c := dep.newClient(t, dep.server(t, "Login", hsName))
	localpart, _, ok := strings.Cut(strings.TrimPrefix(existing.UserID, "@"), ":")
	if !ok || !strings.HasPrefix(existing.UserID, "@") {
		ct.Fatalf(t, "Login: existing client has no valid user ID (%q)", existing.UserID)
	}
	c.Password = existing.Password
	if opts.Password != "" {
		c.Password = opts.Password
	}
	var loginOpts []client.LoginOpt
	if opts.DeviceID != "" {
		loginOpts = append(loginOpts, client.WithDeviceID(opts.DeviceID))
	}
	c.UserID, c.AccessToken, c.DeviceID = c.LoginUser(t, localpart, c.Password, loginOpts...)
	return c
}

func (dep *processDeployment) AppServiceUser(t ct.TestLike, hsName, appServiceUserID string) *client.CSAPI {
	t.Helper()
	ct.Fatalf(t, "AppServiceUser(%s, %s): application services come only from Docker blueprints, which the process deployer skips",
		hsName, appServiceUserID)
	return nil
}

func (dep *processDeployment) Restart(t ct.TestLike) error {
	t.Helper()
	for _, name := range dep.order {
		hs := dep.servers[name]
		hs.stop()
		if err := hs.start(dep.deployer.cfg.SpawnHSTimeout); err != nil {
			t.Errorf("Restart: %v\n%s", err, hs.logTail())
			return fmt.Errorf("restart %s: %w", name, err)
		}
	}
	return nil
}

func (dep *processDeployment) StopServer(t ct.TestLike, hsName string) {
	t.Helper()
	t.Logf("StopServer %s", hsName)
	hs := dep.server(t, "StopServer", hsName)
	if !hs.running() {
		ct.Fatalf(t, "StopServer: %s is not running", hsName)
	}
	hs.stop()
}

func (dep *processDeployment) StartServer(t ct.TestLike, hsName string) {
	t.Helper()
	t.Logf("StartServer %s", hsName)
	hs := dep.server(t, "StartServer", hsName)
	if hs.running() {
		ct.Fatalf(t, "StartServer: %s is already running", hsName)
	}
	if err := hs.start(dep.deployer.cfg.SpawnHSTimeout); err != nil {
		ct.Fatalf(t, "StartServer: %v\n%s", err, hs.logTail())
	}
}

func (dep *processDeployment) PauseServer(t ct.TestLike, hsName string) {
	t.Helper()
	t.Logf("PauseServer %s", hsName)
	if err := dep.server(t, "PauseServer", hsName).signalPause(true); err != nil {
		ct.Fatalf(t, "PauseServer: %v", err)
	}
}

func (dep *processDeployment) UnpauseServer(t ct.TestLike, hsName string) {
	t.Helper()
	t.Logf("UnpauseServer %s", hsName)
	if err := dep.server(t, "UnpauseServer", hsName).signalPause(false); err != nil {
		ct.Fatalf(t, "UnpauseServer: %v", err)
	}
}

func (dep *processDeployment) ContainerID(t ct.TestLike, hsName string) string {
	t.Helper()
	return dep.server(t, "ContainerID", hsName).id()
}

func (dep *processDeployment) Destroy(t ct.TestLike) {
	t.Helper()
	dep.destroy(t, t.Failed() || dep.deployer.cfg.AlwaysPrintServerLogs)
}

// destroy stops the servers once; t may be nil when no test owns the call.
func (dep *processDeployment) destroy(t ct.TestLike, printLogs bool) {
	dep.destroyOnce.Do(func() {
		for _, name := range dep.order {
			dep.servers[name].stop()
		}
		if printLogs && t != nil {
			t.Logf("server logs of deployment %d (last %d lines each):\n%s", dep.id, logTailLines, dep.logTails())
		}
		dep.transportsMu.Lock()
		for _, tr := range dep.transports {
			tr.CloseIdleConnections()
		}
		dep.transportsMu.Unlock()
		if !dep.deployer.keep {
			os.RemoveAll(dep.dir)
			for _, name := range dep.order {
				if db := dep.servers[name].database; db != "" {
					if err := dep.deployer.postgres.drop(db); err != nil && t != nil {
						t.Logf("Destroy: %v", err)
					}
				}
			}
		}
		dep.deployer.releaseSlot(dep)
	})
}

func (dep *processDeployment) logTails() string {
	var b strings.Builder
	for _, name := range dep.order {
		fmt.Fprintf(&b, "==== %s ====\n%s\n", name, dep.servers[name].logTail())
	}
	return b.String()
}

func (dep *processDeployment) GetConfig() *config.Complement { return dep.deployer.cfg }

func (dep *processDeployment) RoundTripper() http.RoundTripper { return federationRoundTripper{dep} }

// Network has no meaning without Docker: every server is on the loopback
// interface.
func (dep *processDeployment) Network() string { return "loopback" }

// federationRoundTripper sends federation requests for hsN to its federation
// listener and requests for Complement's host name to the local machine,
// verifying TLS against Complement's CA.
type federationRoundTripper struct{ dep *processDeployment }

func (rt federationRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	host := req.URL.Hostname()
	var addr string
	if host == rt.dep.deployer.cfg.HostnameRunningComplement {
		addr = "127.0.0.1"
		if p := req.URL.Port(); p != "" {
			addr = net.JoinHostPort(addr, p)
		}
	} else if hs, ok := rt.dep.servers[host]; ok {
		addr = hs.fedAddr
	} else {
		return nil, fmt.Errorf("federation round tripper: unknown server %q", host)
	}
	out := req.Clone(req.Context())
	out.URL.Scheme = "https"
	out.URL.Host = addr
	// Keep the Matrix server name as Host header and TLS server name.
	out.Host = req.URL.Host
	return rt.dep.transportFor(host).RoundTrip(out)
}

// transportFor returns the connection pool for one server name; each pool
// verifies certificates against that name.
func (dep *processDeployment) transportFor(host string) *http.Transport {
	dep.transportsMu.Lock()
	defer dep.transportsMu.Unlock()
	if tr, ok := dep.transports[host]; ok {
		return tr
	}
	tr := &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: dep.deployer.caPool, ServerName: host},
		// The listeners are all local: fail fast instead of hanging a test.
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
	}
	dep.transports[host] = tr
	return tr
}
