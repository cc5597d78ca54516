package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/parleyhq/parley/gen/pb/dapr/proto/runtime/v1/runtimev1connect"
	"github.com/parleyhq/parley/integration/stack"
	"github.com/parleyhq/parley/libs/auditevent"
	"github.com/parleyhq/parley/libs/bus"
	"github.com/parleyhq/parley/libs/devca"
	"github.com/parleyhq/parley/libs/identity"
	"github.com/parleyhq/parley/libs/natsauth"
	"github.com/parleyhq/parley/libs/rpcclient"
	"github.com/parleyhq/parley/libs/telemetry"
)

// The floors of the crossings inside Parley (the nats-rr, js-publish and connect-mtls
// paths): each is the cheapest form of one kind of crossing a conversation waits for,
// over the stack's own wire security, with nothing behind it.
const (
	// floorIdentity is the connect-mtls floor's identity (a certificate from the stack's
	// development CA) and the provider component whose subject the NATS floor answers.
	floorIdentity = "bench-floor"
	// floorRequester is the NATS user that sends the nats-rr requests: a router's role.
	floorRequester = "bench-router"
	// floorStream and floorSubject are the js-publish stream, configured like
	// PARLEY_AUDIT but apart from it, so that the audit service ingests nothing of it.
	floorStream  = "PARLEY_BENCH_FLOOR"
	floorSubject = "parley.bench.floor"
	// keptSubject is the kept server's subject in floorStream: its events, unlike
	// js-publish's, are read back and stored in PostgreSQL (parley-floor -store-dsn).
	keptSubject = "parley.bench.kept"
	// auditEventBytes is the js-publish payload: about a typical audit event of the
	// router paths (request, answer and metadata, protobuf).
	auditEventBytes = 1024
)

// benchNATSUsers are the NATS users of the floors, each with its role's exact
// permissions (libs/natsauth): the requester is a router, the responder a worker of the
// one component floorIdentity. The NATS server admits them beside the stack's users.
func benchNATSUsers() []natsauth.User {
	return []natsauth.User{
		{Name: floorRequester, Role: natsauth.Router},
		{Name: floorIdentity, Role: natsauth.Worker, Components: []string{floorIdentity}},
	}
}

// crossingFloors starts the processes of the internal floors beside the stack s and
// sets t's calls: with withNATS (the NATS server is the benchmark's, which admits
// benchNATSUsers), nats-rr (a request to parley-floor -server nats, answered in its queue
// group) and js-publish (a publish to floorStream awaited for its ack, with Nats-Msg-Id);
// unless internal TLS is off, connect-mtls (ConverseAlpha2 on parley-floor -server
// connect-mtls, with the router's identity and client). It returns a function that
// closes the connections.
func crossingFloors(ctx context.Context, s *stack.Stack, h *helpers, t *target, withNATS bool) (func(), error) {
	var seq atomic.Int64
	distinct := func() string { return fmt.Sprintf("%s #%d", prompt, seq.Add(1)) }
	var closers []func()
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	bin := filepath.Join(h.dir, "parley-floor")
	if withNATS {
		closeNATS, err := natsFloors(ctx, s, h, t, bin, distinct)
		closers = append(closers, closeNATS)
		if err != nil {
			return closeAll, err
		}
	}
	if s.InsecureInternal() {
		return closeAll, nil
	}
	if _, err := devca.Ensure(s.TLSDir(), s.TrustDomain(), []string{floorIdentity}); err != nil {
		return closeAll, fmt.Errorf("connect-mtls: certificate: %w", err)
	}
	f := s.Files(floorIdentity)
	var err error
	if h.mtlsFloor, err = startHelper("mtls floor", bin, "listening on ", "-server", "connect-mtls", "-identity", floorIdentity,
		"-trust-domain", s.TrustDomain(), "-tls-ca", f.CA, "-tls-cert", f.Cert, "-tls-key", f.Key); err != nil {
		return closeAll, err
	}
	clients, err := routerClients(ctx, s)
	if err != nil {
		return closeAll, fmt.Errorf("connect-mtls: %w", err)
	}
	closers = append(closers, clients.CloseIdleConnections)
	floor := runtimev1connect.NewDaprClient(clients.RPC(floorIdentity), "https://"+h.mtlsFloor.addr, clients.Options()...)
	t.connectMTLS = func(ctx context.Context) error {
		_, err := floor.ConverseAlpha2(ctx, daprRequest("echo", distinct(), false))
		return err
	}
	return closeAll, nil
}

