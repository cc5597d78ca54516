package store_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/parleyhq/parley/libs/natstest"
)

func BenchmarkStoreGet(b *testing.B) {
	srv := natstest.RunServer(b)
	s, _, _ := open(b, srv, testConfig("bench_get"))
	k := key("bench get")
	if err := s.Put(b.Context(), k, make([]byte, 1<<10), time.Hour); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, found, err := s.Get(b.Context(), k); err != nil || !found {
			b.Fatalf("get: found=%v err=%v", found, err)
		}
	}
}

func BenchmarkStorePut(b *testing.B) {
	srv := natstest.RunServer(b)
	s, _, _ := open(b, srv, testConfig("bench_put"))
	value := make([]byte, 1<<10)
	// A fixed set of keys: the bucket keeps one revision per key, so its size stays
	// bounded however long the benchmark runs.
	keys := make([]string, 1024)
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
