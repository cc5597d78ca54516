package integration_test

import (
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestWorkerStopAndRestart runs before the parallel tests (it is not parallel): SIGTERM
// stops the worker cleanly within its grace period, the router then fails fast with
// Dapr's invoke error, and a restarted worker serves again.
func TestWorkerStopAndRestart(t *testing.T) {
	need(t)
	body := `{"inputs":[{"content":"still here"}]}`
	path := "/v1.0-alpha1/conversation/echo-nocache/converse"
	require.Equal(t, http.StatusOK, post(t, path, body).status)

	require.NoError(t, st.Signal("provider-worker", syscall.SIGTERM))
	p := st.Process("provider-worker")
	waitCtx, cancel := contextWithTimeout(t, 25*time.Second)
	defer cancel()
	require.NoError(t, p.Wait(waitCtx), "worker must exit 0 after SIGTERM:\n%s", p.Log())

	// "no worker serves the component" comes only from NATS's no-responders status, which
	// answers the publish at once: a router that waited for a deadline would report that.
	res := post(t, path, body)
	require.Equal(t, http.StatusInternalServerError, res.status, res.body)
	require.JSONEq(t, `{"errorCode":"ERR_CONVERSATION_INVOKE","message":"failed conversing with component echo-nocache: no worker serves the component"}`, res.body)

	require.NoError(t, st.StartService(t.Context(), "provider-worker"))
	require.NoError(t, st.WaitReady(t.Context(), "provider-worker", 60*time.Second))
	require.Eventually(t, func() bool { return post(t, path, body).status == http.StatusOK }, 20*time.Second, 50*time.Millisecond)
}
