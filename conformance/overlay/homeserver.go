//go:build myelin_overlay

// A new file in Complement's root package (added through the overlay): one
// Myelin server process of a deployment.

package complement

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// homeserver is one Myelin server of a deployment; it can be stopped and
// started again on the same data.
type homeserver struct {
	name       string
	launch     []string // runs the server in its own mount namespace
	database   string   // its PostgreSQL database, "" with SQLite
	binary     string
	configPath string
	logPath    string
	env        []string
	baseURL    string
	fedAddr    string

	mu     sync.Mutex
	proc   *exec.Cmd
	done   chan struct{} // closed when proc has exited
	err    error         // proc's exit status, valid after done
	paused bool
}

func (hs *homeserver) running() bool {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.proc == nil {
		return false
	}
	select {
	case <-hs.done:
		return false
	default:
		return true
	}
}

func (hs *homeserver) id() string {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.proc == nil {
		return "myelin-" + hs.name + "-stopped"
	}
	return fmt.Sprintf("myelin-%s-pid%d", hs.name, hs.proc.Process.Pid)
}

// start launches the server and waits until /versions answers 200.
func (hs *homeserver) start(timeout time.Duration) error {
	logFile, err := os.OpenFile(hs.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open %s log: %w", hs.name, err)
	}
	args := append(slices.Clone(hs.launch[1:]), hs.binary, "serve", "--config", hs.configPath)
	cmd := exec.Command(hs.launch[0], args...)
	cmd.Env = hs.env
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// A test binary killed by its timeout must not leave servers behind
	// holding hs1's addresses for the next package.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start %s: %w", hs.name, err)
	}
	done := make(chan struct{})
	hs.mu.Lock()
	hs.proc, hs.done, hs.err, hs.paused = cmd, done, nil, false
	hs.mu.Unlock()
	go func() {
		err := cmd.Wait()
		logFile.Close()
		hs.mu.Lock()
		hs.err = err
		hs.mu.Unlock()
		close(done)
	}()
	return hs.waitReady(done, timeout)
}

func (hs *homeserver) waitReady(done <-chan struct{}, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	probe := &http.Client{Timeout: time.Second}
	url := hs.baseURL + "/_matrix/client/versions"
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("probe %s: %w", hs.name, err)
		}
		if resp, err := probe.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-done:
			hs.mu.Lock()
			err := hs.err
			hs.mu.Unlock()
			return fmt.Errorf("%s exited before answering /versions: %v", hs.name, err)
		case <-ctx.Done():
			hs.stop()
			return fmt.Errorf("%s did not answer %s with 200 within %v", hs.name, url, timeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop terminates the server gracefully, killing it after stopGrace.
func (hs *homeserver) stop() {
	hs.mu.Lock()
	proc, done, paused := hs.proc, hs.done, hs.paused
	hs.proc, hs.paused = nil, false
	hs.mu.Unlock()
	if proc == nil {
		return
	}
	if paused {
		proc.Process.Signal(syscall.SIGCONT)
	}
	proc.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(stopGrace):
		proc.Process.Kill()
		<-done
	}
}

// signalPause freezes (SIGSTOP) or resumes (SIGCONT) the server process,
// the process equivalent of `docker pause`.
func (hs *homeserver) signalPause(pause bool) error {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if hs.proc == nil {
		return fmt.Errorf("%s is not running", hs.name)
	}
	sig := syscall.SIGCONT
	if pause {
		sig = syscall.SIGSTOP
	}
	if err := hs.proc.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s: %w", hs.name, err)
	}
	hs.paused = pause
	// Signals arrive asynchronously; `docker pause` returns once the
	// container is frozen, so wait for the kernel to report the change.
	return waitStopped(hs.proc.Process.Pid, pause, 5*time.Second)
}

// waitStopped polls /proc until the process is (or is no longer) in the
// stopped state "T".
func waitStopped(pid int, stopped bool, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		state, err := processState(pid)
		if err != nil {
			return err
		}
		if (state == 'T') == stopped {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d still in state %c after %v", pid, state, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// processState reads the state letter from /proc/PID/stat ("pid (comm) S
// ..."); comm may contain spaces, so the state follows the last ')'.
func processState(pid int) (byte, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read process state: %w", err)
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 || i+2 >= len(data) {
		return 0, fmt.Errorf("unexpected /proc/%d/stat: %q", pid, data)
	}
	return data[i+2], nil
}

// logTail returns the last lines of the server's log.
func (hs *homeserver) logTail() string {
	data, err := os.ReadFile(hs.logPath)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > logTailLines {
		lines = lines[len(lines)-logTailLines:]
	}
	return strings.Join(lines, "\n")
}
