// An echo server on Node's `ws` package, a peer for the tools tests (tests/tools/).
//
//   node ws_echo.js PORT        (0 picks a free port)
//
// Prints "listening PORT" once it accepts connections, then echoes every message
// (text as text, binary as binary) at every path. ws speaks RFC 6455 and hybi-08
// (Sec-WebSocket-Version 13 and 8) and nothing older; permessage-deflate is on and
// the first subprotocol offered is chosen (ws's default), so a probe has something
// to find in both.
"use strict";

const { WebSocketServer } = require("ws");

const port = Number(process.argv[2] || 0);
const server = new WebSocketServer({ host: "127.0.0.1", port, perMessageDeflate: true });

server.on("listening", () => {
  console.log("listening " + server.address().port);
});

server.on("connection", (ws) => {
  ws.on("error", () => {});
  ws.on("message", (data, isBinary) => {
    ws.send(data, { binary: isBinary });
  });
});

process.on("SIGTERM", () => process.exit(0));
