// LangChain JS (@langchain/anthropic) against BASE_URL with KEY: its main calls,
// one case each (see common.mjs for what is printed). LangChain has no token
// counting call (getNumTokens counts locally) and no batches.
import { ChatAnthropic } from "@langchain/anthropic";
import { HumanMessage, ToolMessage } from "@langchain/core/messages";
import { tool } from "@langchain/core/tools";
import * as z from "zod/v4";
import { BASE_URL, KEY, check, recordingFetch, run } from "./common.mjs";

const model = "claude-sonnet-4-6";
function chat(opts = {}) {
  return new ChatAnthropic({ model, apiKey: KEY, anthropicApiUrl: BASE_URL, maxRetries: 0, maxTokens: 2000, clientOptions: { fetch: recordingFetch }, ...opts });
}

const Answer = z.object({
  title: z.string().min(3).max(40),
  score: z.number().int().min(1).max(10),
  tags: z.array(z.string()).min(1).max(3),
  kind: z.enum(["a", "b"]),
});

function textOf(ai) {
  if (typeof ai.content === "string") return ai.content;
  return ai.content.filter((b) => b.type === "text").map((b) => b.text).join("");
}

function lookupTool(calls) {
  return tool(async ({ city }) => { calls.push(city); return `Sunny in ${city}`; }, {
    name: "lookup", description: "Look a city's weather up.",
    schema: z.object({ city: z.string().min(1), units: z.enum(["metric", "imperial"]).optional() }),
  });
}

// toolLoop invokes the model with tools until it stops calling them; it returns
// the number of round trips and the last message.
async function toolLoop(llm, prompt) {
  const calls = [];
  const lookup = lookupTool(calls);
  const bound = llm.bindTools([lookup]);
  const messages = [new HumanMessage(prompt)];
  for (let i = 0; i < 10; i++) {
    const ai = await bound.invoke(messages);
    messages.push(ai);
    if (!ai.tool_calls?.length) return { trips: i, calls, last: ai };
    for (const tc of ai.tool_calls) {
      check(tc.name === "lookup", `tool call ${tc.name}`);
      messages.push(new ToolMessage({ tool_call_id: tc.id, content: await lookup.func(tc.args) }));
      // func skips the schema check invoke does: check the input as a tool call would.
      lookup.schema.parse(tc.args);
    }
  }
  throw new Error("still calling tools after 10 round trips");
}

function signedThinking(ai) {
  return Array.isArray(ai.content) && ai.content.some((b) => b.type === "thinking" && b.thinking && b.signature);
}

await run("langchain", [
  ["plain", async () => {
    const ai = await chat().invoke("Hello");
    check(textOf(ai).length > 0, "no text");
    check(ai.usage_metadata?.output_tokens > 0, `usage ${JSON.stringify(ai.usage_metadata)}`);
  }],
  ["stream", async () => {
    let chunks = 0, text = "";
    for await (const c of await chat().stream("Hello")) {
      const t = typeof c.content === "string" ? c.content : c.content.map((b) => b.text ?? "").join("");
      if (t) { chunks++; text += t; }
    }
    check(chunks > 0 && text.length > 0, `${chunks} text chunks`);
  }],
  ["tools", async () => {
    const { trips, calls, last } = await toolLoop(chat(), "Use the lookup tool to find the weather in Paris.");
    check(trips >= 1 && calls.length >= 1, "no tool round trip");
    check(textOf(last).length > 0, "the final answer has no text");
  }],
  ["structured_output", async () => {
    const r = await chat({ maxTokens: 4000 }).withStructuredOutput(Answer, { name: "answer" }).invoke("Rate this.");
    Answer.parse(r);
  }],
  ["structured_output_json_schema", async () => {
    const r = await chat({ maxTokens: 4000 }).withStructuredOutput(Answer, { method: "jsonSchema" }).invoke("Rate this.");
    Answer.parse(r);
  }],
  ["thinking", async () => {
    const ai = await chat({ maxTokens: 20000, thinking: { type: "enabled", budget_tokens: 1024 } }).invoke("Think, then answer.");
    check(signedThinking(ai), `no signed thinking block (content ${JSON.stringify(ai.content).slice(0, 300)})`);
  }],
  ["thinking_stream", async () => {
    let thinking = 0;
    for await (const c of await chat({ maxTokens: 20000, thinking: { type: "enabled", budget_tokens: 1024 } }).stream("Think, then answer.")) {
      if (Array.isArray(c.content) && c.content.some((b) => b.type === "thinking" && b.thinking)) thinking++;
    }
    check(thinking > 0, "no thinking chunks");
  }],
  ["thinking_adaptive", async () => {
    const ai = await chat({ maxTokens: 20000, thinking: { type: "adaptive" }, outputConfig: { effort: "max" } }).invoke("Think hard.");
    check(signedThinking(ai), `no signed thinking block at effort max (content ${JSON.stringify(ai.content).slice(0, 300)})`);
  }],
  ["thinking_tools", async () => {
    const { trips } = await toolLoop(chat({ maxTokens: 20000, thinking: { type: "enabled", budget_tokens: 1024 } }), "Use the lookup tool for Rome.");
    check(trips >= 1, "no tool round trip");
  }],
]);
