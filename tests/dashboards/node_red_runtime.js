#!/usr/bin/env node
// Runs compose/node-red/otter-flows.json in a real Node-RED runtime (node-red-node-test-helper
// starts one in-process), its MQTT broker node pointed at a broker given on the command line.
// Prints "ready" once the flow's MQTT node is connected, then one JSON line per message that
// reaches the flow's summary or alert debug node, until SIGTERM or SIGINT.
// Used by tests/integration/node_red_test.cpp on events otterd publishes.
//   node tests/dashboards/node_red_runtime.js <repo> <node-red deps dir> <host> <port> <user>
//   (password: OTTER_NODE_RED_MQTT_PASSWORD; the deps dir holds node_modules from
//   tests/dashboards/node-red/package-lock.json, installed by scripts/test.sh)
'use strict';

const fs = require('fs');
const path = require('path');

const [repo, deps, host, port, user] = process.argv.slice(2);
if (!repo || !deps || !host || !port || !user) {
  console.error('usage: node_red_runtime.js <repo> <node-red deps dir> <host> <port> <user>');
  process.exit(2);
}
const modules = path.join(path.resolve(deps), 'node_modules');
const repoDir = path.resolve(repo);
// The helper looks for Node-RED from the working folder's package.json: the deps folder's.
process.chdir(deps);
const helper = require(path.join(modules, 'node-red-node-test-helper'));
helper.init(require.resolve(path.join(modules, 'node-red')));
const core = path.join(modules, '@node-red', 'nodes', 'core');
const nodes = [
  require(path.join(core, 'network', '10-mqtt.js')),
  require(path.join(core, 'function', '10-function.js')),
  require(path.join(core, 'common', '21-debug.js')),
];

const flow = JSON.parse(fs.readFileSync(path.join(repoDir, 'compose/node-red/otter-flows.json')));
const broker = flow.find((n) => n.type === 'mqtt-broker');
broker.broker = host;
broker.port = String(port);
const credentials = {
  [broker.id]: { user: user, password: process.env.OTTER_NODE_RED_MQTT_PASSWORD || '' },
};

function watch(id, name) {
  const n = helper.getNode(id);
  if (!n) throw new Error(`the flow has no node ${id}`);
  n.on('input', (msg) => {
    console.log(JSON.stringify({ node: name, topic: msg.topic, payload: msg.payload }));
  });
}

helper.startServer(() => {
  helper.load(nodes, flow, credentials, () => {
    watch('otter-summaries', 'summary');
    watch('otter-alerts', 'alert');
    const b = helper.getNode(broker.id);
    const started = Date.now();
    const poll = setInterval(() => {
      if (b.connected) {
        clearInterval(poll);
        console.log('ready');
      } else if (Date.now() - started > 20000) {
        console.error(`the flow's MQTT node did not connect to ${host}:${port} as ${user}`);
        process.exit(1);
      }
    }, 50);
  });
});

function stop() {
  helper.unload().then(() => helper.stopServer(() => process.exit(0)));
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
