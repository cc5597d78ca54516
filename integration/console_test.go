package integration_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/stretchr/testify/require"

	"github.com/parleyhq/parley/gen/pb/parley/audit/v1/auditv1connect"
	componentv1 "github.com/parleyhq/parley/gen/pb/parley/component/v1"
	"github.com/parleyhq/parley/gen/pb/parley/component/v1/componentv1connect"
	"github.com/parleyhq/parley/integration/stack"
)

// consoleShots is where TestConsole saves its screenshots (CONSOLE_SCREENSHOTS, or a folder
// under the system's temporary folder); docs/console/ keeps a copy of some.
func consoleShots(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("CONSOLE_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "parley-console-screenshots")
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return dir
}

// browser is a headless Chromium tab with what the test watches: every URL the page
// requested and every console error, log entry or exception it raised.
type browser struct {
	ctx   context.Context
	shots string
	mu    sync.Mutex
	urls  []string
	errs  []string
}

func newBrowser(t *testing.T, chrome string) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome),
		chromedp.NoSandbox, // CI runs as root, where Chromium's sandbox refuses to start
		chromedp.WindowSize(1280, 800),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.WithoutCancel(t.Context()), opts...)
	b := &browser{shots: consoleShots(t)}
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithListener(func(ev any) {
		b.mu.Lock()
		defer b.mu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			b.urls = append(b.urls, e.Request.URL)
		case *runtime.EventExceptionThrown:
			b.errs = append(b.errs, e.ExceptionDetails.Text)
		case *cdplog.EventEntryAdded:
			b.errs = append(b.errs, e.Entry.Text)
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError {
				for _, a := range e.Args {
					b.errs = append(b.errs, string(a.Value))
				}
			}
		}
	}))
	t.Cleanup(func() { cancelTab(); cancelAlloc() })
	b.ctx = ctx
	// The first run starts the browser, which lives as long as ctx: no deadline on it.
	require.NoError(t, chromedp.Do(ctx, chromedp.EmulateViewport(1280, 800)))
	return b
}

// run runs steps with a deadline, so that a page that never shows what is awaited fails
// the test instead of hanging it.
func (b *browser) run(t *testing.T, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 45*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.shot(t, "failed-"+strings.NewReplacer("/", "-", " ", "-").Replace(t.Name()))
		require.NoError(t, err)
	}
}

// text is the visible text of the first element matching a CSS selector.
func (b *browser) text(t *testing.T, css string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 45*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`document.querySelector(%q).innerText`, css)))
	require.NoError(t, err)
	return s
}

// shot saves the viewport as name.png.
func (b *browser) shot(t *testing.T, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 45*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	require.NoError(t, err)
	path := filepath.Join(b.shots, name+".png")
	require.NoError(t, os.WriteFile(path, png, 0o644))
	t.Logf("screenshot %s", path)
}

// until polls a JavaScript condition until it is true.
func until(js string) chromedp.Action[chromedp.Void] {
	return chromedp.Poll[chromedp.Void](js, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(40*time.Second))
}

// workersJS is true when the Components page shows n live workers of component.
func workersJS(component string, n int) string {
	return fmt.Sprintf(`(() => { const w = document.querySelector('#components tr[data-name=%q] .workers'); return w !== null && w.innerText === %q; })()`, component, fmt.Sprint(n))
}

// choose picks an option of a <select> as a user would, firing its change event.
func choose(sel, value string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => { const s = document.querySelector(%q); s.value = %q;
		s.dispatchEvent(new Event("change", { bubbles: true })); })()`, sel, value))
}

// fill types a value into an input as a user would, firing its input event.
func fill(sel, value string) chromedp.Action[chromedp.Void] {
	return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => { const s = document.querySelector(%q); s.value = %q;
		s.dispatchEvent(new Event("input", { bubbles: true })); })()`, sel, value))
}

// rowsJS counts the rows of the conversations table.
const rowsJS = `document.querySelectorAll("#conversations tbody tr").length`

