// The official TypeScript SDK (@anthropic-ai/sdk) against BASE_URL with KEY: its
// main calls, one case each (see common.mjs for what is printed).
import Anthropic from "@anthropic-ai/sdk";
import { zodOutputFormat } from "@anthropic-ai/sdk/helpers/zod";
import { betaZodTool } from "@anthropic-ai/sdk/helpers/beta/zod";
import * as z from "zod/v4";
import { BASE_URL, KEY, check, recordingFetch, run, seen } from "./common.mjs";

const client = new Anthropic({ baseURL: BASE_URL, apiKey: KEY, fetch: recordingFetch, maxRetries: 0 });
const model = "claude-sonnet-4-6";

const lookup = {
  name: "lookup",
  description: "Look a city's weather up.",
  input_schema: {
    type: "object",
    properties: { city: { type: "string", minLength: 1 }, units: { type: "string", enum: ["metric", "imperial"] } },
    required: ["city"],
    additionalProperties: false,
  },
};

function textOf(msg) {
  return msg.content.filter((b) => b.type === "text").map((b) => b.text).join("");
}

// toolLoop sends the conversation until the model stops calling tools, answering
// each tool_use with a tool_result; it returns the number of round trips.
async function toolLoop(params, checkInput) {
  const messages = [...params.messages];
  let trips = 0;
  for (let i = 0; i < 10; i++) {
    const msg = await client.messages.create({ ...params, messages });
    const uses = msg.content.filter((b) => b.type === "tool_use");
    if (msg.stop_reason !== "tool_use") {
      check(uses.length === 0, `stop_reason ${msg.stop_reason} with ${uses.length} tool_use blocks`);
      return { trips, last: msg };
    }
    check(uses.length > 0, "stop_reason tool_use without a tool_use block");
    for (const u of uses) {
      check(u.name === "lookup", `tool_use names ${u.name}, want lookup`);
      checkInput(u.input);
    }
    messages.push({ role: "assistant", content: msg.content });
    messages.push({ role: "user", content: uses.map((u) => ({ type: "tool_result", tool_use_id: u.id, content: "Sunny, 21 C" })) });
    trips++;
  }
  throw new Error("no end_turn after 10 tool round trips");
}

const lookupInput = z.object({ city: z.string().min(1), units: z.enum(["metric", "imperial"]).optional() }).strict();

