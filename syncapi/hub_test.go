package syncapi

import (
	"testing"
	"time"
)

func closedWithin(ch <-chan struct{}, d time.Duration) bool {
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

func TestHub(t *testing.T) {
	h := newHub()
	a1, releaseA1 := h.watch("@a:x")
	a2, releaseA2 := h.watch("@a:x")
	b, releaseB := h.watch("@b:x")
	if h.waiting() != 2 {
		t.Fatalf("waiting = %d", h.waiting())
	}
	h.wake("@a:x", "@nobody:x")
	if !closedWithin(a1, time.Second) || !closedWithin(a2, time.Second) {
		t.Fatal("a's waiters not woken")
	}
	if closedWithin(b, 10*time.Millisecond) {
		t.Fatal("b woken by a's wake")
	}
	releaseA1()
	releaseA2()
	// A new watch after the wake gets a fresh channel.
	a3, releaseA3 := h.watch("@a:x")
	if closedWithin(a3, 10*time.Millisecond) {
		t.Fatal("fresh channel already closed")
	}
	releaseA3()
	releaseB()
	if h.waiting() != 0 {
		t.Fatalf("released waiters remain: %d", h.waiting())
	}
	// After close every channel, old and new, is closed.
	c, releaseC := h.watch("@c:x")
	h.close()
	if !closedWithin(c, time.Second) {
		t.Fatal("close did not wake a waiter")
	}
	releaseC()
	d, releaseD := h.watch("@d:x")
	if !closedWithin(d, time.Second) {
		t.Fatal("a watch after close blocks")
	}
	releaseD()
}
