// The peer scripts/bench measures percore's WebSocket echo against: Node's http server with the
// `ws` package (8.x, from npm: scripts/setup --bench installs it into bench/node_modules) in one
// process, echoing every message on /ws/echo as it came (text as text, binary as binary), with
// permessage-deflate off as the bench's client offers none. GET / answers "Hello World!" (the
// bench's readiness check). Prints "Listening on port N" (port 0: any free one, as hello_cores
// does) and exits 0 on SIGTERM.
'use strict';
const http = require('http');
const { WebSocketServer } = require('ws');

const server = http.createServer((req, res) => {
  if (req.url === '/') {
    res.end('Hello World!');
  } else {
    res.writeHead(404).end('Not Found\n');
  }
});
const wss = new WebSocketServer({ server, path: '/ws/echo', perMessageDeflate: false });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});
server.keepAliveTimeout = 60000;
server.listen(Number(process.argv[2] || 0), '127.0.0.1', () => {
  console.log(`Listening on port ${server.address().port}`);
});
process.on('SIGTERM', () => process.exit(0));
