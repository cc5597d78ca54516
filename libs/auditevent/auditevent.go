// Package auditevent owns the JetStream stream that carries audit events from router to
// audit: its name, subject and configuration, declared the same way by both sides.
package auditevent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/parleyhq/parley/libs/bus"
)

const (
	// Stream is the JetStream stream name.
	Stream = "PARLEY_AUDIT"
	// Subject carries one auditv1.ConversationEvent per message, Nats-Msg-Id = request id.
	Subject = "parley.audit.conversation"
	// DeadLetterSubject receives events that could not be written after every delivery.
	DeadLetterSubject = "parley.audit.deadletter"
)

// StreamConfig is the stream's configuration: file storage, 7 days of retention so a long
// PostgreSQL outage only delays the log, DiscardNew so a full stream fails publishers
// (the router then fails closed) instead of silently dropping unwritten events, and a
// 2 minute de-duplication window on the request id.
func StreamConfig(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        Stream,
		Description: "Parley conversation audit events",
		Subjects:    []string{Subject, DeadLetterSubject},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardNew,
		MaxAge:      7 * 24 * time.Hour,
		Duplicates:  2 * time.Minute,
		Replicas:    replicas,
	}
}

// Ensure creates the stream when it does not exist. An existing stream is left as it is,
// so an operator's changes (limits, replicas) survive restarts. A request a forming or
// re-electing cluster leaves unanswered is made again (bus.RetryAPI) until ctx ends.
func Ensure(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.Stream, error) {
	return bus.RetryAPI(ctx, bus.APIAttempt, func(ctx context.Context) (jetstream.Stream, error) {
		return ensure(ctx, js, replicas)
	})
}

func ensure(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, Stream)
	if err == nil {
		return s, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("look up stream %s: %w", Stream, err)
	}
	s, err = js.CreateStream(ctx, StreamConfig(replicas))
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return js.Stream(ctx, Stream)
	}
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", Stream, err)
	}
	return s, nil
}

// TenantHeader carries the caller's tenant from router to audit on AuditService calls.
// The audit service refuses calls without it; router sets it from the authenticated caller.
const TenantHeader = "Parley-Tenant"
