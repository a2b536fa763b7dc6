// A WebSocket client over HTTP/2 (RFC 8441) on Node's built-in `http2` module, a real
// peer for tests/live/test_node_http2.py.
//
//   node h2_client.js URL [--ca FILE] [--path P]... [--protocol P] [--origin O]
//                         [--reset P]
//
// URL is https://HOST:PORT (TLS, ALPN h2, trusting only the CA in FILE) or
// http://HOST:PORT (cleartext HTTP/2 with prior knowledge). The client waits for the
// server's SETTINGS_ENABLE_CONNECT_PROTOCOL, then opens one WebSocket per --path (default
// one, "/") at once on the same HTTP/2 session, with an extended CONNECT. On each it
// sends an ASCII, a CJK and an emoji text and a 64 KiB binary message, checks each echo
// byte for byte, sends a close 1000 "done", waits for the server's close frame and the
// end of the stream, and ends its own side; a refused CONNECT is reported with its
// status and body. With --reset P, the WebSocket at path P is reset (RST_STREAM CANCEL)
// after its first echo, while the others wait in mid-exchange until it is gone, then go
// on. The RFC 6455 frames are written by hand here
// (masked client frames, server frames parsed), so nothing but Node's HTTP/2 is borrowed.
//
// Prints one JSON line: the session's facts and one result per WebSocket.
"use strict";

const crypto = require("crypto");
const fs = require("fs");
const http2 = require("http2");

const TEXTS = ["Hello, wscompat over h2! ~ 0123456789", "中文字符 over h2", "😀🎉 over h2"];
const BINARY = Buffer.alloc(65536);
for (let i = 0; i < BINARY.length; i++) BINARY[i] = i % 251;
const TIMEOUT_MS = 30000;

function parseArgs(argv) {
  const args = { url: null, ca: null, paths: [], protocol: null, origin: null, reset: null };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new Error(arg + " needs a value");
      return argv[++i];
    };
    if (arg === "--ca") args.ca = value();
    else if (arg === "--path") args.paths.push(value());
    else if (arg === "--protocol") args.protocol = value();
    else if (arg === "--origin") args.origin = value();
    else if (arg === "--reset") args.reset = value();
    else if (args.url === null) args.url = arg;
    else throw new Error("unexpected argument " + arg);
  }
  if (args.url === null) throw new Error("usage: node h2_client.js URL [options]");
  if (args.paths.length === 0) args.paths.push("/");
  return args;
}

// -- RFC 6455 frames, by hand ------------------------------------------------------------

function encodeFrame(opcode, payload) {
  const length = payload.length;
  let head;
  if (length < 126) {
    head = Buffer.alloc(2);
    head[1] = 0x80 | length;
  } else if (length < 65536) {
    head = Buffer.alloc(4);
    head[1] = 0x80 | 126;
    head.writeUInt16BE(length, 2);
  } else {
    head = Buffer.alloc(10);
    head[1] = 0x80 | 127;
    head.writeBigUInt64BE(BigInt(length), 2);
  }
  head[0] = 0x80 | opcode; // FIN, no RSV bits
  const mask = crypto.randomBytes(4);
  const masked = Buffer.alloc(length);
  for (let i = 0; i < length; i++) masked[i] = payload[i] ^ mask[i & 3];
  return Buffer.concat([head, mask, masked]);
}

// Server frames: unmasked, possibly fragmented, possibly split across DATA frames.
class FrameParser {
  constructor() {
    this.buffer = Buffer.alloc(0);
    this.fragments = null; // [opcode, [Buffer...]] while a message is fragmented
  }

  // Returns the complete frames in `data` as {opcode, payload}, messages reassembled.
  feed(data) {
    this.buffer = Buffer.concat([this.buffer, data]);
    const out = [];
    for (;;) {
      const buf = this.buffer;
      if (buf.length < 2) break;
      const fin = (buf[0] & 0x80) !== 0;
      const rsv = buf[0] & 0x70;
      const opcode = buf[0] & 0x0f;
      if (rsv) throw new Error("RSV bits set by the server: 0x" + rsv.toString(16));
      if (buf[1] & 0x80) throw new Error("the server masked a frame");
      let length = buf[1] & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (buf.length < 4) break;
        length = buf.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (buf.length < 10) break;
        length = Number(buf.readBigUInt64BE(2));
        offset = 10;
      }
      if (buf.length < offset + length) break;
      const payload = buf.subarray(offset, offset + length);
      this.buffer = buf.subarray(offset + length);
      if (opcode >= 8) {
        out.push({ opcode, payload: Buffer.from(payload) });
      } else if (opcode === 0) {
        if (this.fragments === null) throw new Error("continuation without a message");
        this.fragments[1].push(Buffer.from(payload));
        if (fin) {
          out.push({ opcode: this.fragments[0], payload: Buffer.concat(this.fragments[1]) });
          this.fragments = null;
        }
      } else if (fin) {
        out.push({ opcode, payload: Buffer.from(payload) });
      } else {
        this.fragments = [opcode, [Buffer.from(payload)]];
      }
    }
    return out;
  }
}

// -- one WebSocket over one stream -------------------------------------------------------

// Settled once the WebSocket named by --reset was reset.
let markReset = () => {};
const resetDone = new Promise((resolve) => { markReset = resolve; });

