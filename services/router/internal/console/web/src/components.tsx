import { useEffect, useState } from "preact/hooks";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { audit, components, errorText } from "./api";
import type { Component } from "./gen/parley/component/v1/component_pb";
import { UsageBucket, UsageDimension } from "./gen/parley/audit/v1/audit_pb";
import { fmtDuration, fmtInt, ms } from "./format";

type Recent = { requests: bigint; errors: bigint };

// refreshMs is how often the live worker counts are asked for again: the workers announce
// themselves every 2 s (WORKER_PRESENCE_INTERVAL).
const refreshMs = 2000;

// recentUsage sums the last 24 hours of usage by component, from the hourly statistics.
async function recentUsage(): Promise<Map<string, Recent>> {
  const hour = 3600e3;
  const end = Math.floor(Date.now() / hour) * hour + hour;
  const res = await audit.getUsageStats({
    bucket: UsageBucket.HOUR, groupBy: [UsageDimension.COMPONENT],
    startTime: timestampFromDate(new Date(end - 24 * hour)), endTime: timestampFromDate(new Date(end)),
  });
  const out = new Map<string, Recent>();
  for (const s of res.stats) {
    const r = out.get(s.component) ?? { requests: 0n, errors: 0n };
    r.requests += s.requests;
    r.errors += s.errors;
    out.set(s.component, r);
  }
  return out;
}

export function Components() {
  const [list, setList] = useState<Component[] | null>(null);
  const [recent, setRecent] = useState<Map<string, Recent> | null>(null);
  const [error, setError] = useState("");
  useEffect(() => {
    // The list with its live workers, again every refreshMs while the page is open.
    const load = () => components.listComponents({})
      .then((r) => { setList(r.components); setError(""); })
      .catch((e) => setError(errorText(e)));
    load();
    const timer = setInterval(load, refreshMs);
    // The usage columns are a help, not the page: without them the list still shows.
    recentUsage().then(setRecent).catch(() => setRecent(new Map()));
    return () => clearInterval(timer);
  }, []);
  return (
    <section aria-labelledby="comp-title">
      <h1 id="comp-title">Components</h1>
      {error && <p role="alert" class="error">{error}</p>}
      {list === null ? !error && <p class="status">Loading…</p> : (
        <div class="table-wrap">
          <table id="components">
            <thead><tr><th scope="col">Name</th><th scope="col">Type</th><th scope="col">Model</th>
              <th scope="col">Cache TTL</th><th scope="col">Fallbacks</th>
              <th scope="col" class="num">Workers, live</th><th scope="col" class="num">Slots in use</th>
              <th scope="col" class="num">Requests, 24 h</th><th scope="col" class="num">Errors, 24 h</th></tr></thead>
            <tbody>
              {list.map((c) => {
                const r = recent?.get(c.name);
                return (
                  <tr data-name={c.name}>
                    <th scope="row">{c.name}</th>
                    <td>{c.type}{c.version && <span class="muted"> {c.version}</span>}</td>
                    <td>{c.model || <span class="muted">provider default</span>}</td>
                    <td>{ms(c.cacheTtl) > 0 ? fmtDuration(c.cacheTtl) : <span class="muted">not cached</span>}</td>
                    <td>{c.fallbacks.join(" → ") || <span class="muted">none</span>}</td>
                    <td class={"num workers" + (c.workers === 0 ? " bad" : "")}>{fmtInt(c.workers)}</td>
                    <td class="num slots">{c.workers === 0 ? <span class="muted">none</span> : `${fmtInt(c.slotsInUse)} / ${fmtInt(c.slots)}`}</td>
                    <td class="num requests">{recent ? fmtInt(r?.requests ?? 0n) : "…"}</td>
                    <td class={"num" + (r && r.errors > 0n ? " bad" : "")}>{recent ? fmtInt(r?.errors ?? 0n) : "…"}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
