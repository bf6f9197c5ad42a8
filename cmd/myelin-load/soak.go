package main

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// soakReport is the soak's memory verdict.
type soakReport struct {
	RatePerS   float64     `json:"rate_target_per_s"`
	Skipped    int         `json:"skipped"` // ticks when every sender was still busy
	WarmupS    float64     `json:"warmup_s"`
	Samples    []rssSample `json:"rss_samples,omitempty"`
	BaselineMB *float64    `json:"baseline_mb,omitempty"` // first sample after warm-up
	MinMB      *float64    `json:"min_mb,omitempty"`      // after warm-up
	MaxMB      *float64    `json:"max_mb,omitempty"`
	// MemoryStable: every sample after warm-up within ±10% of the baseline.
	// Absent without --pid or without samples after warm-up.
	MemoryStable *bool  `json:"memory_stable,omitempty"`
	Verdict      string `json:"verdict"`
}

type rssSample struct {
	AtS float64 `json:"t_s"`
	MB  float64 `json:"rss_mb"`
}

// soakScenario sends at a constant rate into one room for a duration with C
// senders (open loop: the schedule does not slow down when the server does;
// a tick that finds every sender busy is skipped and counted), sampling the
// server's RSS every SoakSample.
func (r *runner) soakScenario() scenario {
	c, rate, d := r.opt.Concurrency, r.opt.SoakRate, r.opt.SoakDuration
	var room string
	rep := &soakReport{RatePerS: rate, WarmupS: round3(r.opt.SoakWarmup.Seconds())}
	return scenario{
		name: "soak", unit: "messages",
		params: map[string]any{"rate_per_s": rate, "duration_s": d.Seconds(), "concurrency": c, "body_bytes": r.opt.MsgSize},
		setup: func(ctx context.Context) error {
			if err := r.ensureUsers(ctx, c); err != nil {
				return err
			}
			var err error
			room, err = r.roomWithMembers(ctx, r.users[:c])
			return err
		},
		run:    func(ctx context.Context) measure { return r.soak(ctx, room, rep) },
		finish: func(res *Result) { res.Soak = rep },
	}
}

func (r *runner) soak(ctx context.Context, room string, rep *soakReport) measure {
	c, rate, d := r.opt.Concurrency, r.opt.SoakRate, r.opt.SoakDuration
	total := int(rate * d.Seconds())
	interval := time.Duration(float64(time.Second) / rate)

	type workerOut struct {
		lat      []time.Duration
		errs     int
		firstErr error
	}
	outs := make([]workerOut, c)
	jobs := make(chan struct{}, c)
	var wg sync.WaitGroup
	for w := range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := &outs[w]
			for range jobs {
				t0 := time.Now()
				if _, err := r.sendOne(ctx, r.users[w], room, r.content()); err != nil {
					o.errs++
					if o.firstErr == nil {
						o.firstErr = err
					}
					continue
				}
				o.lat = append(o.lat, time.Since(t0))
			}
		}()
	}

	begin := time.Now()
	stopSampler := make(chan struct{})
	samplerDone := make(chan struct{})
	go func() {
		defer close(samplerDone)
		r.sampleRSS(begin, stopSampler, rep)
	}()

	skipped, scheduled := 0, 0
	for i := range total {
		if sleep(ctx, time.Until(begin.Add(time.Duration(i)*interval))) != nil {
			break
		}
		scheduled++
		select {
		case jobs <- struct{}{}:
		default:
			skipped++
		}
	}
	close(jobs)
	wg.Wait()
	close(stopSampler)
	<-samplerDone

	m := measure{elapsed: time.Since(begin)}
	for _, o := range outs {
		m.latencies = append(m.latencies, o.lat...)
		m.errors += o.errs
		if m.firstErr == nil {
			m.firstErr = o.firstErr
		}
	}
	m.ops = len(m.latencies)
	rep.Skipped = skipped
	if skipped > 0 {
		m.fail(fmt.Errorf("%d of %d sends skipped: all %d senders were busy (the server did not keep up with %.0f/s)", skipped, total, c, rate))
		m.errors += skipped - 1
	}
	if scheduled < total {
		m.fail(fmt.Errorf("%d of %d sends not scheduled: %w", total-scheduled, total, ctx.Err()))
		m.errors += total - scheduled - 1
	}
	judgeMemory(rep, r.opt.SoakWarmup, r.proc != nil)
	return m
}

// sampleRSS reads the server's RSS at the start, every SoakSample, and at
// the end. Bounded by stop (closed when sending ends).
func (r *runner) sampleRSS(begin time.Time, stop <-chan struct{}, rep *soakReport) {
	if r.proc == nil {
		return
	}
	take := func() {
		if rss, err := r.proc.rss(); err == nil {
			rep.Samples = append(rep.Samples, rssSample{AtS: round3(time.Since(begin).Seconds()), MB: *mb(rss)})
		} else {
			r.log.Warn("soak: RSS sample", "err", err)
		}
	}
	take()
	t := time.NewTicker(r.opt.SoakSample)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			take()
		case <-stop:
			take()
			return
		}
	}
}

// judgeMemory decides whether RSS stayed within ±10% of the first sample
// taken after warm-up.
func judgeMemory(rep *soakReport, warmup time.Duration, havePID bool) {
	if !havePID {
		rep.Verdict = "not measured (no --pid)"
		return
	}
	var after []rssSample
	for _, s := range rep.Samples {
		if s.AtS >= warmup.Seconds() {
			after = append(after, s)
		}
	}
	if len(after) == 0 {
		rep.Verdict = "not judged: no RSS sample after the warm-up (soak shorter than warm-up?)"
		return
	}
	base := after[0].MB
	lo, hi := base, base
	for _, s := range after {
		lo, hi = min(lo, s.MB), max(hi, s.MB)
	}
	stable := lo >= 0.9*base && hi <= 1.1*base
	rep.BaselineMB, rep.MinMB, rep.MaxMB, rep.MemoryStable = &base, &lo, &hi, &stable
	if stable {
		rep.Verdict = fmt.Sprintf("stable: RSS %.1f–%.1f MB after warm-up, within ±10%% of %.1f MB", lo, hi, base)
	} else {
		rep.Verdict = fmt.Sprintf("not stable: RSS %.1f–%.1f MB after warm-up, outside ±10%% of %.1f MB", lo, hi, base)
	}
}
