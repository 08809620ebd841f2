// s3rver (an S3-compatible server that accepts If-None-Match / If-Match and
// does not enforce them) on 127.0.0.1, an ephemeral port, for the tests of
// the conditional-write probe. Usage: node s3rver_server.js DIRECTORY BUCKET
// Prints "listening on PORT" once serving; stops on SIGTERM or stdin EOF.
"use strict";
const S3rver = require("s3rver");

const [directory, bucket] = process.argv.slice(2);
const server = new S3rver({
  address: "127.0.0.1",
  port: 0,
  silent: true,
  directory,
  allowMismatchedSignatures: true,
  vhostBuckets: false,
  configureBuckets: [{ name: bucket }],
});

let running = false;
server.run().then(
  (address) => {
    running = true;
    console.log(`listening on ${address.port}`);
  },
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
// The parent closing our stdin (or dying) stops the server too.
const stop = () => (running ? server.close().then(() => process.exit(0)) : process.exit(0));
process.on("SIGTERM", stop);
process.stdin.on("end", stop);
process.stdin.resume();
