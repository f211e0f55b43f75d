// The Vercel AI SDK (ai + @ai-sdk/anthropic) against BASE_URL with KEY: its main
// calls, one case each (see common.mjs for what is printed).
import {
  generateObject, generateText, Output, stepCountIs, streamText, tool,
  experimental_startBatch as startBatch, experimental_getBatchStatus as getBatchStatus,
  experimental_getBatchResults as getBatchResults,
} from "ai";
import { createAnthropic } from "@ai-sdk/anthropic";
import * as z from "zod/v4";
import { BASE_URL, KEY, check, recordingFetch, run } from "./common.mjs";

const anthropic = createAnthropic({ baseURL: BASE_URL + "/v1", apiKey: KEY, fetch: recordingFetch });
const modelId = "claude-sonnet-4-6";
const model = anthropic(modelId);
const maxRetries = 0;

const Answer = z.object({
  title: z.string().min(3).max(40),
  score: z.number().int().min(1).max(10),
  tags: z.array(z.string()).min(1).max(3),
  kind: z.enum(["a", "b"]),
});

function lookupTool(calls) {
  return tool({
    description: "Look a city's weather up.",
    inputSchema: z.object({ city: z.string().min(1), units: z.enum(["metric", "imperial"]).optional() }),
    execute: async ({ city }) => { calls.push(city); return `Sunny in ${city}`; },
  });
}

await run("ai-sdk", [
  ["plain", async () => {
    const r = await generateText({ model, prompt: "Hello", maxOutputTokens: 200, maxRetries });
    check(r.text.length > 0, "no text");
    check(["stop", "length"].includes(r.finishReason), `finishReason ${r.finishReason}`);
    check(r.usage.inputTokens > 0 && r.usage.outputTokens > 0, `usage ${JSON.stringify(r.usage)}`);
  }],
  ["stream", async () => {
    const r = streamText({ model, prompt: "Hello", maxOutputTokens: 200, maxRetries, onError: () => {} });
    let chunks = 0;
    for await (const c of r.textStream) if (c.length > 0) chunks++;
    check(chunks > 0, "no text chunks");
    check((await r.text).length > 0, "no text");
    check(["stop", "length"].includes(await r.finishReason), `finishReason ${await r.finishReason}`);
  }],
  ["tools", async () => {
    const calls = [];
    const r = await generateText({
      model, maxOutputTokens: 2000, maxRetries, tools: { lookup: lookupTool(calls) }, toolChoice: "auto", stopWhen: stepCountIs(10),
      prompt: "Use the lookup tool to find the weather in Paris.",
    });
    check(calls.length >= 1, "the lookup tool never ran: no tool round trip");
    check(r.steps.length >= 2, `${r.steps.length} steps, want the tool call and an answer`);
    check(r.finishReason === "stop", `finishReason ${r.finishReason}, want stop`);
  }],
  ["tools_stream", async () => {
    const calls = [];
    const r = streamText({
      model, maxOutputTokens: 2000, maxRetries, tools: { lookup: lookupTool(calls) }, stopWhen: stepCountIs(10), onError: () => {},
      prompt: "Use the lookup tool for Oslo.",
    });
    const errors = [];
    for await (const p of r.fullStream) if (p.type === "error" || p.type === "tool-error") errors.push(p.error);
    check(errors.length === 0, `stream errors: ${errors.map(String).join("; ")}`);
    check(calls.length >= 1, "the lookup tool never ran");
    check((await r.finishReason) === "stop", `finishReason ${await r.finishReason}`);
  }],
  ["generate_object", async () => {
    const r = await generateObject({ model, schema: Answer, prompt: "Rate this.", maxOutputTokens: 4000, maxRetries });
    Answer.parse(r.object);
  }],
  ["generate_object_tool_mode", async () => {
    // The provider's other structured-output mode: a forced tool whose input is the object.
    const r = await generateObject({
      model, schema: Answer, prompt: "Rate this.", maxOutputTokens: 4000, maxRetries,
      providerOptions: { anthropic: { structuredOutputMode: "jsonTool" } },
    });
    Answer.parse(r.object);
  }],
  ["output_object", async () => {
    const r = await generateText({ model, output: Output.object({ schema: Answer }), prompt: "Rate this.", maxOutputTokens: 4000, maxRetries });
    Answer.parse(r.output);
  }],
  ["output_object_stream", async () => {
    const r = streamText({ model, output: Output.object({ schema: Answer }), prompt: "Rate this.", maxOutputTokens: 4000, maxRetries, onError: () => {} });
    let partials = 0;
    for await (const _ of r.partialOutputStream) partials++;
    check(partials > 0, "no partial outputs");
    Answer.parse(await r.output);
  }],
  ["thinking", async () => {
    const r = await generateText({
      model, prompt: "Think, then answer.", maxOutputTokens: 20000, maxRetries,
      providerOptions: { anthropic: { thinking: { type: "enabled", budgetTokens: 1024 } } },
    });
    check((r.reasoningText ?? "").length > 0, `no reasoning (content types ${r.content.map((c) => c.type)})`);
    check(r.reasoning.some((p) => p.providerMetadata?.anthropic?.signature), "no reasoning signature");
  }],
  ["thinking_stream", async () => {
    const r = streamText({
      model, prompt: "Think, then answer.", maxOutputTokens: 20000, maxRetries, onError: () => {},
      providerOptions: { anthropic: { thinking: { type: "enabled", budgetTokens: 1024 } } },
    });
    let reasoning = 0;
    for await (const p of r.fullStream) if (p.type === "reasoning-delta" && p.text) reasoning++;
    check(reasoning > 0, "no reasoning deltas");
  }],
  ["thinking_adaptive", async () => {
    const r = await generateText({
      model, prompt: "Think hard.", maxOutputTokens: 20000, maxRetries,
      providerOptions: { anthropic: { thinking: { type: "adaptive", display: "summarized" }, effort: "max" } },
    });
    check((r.reasoningText ?? "").length > 0, `no reasoning at effort max (content types ${r.content.map((c) => c.type)})`);
  }],
  ["thinking_tools", async () => {
    const calls = [];
    const r = await generateText({
      model, maxOutputTokens: 20000, maxRetries, tools: { lookup: lookupTool(calls) }, stopWhen: stepCountIs(10),
      providerOptions: { anthropic: { thinking: { type: "enabled", budgetTokens: 1024 } } },
      prompt: "Use the lookup tool for Rome.",
    });
    check(calls.length >= 1, "the lookup tool never ran");
    check(r.finishReason === "stop", `finishReason ${r.finishReason}`);
  }],
  ["batches", async () => {
    const provider = anthropic.experimental_batch();
    const batch = await startBatch({
      provider,
      requests: [
        { id: "one", type: "text", model: modelId, prompt: "Hi", maxOutputTokens: 50 },
        { id: "two", type: "text", model: modelId, prompt: "Hi again", maxOutputTokens: 50 },
      ],
    });
    let st = batch;
    for (const deadline = Date.now() + 20000; st.status === "pending"; ) {
      check(Date.now() < deadline, "batch still pending after 20 s");
      await new Promise((ok) => setTimeout(ok, 100));
      st = await getBatchStatus({ provider, batch });
    }
    check(st.status === "completed", `batch ${JSON.stringify(st)}`);
    const got = {};
    for await (const item of getBatchResults({ provider, batch })) {
      check(item.status === "succeeded", `${item.id}: ${JSON.stringify(item).slice(0, 500)}`);
      check(item.text.length > 0, `${item.id}: no text`);
      got[item.id] = true;
    }
    check(got.one && got.two, `results for ${Object.keys(got)}`);
  }],
]);
