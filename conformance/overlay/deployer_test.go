//go:build myelin_overlay

// Tests of the process deployer, added to Complement's root package through
// the overlay (`conformance/run.sh check`). The test binary doubles as a
// stand-in homeserver: started with fakeServerEnv=1 it serves just enough of
// the client and federation APIs to exercise deployment, stop/start,
// pause/unpause, restart, registration and the federation round tripper.

package complement

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/matrix-org/complement/b"
	"github.com/matrix-org/complement/helpers"
	"github.com/matrix-org/complement/internal/config"
)

const fakeServerEnv = "MYELIN_DEPLOYER_TEST_FAKE_SERVER"

func init() {
	// While envNamespaceHosts is set this process is only the hop into the
	// server's namespace (namespace.go's init); the fake starts after it.
	if os.Getenv(fakeServerEnv) != "1" || os.Getenv(envNamespaceHosts) != "" {
		return
	}
	if err := fakeServer(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "fake server:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// fakeServer implements `serve --config FILE` with a few endpoints; it
// reads the keys it needs from the rendered template line by line.
func fakeServer(args []string) error {
	if len(args) != 3 || args[0] != "serve" || args[1] != "--config" {
		return fmt.Errorf("usage: serve --config FILE, got %v", args)
	}
	f, err := os.Open(args[2])
	if err != nil {
		return err
	}
	kv := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), ": "); ok {
			kv[k] = v
		}
	}
	f.Close()
	name := kv["server_name"]
	var users atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/_matrix/client/versions", func(w http.ResponseWriter, r *http.Request) {
		// Report how names resolve in here: the deployer's namespace
		// must give this server its own deployment's hsN.
		hs2, _ := net.LookupHost("hs2")
		complementHost, _ := net.LookupHost("host.docker.internal")
		resolv, _ := os.ReadFile("/etc/resolv.conf")
		json.NewEncoder(w).Encode(map[string]any{
			"versions": []string{"v1.11"}, "server": name, "pid": os.Getpid(),
			"hs2": hs2, "complement": complementHost, "resolv": string(resolv),
		})
	})
	mux.HandleFunc("/_matrix/client/v3/register", func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Username string }
		json.NewDecoder(r.Body).Decode(&body)
		n := users.Add(1)
		json.NewEncoder(w).Encode(map[string]string{
			"user_id": "@" + body.Username + ":" + name, "access_token": fmt.Sprintf("token%d", n), "device_id": fmt.Sprintf("DEV%d", n)})
	})
	mux.HandleFunc("/_matrix/client/v3/login", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Identifier struct{ User string }
			Password   string
			DeviceID   string `json:"device_id"`
		}
		json.NewDecoder(r.Body).Decode(&body)
		if body.Password != "s3cret" {
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"errcode":"M_FORBIDDEN"}`))
			return
		}
		json.NewEncoder(w).Encode(map[string]string{
			"user_id": "@" + body.Identifier.User + ":" + name, "access_token": "login-token", "device_id": body.DeviceID})
	})
	mux.HandleFunc("/_matrix/key/v2/server", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"server_name": name, "host": r.Host})
	})
	fed := &http.Server{Addr: kv["federation"], Handler: mux}
	client := &http.Server{Addr: kv["client"], Handler: mux}
	errs := make(chan error, 2)
	go func() { errs <- fed.ListenAndServeTLS(kv["tls_cert"], kv["tls_key"]) }()
	go func() { errs <- client.ListenAndServe() }()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	select {
	case err := <-errs:
		return err
	case <-ctx.Done():
		client.Close()
		fed.Close()
		return nil
	}
}

func TestServerIndex(t *testing.T) {
	tests := []struct {
		name string
		want int
	}{
		{"hs1", 1}, {"hs3", 3}, {"hs250", 250},
		{"hs0", 0}, {"hs251", 0}, {"hs", 0}, {"hsx", 0}, {"remote", 0}, {"xhs1", 0}, {"hs-1", 0},
	}
	for _, tt := range tests {
		if got := serverIndex(tt.name); got != tt.want {
			t.Errorf("serverIndex(%q) = %d, want %d", tt.name, got, tt.want)
		}
	}
	if got := slotIP(0, 2); got != "127.0.10.2" {
		t.Errorf("slotIP(0, 2) = %s", got)
	}
	if got := slotIP(3, 1); got != "127.0.13.1" {
		t.Errorf("slotIP(3, 1) = %s", got)
	}
}

func TestBlueprintServers(t *testing.T) {
	other := "other-image"
	tests := []struct {
		name       string
		bp         b.Blueprint
		wantNames  []string
		wantReason string
	}{
		{"clean", b.BlueprintCleanHS, []string{"hs1"}, ""},
		{"two empty", b.Blueprint{Name: "x", Homeservers: []b.Homeserver{{Name: "hs1"}, {Name: "hs2"}}}, []string{"hs1", "hs2"}, ""},
		{"application service", b.BlueprintHSWithApplicationService, nil, "application services"},
		{"users", b.BlueprintAlice, nil, "pre-created users"},
		{"image", b.Blueprint{Name: "x", Homeservers: []b.Homeserver{{Name: "hs1", BaseImageURI: &other}}}, nil, "different homeserver image"},
		{"bad name", b.Blueprint{Name: "x", Homeservers: []b.Homeserver{{Name: "remote"}}}, nil, "not of the form hsN"},
		{"empty", b.Blueprint{Name: "x"}, nil, "no homeservers"},
	}
	for _, tt := range tests {
		names, reason := blueprintServers(tt.bp)
		if !slices.Equal(names, tt.wantNames) {
			t.Errorf("%s: names %v, want %v", tt.name, names, tt.wantNames)
		}
		if (tt.wantReason == "") != (reason == "") || !strings.Contains(reason, tt.wantReason) {
			t.Errorf("%s: reason %q, want one containing %q", tt.name, reason, tt.wantReason)
		}
	}
}

// freePort asks the kernel for a port that is free right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// testDeployer deploys the test binary itself as a fake homeserver, on free
// ports so it cannot collide with a real conformance run.
func testDeployer(t *testing.T) *processDeployer {
	t.Helper()
	tmpl := os.Getenv(envTemplate)
	if tmpl == "" {
		t.Fatalf("%s must name conformance/homeserver.yaml.tmpl (run through conformance/run.sh check)", envTemplate)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(fakeServerEnv, "1")
	cfg := config.NewConfigFromEnvVars("deployer-test", "fake")
	cfg.SpawnHSTimeout = 10 * time.Second
	d, err := setupDeployer(cfg, self, tmpl, t.TempDir(), "deployer-test")
	if err != nil {
		t.Fatal(err)
	}
	d.clientPort, d.federationPort = freePort(t), freePort(t)
	t.Cleanup(d.close)
	return d
}

// serverView is what the fake server reports about itself.
type serverView struct {
	Server     string
	PID        int
	HS2        []string
	Complement []string
	Resolv     string
}

// versions asks a server who it is and how it resolves names.
func versions(baseURL string, timeout time.Duration) (serverView, error) {
	var v serverView
	c := &http.Client{Timeout: timeout}
	resp, err := c.Get(baseURL + "/_matrix/client/versions")
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&v)
	return v, err
}

func TestDeploymentLifecycle(t *testing.T) {
	d := testDeployer(t)
	dep := d.deploy(t, []string{"hs1", "hs2"})

	// Each server runs with its own name, its rendered config and the CA,
	// and resolves names within its deployment.
	pids := map[string]int{}
	for _, name := range []string{"hs1", "hs2"} {
		hs := dep.servers[name]
		v, err := versions(hs.baseURL, 2*time.Second)
		if err != nil || v.Server != name {
			t.Fatalf("%s answered as %q: %v", name, v.Server, err)
		}
		pids[name] = v.PID
		if !slices.Equal(v.HS2, []string{slotIP(dep.slot, 2)}) || !slices.Equal(v.Complement, []string{"127.0.0.1"}) {
			t.Errorf("%s resolves hs2 to %v and host.docker.internal to %v", name, v.HS2, v.Complement)
		}
		if !strings.Contains(v.Resolv, "no DNS") {
			t.Errorf("%s sees resolv.conf %q", name, v.Resolv)
		}
		config, err := os.ReadFile(hs.configPath)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"server_name: " + name, "shared_secret: complement", "enabled: false"} {
			if !strings.Contains(string(config), want) {
				t.Errorf("%s config lacks %q", name, want)
			}
		}
		if !slices.Contains(hs.env, "SSL_CERT_FILE="+d.caFile) {
			t.Errorf("%s does not trust the Complement CA", name)
		}
	}
	// The namespaces are the servers' own: this process still sees the
	// machine's /etc/hosts.
	if addrs, _ := net.LookupHost("hs2"); slices.Contains(addrs, slotIP(dep.slot, 2)) && !hostsMapsHS2() {
		t.Error("the deployer changed the test process's name resolution")
	}

	// Federation requests for hs2 reach its TLS listener, and its
	// certificate verifies for the name hs2 against Complement's CA.
	resp, err := dep.RoundTripper().RoundTrip(mustRequest(t, "https://hs2/_matrix/key/v2/server"))
	if err != nil {
		t.Fatalf("federation request to hs2: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), `"server_name":"hs2"`) || !strings.Contains(string(body), `"host":"hs2"`) {
		t.Errorf("federation answer %s", body)
	}
	if _, err := dep.RoundTripper().RoundTrip(mustRequest(t, "https://hs7/x")); err == nil {
		t.Error("round tripper reached a server outside the deployment")
	}

	// Registration and login go through the client API.
	alice := dep.Register(t, "hs1", helpers.RegistrationOpts{LocalpartSuffix: "alice", Password: "s3cret"})
	if alice.UserID != "@user-1-alice:hs1" || alice.AccessToken == "" {
		t.Errorf("registered %q token %q", alice.UserID, alice.AccessToken)
	}
	again := dep.Login(t, "hs1", alice, helpers.LoginOpts{DeviceID: "PHONE"})
	if again.UserID != alice.UserID || again.DeviceID != "PHONE" || again.AccessToken != "login-token" {
		t.Errorf("login gave %q %q %q", again.UserID, again.DeviceID, again.AccessToken)
	}

	// Stop and start keep the address.
	dep.StopServer(t, "hs2")
	if _, err := versions(dep.servers["hs2"].baseURL, time.Second); err == nil {
		t.Error("hs2 still answers after StopServer")
	}
	dep.StartServer(t, "hs2")
	if v, err := versions(dep.servers["hs2"].baseURL, 2*time.Second); err != nil || v.Server != "hs2" || v.PID == pids["hs2"] {
		t.Errorf("after StartServer: %q pid %d (was %d): %v", v.Server, v.PID, pids["hs2"], err)
	}

	// A paused server keeps its socket but does not answer.
	dep.PauseServer(t, "hs1")
	if _, err := versions(dep.servers["hs1"].baseURL, 300*time.Millisecond); err == nil {
		t.Error("paused hs1 answered")
	}
	dep.UnpauseServer(t, "hs1")
	if v, err := versions(dep.servers["hs1"].baseURL, 2*time.Second); err != nil || v.Server != "hs1" || v.PID != pids["hs1"] {
		t.Errorf("after UnpauseServer: %q pid %d: %v", v.Server, v.PID, err)
	}

	// Restart replaces every process.
	before := dep.ContainerID(t, "hs1")
	if err := dep.Restart(t); err != nil {
		t.Fatal(err)
	}
	if after := dep.ContainerID(t, "hs1"); after == before {
		t.Errorf("Restart kept process %s", before)
	}

	// A second deployment alive at the same time gets its own addresses
	// and names; the first keeps running.
	nested := d.deploy(t, []string{"hs1", "hs2"})
	if nested.slot == dep.slot || nested.servers["hs1"].baseURL != "http://"+slotIP(nested.slot, 1)+":"+fmt.Sprint(d.clientPort) {
		t.Errorf("nested deployment slot %d at %s (first is in slot %d)", nested.slot, nested.servers["hs1"].baseURL, dep.slot)
	}
	v, err := versions(nested.servers["hs1"].baseURL, 2*time.Second)
	if err != nil || !slices.Equal(v.HS2, []string{slotIP(nested.slot, 2)}) {
		t.Errorf("nested hs1 resolves hs2 to %v: %v", v.HS2, err)
	}
	if _, err := versions(dep.servers["hs1"].baseURL, 2*time.Second); err != nil {
		t.Errorf("first deployment stopped answering: %v", err)
	}
	nested.Destroy(t)
	if nested.servers["hs1"].running() {
		t.Error("nested hs1 running after Destroy")
	}
	if _, err := os.Stat(nested.dir); !os.IsNotExist(err) {
		t.Errorf("nested deployment dir remains: %v", err)
	}

	// Its slot is free again; the first deployment still holds its own.
	again2 := d.deploy(t, []string{"hs1"})
	if again2.slot != nested.slot {
		t.Errorf("got slot %d, want the freed slot %d", again2.slot, nested.slot)
	}
	again2.Destroy(t)
	dep.Destroy(t)
	if dep.servers["hs1"].running() || dep.servers["hs2"].running() {
		t.Error("servers running after Destroy")
	}
}

// hostsMapsHS2 tells whether the machine's own /etc/hosts maps hs2 (then
// the isolation check above proves nothing).
func hostsMapsHS2() bool {
	data, _ := os.ReadFile("/etc/hosts")
	return strings.Contains(string(data), "hs2")
}

func TestDeployReportsServerThatExits(t *testing.T) {
	d := testDeployer(t)
	// Make the fake server refuse to start: an unusable config path.
	dep := &processDeployment{deployer: d, id: 99, servers: map[string]*homeserver{}}
	hs, err := d.prepare(t.TempDir(), 0, "/etc/hosts", "hs1")
	if err != nil {
		t.Fatal(err)
	}
	hs.configPath = filepath.Join(t.TempDir(), "missing.yaml")
	dep.servers["hs1"], dep.order = hs, []string{"hs1"}
	err = dep.startAll()
	if err == nil || !strings.Contains(err.Error(), "exited before answering /versions") {
		t.Fatalf("startAll = %v, want an early-exit error", err)
	}
}

func TestCertificate(t *testing.T) {
	d := testDeployer(t)
	dir := t.TempDir()
	certPath, keyPath := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if err := d.writeCertificate("hs3", "127.0.10.3", certPath, keyPath); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(data)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{DNSName: "hs3", Roots: d.caPool}); err != nil {
		t.Errorf("certificate does not verify for hs3: %v", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{DNSName: "hs1", Roots: d.caPool}); err == nil {
		t.Error("certificate verifies for hs1")
	}
	if st, err := os.Stat(keyPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v: %v", st.Mode(), err)
	}
}

func mustRequest(t *testing.T, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestHostsFile(t *testing.T) {
	base := "127.0.0.1 localhost\n# comment hs1\n10.0.0.5 hs1 other\n10.0.0.6 host.docker.internal\n10.0.0.7 myhost # hs2\n::1 localhost ip6-localhost\n"
	got := string(hostsFile([]byte(base), 2, "host.docker.internal"))
	for _, want := range []string{
		"127.0.0.1 localhost\n",
		"# comment hs1\n",
		"10.0.0.7 myhost # hs2\n", // hs2 only in a comment: kept
		"::1 localhost ip6-localhost\n",
		"127.0.0.1 host.docker.internal\n",
		"127.0.12.1 hs1\n",
		"127.0.12.3 hs3\n",
		"127.0.12.9 hs9\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("hosts lacks %q:\n%s", want, got)
		}
	}
	for _, gone := range []string{"10.0.0.5", "10.0.0.6", "127.0.12.10 "} {
		if strings.Contains(got, gone) {
			t.Errorf("hosts has %s:\n%s", gone, got)
		}
	}
}

func TestEnterServerNamespaceErrors(t *testing.T) {
	if err := enterServerNamespace("/nonexistent", "", nil); err == nil {
		t.Error("accepted an empty command")
	}
	// Outside a private mount namespace (or as non-root) mounting over
	// /etc/hosts from a missing source must fail, never half-succeed.
	if err := enterServerNamespace("/nonexistent/hosts", "", []string{"/bin/true"}); err == nil {
		t.Error("mounted a missing hosts file")
	}
}

func TestSlotLockIsMachineWide(t *testing.T) {
	d := testDeployer(t)
	// Another process (simulated by a second lock on a fresh open file
	// description) holds slot 0: the deployment must move to the next one.
	held, err := lockSlot(0)
	if err != nil {
		t.Fatal(err)
	}
	if held == nil {
		t.Skip("slot 0 is in use by a conformance run on this machine")
	}
	defer held.Close()
	dep := &processDeployment{deployer: d}
	slot, err := d.claimSlot(dep)
	if err != nil {
		t.Fatal(err)
	}
	dep.slot = slot
	defer d.releaseSlot(dep)
	if slot == 0 {
		t.Errorf("claimed slot 0 although it is locked")
	}
	if again, err := lockSlot(slot); err != nil || again != nil {
		t.Errorf("slot %d lock taken twice (%v)", slot, err)
	}
}

func TestDSNWithDatabase(t *testing.T) {
	tests := []struct{ dsn, want string }{
		{"postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "postgres://postgres@127.0.0.1:5432/complement_1?sslmode=disable"},
		{"postgresql://u:p@db:5432", "postgresql://u:p@db:5432/complement_1"},
		{"postgres://u@h/", "postgres://u@h/complement_1"},
		{"host=127.0.0.1 port=5432 user=postgres dbname=postgres", "host=127.0.0.1 port=5432 user=postgres dbname=postgres dbname=complement_1"},
	}
	for _, tt := range tests {
		if got := dsnWithDatabase(tt.dsn, "complement_1"); got != tt.want {
			t.Errorf("dsnWithDatabase(%q) = %q, want %q", tt.dsn, got, tt.want)
		}
	}
}

func TestProcessState(t *testing.T) {
	state, err := processState(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if state != 'R' && state != 'S' {
		t.Errorf("this process is in state %c", state)
	}
	if _, err := processState(-1); err == nil {
		t.Error("state of a process that cannot exist")
	}
}
