// A tiny history router for the pages under /console/.
import { useEffect, useState } from "preact/hooks";

export const base = "/console/";

export type Location = { path: string; query: URLSearchParams };

function current(): Location {
  const rel = location.pathname.startsWith(base) ? location.pathname.slice(base.length) : "";
  return { path: "/" + rel.replace(/\/+$/, ""), query: new URLSearchParams(location.search) };
}

const listeners = new Set<() => void>();

export function navigate(to: string, replace = false): void {
  const url = base + to.replace(/^\//, "");
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  listeners.forEach((l) => l());
}

export function useLocation(): Location {
  const [loc, setLoc] = useState(current);
  useEffect(() => {
    const update = () => setLoc(current());
    listeners.add(update);
    addEventListener("popstate", update);
    return () => {
      listeners.delete(update);
      removeEventListener("popstate", update);
    };
  }, []);
  return loc;
}

// onLink makes an <a href> under /console/ navigate in place; modified clicks (new tab)
// keep the browser's behaviour.
export function onLink(e: MouseEvent): void {
  const a = (e.target as Element).closest("a");
  if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
  const url = new URL(a.href);
  if (url.origin !== location.origin || !url.pathname.startsWith(base) || a.target) return;
  e.preventDefault();
  navigate(url.pathname.slice(base.length) + url.search);
}