// TestConsole drives the web console in headless Chromium against a router with API keys: a
// wrong key is refused, a conversation made by the test appears in the live tail and another
// tenant's never does, filters by component and word narrow the table, paging goes forward
// and back, the conversation page shows the scrubbed e-mail placeholder and never the
// address, usage counts the test's requests, and the page makes no request off the router.
func TestConsole(t *testing.T) {
	need(t)
	t.Parallel()
	chrome, err := stack.FindChromium(t.Context(), true, os.Stdout)
	if errors.Is(err, stack.ErrNoChromium) {
		t.Skipf("no browser for the console test: %v", err)
	}
	require.NoError(t, err)

	// Its own component, worker and router, and API keys of tenants of its own: usage for
	// console-e2e in its tenant is this test's alone.
	const router, worker, component = "router-console", "worker-console", "console-e2e"
	dir, err := filepath.Abs(filepath.Join("testdata", "console-components"))
	require.NoError(t, err)
	keyEnv := map[string]string{
		"ROUTER_API_KEYS_FILE": filepath.Join(t.TempDir(), "keys.yaml"), "ROUTER_API_KEY_PEPPER": "integration pepper of the console test",
	}
	createKey := func(id, tenant string) string {
		t.Helper()
		res := runParley(t, keyEnv, "", "keys", "create", "-id", id, "-tenant", tenant)
		require.Equal(t, 0, res.code, res.stderr)
		return strings.TrimSpace(res.stdout)
	}
	token, other := createKey("console", "console-team"), createKey("elsewhere", "other-team")
	require.NoError(t, st.StartInstance(t.Context(), "provider-worker", worker, map[string]string{
		"COMPONENTS_DIR": dir, "WORKER_COMPONENTS": component,
	}))
	require.NoError(t, st.StartInstance(t.Context(), "router", router, map[string]string{
		"COMPONENTS_DIR": dir, "ROUTER_API_KEYS_FILE": keyEnv["ROUTER_API_KEYS_FILE"], "ROUTER_API_KEY_PEPPER": keyEnv["ROUTER_API_KEY_PEPPER"],
	}))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 30*time.Second)
		defer cancel()
		require.NoError(t, st.StopService(ctx, router))
		require.NoError(t, st.StopService(ctx, worker))
	})
	base := st.URL(router)
	n := nonce(t)
	sent := 0 // this test's conversations of console-e2e under its key
	// Each conversation continues a trace of the test's: the console shows its id.
	traceIDs := map[string]string{}
	postAs := func(key, comp, body string) string {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, base+"/v1.0-alpha2/conversation/"+comp+"/converse", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("dapr-api-token", key)
		trace := randomHex(t, 16)
		req.Header.Set("traceparent", "00-"+trace+"-"+randomHex(t, 8)+"-01")
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = res.Body.Close()
		require.Equal(t, http.StatusOK, res.StatusCode)
		if key == token && comp == component {
			sent++
		}
		id := res.Header.Get("Parley-Request-Id")
		traceIDs[id] = trace
		return id
	}
	converseAs := func(key, comp, text string) string {
		t.Helper()
		return postAs(key, comp, fmt.Sprintf(`{"inputs":[{"messages":[{"ofUser":{"content":[{"text":%q}]}}],"scrubPII":true}]}`, text))
	}
	converse := func(text string) string {
		t.Helper()
		return converseAs(token, component, text)
	}

	t.Run("the key guards the data, not the page", func(t *testing.T) {
		list := func(tok string) error {
			c := componentv1connect.NewComponentServiceClient(http.DefaultClient, base)
			ctx, ci := connect.NewClientContext(t.Context())
			if tok != "" {
				ci.RequestHeader().Set("dapr-api-token", tok)
			}
			_, err := c.ListComponents(ctx, &componentv1.ListComponentsRequest{})
			return err
		}
		require.Equal(t, connect.CodeUnauthenticated, connect.CodeOf(list("")))
		require.Equal(t, connect.CodeUnauthenticated, connect.CodeOf(list("pk_wrong")), "a wrong key")
		require.NoError(t, list(token))
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, base+"/console/", nil)
		require.NoError(t, err)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		_ = res.Body.Close()
		require.Equal(t, http.StatusOK, res.StatusCode)
		require.Contains(t, res.Header.Get("Content-Security-Policy"), "default-src 'none'")
	})

	b := newBrowser(t, chrome)
	start := time.Now()
	b.run(t, chromedp.Navigate(base+"/console/"), chromedp.WaitVisible(chromedp.ID("token")))
	t.Logf("console login page interactive %v after navigation started (this machine, busy or not)", time.Since(start).Round(time.Millisecond))

	t.Run("wrong key refused", func(t *testing.T) {
		b.run(t,
			chromedp.SendKeys(chromedp.ID("token"), "not-the-token"),
			chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
			chromedp.WaitVisible(chromedp.ID("login-error")),
		)
		require.Contains(t, b.text(t, "#login-error"), "refused")
		b.shot(t, "login-refused")
	})

	// statusIs waits for the table's status line, which reads "· live" only once a load ended.
	statusIs := func(prefix string) chromedp.Action[chromedp.Void] {
		return until(fmt.Sprintf(`(s => s.startsWith(%q) && s.includes("live"))(document.querySelector(".status").innerText)`, prefix))
	}
	// rowsAre waits until the table shows exactly count rows, each of component.
	rowsAre := func(count int, component string) chromedp.Action[chromedp.Void] {
		return until(fmt.Sprintf(`(() => { const rows = [...document.querySelectorAll("#conversations tbody tr")];
			return rows.length === %d && rows.every(r => %q === "" || r.cells[1].innerText === %q); })()`, count, component, component))
	}

	t.Run("sign in and live tail", func(t *testing.T) {
		b.run(t,
			fill("#token", token),
			chromedp.Click(chromedp.CSS(`button[type="submit"]`)),
			chromedp.WaitVisible(chromedp.ID("conversations")),
			// This test's word: other tests' conversations stay out of the table.
			chromedp.SendKeys(chromedp.ID("f-words"), n),
			// The filter applies a moment after the last key: until then a load made for
			// part of the word (or before it) also reads "0 conversations", and the
			// whole word's load, if it ran after the conversation below, would show it
			// as a plain row, not a fresh one. The address carries the filter applied.
			until(fmt.Sprintf(`new URLSearchParams(location.search).get("q") === %q`, n)),
			statusIs("Page 1, 0 conversations"),
		)
		// Made after the page loaded: only the live tail can show them, highlighted as new.
		converse(fmt.Sprintf("console %s: write to alice@example.com about the invoice", n))
		b.run(t, until(fmt.Sprintf(`[...document.querySelectorAll("#conversations tbody tr.fresh")].some(r => r.innerText.includes(%q))`, n)))
		b.shot(t, "conversations-live")
		// Another tenant's conversation with the same word, stored before the next one: the
		// console, confined to its key's tenant, never shows it.
		id := converseAs(other, component, fmt.Sprintf("console %s from another tenant", n))
		auditRow(t, auditv1connect.NewAuditServiceClient(keyedClient(other), base), id)
		// On another component, with markup in it: the page shows it as text and runs nothing.
		const markup = `<img src=x onerror=document.title=1><b>bold</b>`
		converseAs(token, "echo-nocache", fmt.Sprintf("console %s on another component %s", n, markup))
		b.run(t,
			until(`[...document.querySelectorAll("#conversations tbody tr.fresh")].some(r => r.cells[1].innerText === "echo-nocache")`),
			rowsAre(2, ""),
			until(fmt.Sprintf(`document.querySelector("#conversations").innerText.includes(%q)`, markup)),
			until(`document.querySelectorAll("#conversations img, #conversations b").length === 0 && document.title === "Parley console"`),
		)
	})

	t.Run("filter by component", func(t *testing.T) {
		b.run(t,
			until(`[...document.querySelectorAll("#f-component option")].some(o => o.value === "console-e2e")`),
			choose("#f-component", component),
			rowsAre(1, component),
		)
	})

	// Six more: seven conversations of console-e2e carry the word, two pages of five.
	for i := range 6 {
		converse(fmt.Sprintf("console %s page test %d", n, i))
	}

	t.Run("search words and page", func(t *testing.T) {
		b.run(t,
			// Every word must match: only the first conversation mentions the invoice.
			chromedp.SendKeys(chromedp.ID("f-words"), " invoice"),
			rowsAre(1, component),
			until(`document.querySelector("#conversations").innerText.includes("<EMAIL_ADDRESS>")`),
			fill("#f-words", n),
			choose("#f-size", "5"),
			statusIs("Page 1, 5 conversations"),
			rowsAre(5, component),
			until(`document.querySelector("#conversations").innerText.includes("page test 5")`),
			until(`!document.querySelector("#next").disabled`),
		)
		b.shot(t, "conversations-search")
		b.run(t,
			chromedp.Click(chromedp.ID("next")),
			until(`document.querySelector(".status").innerText.startsWith("Page 2, 2 conversations")`),
			rowsAre(2, component),
			until(`document.querySelector("#next").disabled`),
		)
		b.shot(t, "conversations-page-2")
		b.run(t,
			chromedp.Click(chromedp.ID("prev")),
			statusIs("Page 1, 5 conversations"),
			until(`document.querySelector("#conversations").innerText.includes("page test 5")`),
		)
	})

	t.Run("open a conversation", func(t *testing.T) {
		b.run(t,
			chromedp.Click(chromedp.ID("next")),
			until(rowsJS+` === 2`),
			// The oldest of the seven: the one with the e-mail address.
			chromedp.Click(chromedp.CSS(`#conversations tbody tr:last-child a`)),
			chromedp.WaitVisible(chromedp.ID("cli-line")),
			until(`document.querySelector(".chat") !== null`),
		)
		line, text := b.text(t, "#cli-line"), b.text(t, "main")
		require.Regexp(t, `^parley audit get \S+$`, line)
		id := strings.TrimPrefix(line, "parley audit get ")
		require.NotEmpty(t, traceIDs[id])
		require.Contains(t, text, "Trace id\n"+traceIDs[id], "the trace the request continued")
		require.Contains(t, text, "<EMAIL_ADDRESS>")
		require.Regexp(t, `EMAIL_ADDRESS\t[1-9]`, text, "PII findings by entity")
		require.NotContains(t, text, "alice@example.com")
		require.Contains(t, text, "echo-console", "the component's model")
		b.shot(t, "conversation")
		// Back returns to the table as it was filtered: the filters live in the page's URL.
		b.run(t,
			chromedp.NavigateBack(),
			chromedp.WaitVisible(chromedp.ID("conversations")),
			until(fmt.Sprintf(`document.querySelector("#f-words").value === %q && document.querySelector("#f-component").value === %q &&
				document.querySelector("#f-size").value === "5" && location.search.includes("q=")`, n, component)),
			statusIs("Page 1, 5 conversations"),
		)
	})

	t.Run("tool calls as a chat", func(t *testing.T) {
		id := postAs(token, "echo-nocache", `{"inputs":[{"messages":[
			{"ofSystem":{"content":[{"text":"You answer about weather"}]}},
			{"ofUser":{"content":[{"text":"weather in Paris?"}]}},
			{"ofAssistant":{"toolCalls":[{"id":"call_1","function":{"name":"lookup","arguments":"{\"city\":\"Paris\"}"}}]}},
			{"ofTool":{"toolId":"call_1","name":"lookup","content":[{"text":"{\"temp\":21}"}]}}]}],
			"tools":[{"function":{"name":"lookup","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]}`)
		auditRow(t, auditv1connect.NewAuditServiceClient(keyedClient(token), base), id)
		// A page address loaded directly: the router answers it with the page.
		b.run(t,
			chromedp.Navigate(base+"/console/conversations/"+id),
			chromedp.WaitVisible(chromedp.ID("cli-line")),
			until(`document.querySelectorAll(".chat .turn").length >= 4`),
		)
		roles := b.text(t, ".chat")
		for _, want := range []string{"SYSTEM", "USER", "ASSISTANT", "TOOL", "tool call", "tool result", "lookup", "call_1"} {
			require.Contains(t, roles, want)
		}
		// Tool arguments and results are pretty-printed JSON.
		require.Contains(t, roles, "{\n  \"city\": \"Paris\"\n}")
		require.Contains(t, roles, "{\n  \"temp\": 21\n}")
		b.shot(t, "conversation-tools")
	})

	t.Run("usage counts the requests", func(t *testing.T) {
		b.run(t,
			chromedp.Click(chromedp.CSS(`nav a[href="usage"]`)),
			chromedp.WaitVisible(chromedp.ID("u-component")),
			until(`[...document.querySelectorAll("#u-component option")].some(o => o.value === "console-e2e")`),
			choose("#u-component", component),
			until(fmt.Sprintf(`(() => { const c = document.querySelector('#usage-totals tr[data-group="console-e2e"] .requests');
				if (c && c.innerText === %q) return true; document.querySelector("#u-refresh").click(); return false; })()`, fmt.Sprint(sent))),
			until(`document.querySelectorAll(".chart canvas").length >= 5`),
		)
		b.shot(t, "usage")
		// By API key: the test's key, by its id, with the same count (the other tenant's key is
		// not the console's to see).
		b.run(t,
			choose("#u-by", "key"),
			until(fmt.Sprintf(`(() => { const rows = document.querySelectorAll("#usage-totals tbody tr");
				const c = document.querySelector('#usage-totals tr[data-group="console"] .requests');
				return rows.length === 1 && c && c.innerText === %q; })()`, fmt.Sprint(sent))),
		)
	})

	t.Run("components", func(t *testing.T) {
		b.run(t,
			chromedp.Click(chromedp.CSS(`nav a[href="components"]`)),
			chromedp.WaitVisible(chromedp.ID("components")),
			until(fmt.Sprintf(`document.querySelector('#components tr[data-name="console-e2e"] .requests').innerText === %q`, fmt.Sprint(sent))),
			// The test's own worker, announced on parley.workers.console-e2e.
			until(workersJS(component, 1)),
		)
		text := b.text(t, "#components")
		require.Contains(t, text, "console-e2e")
		require.Contains(t, text, "conversation.echo")
		require.Contains(t, text, "echo-console")
		b.shot(t, "components")
	})

	// The live worker count follows the workers: one more while a second worker runs, one
	// fewer as soon as it stops (its goodbye), in ComponentService and on the page.
	t.Run("live workers", func(t *testing.T) {
		workers := func() uint32 {
			c := componentv1connect.NewComponentServiceClient(http.DefaultClient, base)
			ctx, ci := connect.NewClientContext(t.Context())
			ci.RequestHeader().Set("dapr-api-token", token)
			res, err := c.ListComponents(ctx, &componentv1.ListComponentsRequest{})
			require.NoError(t, err)
			for _, comp := range res.GetComponents() {
				if comp.GetName() == component {
					require.LessOrEqual(t, comp.GetSlotsInUse(), comp.GetSlots())
					return comp.GetWorkers()
				}
			}
			t.Fatalf("ComponentService does not list %s", component)
			return 0
		}
		require.Equal(t, uint32(1), workers())
		const second = "worker-console-2"
		require.NoError(t, st.StartInstance(t.Context(), "provider-worker", second, map[string]string{
			"COMPONENTS_DIR": dir, "WORKER_COMPONENTS": component,
		}))
		stopped := false
		t.Cleanup(func() {
			if !stopped {
				ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 30*time.Second)
				defer cancel()
				require.NoError(t, st.StopService(ctx, second))
			}
		})
		require.Eventually(t, func() bool { return workers() == 2 }, 30*time.Second, 50*time.Millisecond, "the second worker is not counted")
		b.run(t, until(workersJS(component, 2)))
		b.shot(t, "components-two-workers")

		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		require.NoError(t, st.StopService(ctx, second))
		stopped = true
		require.Eventually(t, func() bool { return workers() == 1 }, 30*time.Second, 50*time.Millisecond, "the stopped worker is still counted")
		b.run(t, until(workersJS(component, 1)))
	})

	t.Run("phone width", func(t *testing.T) {
		b.run(t,
			chromedp.EmulateViewport(390, 844),
			chromedp.Click(chromedp.CSS(`nav a[href="conversations"]`)),
			chromedp.WaitVisible(chromedp.ID("conversations")),
			until(rowsJS+` > 0`),
		)
		b.shot(t, "conversations-phone")
	})

	t.Run("keyboard", func(t *testing.T) {
		b.run(t,
			chromedp.EmulateViewport(1280, 800),
			// A fresh load (the tab keeps the token): the first Tab reaches the skip link, and
			// Enter moves to the content and stays on the page.
			chromedp.Reload(),
			chromedp.WaitVisible(chromedp.ID("conversations")),
			chromedp.KeyEvent(kb.Tab),
			until(`document.activeElement.classList.contains("skip")`),
			chromedp.KeyEvent(kb.Enter),
			until(`document.activeElement.id === "main" && location.pathname === "/console/conversations"`),
			// Tab order then runs through the filters; a row's link opens with Enter.
			chromedp.Focus(chromedp.CSS(`#conversations tbody tr a`)),
			chromedp.KeyEvent(kb.Enter),
			chromedp.WaitVisible(chromedp.ID("cli-line")),
		)
	})

	b.mu.Lock()
	defer b.mu.Unlock()
	for _, u := range b.urls {
		require.True(t, strings.HasPrefix(u, base+"/") || strings.HasPrefix(u, "data:"), "the console requested %s, off the router", u)
	}
	for _, e := range b.errs {
		require.NotContains(t, e, "Content Security Policy", "the console broke its own CSP")
	}
}
