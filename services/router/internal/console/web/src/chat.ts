// Reads the scrubbed request and answer the audit log keeps (the provider request and
// response as protobuf JSON) into chat turns. Everything stays text: the page renders it
// with text nodes only.
import { toJson, type JsonValue } from "@bufbuild/protobuf";
import { ValueSchema, type Value } from "@bufbuild/protobuf/wkt";

export type Turn = {
  role: string;
  texts: string[];
  toolCalls: { id: string; name: string; arguments: string }[];
  toolResults: { id: string; name: string; content: string }[];
};

export function json(v: Value | undefined): JsonValue {
  return v ? toJson(ValueSchema, v) : null;
}

type Obj = { [k: string]: JsonValue };
const obj = (v: JsonValue | undefined): Obj => (v && typeof v === "object" && !Array.isArray(v) ? v : {});
const arr = (v: JsonValue | undefined): JsonValue[] => (Array.isArray(v) ? v : []);
const str = (v: JsonValue | undefined): string => (typeof v === "string" ? v : v == null ? "" : JSON.stringify(v));

function role(r: JsonValue | undefined): string {
  const s = str(r);
  return s.startsWith("ROLE_") ? s.slice(5).toLowerCase() : s.toLowerCase() || "user";
}

function toolCalls(v: JsonValue | undefined) {
  return arr(v).map((x) => {
    const o = obj(x);
    return { id: str(o.id), name: str(o.name), arguments: str(o.arguments) };
  });
}

export function requestTurns(request: JsonValue): Turn[] {
  return arr(obj(request).messages).map((m) => {
    const o = obj(m);
    const t: Turn = { role: role(o.role), texts: [], toolCalls: [], toolResults: [] };
    for (const p of arr(o.parts)) {
      const part = obj(p);
      if ("text" in part) t.texts.push(str(part.text));
      if ("toolCall" in part) t.toolCalls.push(...toolCalls([part.toolCall]));
      if ("toolResult" in part) {
        const r = obj(part.toolResult);
        t.toolResults.push({ id: str(r.toolCallId), name: str(r.name), content: str(r.content) });
      }
    }
    return t;
  });
}

export function responseTurns(response: JsonValue): Turn[] {
  return arr(obj(response).choices).map((c) => {
    const o = obj(c);
    const content = str(o.content);
    return { role: "assistant", texts: content ? [content] : [], toolCalls: toolCalls(o.toolCalls), toolResults: [] };
  });
}

// preview is the first text of the request's last user turn, for the table.
export function preview(request: Value | undefined): string {
  const turns = requestTurns(json(request));
  for (let i = turns.length - 1; i >= 0; i--) {
    if (turns[i].role === "user" && turns[i].texts.length) return turns[i].texts.join(" ");
  }
  return turns.find((t) => t.texts.length)?.texts.join(" ") ?? "";
}

// pretty prints a string holding JSON (tool arguments and results) indented, and leaves any
// other text as it is.
export function pretty(s: string): string {
  const t = s.trim();
  if (!(t.startsWith("{") || t.startsWith("["))) return s;
  try {
    return JSON.stringify(JSON.parse(t), null, 2);
  } catch {
    return s;
  }
}
