import { useEffect, useRef, useState } from "preact/hooks";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { audit, components, errorText } from "./api";
import type { Conversation, ListConversationsRequestSchema } from "./gen/parley/audit/v1/audit_pb";
import { Status } from "./gen/parley/audit/v1/event_pb";
import { fmtDuration, fmtInt, fmtTime } from "./format";
import { preview } from "./chat";
import { navigate } from "./router";

type Filters = {
  range: string; // minutes back, "" for all time
  component: string;
  model: string;
  status: string; // "", "ok", "error"
  errorCode: string;
  cache: string; // "", "hit", "miss"
  contextId: string;
  minLatencyMs: string;
  words: string;
  pageSize: number;
};

const initial: Filters = {
  range: "", component: "", model: "", status: "", errorCode: "", cache: "", contextId: "",
  minLatencyMs: "", words: "", pageSize: 25,
};

const ranges: [string, string][] = [["", "All time"], ["15", "Last 15 minutes"], ["60", "Last hour"], ["1440", "Last 24 hours"], ["10080", "Last 7 days"], ["43200", "Last 30 days"]];

// Filters live in the page's query string, so that a filtered view can be linked to and the
// browser's Back returns to it.
const keys: [keyof Filters, string][] = [
  ["range", "range"], ["component", "component"], ["model", "model"], ["status", "status"], ["errorCode", "error"],
  ["cache", "cache"], ["contextId", "context"], ["minLatencyMs", "latency"], ["words", "q"], ["pageSize", "size"],
];

function fromQuery(q: URLSearchParams): Filters {
  const f: Filters = { ...initial };
  for (const [k, name] of keys) {
    const v = q.get(name);
    if (v === null) continue;
    if (k === "pageSize") {
      const n = Number(v);
      if ([5, 25, 50, 100].includes(n)) f.pageSize = n;
    } else {
      (f as Record<string, string | number>)[k] = v;
    }
  }
  return f;
}

function toQuery(f: Filters): string {
  const q = new URLSearchParams();
  for (const [k, name] of keys) {
    if (f[k] !== initial[k]) q.set(name, String(f[k]));
  }
  const s = q.toString();
  return s ? "?" + s : "";
}

// The live tail polls this often for rows newer than the newest shown.
const tailEvery = 2000;

type Req = MessageInitShape<typeof ListConversationsRequestSchema>;

function request(f: Filters, pageToken: string): Req {
  const r: Req = {
    component: f.component.trim(), model: f.model.trim(), errorCode: f.errorCode.trim(), contextId: f.contextId.trim(),
    textQuery: f.words.trim(), pageSize: f.pageSize, pageToken,
  };
  if (f.range) r.startTime = timestampFromDate(new Date(Date.now() - Number(f.range) * 60000));
  if (f.status === "ok") r.status = Status.OK;
  if (f.status === "error") r.status = Status.ERROR;
  if (f.cache) r.cacheHit = f.cache === "hit";
  const lat = Number(f.minLatencyMs);
  if (f.minLatencyMs.trim() && lat > 0) {
    const whole = Math.floor(lat / 1000);
    r.minLatency = { seconds: BigInt(whole), nanos: Math.round((lat - whole * 1000) * 1e6) };
  }
  return r;
}

