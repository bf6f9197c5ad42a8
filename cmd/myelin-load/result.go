package main

import "time"

// Result is one JSON line: one scenario against one server.
type Result struct {
	Scenario string `json:"scenario"`
	Server   string `json:"server"`
	// Durability labels the figures with the server's durability setting
	// (--durability): relaxed figures must never pass for default ones.
	Durability string `json:"durability,omitempty"`
	// Status is "ok" (every operation succeeded), "partial" (some failed)
	// or "failed" (setup failed, nothing succeeded, or not run).
	Status      string         `json:"status"`
	Error       string         `json:"error,omitempty"` // the first error seen
	Count       int            `json:"count"`           // successful operations (events for messages)
	Unit        string         `json:"unit,omitempty"`  // what count and throughput count
	DurationS   float64        `json:"duration_s"`
	Throughput  float64        `json:"throughput_per_s"`
	P50MS       float64        `json:"p50_ms"`
	P95MS       float64        `json:"p95_ms"`
	P99MS       float64        `json:"p99_ms"`
	MaxMS       float64        `json:"max_ms"`
	Errors      int            `json:"errors"`
	RateLimited int64          `json:"rate_limited"` // 429s honoured and retried
	Params      map[string]any `json:"params,omitempty"`

	// With --pid: the server process.
	RSSBeforeMB *float64 `json:"rss_before_mb,omitempty"`
	RSSAfterMB  *float64 `json:"rss_after_mb,omitempty"`
	CPUS        *float64 `json:"cpu_s,omitempty"`
	CPUMSPerOp  *float64 `json:"cpu_ms_per_op,omitempty"`
	BusyAfterS  *float64 `json:"busy_after_s,omitempty"`
	BusyCapped  bool     `json:"busy_after_capped,omitempty"` // never idle within the cap

	// With --disk: the server's data directory.
	DiskBeforeBytes *int64   `json:"disk_before_bytes,omitempty"`
	DiskAfterBytes  *int64   `json:"disk_after_bytes,omitempty"`
	DiskPerOpBytes  *float64 `json:"disk_per_op_bytes,omitempty"`

	// run_summary only.
	MessagesSent int64    `json:"messages_sent,omitempty"` // including setup
	Requests     int64    `json:"requests,omitempty"`
	RSSIdleMB    *float64 `json:"rss_idle_mb,omitempty"` // before the first request
	RSSEndMB     *float64 `json:"rss_end_mb,omitempty"`

	Soak *soakReport `json:"soak,omitempty"`
}

// measure is what a scenario's measured phase observed.
type measure struct {
	ops       int // successful operations
	units     int // what throughput counts when hasUnits; else ops
	hasUnits  bool
	errors    int
	firstErr  error
	latencies []time.Duration
	elapsed   time.Duration
}

func (m *measure) fail(err error) {
	m.errors++
	if m.firstErr == nil {
		m.firstErr = err
	}
}

// fill copies the measurement into r and decides the status.
func (m measure) fill(r *Result) {
	units := m.ops
	if m.hasUnits {
		units = m.units
	}
	r.Count = units
	r.DurationS = round3(m.elapsed.Seconds())
	if m.elapsed > 0 {
		r.Throughput = round3(float64(units) / m.elapsed.Seconds())
	}
	s := summarize(m.latencies)
	r.P50MS, r.P95MS, r.P99MS, r.MaxMS = ms(s.P50), ms(s.P95), ms(s.P99), ms(s.Max)
	r.Errors = m.errors
	switch {
	case m.ops == 0:
		r.Status = "failed"
	case m.errors > 0:
		r.Status = "partial"
	default:
		r.Status = "ok"
	}
	if m.firstErr != nil {
		r.Error = m.firstErr.Error()
	} else if m.ops == 0 {
		r.Error = "no operation ran"
	}
}

func mb(b int64) *float64 {
	v := round3(float64(b) / (1 << 20))
	return &v
}

func ptr[T any](v T) *T { return &v }
