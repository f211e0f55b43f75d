// One Messages call with the official TypeScript SDK (its default retries: 2),
// through a fetch that counts the attempts. Prints one JSON line: what the SDK
// raised and how many times it sent the call. Used by internal/serve's
// TestServeBudgetRefusalRealClients.
//   node budget-refusal.mjs BASE_URL KEY
import Anthropic from "@anthropic-ai/sdk";

const [baseURL, apiKey] = process.argv.slice(2);
let attempts = 0;
const client = new Anthropic({
  baseURL,
  apiKey,
  maxRetries: 2,
  fetch: (url, init) => {
    attempts++;
    return fetch(url, init);
  },
});
const out = { attempts };
try {
  await client.messages.create({
    model: "claude-haiku-4-5",
    max_tokens: 100,
    messages: [{ role: "user", content: "over budget?" }],
  });
  out.answered = true;
} catch (e) {
  out.class = e?.constructor?.name;
  out.status = e?.status;
  out.type = e?.error?.error?.type;
  out.message = e?.error?.error?.message;
  out.requestID = e?.requestID;
}
out.attempts = attempts;
console.log(JSON.stringify(out));
