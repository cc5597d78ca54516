import "./style.css";
import { render } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { audit, errorText, getToken, isRefusal, setToken, whenRefused } from "./api";
import { onLink, useLocation } from "./router";
import { Conversations } from "./conversations";
import { ConversationPage } from "./conversation";
import { Usage } from "./usage";
import { Components } from "./components";

function Login(props: { onDone: () => void; message: string }) {
  const [token, setTok] = useState("");
  const [error, setError] = useState(props.message);
  const [busy, setBusy] = useState(false);
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => input.current?.focus(), []);
  async function submit(e: Event) {
    e.preventDefault();
    setBusy(true);
    setError("");
    setToken(token);
    try {
      await audit.listConversations({ pageSize: 1 });
      props.onDone();
    } catch (err) {
      setToken(null);
      setError(isRefusal(err) ? "The router refused this token." : errorText(err));
    } finally {
      setBusy(false);
    }
  }
  return (
    <main id="main" class="login">
      <h1>Parley console</h1>
      <form onSubmit={submit} aria-describedby="login-help">
        <label for="token">API token</label>
        <input id="token" ref={input} type="password" autocomplete="current-password" value={token}
          onInput={(e) => setTok((e.target as HTMLInputElement).value)} />
        <p id="login-help" class="hint">
          The router's <code>DAPR_API_TOKEN</code> (or an API key). Leave empty if the router has none.
          It is kept for this tab only and sent as a header.
        </p>
        <button type="submit" disabled={busy}>Sign in</button>
        {error && <p role="alert" class="error" id="login-error">{error}</p>}
      </form>
    </main>
  );
}

// skip moves the focus to the page's content. A plain "#main" link would resolve against
// <base href="/console/"> and leave the page.
function skip(e: MouseEvent) {
  e.preventDefault();
  document.getElementById("main")?.focus();
}

const pages = [
  { href: "conversations", label: "Conversations" },
  { href: "usage", label: "Usage" },
  { href: "components", label: "Components" },
];

function App() {
  const loc = useLocation();
  const [signedIn, setSignedIn] = useState(getToken() !== null);
  const [message, setMessage] = useState("");
  useEffect(() => {
    whenRefused(() => {
      setToken(null);
      setMessage("The router refused the token: sign in again.");
      setSignedIn(false);
    });
  }, []);
  if (!signedIn) return <Login message={message} onDone={() => { setMessage(""); setSignedIn(true); }} />;
  const [, first, second] = loc.path.split("/");
  let page;
  if (first === "usage") page = <Usage />;
  else if (first === "components") page = <Components />;
  else if (first === "conversations" && second) page = <ConversationPage id={decodeURIComponent(second)} />;
  else page = <Conversations query={loc.query} />;
  const section = first || "conversations";
  return (
    <div onClick={onLink}>
      <a class="skip" href="#main" onClick={skip}>Skip to content</a>
      <header class="top">
        <span class="brand">Parley</span>
        <nav aria-label="Pages">
          {pages.map((p) => (
            <a href={p.href} aria-current={section === p.href ? "page" : undefined}>{p.label}</a>
          ))}
        </nav>
        <button class="link" type="button" onClick={() => { setToken(null); setSignedIn(false); }}>Sign out</button>
      </header>
      <main id="main" tabIndex={-1}>{page}</main>
    </div>
  );
}

render(<App />, document.getElementById("app")!);
