#!/usr/bin/env node
// Validates the machine-readable contract in topics/ with a real JSON Schema validator
// (Debian's node-ajv 6, draft-07):
//   NODE_PATH=/usr/share/nodejs node tests/schema/validate.js <repo>
// Checks: every schema compiles; every `examples` entry (top level and in definitions) is valid;
// every topics/examples/invalid/<schema>.<case>.json is invalid; admin-request's cmd enum and the
// args-<cmd> schemas agree; topics/asyncapi.yaml references existing schemas; the fenced JSON
// examples of ../shared/PROTOCOL.md and the signed manifest of ../shared/vectors/manifest.json
// are valid; README.md blocks marked <!-- schema: NAME --> are valid.
// Prints one line per check and "N passed, M failed"; exits 1 on any failure or < 30 checks.
'use strict';

const fs = require('fs');
const path = require('path');
const Ajv = require('ajv');

const MIN_CHECKS = 30;
const repo = path.resolve(process.argv[2] || path.join(__dirname, '..', '..'));
const topicsDir = path.join(repo, 'topics');
const schemaDir = path.join(topicsDir, 'schemas');
const invalidDir = path.join(topicsDir, 'examples', 'invalid');
const sharedDir = path.resolve(repo, '..', 'shared');

let passed = 0;
let failed = 0;
function pass(what) {
  passed += 1;
  console.log(`ok    ${what}`);
}
function fail(what, why) {
  failed += 1;
  console.log(`FAIL  ${what}${why ? `: ${why}` : ''}`);
}
function note(what) {
  console.log(`note  ${what}`);
}
function errorsText(ajv, errors) {
  return ajv.errorsText(errors, { separator: '; ' });
}
function readJson(file) {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

// ------------------------------------------------------------------ load and compile schemas
const ajv = new Ajv({ allErrors: true });
const schemas = new Map(); // name -> { file, doc, validate }

const schemaFiles = fs.existsSync(schemaDir)
  ? fs.readdirSync(schemaDir).filter((f) => f.endsWith('.schema.json')).sort()
  : [];
if (schemaFiles.length === 0) fail(`schemas in ${path.relative(repo, schemaDir)}`, 'none found');

for (const file of schemaFiles) {
  const name = file.slice(0, -'.schema.json'.length);
  try {
    const doc = readJson(path.join(schemaDir, file));
    ajv.addSchema(doc); // validated against draft-07; registered under its $id
    schemas.set(name, { file, doc, validate: null });
  } catch (e) {
    fail(`load ${file}`, e.message);
  }
}

for (const [name, s] of schemas) {
  const { doc, file } = s;
  const missing = ['$id', 'title', 'description', 'examples'].filter((k) => !(k in doc));
  if (missing.length) {
    fail(`schema ${name} metadata`, `missing ${missing.join(', ')}`);
    continue;
  }
  if (doc.$id !== undefined && !doc.$id.endsWith(`/${file}`)) {
    fail(`schema ${name} $id`, `${doc.$id} does not end with /${file}`);
    continue;
  }
  if (!Array.isArray(doc.examples) || doc.examples.length === 0) {
    fail(`schema ${name} examples`, 'must be a non-empty array');
    continue;
  }
  try {
    s.validate = ajv.getSchema(doc.$id);
    if (!s.validate) throw new Error(`no schema registered for ${doc.$id}`);
    pass(`compile ${name}`);
  } catch (e) {
    fail(`compile ${name}`, e.message);
  }
}

function validateAgainst(name, data) {
  const s = schemas.get(name);
  if (!s || !s.validate) return { known: false };
  const ok = s.validate(data);
  return { known: true, ok, errors: ok ? '' : errorsText(ajv, s.validate.errors) };
}

function expectValid(what, name, data) {
  const r = validateAgainst(name, data);
  if (!r.known) fail(what, `no compiled schema "${name}"`);
  else if (r.ok) pass(what);
  else fail(what, r.errors);
}

// ------------------------------------------------------------------ examples must pass
for (const [name, s] of schemas) {
  if (!s.validate) continue;
  s.doc.examples.forEach((ex, i) => expectValid(`example ${name}[${i}]`, name, ex));
  const defs = s.doc.definitions || {};
  for (const [def, sub] of Object.entries(defs)) {
    if (!Array.isArray(sub.examples)) continue;
    let v;
    try {
      v = ajv.getSchema(`${s.doc.$id}#/definitions/${def}`);
    } catch (e) {
      fail(`compile ${name}#/definitions/${def}`, e.message);
      continue;
    }
    sub.examples.forEach((ex, i) => {
      const what = `example ${name}#/definitions/${def}[${i}]`;
      if (v(ex)) pass(what);
      else fail(what, errorsText(ajv, v.errors));
    });
  }
}

// ------------------------------------------------------------------ invalid cases must fail
const names = [...schemas.keys()].sort((a, b) => b.length - a.length); // longest prefix first
const invalidFiles = fs.existsSync(invalidDir)
  ? fs.readdirSync(invalidDir).filter((f) => f.endsWith('.json')).sort()
  : [];
if (invalidFiles.length === 0) fail('invalid examples', `none in ${path.relative(repo, invalidDir)}`);
for (const file of invalidFiles) {
  const what = `invalid ${file}`;
  const name = names.find((n) => file.startsWith(`${n}.`) && file.length > n.length + '.json'.length + 1);
  if (!name) {
    fail(what, 'file name does not start with a schema name followed by "."');
    continue;
  }
  let data;
  try {
    data = readJson(path.join(invalidDir, file));
  } catch (e) {
    fail(what, `not JSON: ${e.message}`);
    continue;
  }
  const r = validateAgainst(name, data);
  if (!r.known) fail(what, `schema ${name} did not compile`);
  else if (r.ok) fail(what, `accepted by ${name}, must be refused`);
  else pass(`${what} (refused: ${r.errors.slice(0, 120)})`);
}

// ------------------------------------------------------------------ cmd enum <-> args schemas
{
  const req = schemas.get('admin-request');
  const cmds = req && req.doc.properties && req.doc.properties.cmd && req.doc.properties.cmd.enum;
  const argsNames = [...schemas.keys()].filter((n) => n.startsWith('args-')).map((n) => n.slice(5)).sort();
  if (!Array.isArray(cmds)) {
    fail('admin-request cmd enum', 'missing');
  } else {
    const want = [...cmds].sort();
    if (JSON.stringify(want) === JSON.stringify(argsNames)) pass(`one args schema per command (${want.length})`);
    else fail('one args schema per command', `cmd enum [${want}] vs args schemas [${argsNames}]`);
  }
}

// ------------------------------------------------------------------ asyncapi.yaml references
{
  const file = path.join(topicsDir, 'asyncapi.yaml');
  if (!fs.existsSync(file)) {
    fail('topics/asyncapi.yaml', 'missing');
  } else {
    const text = fs.readFileSync(file, 'utf8');
    const head = text.split('\n').find((l) => /^asyncapi:/.test(l)) || '';
    if (/^asyncapi:\s*['"]?2\.6\.0['"]?\s*$/.test(head)) pass('asyncapi.yaml is AsyncAPI 2.6.0');
    else fail('asyncapi.yaml is AsyncAPI 2.6.0', `first line: ${head}`);
    const refs = [...text.matchAll(/\$ref:\s*['"]?(\.\/schemas\/[^'"\s#]+)/g)].map((m) => m[1]);
    const bad = refs.filter((r) => !fs.existsSync(path.join(topicsDir, r)));
    if (refs.length === 0) fail('asyncapi.yaml schema references', 'none found');
    else if (bad.length) fail('asyncapi.yaml schema references', `missing files: ${bad.join(', ')}`);
    else pass(`asyncapi.yaml schema references (${new Set(refs).size} files) exist`);
  }
}

// ------------------------------------------------------------------ fenced blocks of markdown
function fencedBlocks(text) {
  // -> [{ lang, body, heading, before }]: heading = last '### ' line above; before = line before fence
  const lines = text.split(/\r?\n/);
  const blocks = [];
  let heading = null;
  for (let i = 0; i < lines.length; i += 1) {
    const line = lines[i];
    const h = /^#{1,6}\s+(.*?)\s*$/.exec(line);
    if (h) {
      heading = line.startsWith('### ') ? h[1] : null;
      continue;
    }
    const open = /^(\s*)(`{3,}|~{3,})\s*([\w+-]*)/.exec(line);
    if (!open) continue;
    const fence = open[2];
    const body = [];
    let j = i + 1;
    while (j < lines.length && !lines[j].trim().startsWith(fence)) {
      body.push(lines[j]);
      j += 1;
    }
    blocks.push({ lang: open[3].toLowerCase(), body: body.join('\n'), heading, before: i > 0 ? lines[i - 1] : '', line: i + 1 });
    i = j;
  }
  return blocks;
}

// ------------------------------------------------------------------ PROTOCOL.md examples
{
  const file = path.join(sharedDir, 'PROTOCOL.md');
  if (!fs.existsSync(file)) {
    console.log(`WARNING: ${file} not found; PROTOCOL.md examples not checked`);
  } else {
    const byHeading = { check: 'check', 'chunk request': 'chunk-request', status: 'status' };
    const seen = new Set();
    for (const b of fencedBlocks(fs.readFileSync(file, 'utf8'))) {
      if (b.lang !== 'json') continue;
      const name = byHeading[b.heading];
      const what = `PROTOCOL.md line ${b.line} (### ${b.heading}) against ${name}`;
      if (!name) {
        note(`PROTOCOL.md line ${b.line}: json block under "${b.heading}" has no schema mapping; not checked`);
        continue;
      }
      seen.add(b.heading);
      let data;
      try {
        data = JSON.parse(b.body);
      } catch (e) {
        fail(what, `not JSON: ${e.message}`);
        continue;
      }
      expectValid(what, name, data);
    }
    for (const h of Object.keys(byHeading)) {
      if (!seen.has(h)) fail(`PROTOCOL.md json example under "### ${h}"`, 'not found');
    }
  }
}

// ------------------------------------------------------------------ signed manifest vector
{
  const file = path.join(sharedDir, 'vectors', 'manifest.json');
  if (!fs.existsSync(file)) {
    console.log(`WARNING: ${file} not found; manifest vector not checked`);
  } else {
    const vec = readJson(file);
    const parts = String(vec.jws || '').split('.');
    if (parts.length !== 3) {
      fail('vectors/manifest.json jws', 'not a compact JWS of three parts');
    } else {
      const decode = (p) => JSON.parse(Buffer.from(p, 'base64url').toString('utf8'));
      let header;
      let claims;
      try {
        header = decode(parts[0]);
        claims = decode(parts[1]);
      } catch (e) {
        fail('vectors/manifest.json jws', `undecodable: ${e.message}`);
      }
      if (header && claims) {
        expectValid('vectors/manifest.json header against manifest-header', 'manifest-header', header);
        expectValid('vectors/manifest.json claims against manifest-claims', 'manifest-claims', claims);
        const offer = { req: 'c-1', update: claims.update, manifest: vec.jws };
        expectValid('vectors/manifest.json jws inside an offer against offer', 'offer', offer);
        if (vec.claims && JSON.stringify(vec.claims) === JSON.stringify(claims)) {
          pass('vectors/manifest.json claims equal the decoded jws claims');
        } else {
          fail('vectors/manifest.json claims equal the decoded jws claims');
        }
      }
    }
  }
}

// ------------------------------------------------------------------ README.md blocks
{
  const file = path.join(repo, 'README.md');
  if (!fs.existsSync(file)) {
    note('README.md not found; no <!-- schema: NAME --> blocks to check');
  } else {
    let count = 0;
    for (const b of fencedBlocks(fs.readFileSync(file, 'utf8'))) {
      const m = /^\s*<!--\s*schema:\s*([A-Za-z0-9_.-]+)\s*-->\s*$/.exec(b.before);
      if (!m) continue;
      count += 1;
      const what = `README.md line ${b.line} against ${m[1]}`;
      let data;
      try {
        data = JSON.parse(b.body);
      } catch (e) {
        fail(what, `not JSON: ${e.message}`);
        continue;
      }
      expectValid(what, m[1], data);
    }
    note(`README.md: ${count} block(s) marked <!-- schema: NAME -->`);
  }
}

// ------------------------------------------------------------------ summary
const total = passed + failed;
if (total < MIN_CHECKS) console.log(`FAIL  only ${total} checks ran, expected at least ${MIN_CHECKS}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 || total < MIN_CHECKS ? 1 : 0);
