// The browser test's page script (tests/integration/test_websocket_browser.py).
// docs/websocket.md shows it as the way to connect from a browser.
"use strict";

const params = new URLSearchParams(location.search);
const broker = `wss://${params.get("host")}:${params.get("port")}`;
const login = params.get("user");
const passcode = params.get("password");

function report(what, detail = "") {
  fetch("/report", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ what, detail }),
  });
}

// STOMP over WebSocket with stomp.js: what arrives on /topic/browser.in is
// answered on /topic/browser.out.
const stompClient = new StompJs.Client({
  brokerURL: `${broker}/stomp`,
  connectHeaders: { login, passcode },
  reconnectDelay: 0,
  onConnect: () => {
    stompClient.watchForReceipt("subscribed", () => report("stomp-ready"));
    stompClient.subscribe("/topic/browser.in", (message) => {
      stompClient.publish({ destination: "/topic/browser.out", body: `stomp got ${message.body}` });
      report("stomp-received", message.body);
    }, { receipt: "subscribed" });
  },
  onStompError: (frame) => report("error", `STOMP: ${frame.headers.message}`),
  onWebSocketError: () => report("error", "STOMP: WebSocket error"),
});
stompClient.activate();

// MQTT over WebSocket with mqtt.js: what arrives on browser/mqtt-in is
// answered on browser/mqtt-out.
const mqttClient = mqtt.connect(`${broker}/mqtt`, {
  username: login,
  password: passcode,
  protocolVersion: 5,
  reconnectPeriod: 0,
});
mqttClient.on("connect", () => {
  mqttClient.subscribe("browser/mqtt-in", { qos: 1 }, (err) => {
    report(err ? "error" : "mqtt-ready", err ? `MQTT: ${err.message}` : "");
  });
});
mqttClient.on("message", (topic, payload) => {
  mqttClient.publish("browser/mqtt-out", `mqtt got ${payload}`, { qos: 1 });
  report("mqtt-received", payload.toString());
});
mqttClient.on("error", (err) => report("error", `MQTT: ${err.message}`));
