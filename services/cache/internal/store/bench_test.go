package store_test

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parleyhq/parley/libs/natstest"
	"github.com/parleyhq/parley/services/cache/internal/store"
)

// BenchmarkStoreGet reads one 1 KiB entry: from memory (l1) and, with memory off, from
// the bucket (l2).
func BenchmarkStoreGet(b *testing.B) {
	srv := natstest.RunServer(b)
	for _, l1 := range []int64{1 << 20, 0} {
		cfg := testConfig(fmt.Sprintf("bench_get_%d", l1))
		cfg.L1MaxBytes = l1
		s, _, _ := open(b, srv, cfg)
		k := key("bench get")
		if err := s.Put(b.Context(), k, make([]byte, 1<<10), time.Hour); err != nil {
			b.Fatal(err)
		}
		name := "l2"
		if l1 > 0 {
			name = "l1"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, found, err := s.Get(b.Context(), k); err != nil || !found {
					b.Fatalf("get: found=%v err=%v", found, err)
				}
			}
		})
		b.Run(name+"/parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, found, err := s.Get(b.Context(), k); err != nil || !found {
						b.Errorf("get: found=%v err=%v", found, err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkStoreLookupHit is the router's hit path inside the cache service.
func BenchmarkStoreLookupHit(b *testing.B) {
	srv := natstest.RunServer(b)
	s, _, _ := open(b, srv, testConfig("bench_lookup"))
	k := key("bench lookup")
	if err := s.Put(b.Context(), k, make([]byte, 1<<10), time.Hour); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if res, err := s.Lookup(b.Context(), k, time.Minute); err != nil || res.Outcome != store.OutcomeHit {
			b.Fatalf("lookup: %v %v", res.Outcome, err)
		}
	}
}

// BenchmarkStoreMiss is the cache's share of the router's miss path: a Lookup that
// takes the lease, then the Put whose value replaces it.
func BenchmarkStoreMiss(b *testing.B) {
	srv := natstest.RunServer(b)
	s, _, _ := open(b, srv, testConfig("bench_miss"))
	value := make([]byte, 1<<10)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		k := key(fmt.Sprint("miss ", i))
		res, err := s.Lookup(b.Context(), k, time.Minute)
		if err != nil || res.Outcome != store.OutcomeLeased {
			b.Fatalf("lookup: %v %v", res.Outcome, err)
		}
		if err := s.Put(b.Context(), k, value, time.Minute); err != nil {
			b.Fatalf("put: %v", err)
		}
	}
}

// BenchmarkStoreMissParallel is BenchmarkStoreMiss with 16 callers at once, as make
// bench's c=16 miss path drives the cache.
func BenchmarkStoreMissParallel(b *testing.B) {
	srv := natstest.RunServer(b)
	s, _, _ := open(b, srv, testConfig("bench_miss_parallel"))
	value := make([]byte, 1<<10)
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(8) // 16 goroutines on 2 CPUs
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := key(fmt.Sprint("miss ", n.Add(1)))
			res, err := s.Lookup(b.Context(), k, time.Minute)
			if err != nil || res.Outcome != store.OutcomeLeased {
				b.Errorf("lookup: %v %v", res.Outcome, err)
				return
			}
			if err := s.Put(b.Context(), k, value, time.Minute); err != nil {
				b.Errorf("put: %v", err)
				return
			}
		}
	})
}

func BenchmarkStorePut(b *testing.B) {
	srv := natstest.RunServer(b)
	s, _, _ := open(b, srv, testConfig("bench_put"))
	value := make([]byte, 1<<10)
	// A fixed set of keys: the bucket keeps one revision per key, so its size stays
	// bounded however long the benchmark runs.
	keys := make([]store.Key, 1024)
	for i := range keys {
		keys[i] = key(fmt.Sprint(i))
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(value)))
	i := 0
	for b.Loop() {
		i++
		if err := s.Put(b.Context(), keys[i%len(keys)], value, time.Hour); err != nil {
			b.Fatalf("put: %v", err)
		}
	}
}
