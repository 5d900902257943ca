// PAO's own string formats, `json` and `yaml`, for a react-jsonschema-form
// portal. The forms PAO serves declare them, and the requests API refuses a
// value that breaks one; registering them lets the portal refuse it first,
// with the same field named. See catalog/README.md, "Field types".
//
//   import Ajv2020 from 'ajv/dist/2020';
//   import * as YAML from 'yaml';
//   import { customizeValidator } from '@rjsf/validator-ajv8';
//   import { paoFormats } from './formats.mjs';
//   const validator = customizeValidator({ AjvClass: Ajv2020, customFormats: paoFormats(YAML) });
//
// No imports of its own: the portal passes its `yaml` (2.x), so this file
// drops into any build unchanged.

// What the requests API's YAML reader takes (shared/src/catalog/source.rs, Limits).
const MAX_BYTES = 256 * 1024;
const MAX_DEPTH = 32;
const MAX_NODES = 50_000;
const MAX_ANCHORS = 100;
const MAX_ALIASES = 100;
// A scalar under one of these core tags must resolve to its type (`!!int x`
// does not): the server refuses it where `yaml` only warns.
const CORE_TAGS = {
  'tag:yaml.org,2002:int': 'number',
  'tag:yaml.org,2002:float': 'number',
  'tag:yaml.org,2002:bool': 'boolean',
  'tag:yaml.org,2002:null': 'object',
};

/** `{ json, yaml }`, for `customizeValidator({ customFormats })`. */
export function paoFormats(YAML) {
  return {
    json: isJson,
    yaml: (text) => isYaml(YAML, text),
  };
}

/** JSON text (RFC 8259): checked for syntax only, as the server does. */
function isJson(text) {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** One YAML document within the server's limits: no duplicate keys, finite
 * numbers, keys that are non-null scalars. */
function isYaml(YAML, text) {
  if (new TextEncoder().encode(text).length > MAX_BYTES) return false;
  let documents;
  try {
    documents = YAML.parseAllDocuments(text, { uniqueKeys: true });
  } catch {
    return false;
  }
  // No document at all (empty, or only comments) is null to the server.
  if (documents.length === 0) return true;
  if (documents.length !== 1) return false;
  const [document] = documents;
  if (document.errors.length > 0) return false;
  const count = { anchors: 0, aliases: 0 };
  const nodes = walk(YAML, document.contents, 0, count, new Map());
  // The server's reader stops at its hundredth alias, but takes a hundredth anchor.
  return nodes <= MAX_NODES && count.anchors <= MAX_ANCHORS && count.aliases < MAX_ALIASES;
}

/** The number of nodes under `node` once aliases are expanded; `Infinity`
 * for anything the server refuses. */
function walk(YAML, node, depth, count, sizes) {
  if (node === null || node === undefined) return 1;
  if (node.anchor) count.anchors += 1;
  if (YAML.isAlias(node)) {
    count.aliases += 1;
    return sizes.get(node.source) ?? Infinity;
  }
  let size;
  if (YAML.isScalar(node)) {
    const tagged = CORE_TAGS[node.tag];
    size = fits(node.value) && (!tagged || typeof node.value === tagged) ? 1 : Infinity;
  } else if (YAML.isMap(node) || YAML.isSeq(node)) {
    if (depth >= MAX_DEPTH) return Infinity;
    size = 1;
    for (const item of node.items) {
      if (YAML.isPair(item)) {
        // Keys are text to the server: a collection or null cannot be one.
        if (!YAML.isScalar(item.key) || item.key.value === null) return Infinity;
        size += walk(YAML, item.key, depth + 1, count, sizes);
        size += walk(YAML, item.value, depth + 1, count, sizes);
      } else {
        size += walk(YAML, item, depth + 1, count, sizes);
      }
    }
  } else {
    return Infinity;
  }
  if (node.anchor) sizes.set(node.anchor, size);
  return size;
}

/** A scalar JSON can hold: not `.inf`, `.nan` or a float beyond range. */
function fits(value) {
  return typeof value !== 'number' || Number.isFinite(value);
}
