// The Node.js reference of `make bench`: the receiver a JavaScript team would write instead
// of adopting this service. Fastify 5 + ioredis, one process:
//   verify the HMAC of the raw body, JSON.parse it, then one Lua call that deduplicates
//   (SET NX EX of the delivery's identity) and appends the raw body to its type's stream
//   (XADD), auto-pipelined by ioredis; answer 202 (accepted) or 200 (duplicate).
// No typed decode, no content digest, no durability wait, no metrics, no log line: what the
// service does on top of this is what `make bench` puts a price on.
//
//   node server.mjs --port 8000     (FANOUT_REDIS_URL, FANOUT_SECRETS as for the service)

import { createHmac, timingSafeEqual } from "node:crypto";
import Fastify from "fastify";
import Redis from "ioredis";

const port = Number(process.argv[process.argv.indexOf("--port") + 1] || process.env.FANOUT_PORT || 8000);
const secret = (process.env.FANOUT_SECRETS || "bench-secret").split(",")[0];
const redis = new Redis(process.env.FANOUT_REDIS_URL || "redis://127.0.0.1:6379", {
  enableAutoPipelining: true,
});

// KEYS: stream, dedup key.  ARGV: dedup seconds, stream cap, type, id, raw body.
redis.defineCommand("deliver", {
  numberOfKeys: 2,
  lua: `
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then
  return redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*',
                    'type', ARGV[3], 'id', ARGV[4], 'body', ARGV[5])
end
return false
`,
});

const DEDUP_SECONDS = 7 * 24 * 3600;
const MAXLEN = 1000000;

const app = Fastify({ logger: false });
// The body as bytes: the signature is over the bytes as sent.
app.addContentTypeParser("application/json", { parseAs: "buffer" }, (request, body, done) => {
  done(null, body);
});

function authentic(body, header) {
  if (typeof header !== "string" || header.length !== 64) return false;
  const expected = createHmac("sha256", secret).update(body).digest();
  return timingSafeEqual(expected, Buffer.from(header, "hex"));
}

// An async action is deduplicated by (id, request_id); a webhook envelope by its event's
// (type, id, group_id), as the service does.
function identity(message) {
  if (message.data !== undefined && (message.event || message.source)) {
    const event = message.event || {};
    const distribution = message.source && message.source.object === "distribution";
    const type = (distribution && event.type) || message.type;
    return [type, event.id || message.id, event.group_id || ""];
  }
  return [message.type, message.id, message.request_id || ""];
}

app.post("/webhooks/voucherify", async (request, reply) => {
  const body = request.body;
  if (!Buffer.isBuffer(body) || !authentic(body, request.headers["x-voucherify-signature"])) {
    reply.code(401);
    return { error: "invalid_signature" };
  }
  let message;
  try {
    message = JSON.parse(body);
  } catch {
    reply.code(400);
    return { error: "malformed_json" };
  }
  const [type, id, requestId] = identity(message);
  if (typeof type !== "string" || typeof id !== "string") {
    reply.code(422);
    return { error: "invalid_payload" };
  }
  const entryId = await redis.deliver(
    `node:{${type}}:events`,
    `node:{${type}}:seen:${id}:${requestId}`,
    DEDUP_SECONDS,
    MAXLEN,
    type,
    id,
    body,
  );
  if (entryId === null) {
    reply.code(200);
    return { status: "duplicate", id };
  }
  reply.code(202);
  return { status: "accepted", id, entry_id: entryId };
});

// Redis trouble is a 503, as the service answers it.
app.setErrorHandler((error, request, reply) => {
  reply.code(error.statusCode && error.statusCode < 500 ? error.statusCode : 503);
  reply.header("retry-after", "1");
  reply.send({ error: "unavailable" });
});

// GET of the webhook path: the readiness check of bench/run.py (405 means it answers).
app.get("/webhooks/voucherify", async (request, reply) => {
  reply.code(405);
  return { error: "method_not_allowed" };
});

await app.listen({ port, host: "127.0.0.1" });
