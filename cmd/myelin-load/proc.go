package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of utime/stime in /proc/PID/stat. Linux
// fixes it at 100 in its user-space ABI on every architecture Go supports,
// so the tool needs no cgo sysconf(_SC_CLK_TCK).
const clockTicks = 100

// procSample is one reading of a process: resident memory and CPU used.
type procSample struct {
	RSSBytes int64
	CPUTicks int64 // utime + stime
}

func (s procSample) cpuSeconds() float64 { return float64(s.CPUTicks) / clockTicks }

// procReader reads /proc/<pid> under a root ("/proc"; a temp dir in tests).
type procReader struct {
	root string
	pid  int
}

func (p procReader) read() (procSample, error) {
	rss, err := p.rss()
	if err != nil {
		return procSample{}, err
	}
	cpu, err := p.cpuTicks()
	if err != nil {
		return procSample{}, err
	}
	return procSample{RSSBytes: rss, CPUTicks: cpu}, nil
}

// rss is VmRSS from /proc/PID/status (reported in kB).
func (p procReader) rss() (int64, error) {
	path := filepath.Join(p.root, strconv.Itoa(p.pid), "status")
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			return 0, fmt.Errorf("%s: unexpected VmRSS line %q", path, sc.Text())
		}
		kb, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s: VmRSS: %w", path, err)
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("%s: no VmRSS (is the process a zombie?)", path)
}

// cpuTicks is utime + stime (fields 14 and 15) from /proc/PID/stat. The
// command name (field 2) is in parentheses and may itself contain spaces and
// parentheses, so fields are counted after the last ')'.
func (p procReader) cpuTicks() (int64, error) {
	path := filepath.Join(p.root, strconv.Itoa(p.pid), "stat")
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("%s: malformed", path)
	}
	fields := strings.Fields(string(data[i+1:]))
	// fields[0] is field 3 (state), so field n is fields[n-3].
	if len(fields) < 13 {
		return 0, fmt.Errorf("%s: only %d fields after the command name", path, len(fields))
	}
	utime, err1 := strconv.ParseInt(fields[14-3], 10, 64)
	stime, err2 := strconv.ParseInt(fields[15-3], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("%s: utime/stime: %w", path, err)
	}
	return utime + stime, nil
}

// busyPolicy says how "the server keeps working after the load" is measured.
type busyPolicy struct {
	Interval  time.Duration // sampling period
	Window    time.Duration // the process must stay idle this long
	IdleTicks int64         // at most this much CPU within Window counts as idle
	Cap       time.Duration // give up after this long
}

// defaultBusy samples every 100 ms and calls the server idle once it used at
// most 2 ticks (20 ms, 2% of a core) over a whole second: a quiet Go server
// uses about nothing, while a backlog keeps a core busy.
var defaultBusy = busyPolicy{Interval: 100 * time.Millisecond, Window: time.Second, IdleTicks: 2, Cap: 60 * time.Second}

// busyAfter samples CPU from the end of a scenario until the process has been
// idle for a whole window, and returns how long it stayed busy: the start of
// that idle window. capped is true when the process never went idle within
// the cap (the result is then the cap).
func busyAfter(ctx context.Context, pol busyPolicy, cpu func() (int64, error)) (busy time.Duration, capped bool, err error) {
	type point struct {
		at    time.Duration
		ticks int64
	}
	start := time.Now()
	first, err := cpu()
	if err != nil {
		return 0, false, err
	}
	points := []point{{0, first}}
	// Bounded in count as well as time: Cap/Interval samples plus slack.
	maxSamples := int(pol.Cap/pol.Interval) + 10
	for range maxSamples {
		if err := sleep(ctx, pol.Interval); err != nil {
			return 0, false, err
		}
		ticks, err := cpu()
		if err != nil {
			return 0, false, err
		}
		now := time.Since(start)
		points = append(points, point{now, ticks})
		// The idle stretch starts at the earliest sample since which the
		// process used at most IdleTicks (ticks only grow, so every later
		// sample qualifies too); it counts once it spans a whole window.
		for _, p := range points {
			if ticks-p.ticks <= pol.IdleTicks {
				if now-p.at >= pol.Window {
					return p.at, false, nil
				}
				break
			}
		}
		if now >= pol.Cap {
			return pol.Cap, true, nil
		}
	}
	return pol.Cap, true, nil
}

// dirBytes is the total size of the regular files under dir: the server's
// data on disk. Files that vanish during the walk (SQLite's -shm, temp
// files) are skipped.
func dirBytes(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path != dir {
				return nil
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		total += info.Size()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", dir, err)
	}
	return total, nil
}
