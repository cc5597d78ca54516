package store

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"time"
)

// Page tokens are opaque to clients: base64url (unpadded) of a version byte, the created_at
// of the last row returned in Unix microseconds (big endian), and its request_id.
const (
	cursorVersion = 1
	cursorLen     = 1 + 8 + 16

	// The range of google.protobuf.Timestamp (years 1 to 9999), in Unix microseconds; every
	// stored created_at lies in it.
	minCursorMicros = -62135596800 * 1e6
	maxCursorMicros = 253402300800*1e6 - 1
)

// pageCursor is the keyset position after which the next page starts.
type pageCursor struct {
	createdAt time.Time
	requestID [16]byte
}

func encodePageToken(c pageCursor) string {
	var b [cursorLen]byte
	b[0] = cursorVersion
	binary.BigEndian.PutUint64(b[1:9], uint64(c.createdAt.UnixMicro()))
	copy(b[9:], c.requestID[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// decodePageToken parses a token made by encodePageToken. Strict decoding gives every cursor
// exactly one token. Errors wrap ErrInvalidPageToken.
func decodePageToken(s string) (pageCursor, error) {
	if len(s) != base64.RawURLEncoding.EncodedLen(cursorLen) {
		return pageCursor{}, fmt.Errorf("%w: bad length", ErrInvalidPageToken)
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return pageCursor{}, fmt.Errorf("%w: %w", ErrInvalidPageToken, err)
	}
	if len(b) != cursorLen || b[0] != cursorVersion {
		return pageCursor{}, fmt.Errorf("%w: unknown version", ErrInvalidPageToken)
	}
	us := int64(binary.BigEndian.Uint64(b[1:9]))
	if us < minCursorMicros || us > maxCursorMicros {
		return pageCursor{}, fmt.Errorf("%w: time out of range", ErrInvalidPageToken)
	}
	c := pageCursor{createdAt: time.UnixMicro(us).UTC()}
	copy(c.requestID[:], b[9:])
	return c, nil
}
