import { useEffect, useState } from "preact/hooks";
import { audit, errorText } from "./api";
import type { Conversation } from "./gen/parley/audit/v1/audit_pb";
import { Api, Status } from "./gen/parley/audit/v1/event_pb";
import { fmtDuration, fmtInt, fmtMs, fmtTime, ms } from "./format";
import { json, pretty, requestTurns, responseTurns, type Turn } from "./chat";

function Turns(props: { turns: Turn[] }) {
  return (
    <ol class="chat">
      {props.turns.map((t) => (
        <li class={"turn " + t.role}>
          <span class="role">{t.role}</span>
          {t.texts.map((s) => <p class="text">{s}</p>)}
          {t.toolCalls.map((c) => (
            <div class="tool">
              <span class="tag">tool call</span> <code>{c.name}</code>{c.id && <span class="muted"> · {c.id}</span>}
              <pre>{pretty(c.arguments)}</pre>
            </div>
          ))}
          {t.toolResults.map((r) => (
            <div class="tool">
              <span class="tag">tool result</span> <code>{r.name}</code>{r.id && <span class="muted"> · {r.id}</span>}
              <pre>{pretty(r.content)}</pre>
            </div>
          ))}
        </li>
      ))}
    </ol>
  );
}

function Copy(props: { text: string }) {
  const [done, setDone] = useState("");
  async function copy() {
    try {
      await navigator.clipboard.writeText(props.text);
      setDone("Copied");
    } catch {
      setDone("Select the line to copy it");
    }
  }
  return (
    <p class="copy">
      <code id="cli-line">{props.text}</code>{" "}
      <button type="button" onClick={copy}>Copy</button> <span aria-live="polite">{done}</span>
    </p>
  );
}

const apiNames: Record<number, string> = { [Api.ALPHA1]: "Dapr alpha1", [Api.ALPHA2]: "Dapr alpha2", [Api.NATIVE]: "native" };

function Details(props: { c: Conversation }) {
  const c = props.c;
  const total = ms(c.latency);
  const provider = ms(c.providerLatency);
  const u = c.usage;
  const rows: [string, string][] = [
    ["Time", fmtTime(c.createdAt)],
    ["Component", c.component],
    ["Provider", c.provider],
    ["Model", c.model],
    ["API", apiNames[c.api] ?? ""],
    ["Context id", c.contextId],
    ["Status", c.status === Status.ERROR ? "error" : "ok"],
    ["Error", [c.errorCode, c.errorMessage].filter(Boolean).join(": ")],
    ["Finish reason", c.finishReason],
    ["Cache", c.cacheHit ? "hit" : "miss"],
    ["Tokens", u ? `${fmtInt(u.promptTokens)} prompt + ${fmtInt(u.completionTokens)} completion = ${fmtInt(u.totalTokens)}` +
      (u.cachedTokens ? `, ${fmtInt(u.cachedTokens)} cached` : "") + (u.reasoningTokens ? `, ${fmtInt(u.reasoningTokens)} reasoning` : "") : ""],
    ["Latency", `${fmtDuration(c.latency)} total: ${fmtMs(Math.max(0, total - provider))} gateway, ${fmtDuration(c.providerLatency)} provider`],
    ["First token", c.timeToFirstToken ? `${fmtDuration(c.timeToFirstToken)} (streamed)` : ""],
    ["Attempts", c.attempts ? String(c.attempts) : ""],
    ["Fallbacks", c.fallbacks.join(" → ")],
    ["Worker", c.workerId],
    ["Tenant", c.tenant],
    ["API key", c.keyId],
    ["Trace id", c.traceId],
  ];
  return (
    <dl class="facts">
      {rows.filter(([, v]) => v).map(([k, v]) => [<dt>{k}</dt>, <dd>{v}</dd>])}
    </dl>
  );
}

export function ConversationPage(props: { id: string }) {
  const [c, setC] = useState<Conversation | null>(null);
  const [error, setError] = useState("");
  useEffect(() => {
    audit.getConversation({ requestId: props.id })
      .then((r) => setC(r.conversation ?? null))
      .catch((e) => setError(errorText(e)));
  }, [props.id]);
  if (error) return <section><h1>Conversation</h1><p role="alert" class="error">{error}</p><a href="conversations">← Conversations</a></section>;
  if (!c) return <section><h1>Conversation</h1><p class="status">Loading…</p></section>;
  const req = json(c.request);
  const res = json(c.response);
  const findings = Object.entries(c.piiFindings).sort((a, b) => a[0].localeCompare(b[0]));
  return (
    <section aria-labelledby="one-title">
      <p><a href="conversations">← Conversations</a></p>
      <h1 id="one-title">Conversation <code class="id">{c.requestId}</code></h1>
      <Copy text={`parley audit get ${c.requestId}`} />
      <div class="split">
        <div>
          <h2>Request</h2>
          <Turns turns={requestTurns(req)} />
          <h2>Answer</h2>
          {res === null ? <p class="muted">No answer was recorded{c.status === Status.ERROR ? " (the call failed)" : ""}.</p> : <Turns turns={responseTurns(res)} />}
          <details>
            <summary>Scrubbed request and answer as JSON</summary>
            <pre id="raw-json">{JSON.stringify({ request: req, response: res }, null, 2)}</pre>
          </details>
        </div>
        <aside aria-label="Details">
          <h2>Details</h2>
          <Details c={c} />
          <h2>PII found</h2>
          {findings.length === 0 ? <p class="muted">None.</p> : (
            <table class="small" id="pii"><thead><tr><th scope="col">Entity</th><th scope="col" class="num">Count</th></tr></thead>
              <tbody>{findings.map(([k, v]) => <tr><td>{k}</td><td class="num">{fmtInt(v)}</td></tr>)}</tbody>
            </table>
          )}
        </aside>
      </div>
    </section>
  );
}
