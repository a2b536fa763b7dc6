// A backend on Node's `ws` package for the gateway tests (tests/gateway/).
//
//   node ws_backend.js PORT        (0 picks a free port)
//
// Prints "listening PORT" once it accepts connections. By path:
//   /headers...    first a JSON text message {path, headers, subprotocol}, with the
//                  request's header fields as sent (rawHeaders), then it echoes
//   /close/NNNN    echoes one message, then closes with code NNNN and reason "bye"
//   /binary        sends the bytes 00 01 02 first, then echoes
//   /record/KEY    echoes, and keeps its request's header fields and how it closed
//                  (code, reason) under KEY
//   /recorded/KEY  one JSON text message: what is kept under KEY (null if nothing
//                  after 5 s), then a close
//   /pings         echoes, but answers the text "pings?" with the number of pings
//                  received so far (ws answers each with a pong itself)
//   anything else  echoes: text as text, binary as binary
// Subprotocols: "superchat" if offered, else "chat", else none.
"use strict";

const { WebSocketServer } = require("ws");

const port = Number(process.argv[2] || 0);
const records = new Map();

function handleProtocols(protocols) {
  for (const name of ["superchat", "chat"]) {
    if (protocols.has(name)) {
      return name;
    }
  }
  return false;
}

const server = new WebSocketServer({ host: "127.0.0.1", port, handleProtocols });

server.on("listening", () => {
  console.log("listening " + server.address().port);
});

function headersOf(request) {
  const raw = request.rawHeaders;
  const headers = [];
  for (let i = 0; i < raw.length; i += 2) {
    headers.push([raw[i], raw[i + 1]]);
  }
  return headers;
}

function sendRecord(ws, key, tries) {
  if (records.has(key) || tries <= 0) {
    ws.send(JSON.stringify(records.get(key) || null));
    ws.close();
    return;
  }
  setTimeout(() => sendRecord(ws, key, tries - 1), 50);
}

server.on("connection", (ws, request) => {
  const path = request.url;
  ws.on("error", () => {});
  if (path.startsWith("/recorded/")) {
    sendRecord(ws, path.slice("/recorded/".length), 100);
    return;
  }
  if (path.startsWith("/record/")) {
    const key = path.slice("/record/".length).split("?")[0];
    ws.on("close", (code, reason) => {
      records.set(key, { path, headers: headersOf(request), code, reason: reason.toString() });
    });
  }
  if (path.startsWith("/headers")) {
    ws.send(JSON.stringify({ path, headers: headersOf(request), subprotocol: ws.protocol || null }));
  } else if (path === "/binary") {
    ws.send(Buffer.from([0, 1, 2]), { binary: true });
  }
  if (path === "/pings") {
    let pings = 0;
    ws.on("ping", () => { pings += 1; });
    ws.on("message", (data, isBinary) => {
      const asked = !isBinary && data.toString() === "pings?";
      ws.send(asked ? String(pings) : data, { binary: isBinary });
    });
    return;
  }
  const closing = path.startsWith("/close/") ? Number(path.slice(7, 11)) : null;
  ws.on("message", (data, isBinary) => {
    ws.send(data, { binary: isBinary });
    if (closing !== null) {
      ws.close(closing, "bye");
    }
  });
});

process.on("SIGTERM", () => process.exit(0));
