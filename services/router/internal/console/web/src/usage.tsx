import { useEffect, useRef, useState } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { audit, components, errorText } from "./api";
import { UsageBucket, UsageDimension, type UsageStats } from "./gen/parley/audit/v1/audit_pb";
import { date, fmtInt, ms } from "./format";

const palette = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4d7c0f", "#be185d"];

type Series = { label: string; values: (number | null)[] };

function Chart(props: { title: string; x: number[]; series: Series[]; unit?: string }) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const width = () => Math.max(260, el.clientWidth);
    const plot = new uPlot({
      width: width(), height: 200,
      scales: { x: { time: true } },
      series: [{}, ...props.series.map((s, i) => ({
        label: s.label, stroke: palette[i % palette.length], width: 2, spanGaps: false,
        points: { show: props.x.length <= 48 },
        value: (_: uPlot, v: number | null) => (v == null ? "—" : v.toLocaleString("en-US", { maximumFractionDigits: 2 }) + (props.unit ?? "")),
      }))],
      axes: [{}, { size: 60, values: (_: uPlot, ticks: number[]) => ticks.map((t) => t.toLocaleString("en-US") + (props.unit ?? "")) }],
      legend: { live: true },
    }, [props.x, ...props.series.map((s) => s.values)] as uPlot.AlignedData, el);
    const resize = () => plot.setSize({ width: width(), height: 200 });
    addEventListener("resize", resize);
    return () => {
      removeEventListener("resize", resize);
      plot.destroy();
    };
  }, [props.x, props.series]);
  return (
    <figure class="chart">
      <figcaption>{props.title}</figcaption>
      <div ref={box} role="img" aria-label={props.title + " chart"} />
    </figure>
  );
}

type Group = { key: string; rows: Map<number, UsageStats>; total: { requests: bigint; errors: bigint; hits: bigint; tokens: bigint } };

function groupKey(s: UsageStats, by: string): string {
  if (by === "component") return s.component || "(none)";
  if (by === "model") return s.model || "(none)";
  if (by === "key") return s.keyId || "(no key)";
  return "all";
}

