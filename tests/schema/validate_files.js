'use strict';
// Validates captured payloads against topics/schemas: every file <dir>/<schema>--<n>.json must
// be valid against topics/schemas/<schema>.schema.json. The integration tests capture what the
// running service really sends, so the schemas and the code cannot drift apart.
// Usage: NODE_PATH=/usr/share/nodejs node validate_files.js <repo> <dir>
const fs = require('fs');
const path = require('path');
const Ajv = require('ajv');

const repo = path.resolve(process.argv[2]);
const dir = path.resolve(process.argv[3]);
const schemaDir = path.join(repo, 'topics', 'schemas');
const ajv = new Ajv({ allErrors: true });
for (const f of fs.readdirSync(schemaDir).filter((f) => f.endsWith('.schema.json')))
  ajv.addSchema(JSON.parse(fs.readFileSync(path.join(schemaDir, f), 'utf8')));

let passed = 0;
let failed = 0;
for (const f of fs.readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) {
  const name = f.split('--')[0];
  const id = `https://otter.example/topics/schemas/${name}.schema.json`;
  const validate = ajv.getSchema(id);
  const data = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
  if (!validate) {
    console.log(`FAIL ${f}: no schema ${name}`);
    failed++;
  } else if (validate(data)) {
    console.log(`ok   ${f}`);
    passed++;
  } else {
    console.log(`FAIL ${f}: ${ajv.errorsText(validate.errors)}\n     ${JSON.stringify(data)}`);
    failed++;
  }
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
