// Talks to Parley's OpenAI-compatible API with OpenAI's official npm package (openai,
// pinned in package-lock.json), only its base URL changed: a chat completion, then a tool
// round trip. The model is a Parley component's name. Prints each answer and exits 1 when
// an answer is not the one the echo component gives (../README.md shows them).
//
// The SDK reads OPENAI_BASE_URL (here default http://localhost:3500/v1, the router) and
// OPENAI_API_KEY (the router's DAPR_API_TOKEN when it wants one; any value otherwise).
import OpenAI from "openai";

const client = new OpenAI({
  baseURL: process.env.OPENAI_BASE_URL || "http://localhost:3500/v1",
  apiKey: process.env.OPENAI_API_KEY || "parley",
});
const model = "echo";

let failed = false;

// check prints got under label and remembers a mismatch.
function check(label, got, want) {
  console.log(`${(label + ":").padEnd(12)} ${got}`);
  if (got !== want) {
    console.error(`${label}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
    failed = true;
  }
}

const chat = await client.chat.completions.create({
  model,
  messages: [{ role: "user", content: "hello from openai-node" }],
});
check("chat", `${chat.choices[0].message.content} (${chat.choices[0].finish_reason})`, "hello from openai-node (stop)");

const tools = [
  {
    type: "function",
    function: {
      name: "get_weather",
      description: "Current weather at a place",
      parameters: { type: "object", properties: { location: { type: "string" } }, required: ["location"] },
    },
  },
];
const messages = [{ role: "user", content: "What is the weather in Paris?" }];
const first = await client.chat.completions.create({ model, messages, tools });
const call = first.choices[0].message.tool_calls?.[0];
check("tool call", `${first.choices[0].finish_reason} ${call?.function.name}(${call?.function.arguments})`, "tool_calls get_weather(location)");

// Run the tool; send the conversation back with its result under the call's id.
messages.push(first.choices[0].message, { role: "tool", tool_call_id: call.id, content: "sunny, 21 degrees" });
const second = await client.chat.completions.create({ model, messages, tools });
const content = second.choices[0].message.content ?? "";
check("tool result", content.slice(content.lastIndexOf("\n") + 1), `Tool Response for tool ID '${call.id}' with name 'get_weather': sunny, 21 degrees`);

process.exitCode = failed ? 1 : 0;
