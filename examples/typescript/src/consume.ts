// A consumer of the voucherify-fanout streams in TypeScript, with ioredis: a
// consumer group over the completion streams of some async action types (and
// webhook event streams with --types voucher.published,...), one line per entry.
//
//   REDIS_URL="$(../../.venv/bin/fanout url --password)" node dist/consume.js
//   node dist/consume.js --types VOUCHERS.IMPORT,voucher.published --group crm --json
//   node dist/consume.js --json --trace     # each line also has its span's and parent's ids
//
// Everything it relies on is in the AsyncAPI document (GET /asyncapi.json): the
// server (`servers.redis`), the stream keys (`x-redis-key`), the entry fields
// (`headers`) and the event JSON (`payload`), whose types are in fanout.d.ts,
// generated from that document. An entry is acknowledged once printed.
//
// Tracing (--trace): with FANOUT_TRACING=1 the service writes each entry with a
// `traceparent` field, the W3C trace context of its delivery's span; each
// entry's handling here is a span continuing that trace (see startSpan below).
import { hostname } from "node:os";
import { parseArgs } from "node:util";
import {
  propagation, ROOT_CONTEXT, type Span, SpanKind, SpanStatusCode, trace,
} from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";
import { BasicTracerProvider, type ReadableSpan } from "@opentelemetry/sdk-trace-base";
import { Redis } from "ioredis";
import type {
  AsyncActionType,
  CompletionEntryFields,
  CompletionEvent,
  WebhookEvent,
  WebhookEventEntryFields,
} from "./fanout.js";

const ASYNC_ACTION_TYPES: readonly AsyncActionType[] = [
  "CAMPAIGN.VOUCHERS_IMPORT", "CAMPAIGN.VOUCHERS_IMPORT_CSV", "CAMPAIGN.VOUCHERS_UPDATE",
  "CAMPAIGN.VOUCHERS_DELETE", "CAMPAIGN.VOUCHERS_GENERATE", "CAMPAIGNS.METADATA_KEY_PURGE",
  "CUSTOMERS.IMPORT_CSV", "CUSTOMERS.BULK_UPDATE", "CUSTOMERS.METADATA_UPDATE",
  "CUSTOMERS.METADATA_KEY_PURGE", "PRODUCTS.BULK_UPDATE", "PRODUCTS.METADATA_UPDATE",
  "PRODUCTS.METADATA_KEY_PURGE", "PRODUCTS.IMPORT_CSV", "SKUS.IMPORT_CSV", "VOUCHERS.IMPORT",
  "VOUCHERS.IMPORT_CSV", "VOUCHERS.BULK_UPDATE", "VOUCHERS.METADATA_UPDATE",
  "VOUCHERS.METADATA_KEY_PURGE", "ORDERS.IMPORT", "ORDERS.METADATA_KEY_PURGE",
];

const { values: args } = parseArgs({
  options: {
    group: { type: "string", default: "typescript-example" },
    types: { type: "string" },
    prefix: { type: "string", default: process.env.FANOUT_STREAM_PREFIX || "voucherify" },
    count: { type: "string" },
    json: { type: "boolean", default: false },
    trace: { type: "boolean", default: false },
  },
});
const url = process.env.REDIS_URL;
if (!url) {
  console.error('consume: set REDIS_URL, e.g. REDIS_URL="$(fanout url --password)"');
  process.exit(2);
}
const types = args.types ? args.types.split(",") : [...ASYNC_ACTION_TYPES];
const isAsyncAction = (type: string): type is AsyncActionType =>
  (ASYNC_ACTION_TYPES as readonly string[]).includes(type);
// The keys are the channels' x-redis-key: <prefix>:{<TYPE>}:completed, <prefix>:{<event type>}:events.
const streams = types.map((t) => `${args.prefix}:{${t}}:${isAsyncAction(t) ? "completed" : "events"}`);
const limit = args.count ? Number(args.count) : Infinity;
const consumer = `${hostname()}-${process.pid}`;

class BadEntry extends Error {}

// Your application's OpenTelemetry set-up goes here: a provider with your exporter (OTLP to
// a collector, say) and the W3C propagator. This one records spans and exports none.
if (args.trace) {
  trace.setGlobalTracerProvider(new BasicTracerProvider());
  propagation.setGlobalPropagator(new W3CTraceContextPropagator());
}
const tracer = trace.getTracer("voucherify-fanout-typescript-example");

// The span of one entry's handling: a child of its delivery's span, named and
// attributed as OpenTelemetry's messaging conventions say for a consumer. An entry
// without the field (tracing off in the service) starts a new trace.
function startSpan(stream: string, entryId: string, fields: Record<string, string>): Span {
  const parent = propagation.extract(ROOT_CONTEXT, { traceparent: fields.traceparent ?? "" });
  return tracer.startSpan(`process ${stream}`, {
    kind: SpanKind.CONSUMER,
    attributes: {
      "messaging.system": "redis",
      "messaging.operation.type": "process",
      "messaging.destination.name": stream,
      "messaging.consumer.group.name": args.group,
      "messaging.message.id": entryId,
      "fanout.type": fields.type ?? "",
      "fanout.id": fields.id ?? "",
    },
  }, parent);
}

// The ids of a span and of its parent, printed with --json --trace.
function spanIds(span: Span): { trace_id: string; span_id: string; parent_span_id: string | null } {
  const { traceId, spanId } = span.spanContext();
  const parent = (span as unknown as ReadableSpan).parentSpanContext;
  return { trace_id: traceId, span_id: spanId, parent_span_id: parent?.spanId ?? null };
}

