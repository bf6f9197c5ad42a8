package main

import (
	"math"
	"slices"
	"time"
)

// percentile is the nearest-rank percentile of sorted samples: the smallest
// sample such that at least q% of all samples are <= it. It is a sample that
// was observed (no interpolation), and p100 is the maximum. Empty input is 0.
func percentile(sorted []time.Duration, q float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if q <= 0 {
		return sorted[0]
	}
	rank := int(math.Ceil(q / 100 * float64(n)))
	rank = max(1, min(rank, n))
	return sorted[rank-1]
}

// latencySummary is what every result reports about its latencies.
type latencySummary struct {
	P50, P95, P99, Max time.Duration
}

func summarize(samples []time.Duration) latencySummary {
	s := slices.Clone(samples)
	slices.Sort(s)
	return latencySummary{
		P50: percentile(s, 50), P95: percentile(s, 95), P99: percentile(s, 99), Max: percentile(s, 100),
	}
}

// ms renders a duration as milliseconds with microsecond resolution.
func ms(d time.Duration) float64 { return round3(float64(d) / float64(time.Millisecond)) }

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// median of values (the mean of the middle two for an even count); 0 when
// empty.
func median(values []float64) float64 {
	if len(values) == 0 {
		return 0
	}
	s := slices.Clone(values)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
