// The peer scripts/bench measures percore's deferred answers against: Node's http module,
// answering GET /delay?ms=N from setTimeout (as an Express app waiting on a database would),
// and GET / with "Hello World!". Prints "Listening on port N" (port 0: any free one, as
// hello_cores does) and exits 0 on SIGTERM.
'use strict';
const http = require('http');

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://localhost');
  if (url.pathname === '/delay') {
    const ms = Number(url.searchParams.get('ms'));
    if (!Number.isInteger(ms) || ms < 0 || ms > 60000) {
      res.writeHead(400).end('ms must be 0..60000\n');
      return;
    }
    setTimeout(() => res.end(`delayed ${ms} ms`), ms);
  } else if (url.pathname === '/') {
    res.end('Hello World!');
  } else {
    res.writeHead(404).end('Not Found\n');
  }
});
server.keepAliveTimeout = 60000;
server.listen(Number(process.argv[2] || 0), '127.0.0.1', () => {
  console.log(`Listening on port ${server.address().port}`);
});
process.on('SIGTERM', () => process.exit(0));
