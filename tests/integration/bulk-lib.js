// Shared by the bulk*.test.js files: the test server's control requests.
'use strict';

// adminOf(srv)(method, path, body): a request to the test server's
// /$test/... endpoints (JSON in, JSON out); once more, twice, on a
// kept-alive socket the server closed meanwhile (a long adapter run
// between two requests).
function adminOf(srv) {
  return async (method, p, body) => {
    for (let attempt = 1; ; attempt++) {
      try {
        const r = await fetch(new URL(srv.base).origin + p, {
          method,
          headers: { 'content-type': 'application/json' },
          body: body === undefined ? undefined : JSON.stringify(body),
        });
        return await r.json();
      } catch (err) {
        if (attempt >= 3) throw err;
      }
    }
  };
}

module.exports = { adminOf };
