// One AMQP 1.0 benchmark run with Node's rhea over TLS (bench/amqp.py drives it).
// Usage: node amqp_bench.js <port> <ca.pem> <user> <password> <address> <mode> <count> <warmup> [rate]
//   window: durable 1 KiB messages sent unsettled, at most 100 awaiting their disposition;
//           the broker's `accepted` is what lets the next one go (at-least-once)
//   paced:  the same at <rate> msg/s, for latency
// A receiver on its own connection takes them under a credit window of 1000 and accepts
// each (unsettled on both sides). Latency is from send to receipt, on one clock.
// Prints: RESULT <msg/s> <p50 ms> <p99 ms> <accepted>
'use strict';
const fs = require('fs');
const rhea = require('rhea');

const [port, ca, user, password, address, mode, countArg, warmupArg, rateArg] =
  process.argv.slice(2);
const count = Number(countArg);
const warmup = Number(warmupArg);
const rate = Number(rateArg || 0);
const WINDOW = 100;
const body = Buffer.alloc(1024, 120);

const failAfter = setTimeout(() => {
  console.error('timed out: ' + JSON.stringify(phase && { sent: phase.sent, accepted: phase.accepted, received: phase.received, credit: sender.credit, sendable: sender.sendable() }));
  process.exit(2);
}, Number(process.env.BENCH_TIMEOUT_MS || 600000));

function connect(id) {
  const container = rhea.create_container({ id });
  const conn = container.connect({
    host: 'localhost',
    port: Number(port),
    transport: 'tls',
    ca: [fs.readFileSync(ca)],
    servername: 'localhost',
    username: user,
    password,
    reconnect: false,
    idle_time_out: 0,
  });
  conn.on('connection_error', (ctx) => fail('connection error', ctx.connection.error));
  conn.on('disconnected', (ctx) => {
    if (!done) fail('disconnected', ctx.error && ctx.error.message);
  });
  return conn;
}

function fail(what, detail) {
  console.error(what + ': ' + JSON.stringify(detail));
  process.exit(2);
}

let done = false;
const now = () => Number(process.hrtime.bigint()) / 1e6; // ms

// Durable terminus, so a broker that declares the queue on attach declares a durable one.
const target = { address, durable: 2 };
const producer = connect('bench-producer-' + mode);
const consumer = connect('bench-consumer-' + mode);
// Unsettled transfers (the default sender settle mode); rhea settles its side once the
// broker's outcome arrives.
const sender = producer.open_sender({ target });
const receiver = consumer.open_receiver({
  source: { address, durable: 2 },
  credit_window: 1000,
  autoaccept: true,
});

let phase = null; // the run in progress: counts, latencies, start, rate, resolve
let timer = null;

function pump() {
  const p = phase;
  if (!p) return;
  while (p.sent < p.total && p.sent - p.accepted < WINDOW && sender.sendable()) {
    if (p.rate > 0 && now() < p.start + (p.sent * 1000) / p.rate) {
      if (!timer) {
        const wait = Math.max(0, p.start + (p.sent * 1000) / p.rate - now());
        timer = setTimeout(() => {
          timer = null;
          pump();
        }, wait);
      }
      return;
    }
    sender.send({ body: rhea.message.data_section(body), durable: true,
                  application_properties: { sent: now() } });
    p.sent++;
  }
}

sender.on('sendable', pump);
sender.on('accepted', () => {
  if (!phase) return;
  phase.accepted++;
  pump();
  finishIfDone();
});
sender.on('rejected', (ctx) => fail('rejected', ctx.delivery.remote_state));
sender.on('released', (ctx) => fail('released', ctx.delivery.remote_state));
receiver.on('message', (ctx) => {
  const p = phase;
  if (!p) return;
  p.latencies.push(now() - ctx.message.application_properties.sent);
  p.received++;
  finishIfDone();
});

function finishIfDone() {
  const p = phase;
  if (p && p.received >= p.total && p.accepted >= p.total) {
    phase = null;
    p.resolve(now() - p.start);
  }
}

function run(total, pace) {
  return new Promise((resolve) => {
    const latencies = [];
    phase = { total, sent: 0, accepted: 0, received: 0, latencies, start: now(), rate: pace,
              resolve: (ms) => resolve({ ms, latencies }) };
    pump();
  });
}

let opened = 0;
function ready() {
  if (++opened < 2) return;
  (async () => {
    if (warmup > 0) await run(warmup, 0);
    const { ms, latencies } = await run(count, rate);
    latencies.sort((a, b) => a - b);
    const p50 = latencies[Math.floor(count / 2)];
    const p99 = latencies[Math.min(count - 1, Math.floor((count * 99) / 100))];
    const perSecond = (count / (ms / 1000)).toFixed(1);
    console.log(`RESULT ${perSecond} ${p50.toFixed(3)} ${p99.toFixed(3)} ${count}`);
    done = true;
    clearTimeout(failAfter);
    producer.close();
    consumer.close();
  })();
}
sender.on('sendable', function once() {
  sender.removeListener('sendable', once);
  ready();
});
receiver.on('receiver_open', ready);
