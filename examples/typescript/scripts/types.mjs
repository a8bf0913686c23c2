// TypeScript declarations of the streams, generated from the AsyncAPI document
// (itself generated from the service's msgspec types by scripts/asyncapi.py):
//
//   node scripts/types.mjs ../../docs/asyncapi.json src/fanout.d.ts   (npm run types)
//   python scripts/asyncapi.py /dev/stdout | node scripts/types.mjs - -
//
// The schemas become interfaces through json-schema-to-typescript; what the
// document says per message (the entry fields in `headers`, the event JSON in
// `payload`) becomes four entry-field interfaces and two maps from type to event.
// tests/test_typescript.py fails while src/fanout.d.ts differs from this output.
import fs from "node:fs";
import { compile } from "json-schema-to-typescript";

const [input = "-", output = "-"] = process.argv.slice(2);
const doc = JSON.parse(fs.readFileSync(input === "-" ? 0 : input, "utf8"));
const schemas = structuredClone(doc.components.schemas);
const messages = Object.values(doc.components.messages);
const REF = "#/components/schemas/";
const named = (ref) => ref.slice(REF.length);

// The event JSON the service writes has exactly these fields: closed objects, so a
// typo or a field the service never writes does not compile. A webhook event's
// `data` is kept as received: its objects stay open ([k: string]: unknown).
function close(name, seen = new Set()) {
  if (seen.has(name)) return;
  seen.add(name);
  const schema = schemas[name];
  if (schema.type === "object" && schema.properties) schema.additionalProperties = false;
  const walk = (node, key) => {
    if (!node || typeof node !== "object") return;
    if (typeof node.$ref === "string") {
      if (key !== "data") close(named(node.$ref), seen);
      return;
    }
    for (const [k, v] of Object.entries(node)) walk(v, k === "properties" ? null : key ?? k);
  };
  for (const [key, property] of Object.entries(schema.properties ?? {})) walk(property, key);
  for (const part of ["anyOf", "items"]) walk(schema[part], null);
}

// msgspec names a Struct by its module when two share a name (the vendor's webhook
// data has a CustomEvent too): the interface gets its module's name in front unless
// it starts with it (custom.CustomEvent: CustomEvent), not json-schema-to-typescript's "…1".
for (const [key, schema] of Object.entries(schemas)) {
  if (key.includes(".")) {
    const camel = (part) => part.split("_").map((w) => w[0].toUpperCase() + w.slice(1)).join("");
    const [module, name] = key.split(".").slice(-2).map(camel);
    schema.title = name.startsWith(module) ? name : module + name;
  }
}

const completions = {};
const webhooks = {};
const headers = {};
for (const message of messages) {
  const ref = message.payload.$ref;
  if (ref) close(named(ref));
  const kind = message.name.split(".").pop();
  const tags = (doc.channels[message.name].tags ?? []).map((tag) => tag.name);
  const type = message.headers.properties.type?.const;
  if (kind === "completed") completions[type] = { $ref: ref };
  else if (tags.includes("webhook") && type) webhooks[type] = { $ref: ref };
  const shape = tags.includes("webhook") ? (type ? "events" : "other") : tags.includes("custom") ? "custom" : kind;
  headers[shape] ??= message.headers;
}

const entryFields = (title, description, base, type) => ({
  title,
  description,
  ...base,
  properties: { ...base.properties, ...(type ? { type } : {}) },
  additionalProperties: false,
});
const map = (title, description, entries) => ({
  title,
  description,
  type: "object",
  properties: entries,
  required: Object.keys(entries),
  additionalProperties: false,
});
Object.assign(schemas, {
  AsyncActionType: { title: "AsyncActionType", enum: Object.keys(completions) },
  WebhookEventType: { title: "WebhookEventType", enum: Object.keys(webhooks) },
  CompletionEvents: map(
    "CompletionEvents",
    "The event JSON (the entry's `event` field) of each async action type, completed and progress streams alike.",
    completions,
  ),
  WebhookEvents: map(
    "WebhookEvents",
    "The event JSON of each documented webhook event type; `data` has its documented shape when `schema_valid` is true.",
    webhooks,
  ),
  CompletionEntryFields: entryFields(
    "CompletionEntryFields",
    "The fields of an entry of a `<prefix>:{<TYPE>}:completed` stream (all strings).",
    headers.completed,
    { $ref: `${REF}AsyncActionType` },
  ),
  ProgressEntryFields: entryFields(
    "ProgressEntryFields",
    "The fields of an entry of a `<prefix>:{<TYPE>}:progress` stream (all strings).",
    headers.progress,
    { $ref: `${REF}AsyncActionType` },
  ),
  WebhookEventEntryFields: entryFields(
    "WebhookEventEntryFields",
    "The fields of an entry of a `<prefix>:{<event type>}:events` stream (all strings).",
    headers.other,
  ),
  ...(headers.custom
    ? {
        CustomEntryFields: entryFields(
          "CustomEntryFields",
          "The fields of an entry of `<prefix>:{custom}:events`, custom bodies (all strings).",
          headers.custom,
        ),
      }
    : {}),
  DeadLetterEntryFields: entryFields(
    "DeadLetterEntryFields",
    "The fields of an entry of `<prefix>:{dead}:letters` (all strings; `body` as received).",
    {
      ...headers.letters,
      properties: { ...headers.letters.properties, body: { type: "string" } },
      required: [...headers.letters.required, "body"],
    },
  ),
});

const root = {
  title: "ChannelPayloads",
  description: `The payload of each channel of the AsyncAPI document (${doc.info.title} ${doc.info.version}): the JSON in the entry field its message's x-redis-payload-field names.`,
  type: "object",
  properties: Object.fromEntries(
    Object.entries(doc.channels).map(([name, channel]) => {
      const message = doc.components.messages[Object.keys(channel.messages)[0]];
      return [name, message.payload.$ref ? { $ref: message.payload.$ref } : { type: "string" }];
    }),
  ),
  required: Object.keys(doc.channels),
  additionalProperties: false,
  $defs: schemas,
};
// The document's references, pointed at $defs (where unreferenced schemas are generated too).
const bundled = JSON.parse(JSON.stringify(root).replaceAll(`"${REF}`, '"#/$defs/'));

const banner = `/* Generated by examples/typescript/scripts/types.mjs from the AsyncAPI document
 * (docs/asyncapi.json, made by scripts/asyncapi.py from the service's msgspec types).
 * Do not edit: run \`make typescript\`. */`;
const declarations = await compile(bundled, "ChannelPayloads", {
  bannerComment: banner,
  unreachableDefinitions: true,
  additionalProperties: true,
  format: true,
  style: { printWidth: 100 },
});
const aliases = `
/** Any completion or progress event, told apart by \`type\` (and \`status\`). */
export type CompletionEvent = CompletionEvents[AsyncActionType];
/** Any webhook event: a documented type's, or of another type (\`data\` as received). */
export type WebhookEvent = WebhookEvents[WebhookEventType] | OtherWebhookEvent;
`;
// json-schema-to-typescript notes under each interface where it was found: noise here.
const found = /\n \*\n \* This interface was referenced by `ChannelPayloads`'s JSON-Schema\n \* via the `definition` "[^"]*"\.|\/\*\*\n \* This interface was referenced by `ChannelPayloads`'s JSON-Schema\n \* via the `definition` "[^"]*"\.\n \*\/\n/g;
const text = declarations.replace(found, "") + aliases;
if (output === "-") process.stdout.write(text);
else fs.writeFileSync(output, text);
