'use strict';
// Request log for GET /$test/requests (ours): the method, URL and headers of
// the last requests to the FHIR base, so that a test can see what a client
// sent (e.g. that every request of one patient carries the same W3C
// traceparent trace id). Bounded: the oldest entries are dropped past
// MAX_ENTRIES. Authorization values are not kept (tokens are secrets, and
// the bearer mode has its own record of them).  Each entry also names the
// connection it came on (ours): `connection`, a serial per socket, and
// `onConnection`, which of that socket's requests it is (1: the client
// opened the connection for it); a Bundle POSTed to the base gets
// `bundleType` once its body is read (app.js).

const MAX_ENTRIES = 5000;

class RequestLog {
  constructor() {
    // kept across clear(): a socket still open keeps its serial and count
    this.sockets = new WeakMap();
    this.nextConnection = 0;
    this.clear();
  }

  clear() {
    this.entries = [];
    this.dropped = 0;
  }

  record(req) {
    const headers = {};
    for (const [name, value] of Object.entries(req.headers)) {
      headers[name] = name === 'authorization' ? '(not kept)' : value;
    }
    let conn = this.sockets.get(req.socket);
    if (!conn) {
      conn = { id: ++this.nextConnection, requests: 0 };
      this.sockets.set(req.socket, conn);
    }
    conn.requests += 1;
    const entry = { method: req.method, url: req.url, headers, connection: conn.id, onConnection: conn.requests };
    this.entries.push(entry);
    if (this.entries.length > MAX_ENTRIES) {
      this.entries.shift();
      this.dropped += 1;
    }
    return entry;
  }

  // ?header=NAME keeps the entries that have that header (lower case).
  snapshot(query) {
    const name = query.get('header');
    const entries = name ? this.entries.filter((e) => name.toLowerCase() in e.headers) : this.entries;
    return { dropped: this.dropped, requests: entries };
  }
}

module.exports = { RequestLog };
