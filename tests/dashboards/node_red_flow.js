#!/usr/bin/env node
// Checks compose/node-red/otter-flows.json without Node-RED (not installed here): the flow's
// wiring, its subscription against topics/asyncapi.yaml, and its "rollout health" function run
// as Node-RED runs a function node (msg, context, node) on events that are valid against
// topics/schemas/event.schema.json (Debian's node-ajv).
//   NODE_PATH=/usr/share/nodejs node tests/dashboards/node_red_flow.js <repo>
// Prints one line per check and "N passed, M failed"; exits 1 on any failure.
'use strict';

const fs = require('fs');
const path = require('path');
const Ajv = require('ajv');

const repo = path.resolve(process.argv[2] || path.join(__dirname, '..', '..'));
let passed = 0;
let failed = 0;
function check(what, ok, detail) {
  if (ok) {
    passed += 1;
    console.log(`ok    ${what}`);
  } else {
    failed += 1;
    console.log(`FAIL  ${what}${detail ? ': ' + detail : ''}`);
  }
}

const flow = JSON.parse(fs.readFileSync(path.join(repo, 'compose/node-red/otter-flows.json')));
const byId = new Map(flow.map((n) => [n.id, n]));
check('node ids are unique', byId.size === flow.length);
const dangling = flow.flatMap((n) => (n.wires || []).flat()).filter((id) => !byId.has(id));
check('every wire reaches a node', dangling.length === 0, dangling.join(', '));

const inputs = flow.filter((n) => n.type === 'mqtt in');
check('one MQTT input', inputs.length === 1);
const input = inputs[0] || {};
const asyncapi = fs.readFileSync(path.join(repo, 'topics/asyncapi.yaml'), 'utf8');
check('the events channel exists in asyncapi.yaml', asyncapi.includes("'{root}/events/{kind}':"));
check('it subscribes to every event kind under the default root',
      input.topic === 'ota/v1/events/#', input.topic);
check('at QoS 0, as JSON (events are QoS 0 JSON objects)',
      input.qos === '0' && input.datatype === 'json');
check('its broker is the flow\'s broker node',
      byId.has(input.broker) && byId.get(input.broker).type === 'mqtt-broker');

const fn = byId.get('otter-rollout-health');
check('the rollout health function has two outputs, both wired',
      fn && fn.outputs === 2 && fn.wires.length === 2 && fn.wires.every((w) => w.length > 0));

// The function node, as Node-RED calls it.
const run = new Function('msg', 'context', 'node', fn.func);
const store = {};
const context = { get: (k) => store[k], set: (k, v) => { store[k] = v; } };
const warnings = [];
const node = { warn: (m) => warnings.push(m) };

const ajv = new Ajv({ allErrors: true });
ajv.addSchema(JSON.parse(fs.readFileSync(path.join(repo, 'topics/schemas/common.schema.json'))));
const validate = ajv.compile(
    JSON.parse(fs.readFileSync(path.join(repo, 'topics/schemas/event.schema.json'))));
let nextId = 1;
function statusEvent(device, state, rollout = '17') {
  const data = { state, version: '1.1.0' };
  if (state === 'failed' || state === 'rolled_back') data.error = 'test';
  const ev = { id: String(nextId++), at: '2026-11-29T04:00:00.000Z', kind: 'status', device,
               actor: null, rollout, data, instance: 'otterd-1' };
  if (!validate(ev)) throw new Error('test event invalid: ' + ajv.errorsText(validate.errors));
  return ev;
}
const send = (ev) => run({ topic: 'ota/v1/events/' + ev.kind, payload: ev }, context, node);

const example = JSON.parse(
    fs.readFileSync(path.join(repo, 'topics/schemas/event.schema.json'))).examples[1];
check('an offer event passes by', send(example) === null);
check('a status event without a rollout passes by',
      send(statusEvent('x1', 'failed', null)) === null);

// 19 devices, 3 of them failed or rolled back: too few to judge.
let out;
for (let i = 0; i < 19; i++)
  out = send(statusEvent('d' + i, i < 2 ? 'failed' : i === 2 ? 'rolled_back' : 'success'));
check('a summary per status event, counting each device once',
      out && out[0].topic === 'otter/rollout/17' && out[0].payload.reported === 19 &&
      out[0].payload.counts.success === 16 && out[0].payload.counts.failed === 2 &&
      out[0].payload.counts.rolled_back === 1, JSON.stringify(out && out[0].payload));
check('no alert below 20 reporting devices', out[1] === null && warnings.length === 0);

// The same device again: its latest state replaces the earlier one.
out = send(statusEvent('d5', 'installing'));
check('a device\'s latest state replaces its earlier one',
      out[0].payload.reported === 19 && out[0].payload.counts.success === 15 &&
      out[0].payload.counts.installing === 1);

// The 20th device: 3 of 20 = 15 % > 10 %.
out = send(statusEvent('d19', 'downloading'));
check('an alert once 20 devices reported and 15 % failed',
      out[1] && out[1].topic === 'otter/alert/17' && /3 of 20 devices/.test(out[1].payload) &&
      warnings.length === 1, JSON.stringify(out[1]));
out = send(statusEvent('d20', 'failed'));
check('the alert is not repeated', out[1] === null && warnings.length === 1);

// Another rollout has counters of its own.
out = send(statusEvent('d0', 'success', '18'));
check('rollouts are counted apart',
      out[0].payload.rollout === '18' && out[0].payload.reported === 1 && out[1] === null);

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed >= 14 ? 0 : 1);