function openWebSocket(session, authority, scheme, path, args) {
  const headers = {
    ":method": "CONNECT",
    ":protocol": "websocket",
    ":scheme": scheme,
    ":path": path,
    ":authority": authority,
    "sec-websocket-version": "13",
  };
  if (args.protocol !== null) headers["sec-websocket-protocol"] = args.protocol;
  if (args.origin !== null) headers.origin = args.origin;
  const result = { path, status: null, subprotocol: null, body: null, echoes: [],
                   close: null, streamEnded: false, rstCode: null, reset: false,
                   errors: [] };
  const stream = session.request(headers, { endStream: false });
  const parser = new FrameParser();
  const inbox = [];
  let waiter = null;
  const deliver = (item) => {
    if (waiter !== null) {
      const w = waiter;
      waiter = null;
      w(item);
    } else {
      inbox.push(item);
    }
  };
  const next = () => new Promise((resolve) => {
    if (inbox.length) resolve(inbox.shift());
    else waiter = resolve;
  });

  stream.on("response", (responseHeaders) => {
    result.status = Number(responseHeaders[":status"]);
    result.subprotocol = responseHeaders["sec-websocket-protocol"] || null;
    deliver({ kind: "response" });
  });
  stream.on("data", (chunk) => {
    if (result.status !== 200) { // a refusal's body
      result.body = (result.body || "") + chunk.toString("utf8");
      return;
    }
    let frames;
    try {
      frames = parser.feed(chunk);
    } catch (error) {
      result.errors.push(String(error));
      stream.close(http2.constants.NGHTTP2_PROTOCOL_ERROR);
      return;
    }
    for (const frame of frames) {
      if (frame.opcode === 9) stream.write(encodeFrame(10, frame.payload));
      else if (frame.opcode !== 10) deliver({ kind: "frame", frame });
    }
  });
  stream.on("end", () => {
    result.streamEnded = true;
    deliver({ kind: "end" });
  });
  stream.on("close", () => {
    if (stream.rstCode) result.rstCode = stream.rstCode;
    deliver({ kind: "closed" });
  });
  stream.on("error", (error) => result.errors.push(String(error)));

  const expectFrame = async (what) => {
    const item = await next();
    if (item.kind !== "frame") throw new Error(`${what}: the stream gave ${item.kind}`);
    return item.frame;
  };

  return (async () => {
    try {
      const first = await next();
      if (first.kind !== "response") throw new Error("no response: the stream gave " + first.kind);
      if (result.status !== 200) { // refused: read the answer, end our side too
        stream.end();
        let item = first;
        while (item.kind !== "closed") item = await next();
        return result;
      }
      for (const text of TEXTS) {
        stream.write(encodeFrame(1, Buffer.from(text, "utf8")));
        const frame = await expectFrame("echo of " + JSON.stringify(text));
        const got = frame.payload.toString("utf8");
        result.echoes.push({ kind: frame.opcode === 1 ? "text" : "opcode " + frame.opcode,
                             ok: frame.opcode === 1 && got === text, text: got,
                             byteLength: frame.payload.length });
        if (args.reset === path) { // abort in mid-exchange, as a tab being closed does
          stream.close(http2.constants.NGHTTP2_CANCEL);
          let item = await next();
          while (item.kind !== "closed") item = await next();
          result.reset = true;
          return result;
        }
        if (args.reset !== null && result.echoes.length === 1) await resetDone;
      }
      stream.write(encodeFrame(2, BINARY));
      const frame = await expectFrame("echo of the binary message");
      result.echoes.push({ kind: frame.opcode === 2 ? "binary" : "opcode " + frame.opcode,
                           ok: frame.opcode === 2 && frame.payload.equals(BINARY),
                           byteLength: frame.payload.length });

      const reason = Buffer.from("done");
      const closePayload = Buffer.alloc(2 + reason.length);
      closePayload.writeUInt16BE(1000, 0);
      reason.copy(closePayload, 2);
      stream.write(encodeFrame(8, closePayload));
      const close = await expectFrame("the server's close frame");
      if (close.opcode !== 8) throw new Error("expected a close frame, got " + close.opcode);
      result.close = {
        code: close.payload.length >= 2 ? close.payload.readUInt16BE(0) : null,
        reason: close.payload.subarray(2).toString("utf8"),
      };
      // The server ends its side after the closing handshake; then we end ours.
      let item = await next();
      if (item.kind === "frame") throw new Error("a frame after the close frame");
      stream.end();
      while (item.kind !== "closed") item = await next();
    } catch (error) {
      result.errors.push(String(error));
      if (!stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
    } finally {
      if (args.reset === path) markReset(); // whatever happened, the others go on
    }
    return result;
  })();
}

// -- the session ---------------------------------------------------------------------

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const url = new URL(args.url);
  const scheme = url.protocol.replace(":", "");
  const options = {};
  if (args.ca !== null) options.ca = fs.readFileSync(args.ca);
  const report = { alpn: null, enableConnectProtocol: null, results: [], errors: [] };
  const session = http2.connect(args.url, options);
  session.on("error", (error) => report.errors.push("session: " + String(error)));
  const timer = setTimeout(() => {
    report.errors.push("timeout");
    console.log(JSON.stringify(report));
    process.exit(2);
  }, TIMEOUT_MS);

  await new Promise((resolve, reject) => {
    // Node refuses a :protocol until the server's SETTINGS said it may be used.
    session.once("remoteSettings", resolve);
    session.once("error", reject);
  });
  report.alpn = session.alpnProtocol || null;
  report.enableConnectProtocol = session.remoteSettings.enableConnectProtocol === true;
  if (!report.enableConnectProtocol) {
    report.errors.push("the server did not enable the extended CONNECT");
  } else {
    const authority = url.host;
    report.results = await Promise.all(
      args.paths.map((path) => openWebSocket(session, authority, scheme, path, args)),
    );
  }
  await new Promise((resolve) => session.close(resolve));
  clearTimeout(timer);
  console.log(JSON.stringify(report));
}

main().catch((error) => {
  console.log(JSON.stringify({ errors: ["fatal: " + String(error)] }));
  process.exit(1);
});
