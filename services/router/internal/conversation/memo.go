package conversation

import (
	"container/list"
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"sync"
	"time"
)

// memoOverhead is what a memo entry costs beyond its scrubbed text and findings.
const memoOverhead = 128

// scrubMemo remembers the scrubber's answers for audit-copy texts (replace mode), so a
// request repeating texts seen recently (a cache hit: the same prompt and the same
// answer) records its audit copy without calling the scrubber. It holds scrubbed text
// only, keyed by a hash of the raw text, bounded by bytes, each answer for at most ttl
// (the scrubber's configuration is fixed for a run of it, so an answer goes stale only
// when the scrubber is redeployed with other settings).
type scrubMemo struct {
	max int64
	ttl time.Duration

	mu      sync.Mutex
	entries map[[sha256.Size]byte]*list.Element
	lru     *list.List // of *memoEntry; front: most recently used
	size    int64
}

type memoEntry struct {
	key     [sha256.Size]byte
	result  Scrubbed
	expires time.Time
	weight  int64
}

func newScrubMemo(maxBytes int64, ttl time.Duration) *scrubMemo {
	if maxBytes <= 0 {
		return nil
	}
	return &scrubMemo{max: maxBytes, ttl: ttl, entries: map[[sha256.Size]byte]*list.Element{}, lru: list.New()}
}

func memoKey(text string, format TextFormat) [sha256.Size]byte {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	h.Write(n[:binary.PutUvarint(n[:], uint64(format))]) //nolint:gosec // small enum
	h.Write([]byte(text))
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// lookup returns the remembered answers for every text of call, or false when any is
// missing (then the whole call goes to the scrubber).
func (m *scrubMemo) lookup(call ScrubCall) ([]Scrubbed, bool) {
	if m == nil || call.Mode != ScrubReplace || len(call.Texts) == 0 {
		return nil, false
	}
	out := make([]Scrubbed, len(call.Texts))
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, t := range call.Texts {
		el, ok := m.entries[memoKey(t, formatOf(call, i))]
		if !ok {
			return nil, false
		}
		e := el.Value.(*memoEntry) //nolint:forcetypeassert // the list holds *memoEntry only
		if !now.Before(e.expires) {
			m.remove(el)
			return nil, false
		}
		m.lru.MoveToFront(el)
		out[i] = Scrubbed{Text: e.result.Text, Findings: slices.Clone(e.result.Findings)}
	}
	return out, true
}

// store remembers the scrubber's answers to call.
func (m *scrubMemo) store(call ScrubCall, results []Scrubbed) {
	if m == nil || call.Mode != ScrubReplace || len(results) != len(call.Texts) {
		return
	}
	expires := time.Now().Add(m.ttl)
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, t := range call.Texts {
		k := memoKey(t, formatOf(call, i))
		r := Scrubbed{Text: results[i].Text, Findings: slices.Clone(results[i].Findings)}
		weight := int64(len(r.Text) + 24*len(r.Findings) + memoOverhead)
		if weight > m.max {
			continue
		}
		if el, ok := m.entries[k]; ok {
			m.remove(el)
		}
		m.entries[k] = m.lru.PushFront(&memoEntry{key: k, result: r, expires: expires, weight: weight})
		m.size += weight
		for m.size > m.max {
			m.remove(m.lru.Back())
		}
	}
}

func (m *scrubMemo) remove(el *list.Element) {
	e := m.lru.Remove(el).(*memoEntry) //nolint:forcetypeassert // the list holds *memoEntry only
	delete(m.entries, e.key)
	m.size -= e.weight
}

func formatOf(call ScrubCall, i int) TextFormat {
	if i < len(call.Formats) {
		return call.Formats[i]
	}
	return FormatText
}