export function Usage() {
  const [bucket, setBucket] = useState("hour");
  const [range, setRange] = useState("24");
  const [by, setBy] = useState("component");
  const [component, setComponent] = useState("");
  const [names, setNames] = useState<string[]>([]);
  const [stats, setStats] = useState<UsageStats[] | null>(null);
  const [error, setError] = useState("");
  const [tick, setTick] = useState(0);

  useEffect(() => {
    components.listComponents({}).then((r) => setNames(r.components.map((c) => c.name))).catch(() => {});
  }, []);

  const hour = bucket === "hour";
  const step = hour ? 3600e3 : 86400e3;
  // Buckets start on UTC hours or days: the range ends with the current one.
  const [span, setSpan] = useState({ start: 0, end: 0 });
  useEffect(() => {
    const end = new Date(Math.floor(Date.now() / step) * step + step);
    const start = new Date(end.getTime() - Number(range) * 3600e3);
    setSpan({ start: start.getTime(), end: end.getTime() });
    const dims: Record<string, UsageDimension> = { component: UsageDimension.COMPONENT, model: UsageDimension.MODEL, key: UsageDimension.KEY };
    const groupBy = dims[by] !== undefined ? [dims[by]] : [];
    audit.getUsageStats({
      bucket: hour ? UsageBucket.HOUR : UsageBucket.DAY, startTime: timestampFromDate(start), endTime: timestampFromDate(end),
      groupBy, component,
    }).then((r) => { setStats(r.stats); setError(""); }).catch((e) => setError(errorText(e)));
  }, [bucket, range, by, component, tick]);

  const groups = new Map<string, Group>();
  const xs = new Set<number>();
  for (const s of stats ?? []) {
    const x = (date(s.bucketStart)?.getTime() ?? 0) / 1000;
    xs.add(x);
    const k = groupKey(s, by);
    let g = groups.get(k);
    if (!g) groups.set(k, (g = { key: k, rows: new Map(), total: { requests: 0n, errors: 0n, hits: 0n, tokens: 0n } }));
    g.rows.set(x, s);
    g.total.requests += s.requests;
    g.total.errors += s.errors;
    g.total.hits += s.cacheHits;
    g.total.tokens += s.usage?.totalTokens ?? 0n;
  }
  // Every bucket of the range, so that quiet hours show as zero rather than as a gap.
  for (let t = span.start; t < span.end; t += step) xs.add(t / 1000);
  const x = [...xs].sort((a, b) => a - b);
  const gs = [...groups.values()].sort((a, b) => a.key.localeCompare(b.key));
  // Counts are zero in a bucket without requests; rates and latencies have no value there.
  const series = (f: (s: UsageStats) => number, suffix = "", zero: number | null = null) =>
    gs.map((g) => ({ label: g.key + suffix, values: x.map((t) => { const s = g.rows.get(t); return s ? f(s) : zero; }) }));
  const ranges = bucket === "hour" ? [["24", "Last 24 hours"], ["72", "Last 3 days"], ["168", "Last 7 days"]] : [["168", "Last 7 days"], ["720", "Last 30 days"], ["2160", "Last 90 days"]];

  return (
    <section aria-labelledby="usage-title">
      <h1 id="usage-title">Usage</h1>
      <form class="filters" onSubmit={(e) => { e.preventDefault(); setTick(tick + 1); }} aria-label="Usage options">
        <label>Bucket<select id="u-bucket" value={bucket} onChange={(e) => { const v = (e.target as HTMLSelectElement).value; setBucket(v); setRange(v === "hour" ? "24" : "168"); }}>
          <option value="hour">Hour</option><option value="day">Day</option>
        </select></label>
        <label>Range<select id="u-range" value={range} onChange={(e) => setRange((e.target as HTMLSelectElement).value)}>
          {ranges.map(([v, l]) => <option value={v}>{l}</option>)}
        </select></label>
        <label>Group by<select id="u-by" value={by} onChange={(e) => setBy((e.target as HTMLSelectElement).value)}>
          <option value="">Nothing</option><option value="component">Component</option><option value="model">Model</option><option value="key">API key</option>
        </select></label>
        <label>Component<select id="u-component" value={component} onChange={(e) => setComponent((e.target as HTMLSelectElement).value)}>
          <option value="">Any</option>{names.map((n) => <option value={n}>{n}</option>)}
        </select></label>
        <button type="submit" id="u-refresh">Refresh</button>
      </form>
      {error && <p role="alert" class="error">{error}</p>}
      {stats === null ? <p class="status">Loading…</p> : (
        <>
          <div class="table-wrap">
            <table id="usage-totals" class="small">
              <thead><tr><th scope="col">{({ component: "Component", model: "Model", key: "API key" } as Record<string, string>)[by] ?? "All"}</th><th scope="col" class="num">Requests</th>
                <th scope="col" class="num">Errors</th><th scope="col" class="num">Cache hit rate</th><th scope="col" class="num">Tokens</th></tr></thead>
              <tbody>
                {gs.map((g) => (
                  <tr data-group={g.key}>
                    <th scope="row">{g.key}</th>
                    <td class="num requests">{fmtInt(g.total.requests)}</td>
                    <td class="num">{fmtInt(g.total.errors)}</td>
                    <td class="num">{g.total.requests ? ((Number(g.total.hits) / Number(g.total.requests)) * 100).toFixed(1) + "%" : "—"}</td>
                    <td class="num">{fmtInt(g.total.tokens)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
            {gs.length === 0 && <p class="empty">No conversation in this range.</p>}
          </div>
          {gs.length > 0 && (
            <div class="charts">
              <Chart title="Requests" x={x} series={series((s) => Number(s.requests), "", 0)} />
              <Chart title="Tokens" x={x} series={series((s) => Number(s.usage?.totalTokens ?? 0n), "", 0)} />
              <Chart title="Errors" x={x} series={series((s) => Number(s.errors), "", 0)} />
              <Chart title="Cache hit rate" unit="%" x={x} series={series((s) => s.cacheHitRate * 100)} />
              <Chart title="Latency p50 and p99" unit=" ms" x={x} series={[...series((s) => ms(s.latencyP50), " p50"), ...series((s) => ms(s.latencyP99), " p99")]} />
            </div>
          )}
        </>
      )}
    </section>
  );
}