// Entry fields are plain strings; check the ones the declarations promise.
function completionFields(fields: Record<string, string>): CompletionEntryFields {
  const { type, status, id, request_id, traceparent } = fields;
  if (type === undefined || !isAsyncAction(type)) throw new BadEntry(`type ${type}`);
  if (status !== "DONE" && status !== "FAILED") throw new BadEntry(`status ${status}`);
  if (id === undefined || request_id === undefined) throw new BadEntry("no id or request_id");
  return { type, status, id, request_id, ...(traceparent === undefined ? {} : { traceparent }) };
}

function webhookFields(fields: Record<string, string>): WebhookEventEntryFields {
  const { type, id, request_id, sendout_id, project_id, traceparent } = fields;
  if (!type || id === undefined || request_id === undefined || sendout_id === undefined) {
    throw new BadEntry("a webhook event entry needs type, id, request_id and sendout_id");
  }
  return {
    type, id, request_id, sendout_id,
    ...(project_id === undefined ? {} : { project_id }),
    ...(traceparent === undefined ? {} : { traceparent }),
  };
}

// One entry: its fields checked, its event typed, one line out.
function describe(
  stream: string, entryId: string, fields: Record<string, string>, span: Span,
): string {
  const traced = args.trace ? { trace: spanIds(span) } : {};
  const json = fields.event;
  if (json === undefined) throw new BadEntry("no event field");
  if (stream.endsWith(":completed")) {
    const entry = completionFields(fields);
    const event = JSON.parse(json) as CompletionEvent;
    if (event.type !== entry.type || event.id !== entry.id || event.status !== entry.status) {
      throw new BadEntry("the event JSON does not match the entry's fields");
    }
    let failures: string[] = [];
    switch (event.type) {
      case "VOUCHERS.IMPORT":
      case "ORDERS.IMPORT": // their result is typed: failed is a list of records
        failures = (event.result?.failed ?? []).map((record) => record.reason ?? "no reason");
        break;
    }
    const reasons = [...new Set(failures)].sort();
    if (args.json) {
      return JSON.stringify({ stream, entry_id: entryId, fields: entry, event, reasons, ...traced });
    }
    const counts = event.failed_count != null
      ? `${event.failed_count} failed${reasons.length ? ` (${reasons.join(", ")})` : ""}`
      : `${event.done_count ?? 0} done`;
    return `${event.type} ${event.id} ${event.status}: ${counts}`;
  }
  const entry = webhookFields(fields);
  const event = JSON.parse(json) as WebhookEvent;
  if (event.type !== entry.type || event.id !== entry.id) {
    throw new BadEntry("the event JSON does not match the entry's fields");
  }
  if (args.json) {
    return JSON.stringify({ stream, entry_id: entryId, fields: entry, event, ...traced });
  }
  return `${event.type} ${event.id}${event.schema_valid ? "" : ` (drift: ${event.schema_error})`}`;
}

const redis = new Redis(url, { maxRetriesPerRequest: null });
let lostSince: number | null = null;
redis.on("error", (error: Error) => {
  if (lostSince === null) {
    lostSince = Date.now();
    console.error(`consume: lost Redis (${error.message}); retrying until it is back`);
  }
});
redis.on("ready", () => {
  if (lostSince !== null) {
    console.error(`consume: Redis is back after ${((Date.now() - lostSince) / 1000).toFixed(1)}s`);
    lostSince = null;
  }
});

async function createGroups(): Promise<void> {
  for (const stream of streams) {
    try {
      // MKSTREAM: a stream nothing was written to yet. The URL names the right server.
      await redis.xgroup("CREATE", stream, args.group, "0", "MKSTREAM");
    } catch (error) {
      if (!String(error).includes("BUSYGROUP")) throw error;
    }
  }
}

// One read: the entries of every stream that are new to the group, or none within 1 s.
// A server that lost the group (restarted without its data) gets it made again.
async function read(): Promise<[string, [string, string[]][]][] | null> {
  try {
    return (await redis.xreadgroup(
      "GROUP", args.group, consumer, "COUNT", 100, "BLOCK", 1000,
      "STREAMS", ...streams, ...streams.map(() => ">"),
    )) as [string, [string, string[]][]][] | null;
  } catch (error) {
    if (!String(error).includes("NOGROUP")) throw error;
    console.error(`consume: group ${args.group} is gone; creating it again`);
    await createGroups();
    return null;
  }
}

async function main(): Promise<void> {
  await createGroups();
  const { host, port } = redis.options;
  console.error(`consume: reading ${streams.length} stream(s) of ${host}:${port} as group ${args.group}`);
  let seen = 0;
  let stopping = false;
  process.on("SIGINT", () => { stopping = true; });
  process.on("SIGTERM", () => { stopping = true; });
  while (!stopping && seen < limit) {
    const reply = await read();
    for (const [stream, entries] of reply ?? []) {
      for (const [entryId, flat] of entries) {
        const fields: Record<string, string> = {};
        for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i]!] = flat[i + 1]!;
        const span = startSpan(stream, entryId, fields);
        try {
          console.log(describe(stream, entryId, fields, span));
        } catch (error) {
          if (!(error instanceof BadEntry || error instanceof SyntaxError)) throw error;
          console.error(`consume: ${stream} ${entryId} is not as documented: ${error.message}`);
          span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
        }
        await redis.xack(stream, args.group, entryId);
        span.setAttribute("fanout.outcome", "acked");
        span.end();
        seen += 1;
      }
    }
  }
}

main()
  .catch((error: unknown) => {
    console.error(`consume: ${error instanceof Error ? error.message : String(error)}`);
    process.exitCode = 1;
  })
  .finally(() => redis.disconnect());