// natsFloors starts the NATS responder (bin -server nats) and sets t's nats-rr and
// js-publish calls; the function it returns closes their connections.
func natsFloors(ctx context.Context, s *stack.Stack, h *helpers, t *target, bin string, distinct func() string) (func(), error) {
	var closers []func()
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	subject := bus.ProviderSubjectPrefix + floorIdentity
	var err error
	if h.natsFloor, err = startHelper("nats floor", bin, "listening on ", "-server", "nats", "-nats-url", s.NATSURL,
		"-nats-ca", s.NATSCAFile(), "-nats-seed", s.NATSSeedFile(floorIdentity), "-subject", subject); err != nil {
		return closeAll, err
	}
	// Stopped before the stack, whose NATS it is connected to.
	closers = append(closers, func() { h.natsFloor.stop(); h.natsFloor = nil })
	requester, err := s.ConnectNATS(floorRequester, nats.Name("parley-bench"))
	if err != nil {
		return closeAll, fmt.Errorf("nats-rr: %w", err)
	}
	closers = append(closers, requester.Close)
	t.natsRR = func(ctx context.Context) error {
		_, err := requester.RequestWithContext(ctx, subject, []byte(distinct()))
		return err
	}

	publisher, err := s.ConnectNATS(stack.AdminUser, nats.Name("parley-bench"))
	if err != nil {
		return closeAll, fmt.Errorf("js-publish: %w", err)
	}
	closers = append(closers, publisher.Close)
	js, err := jetstream.New(publisher)
	if err != nil {
		return closeAll, err
	}
	cfg := auditevent.StreamConfig(1)
	cfg.Name, cfg.Subjects, cfg.Description = floorStream, []string{floorSubject, keptSubject}, "parley-bench: the floor of the audit publish"
	if _, err := js.CreateOrUpdateStream(ctx, cfg); err != nil {
		return closeAll, fmt.Errorf("js-publish: create stream %s: %w", floorStream, err)
	}
	payload := []byte(strings.Repeat("x", auditEventBytes))
	var msgID atomic.Int64
	t.jsPublish = func(ctx context.Context) error {
		_, err := js.PublishMsg(ctx, &nats.Msg{Subject: floorSubject, Data: payload}, jetstream.WithMsgID(fmt.Sprintf("bench-%d", msgID.Add(1))))
		return err
	}

	// The kept crossings in one process: the same publish and request, made by a grpc-go
	// server before it answers (as the admin user, whose permissions cover both), and the
	// events stored in the stack's database once each, as the audit log must.
	if h.keptFloor, err = startHelper("kept floor", bin, "listening on ", "-server", "kept", "-nats-url", s.NATSURL,
		"-nats-ca", s.NATSCAFile(), "-nats-seed", s.NATSSeedFile(stack.AdminUser),
		"-publish-subject", keptSubject, "-publish-bytes", strconv.Itoa(auditEventBytes),
		"-store-dsn", s.DatabaseURL, "-store-stream", floorStream,
		"-request-subject", subject, "-request-component", pathKeptProvider); err != nil {
		return closeAll, err
	}
	closers = append(closers, func() { h.keptFloor.stop(); h.keptFloor = nil })
	kept, err := dialGRPC(h.keptFloor.addr)
	if err != nil {
		return closeAll, err
	}
	closers = append(closers, func() { _ = kept.Close() })
	t.keptHit = viaGRPC(kept, pathKeptHit, distinct, false)
	t.keptProvider = viaGRPC(kept, pathKeptProvider, distinct, false)
	return closeAll, nil
}

// routerClients is the router's own client factory for s's services: its identity (none
// under INTERNAL_TLS=off), rpcclient's transports and options.
func routerClients(ctx context.Context, s *stack.Stack) (*rpcclient.Factory, error) {
	cfg := identity.Config{Mode: identity.ModeOff}
	if !s.InsecureInternal() {
		rf := s.Files(identity.Router)
		cfg = identity.Config{Mode: identity.ModeOn, CAFile: rf.CA, CertFile: rf.Cert, KeyFile: rf.Key, TrustDomain: s.TrustDomain()}
	}
	id, err := identity.NewSource(cfg, identity.Router, slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err //nolint:wrapcheck // the caller names the path
	}
	tel, err := telemetry.New(ctx, "parley-bench", telemetry.Config{})
	if err != nil {
		return nil, err //nolint:wrapcheck // the caller names the path
	}
	return rpcclient.New(tel, id) //nolint:wrapcheck // the caller names the path
}
