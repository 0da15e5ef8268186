// A second, independent AMQP 1.0 client for the tests: Node's rhea over TLS with
// SASL PLAIN. Run by tests/amqp/test_rhea.py with the broker's port, CA and user in
// the environment; prints one JSON line of what it saw, exits 0, or exits 1 saying why.
'use strict';
const fs = require('fs');
const rhea = require('rhea');

const env = process.env;
const count = Number(env.COUNT);
const queue = env.QUEUE;
const topic = env.TOPIC;
const seen = { accepted: 0, received: [], maxUnsettled: 0, durable: null, window: null };

const failAfter = setTimeout(() => {
  console.error('timed out: ' + JSON.stringify(seen));
  process.exit(1);
}, Number(env.TIMEOUT_MS));

const container = rhea.create_container({ id: 'rhea-' + queue });
const conn = container.connect({
  host: 'localhost',
  port: Number(env.PORT),
  transport: 'tls',
  ca: [fs.readFileSync(env.CA)],
  servername: 'localhost',
  username: env.AMQP_USER,
  password: env.AMQP_PASSWORD,
  reconnect: false,
});
conn.on('connection_error', (ctx) => {
  console.error('connection error: ' + JSON.stringify(ctx.connection.error));
  process.exit(1);
});
conn.on('disconnected', (ctx) => {
  if (seen.durable === null) {
    console.error('disconnected: ' + (ctx.error ? ctx.error.message : ''));
    process.exit(1);
  }
});

// 1. Unsettled sends to a queue, each accepted.
let sent = 0;
const sender = conn.open_sender(queue);
sender.on('sendable', () => {
  // The session window the broker announced (its begin frame's incoming-window).
  if (seen.window === null) seen.window = sender.session.outgoing.remote_window;
  while (sender.sendable() && sent < count) {
    sender.send({ body: 'm' + sent, durable: true, application_properties: { n: sent } });
    sent++;
  }
});
sender.on('accepted', () => {
  seen.accepted++;
  if (seen.accepted === count) receive();
});
sender.on('rejected', (ctx) => {
  console.error('rejected: ' + JSON.stringify(ctx.delivery.remote_state));
  process.exit(1);
});

// 2. Received under a credit window of 5, accepted one by one.
function receive() {
  const receiver = conn.open_receiver({ source: queue, credit_window: 0, autoaccept: false });
  receiver.add_credit(5);
  let held = 0;
  receiver.on('message', (ctx) => {
    held++;
    seen.maxUnsettled = Math.max(seen.maxUnsettled, held);
    seen.received.push([ctx.message.body, ctx.message.application_properties.n]);
    setImmediate(() => {
      ctx.delivery.accept();
      held--;
      receiver.add_credit(1);
      if (seen.received.length === count) durable();
    });
  });
}

// 3. A durable subscription: detached, a message published, reattached, received.
let durableStarted = false;
function durable() {
  if (durableStarted) return;
  durableStarted = true;
  const options = {
    name: 'rhea-sub',
    source: { address: topic, durable: 2, expiry_policy: 'never' },
  };
  const first = conn.open_receiver(options);
  first.on('receiver_open', () => {
    first.detach();
  });
  first.on('receiver_close', () => {
    const publisher = conn.open_sender(topic);
    publisher.on('sendable', () => {
      if (publisher.sent) return;
      publisher.sent = true;
      publisher.send({ body: 'kept while detached', durable: true });
    });
    publisher.on('accepted', () => {
      const again = conn.open_receiver(options);
      again.on('message', (ctx) => {
        seen.durable = ctx.message.body;
        console.log(JSON.stringify(seen));
        clearTimeout(failAfter);
        conn.close();
      });
    });
  });
}
conn.on('connection_close', () => process.exit(0));
