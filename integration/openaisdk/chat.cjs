// Runs the official openai npm package against Parley's OpenAI-compatible API the way an
// application does: a plain chat, a tool round trip, JSON-schema output, a stream with
// usage, an unknown model and a rate-limited model. Each step prints one JSON line for the Go test (integration,
// TestOpenAISDK) to check.
//
// Environment: PARLEY_BASE_URL (the router's URL with /v1), PARLEY_API_KEY, PARLEY_MODEL,
// PARLEY_LIMITED_MODEL.
"use strict";

const OpenAI = require("openai");

const client = new OpenAI({ baseURL: process.env.PARLEY_BASE_URL, apiKey: process.env.PARLEY_API_KEY, maxRetries: 0 });
const model = process.env.PARLEY_MODEL;

function report(step, fields) {
  process.stdout.write(JSON.stringify({ step, ...fields }) + "\n");
}

async function failure(step, call) {
  try {
    await call();
    report(step, { status: 200 });
  } catch (err) {
    report(step, {
      status: err.status,
      type: err.type,
      code: err.code,
      param: err.param,
      retryAfter: err.headers ? err.headers.get("retry-after") : null,
    });
  }
}

async function main() {
  const plain = await client.chat.completions.create({
    model,
    messages: [
      { role: "developer", content: "answer briefly" },
      { role: "user", content: [{ type: "text", text: "say something" }] },
    ],
    max_tokens: 50,
  });
  report("plain", { id: plain.id, content: plain.choices[0].message.content, finish: plain.choices[0].finish_reason, usage: plain.usage });

  const tools = [{ type: "function", function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } } }];
  const messages = [{ role: "user", content: "weather in Oslo?" }];
  const first = await client.chat.completions.create({ model, messages, tools, tool_choice: "required" });
  const call = first.choices[0].message.tool_calls[0];
  report("tool-call", { finish: first.choices[0].finish_reason, name: call.function.name, hasId: call.id !== "" });
  messages.push(first.choices[0].message, { role: "tool", tool_call_id: call.id, content: '{"temp_c":3}' });
  const second = await client.chat.completions.create({ model, messages, tools });
  report("tool-answer", { finish: second.choices[0].finish_reason, content: second.choices[0].message.content });

  const structured = await client.chat.completions.create({
    model,
    messages: [{ role: "user", content: "answer in JSON" }],
    response_format: {
      type: "json_schema",
      json_schema: {
        name: "reply",
        strict: true,
        schema: { type: "object", properties: { answer: { type: "string" } }, required: ["answer"], additionalProperties: false },
      },
    },
  });
  report("json-schema", { parsed: JSON.parse(structured.choices[0].message.content) });

  const stream = await client.chat.completions.create({
    model,
    messages: [{ role: "user", content: "stream please" }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let content = "";
  let finish = null;
  let usage = null;
  let chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      if (c.delta.content) content += c.delta.content;
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  report("stream", { content, finish, completionTokens: usage ? usage.completion_tokens : null, manyChunks: chunks > 3 });

  await failure("unknown-model", () => client.chat.completions.create({ model: "no-such-model", messages: [{ role: "user", content: "hi" }] }));
  await failure("rate-limited", () =>
    client.chat.completions.create({ model: process.env.PARLEY_LIMITED_MODEL, messages: [{ role: "user", content: "hi" }] }),
  );
}

main().catch((err) => {
  process.stderr.write(String(err && err.stack ? err.stack : err) + "\n");
  process.exit(1);
});