await run("typescript-sdk", [
  ["plain", async () => {
    const msg = await client.messages.create({ model, max_tokens: 200, messages: [{ role: "user", content: "Hello" }] });
    check(msg.type === "message" && msg.role === "assistant", `type ${msg.type} role ${msg.role}`);
    check(textOf(msg).length > 0, "no text");
    check(["end_turn", "max_tokens"].includes(msg.stop_reason), `stop_reason ${msg.stop_reason}`);
    check(msg.usage.input_tokens > 0 && msg.usage.output_tokens > 0, `usage ${JSON.stringify(msg.usage)}`);
  }],
  ["stream", async () => {
    let deltas = 0;
    const stream = client.messages.stream({ model, max_tokens: 200, messages: [{ role: "user", content: "Hello" }] });
    stream.on("text", () => deltas++);
    const msg = await stream.finalMessage();
    check(deltas > 0, "no text deltas");
    check(textOf(msg).length > 0, "final message has no text");
    check(msg.usage.output_tokens > 0, `usage ${JSON.stringify(msg.usage)}`);
  }],
  ["tools", async () => {
    const { trips, last } = await toolLoop({
      model, max_tokens: 2000, tools: [lookup], tool_choice: { type: "auto" },
      messages: [{ role: "user", content: "Use the lookup tool to find the weather in Paris." }],
    }, (input) => lookupInput.parse(input));
    check(trips >= 1, "no tool round trip: the model never called lookup");
    check(textOf(last).length > 0, "the final answer has no text");
  }],
  ["tools_stream", async () => {
    const stream = client.messages.stream({
      model, max_tokens: 2000, tools: [lookup], tool_choice: { type: "auto" },
      messages: [{ role: "user", content: "Use the lookup tool for Oslo." }],
    });
    let jsonDeltas = 0;
    stream.on("inputJson", () => jsonDeltas++);
    const msg = await stream.finalMessage();
    const use = msg.content.find((b) => b.type === "tool_use");
    check(msg.stop_reason === "tool_use" && use, `stop_reason ${msg.stop_reason}, want tool_use`);
    check(jsonDeltas > 0, "no input_json_delta events");
    lookupInput.parse(use.input);
  }],
  ["structured_output", async () => {
    const Answer = z.object({
      title: z.string().min(3).max(40),
      score: z.number().int().min(1).max(10),
      tags: z.array(z.string()).min(1).max(3),
      kind: z.enum(["a", "b"]),
      when: z.iso.datetime().optional(),
    });
    const msg = await client.messages.parse({
      model, max_tokens: 4000, messages: [{ role: "user", content: "Rate this." }],
      output_config: { format: zodOutputFormat(Answer) },
    });
    check(msg.parsed_output != null, `no parsed_output (text ${textOf(msg)})`);
    Answer.parse(msg.parsed_output);
  }],
  ["count_tokens", async () => {
    const r = await client.messages.countTokens({ model, tools: [lookup], messages: [{ role: "user", content: "Count me, please." }] });
    check(Number.isInteger(r.input_tokens) && r.input_tokens > 300, `input_tokens ${r.input_tokens}, want > 300 with a tool`);
  }],
  ["batches", async () => {
    const batch = await client.messages.batches.create({
      requests: [
        { custom_id: "one", params: { model, max_tokens: 50, messages: [{ role: "user", content: "Hi" }] } },
        { custom_id: "two", params: { model, max_tokens: 50, messages: [{ role: "user", content: "Hi again" }] } },
      ],
    });
    check(batch.type === "message_batch" && batch.id, `created ${JSON.stringify(batch)}`);
    let b = batch;
    for (const deadline = Date.now() + 20000; b.processing_status !== "ended"; ) {
      check(Date.now() < deadline, `batch still ${b.processing_status} after 20 s`);
      await new Promise((ok) => setTimeout(ok, 100));
      b = await client.messages.batches.retrieve(batch.id);
    }
    check(b.request_counts.succeeded === 2, `request_counts ${JSON.stringify(b.request_counts)}`);
    const got = {};
    for await (const r of await client.messages.batches.results(batch.id)) {
      check(r.result.type === "succeeded", `${r.custom_id}: ${JSON.stringify(r.result)}`);
      check(textOf(r.result.message).length > 0, `${r.custom_id}: no text`);
      got[r.custom_id] = true;
    }
    check(got.one && got.two, `results for ${Object.keys(got)}`);
  }],
  ["thinking", async () => {
    const msg = await client.messages.create({
      model, max_tokens: 20000, thinking: { type: "enabled", budget_tokens: 1024 },
      messages: [{ role: "user", content: "Think, then answer." }],
    });
    const th = msg.content[0];
    check(th && th.type === "thinking" && th.thinking.length > 0 && th.signature, `first block ${JSON.stringify(th)?.slice(0, 200)}, want thinking with a signature`);
    check(msg.stop_reason === "max_tokens" || textOf(msg).length > 0, "no text after thinking");
  }],
  ["thinking_stream", async () => {
    let thinking = 0, signatures = 0;
    const stream = client.messages.stream({
      model, max_tokens: 20000, thinking: { type: "enabled", budget_tokens: 1024 },
      messages: [{ role: "user", content: "Think, then answer." }],
    });
    stream.on("thinking", () => thinking++);
    stream.on("signature", () => signatures++);
    const msg = await stream.finalMessage();
    check(thinking > 0 && signatures === 1, `${thinking} thinking deltas, ${signatures} signatures`);
    check(msg.content[0].type === "thinking" && msg.content[0].signature, "final message has no signed thinking block");
  }],
  ["thinking_tools", async () => {
    // Thinking blocks go back unchanged with the tool results, as the API requires.
    const { trips } = await toolLoop({
      model, max_tokens: 20000, thinking: { type: "enabled", budget_tokens: 1024 }, tools: [lookup],
      messages: [{ role: "user", content: "Use the lookup tool for Rome." }],
    }, (input) => lookupInput.parse(input));
    check(trips >= 1, "no tool round trip");
  }],
  ["thinking_adaptive", async () => {
    const msg = await client.messages.create({
      model, max_tokens: 20000, thinking: { type: "adaptive" }, output_config: { effort: "max" },
      messages: [{ role: "user", content: "Think hard." }],
    });
    check(msg.content[0]?.type === "thinking" && msg.content[0].signature, `first block ${msg.content[0]?.type}, want thinking (effort max always thinks)`);
  }],
  ["thinking_omitted", async () => {
    const msg = await client.messages.create({
      model, max_tokens: 20000, thinking: { type: "enabled", budget_tokens: 1024, display: "omitted" },
      messages: [{ role: "user", content: "Think quietly." }],
    });
    const th = msg.content[0];
    check(th?.type === "thinking" && th.thinking === "" && th.signature, `first block ${JSON.stringify(th)?.slice(0, 200)}, want an empty thinking with a signature`);
  }],
  ["tool_runner", async () => {
    let runs = 0;
    const tool = betaZodTool({
      name: "lookup", description: "Look a city's weather up.",
      inputSchema: z.object({ city: z.string() }),
      run: async ({ city }) => { runs++; return `Sunny in ${city}`; },
    });
    const final = await client.beta.messages.toolRunner({
      model, max_tokens: 2000, tools: [tool],
      messages: [{ role: "user", content: "Use the lookup tool for Lima." }],
    });
    check(runs >= 1, "the tool never ran");
    // The runner starts a message thread; the emulator answers the documented
    // fallback error and the runner sends the conversation again without it.
    const calls = (await seen()).filter((e) => e.request.url.endsWith("/v1/messages"));
    const threaded = calls.filter((e) => /"thread"\s*:/.test(e.request.body ?? ""));
    check(threaded.length > 0, "the runner sent no thread: the fallback was not exercised");
    check(threaded.every((e) => e.response.status === 400 && /thread_unsupported_request/.test(e.response.body)),
      `threaded calls answered ${threaded.map((e) => e.response.status)}, want 400 thread_unsupported_request`);
    check(calls.some((e) => !/"thread"\s*:/.test(e.request.body ?? "") && e.response.status === 200), "no unthreaded call answered 200 after the fallback");
    check(final.stop_reason !== "tool_use", `final stop_reason ${final.stop_reason}`);
  }],
]);
