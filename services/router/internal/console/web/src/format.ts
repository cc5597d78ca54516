import type { Duration, Timestamp } from "@bufbuild/protobuf/wkt";
import { timestampDate } from "@bufbuild/protobuf/wkt";

export function ms(d: Duration | undefined): number {
  if (!d) return 0;
  return Number(d.seconds) * 1000 + d.nanos / 1e6;
}

export function fmtMs(v: number): string {
  if (v >= 10000) return (v / 1000).toFixed(1) + " s";
  if (v >= 100) return Math.round(v) + " ms";
  return v.toFixed(1) + " ms";
}

export function fmtDuration(d: Duration | undefined): string {
  return d ? fmtMs(ms(d)) : "—";
}

export function date(t: Timestamp | undefined): Date | null {
  return t ? timestampDate(t) : null;
}

const pad = (n: number) => String(n).padStart(2, "0");

// Local time, to the second: what an operator compares with a clock.
export function fmtTime(t: Timestamp | undefined): string {
  const d = date(t);
  if (!d) return "—";
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function fmtInt(v: bigint | number): string {
  return Number(v).toLocaleString("en-US");
}

// enumName turns STATUS_OK into "ok", ROLE_USER into "user".
export function enumName(name: string | undefined, prefix: string): string {
  if (!name) return "";
  return name.startsWith(prefix) ? name.slice(prefix.length).toLowerCase() : name.toLowerCase();
}
