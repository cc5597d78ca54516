import { useEffect, useState } from "preact/hooks";
import { components, errorText } from "./api";
import type { Component } from "./gen/parley/component/v1/component_pb";
import { fmtDuration, ms } from "./format";

export function Components() {
  const [list, setList] = useState<Component[] | null>(null);
  const [error, setError] = useState("");
  useEffect(() => {
    components.listComponents({}).then((r) => setList(r.components)).catch((e) => setError(errorText(e)));
  }, []);
  return (
    <section aria-labelledby="comp-title">
      <h1 id="comp-title">Components</h1>
      {error && <p role="alert" class="error">{error}</p>}
      {list === null ? !error && <p class="status">Loading…</p> : (
        <div class="table-wrap">
          <table id="components">
            <thead><tr><th scope="col">Name</th><th scope="col">Type</th><th scope="col">Model</th>
              <th scope="col">Cache TTL</th><th scope="col">Fallbacks</th></tr></thead>
            <tbody>
              {list.map((c) => (
                <tr>
                  <th scope="row">{c.name}</th>
                  <td>{c.type}{c.version && <span class="muted"> {c.version}</span>}</td>
                  <td>{c.model || <span class="muted">provider default</span>}</td>
                  <td>{ms(c.cacheTtl) > 0 ? fmtDuration(c.cacheTtl) : <span class="muted">not cached</span>}</td>
                  <td>{c.fallbacks.join(" → ") || <span class="muted">none</span>}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