export function Conversations(props: { query: URLSearchParams }) {
  const [filters, setFilters] = useState(() => fromQuery(props.query));
  const [tokens, setTokens] = useState<string[]>([""]); // page tokens of the pages seen
  const [rows, setRows] = useState<Conversation[]>([]);
  const [next, setNext] = useState("");
  const [error, setError] = useState("");
  const [loading, setLoading] = useState(true);
  const [live, setLive] = useState(true);
  const [names, setNames] = useState<string[]>([]);
  const [fresh, setFresh] = useState<Set<string>>(new Set());
  const seq = useRef(0);

  useEffect(() => {
    components.listComponents({}).then((r) => setNames(r.components.map((c) => c.name))).catch(() => {});
  }, []);

  async function load(f: Filters, pageTokens: string[], mark?: Set<string>) {
    const n = ++seq.current;
    setLoading(true);
    try {
      const res = await audit.listConversations(request(f, pageTokens[pageTokens.length - 1]));
      if (n !== seq.current) return;
      setRows(res.conversations);
      setNext(res.nextPageToken);
      setTokens(pageTokens);
      setFresh(mark ?? new Set());
      setError("");
    } catch (e) {
      if (n === seq.current) setError(errorText(e));
    } finally {
      if (n === seq.current) setLoading(false);
    }
  }

  // Filters apply as they are typed, a moment after the last key.
  useEffect(() => {
    const t = setTimeout(() => {
      const q = toQuery(filters);
      if (q !== location.search) navigate("conversations" + q, true);
      load(filters, [""]);
    }, 300);
    return () => clearTimeout(t);
  }, [JSON.stringify(filters)]);

  // The live tail: on the first page, ask for rows at or after the newest shown; when there
  // are any, reload the page so that paging stays consistent.
  useEffect(() => {
    if (!live || tokens.length !== 1 || error) return;
    const t = setInterval(async () => {
      const newest = rows[0]?.createdAt;
      const r = request(filters, "");
      if (newest) r.startTime = newest;
      const n = seq.current;
      try {
        const res = await audit.listConversations(r);
        if (n !== seq.current) return;
        const shown = new Set(rows.map((c) => c.requestId));
        const added = res.conversations.filter((c) => !shown.has(c.requestId)).map((c) => c.requestId);
        if (added.length) await load(filters, [""], new Set(added));
      } catch {
        // The next tick tries again; the error shows on the next full load.
      }
    }, tailEvery);
    return () => clearInterval(t);
  }, [live, tokens.length, rows, error, JSON.stringify(filters)]);

  const set = (k: keyof Filters) => (e: Event) => {
    const v = (e.target as HTMLInputElement).value;
    setFilters({ ...filters, [k]: k === "pageSize" ? Number(v) : v });
  };
  const page = tokens.length;

  return (
    <section aria-labelledby="conv-title">
      <h1 id="conv-title">Conversations</h1>
      <form class="filters" onSubmit={(e) => { e.preventDefault(); load(filters, [""]); }} aria-label="Filters">
        <label>Time<select id="f-range" value={filters.range} onChange={set("range")}>
          {ranges.map(([v, l]) => <option value={v}>{l}</option>)}
        </select></label>
        <label>Component<select id="f-component" value={filters.component} onChange={set("component")}>
          <option value="">Any</option>
          {(filters.component && !names.includes(filters.component) ? [...names, filters.component] : names).map((n) => <option value={n}>{n}</option>)}
        </select></label>
        <label>Model<input id="f-model" value={filters.model} onInput={set("model")} /></label>
        <label>Status<select id="f-status" value={filters.status} onChange={set("status")}>
          <option value="">Any</option><option value="ok">ok</option><option value="error">error</option>
        </select></label>
        <label>Error code<input id="f-error" value={filters.errorCode} onInput={set("errorCode")} /></label>
        <label>Cache<select id="f-cache" value={filters.cache} onChange={set("cache")}>
          <option value="">Any</option><option value="hit">hit</option><option value="miss">miss</option>
        </select></label>
        <label>Context id<input id="f-context" value={filters.contextId} onInput={set("contextId")} /></label>
        <label>Min latency (ms)<input id="f-latency" type="number" min="0" inputMode="numeric" value={filters.minLatencyMs} onInput={set("minLatencyMs")} /></label>
        <label class="wide">Words<input id="f-words" type="search" placeholder="all of these words" value={filters.words} onInput={set("words")} /></label>
        <label>Per page<select id="f-size" value={String(filters.pageSize)} onChange={set("pageSize")}>
          {[5, 25, 50, 100].map((n) => <option value={String(n)}>{n}</option>)}
        </select></label>
        <label class="check"><input id="f-live" type="checkbox" checked={live} onChange={(e) => setLive((e.target as HTMLInputElement).checked)} />Live tail</label>
        <button type="submit">Refresh</button>
      </form>
      {error && <p role="alert" class="error">{error}</p>}
      <p class="status" aria-live="polite">
        {loading ? "Loading…" : `Page ${page}, ${rows.length} conversation${rows.length === 1 ? "" : "s"}`}
        {live && page === 1 && !error && !loading ? " · live" : ""}
      </p>
      <div class="table-wrap">
        <table id="conversations">
          <thead><tr>
            <th scope="col">Time</th><th scope="col">Component</th><th scope="col" class="opt">Model</th>
            <th scope="col">Status</th><th scope="col" class="opt num">Tokens</th><th scope="col" class="num">Latency</th>
            <th scope="col" class="opt">Cache</th><th scope="col">Request</th>
          </tr></thead>
          <tbody>
            {rows.map((c) => (
              <tr key={c.requestId} class={fresh.has(c.requestId) ? "fresh" : undefined} data-id={c.requestId}>
                <td class="nowrap"><span class="day">{fmtTime(c.createdAt).slice(0, 11)}</span>{fmtTime(c.createdAt).slice(11)}</td>
                <td>{c.component}</td>
                <td class="opt">{c.model}</td>
                <td>{c.status === Status.ERROR ? <span class="bad">{c.errorCode || "error"}</span> : "ok"}</td>
                <td class="opt num">{fmtInt(c.usage?.totalTokens ?? 0n)}</td>
                <td class="num nowrap">{fmtDuration(c.latency)}</td>
                <td class="opt">{c.cacheHit ? "hit" : ""}</td>
                <td class="preview"><a href={"conversations/" + encodeURIComponent(c.requestId)}>{preview(c.request) || c.requestId}</a></td>
              </tr>
            ))}
          </tbody>
        </table>
        {!loading && rows.length === 0 && !error && <p class="empty">No conversation matches.</p>}
      </div>
      <nav class="pager" aria-label="Pages of conversations">
        <button id="prev" type="button" disabled={page === 1 || loading} onClick={() => load(filters, tokens.slice(0, -1))}>← Newer</button>
        <button id="next" type="button" disabled={!next || loading} onClick={() => load(filters, [...tokens, next])}>Older →</button>
      </nav>
    </section>
  );
}
