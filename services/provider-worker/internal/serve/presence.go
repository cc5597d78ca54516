package serve

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	providerv1 "github.com/parleyhq/parley/gen/pb/parley/provider/v1"
	"github.com/parleyhq/parley/libs/bus"
)

// DefaultPresenceInterval is the time between two presence announcements when Options
// leaves PresenceInterval zero.
const DefaultPresenceInterval = 2 * time.Second

// presence announces the worker on its components' presence subjects: at start, every
// interval, and a goodbye on stop. Routers count the workers they hear (the console's
// live worker count).
type presence struct {
	stop chan struct{}
	done chan struct{}
}

// startPresence announces the worker now and every PresenceInterval until stopPresence.
func (w *Worker) startPresence() {
	p := &presence{stop: make(chan struct{}), done: make(chan struct{})}
	w.presence = p
	w.announce(false)
	go func() {
		defer close(p.done)
		ticker := time.NewTicker(w.opts.PresenceInterval)
		defer ticker.Stop()
		for {
			select {
			case <-ticker.C:
				w.announce(false)
			case <-p.stop:
				return
			}
		}
	}()
}

// goodbyeFlush bounds the wait for the goodbye to leave: a worker cut off from NATS stops
// anyway, and routers forget it after three intervals.
const goodbyeFlush = time.Second

// stopPresence ends the announcements p started and says goodbye, so routers stop counting
// the worker at once. p may be nil (never started).
func (w *Worker) stopPresence(p *presence) {
	if p == nil {
		return
	}
	close(p.stop)
	<-p.done
	w.announce(true)
	// The goodbye leaves before the subscriptions drain; a failed flush only delays the
	// routers' count until the announcement expires.
	_ = w.nc.FlushTimeout(goodbyeFlush)
}

// announce publishes one Presence per component. Publishing never blocks on the server; a
// lost announcement is made up by the next one.
func (w *Worker) announce(goodbye bool) {
	names := w.Components()
	for _, name := range names {
		data, err := w.presenceMessage(name, names, goodbye)
		if err != nil {
			w.logger.Error("encode presence", "component", name, "error", err)
			return
		}
		if err := w.nc.Publish(bus.PresenceSubject(name), data); err != nil {
			w.logger.Warn("announce presence", "component", name, "error", err)
			return
		}
	}
}

func (w *Worker) presenceMessage(component string, components []string, goodbye bool) ([]byte, error) {
	data, err := proto.Marshal(&providerv1.Presence{
		WorkerId:   w.opts.WorkerID,
		Component:  component,
		Components: components,
		Slots:      uint32(cap(w.slots)), //nolint:gosec // Concurrency is positive and bounded by the config
		SlotsInUse: uint32(len(w.slots)), //nolint:gosec // at most cap
		Interval:   durationpb.New(w.opts.PresenceInterval),
		Goodbye:    goodbye,
	})
	if err != nil {
		return nil, fmt.Errorf("encode presence: %w", err)
	}
	return data, nil
}
