// HTTP client for the proxy benchmark; runs inside a container: node - MODE URL [COUNT]
//   rps URL COUNT   COUNT sequential GETs on one kept-alive connection
//   download URL    one GET, body counted and discarded
// Goes through $HTTP_PROXY when it is set (as in a filtered session), else direct.
// Prints {"seconds", "requests", "bytes"}; exits 1 on any status but 200.
"use strict";
const http = require("http");

const [mode, url, countArg] = process.argv.slice(2);
const target = new URL(url);
const proxy = process.env.HTTP_PROXY ? new URL(process.env.HTTP_PROXY) : null;
const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });

function get() {
  const options = proxy
    ? { host: proxy.hostname, port: proxy.port, path: target.href, headers: { Host: target.host } }
    : { host: target.hostname, port: target.port || 80, path: target.pathname };
  return new Promise((resolve, reject) => {
    const req = http.get({ ...options, agent }, (res) => {
      let bytes = 0;
      res.on("data", (chunk) => { bytes += chunk.length; });
      res.on("end", () => {
        if (res.statusCode !== 200) reject(new Error(`status ${res.statusCode}`));
        else resolve(bytes);
      });
    });
    req.on("error", reject);
  });
}

async function main() {
  const count = mode === "rps" ? Number(countArg) : 1;
  let bytes = 0;
  const start = process.hrtime.bigint();
  for (let i = 0; i < count; i++) bytes += await get();
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  agent.destroy();
  console.log(JSON.stringify({ seconds, requests: count, bytes }));
}

main().catch((err) => { console.error(String(err)); process.exit(1); });
