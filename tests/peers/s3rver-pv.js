#!/usr/bin/env node
/*
 * s3rver-pv.js — s3rver 3 (npm, pinned in package.json) as pv's tests run
 * it: on 127.0.0.1, port 0 for a free one (written to --port-file once it
 * listens), the bucket made at start, virtual-hosted names under
 * "localhost" (BUCKET.s3.localhost), silent.
 *
 * s3rver 3 has no ListParts and no AbortMultipartUpload (it answers 405
 * MethodNotAllowed). The replicator resumes an upload cut short from
 * ListParts, so this adds the two, in the shape AWS documents, over
 * s3rver's own upload folder (DIR/BUCKET/.../uploads/ID/N and N.md5).
 * s3rver 3 also ignores If-None-Match: * on PUT (AWS has honoured it
 * since 2024: 412 PreconditionFailed when the key exists); pvd's
 * replication lease takes its object with it, so this adds that too.
 * Everything else is s3rver's own behaviour: tests that check what
 * s3rver does are checking s3rver.
 *
 * --watch-pid PID: exit when that process is gone, so a test that dies
 * cannot leave a server behind.
 */
'use strict';

const fs = require('fs');
const path = require('path');
const S3rver = require('s3rver');
const S3Error = require('s3rver/lib/models/error');

function parseArgs(argv) {
  const out = {};
  for (let i = 2; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || i + 1 >= argv.length) {
      throw new Error(`usage: s3rver-pv.js --dir D --port P --bucket B --port-file F [--watch-pid PID]`);
    }
    out[argv[i].slice(2)] = argv[i + 1];
  }
  for (const k of ['dir', 'port', 'bucket', 'port-file']) {
    if (!out[k]) throw new Error(`missing --${k}`);
  }
  return out;
}

const args = parseArgs(process.argv);

const server = new S3rver({
  directory: args.dir,
  address: '127.0.0.1',
  port: Number(args.port),
  silent: true,
  serviceEndpoint: 'localhost',
  configureBuckets: [{ name: args.bucket, configs: [] }],
});

function xmlEscape(s) {
  return String(s).replace(/[<>&"']/g, c => `&#${c.charCodeAt(0)};`);
}

/* The upload's folder, or an S3 NoSuchUpload (ids are s3rver's 32 hex). */
function uploadDir(bucket, uploadId) {
  const dir = path.join(server.store.getResourcePath(bucket, undefined, 'uploads'), uploadId);
  if (!/^[0-9a-f]{32}$/.test(uploadId) || !fs.existsSync(dir)) {
    throw new S3Error('NoSuchUpload', 'The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.', { UploadId: uploadId });
  }
  return dir;
}

function intParam(ctx, name, dflt, max) {
  const v = ctx.query[name];
  if (v === undefined) return dflt;
  if (!/^\d+$/.test(v) || Number(v) > max) {
    throw new S3Error('InvalidArgument', `${name} must be an integer between 0 and ${max}`, { ArgumentName: name, ArgumentValue: v });
  }
  return Number(v);
}

function listParts(ctx, bucket, key, uploadId) {
  const dir = uploadDir(bucket, uploadId);
  const maxParts = intParam(ctx, 'max-parts', 1000, 1000);
  const marker = intParam(ctx, 'part-number-marker', 0, 10000);
  const all = fs.readdirSync(dir)
    .filter(n => /^\d+$/.test(n))
    .map(Number)
    .sort((a, b) => a - b)
    .filter(n => n > marker);
  const page = all.slice(0, maxParts);
  const truncated = all.length > page.length;
  const parts = page.map(n => {
    const file = path.join(dir, String(n));
    const st = fs.statSync(file);
    const md5 = fs.readFileSync(`${file}.md5`, 'utf8');
    return `<Part><PartNumber>${n}</PartNumber><LastModified>${st.mtime.toISOString()}</LastModified>` +
      `<ETag>&quot;${xmlEscape(md5)}&quot;</ETag><Size>${st.size}</Size></Part>`;
  });
  ctx.type = 'application/xml';
  ctx.body = '<?xml version="1.0" encoding="UTF-8"?>\n' +
    '<ListPartsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">' +
    `<Bucket>${xmlEscape(bucket)}</Bucket><Key>${xmlEscape(key)}</Key><UploadId>${uploadId}</UploadId>` +
    `<PartNumberMarker>${marker}</PartNumberMarker>` +
    (truncated ? `<NextPartNumberMarker>${page[page.length - 1]}</NextPartNumberMarker>` : '') +
    `<MaxParts>${maxParts}</MaxParts><IsTruncated>${truncated}</IsTruncated>` +
    parts.join('') + '</ListPartsResult>';
}

function abortUpload(ctx, bucket, uploadId) {
  fs.rmSync(uploadDir(bucket, uploadId), { recursive: true, force: true });
  ctx.status = 204;
}

/* Runs after s3rver's virtual-host rewrite, before its router. */
async function multipartExtras(ctx, next) {
  const m = /^\/([^/]+)\/(.+)$/.exec(ctx.path);
  const get = ctx.method === 'GET', del = ctx.method === 'DELETE';
  if (!m || typeof ctx.query.uploadId !== 'string' || !(get || del)) return next();
  const key = decodeURIComponent(m[2]);
  if (get) return listParts(ctx, m[1], key, ctx.query.uploadId);
  return abortUpload(ctx, m[1], ctx.query.uploadId);
}
server.middleware.splice(server.middleware.length - 1, 0, multipartExtras);

/* PUT with If-None-Match: * of a key that exists: 412, as AWS answers. */
async function ifNoneMatch(ctx, next) {
  const m = /^\/([^/]+)\/(.+)$/.exec(ctx.path);
  if (ctx.method !== 'PUT' || !m || ctx.get('if-none-match') !== '*' ||
      ctx.query.uploadId !== undefined) return next();
  if (await server.store.existsObject(m[1], decodeURIComponent(m[2]))) {
    throw new S3Error('PreconditionFailed',
      'At least one of the pre-conditions you specified did not hold', { Condition: 'If-None-Match' });
  }
  return next();
}
server.middleware.splice(server.middleware.length - 1, 0, ifNoneMatch);

function writePortFile(port) {
  const tmp = `${args['port-file']}.tmp`;
  fs.writeFileSync(tmp, `${port}\n`);
  fs.renameSync(tmp, args['port-file']);
}

server.run().then(({ port }) => {
  writePortFile(port);
  console.log(`s3rver-pv listening on 127.0.0.1:${port}`);
}, err => {
  console.error(err);
  process.exit(1);
});

function stop() {
  server.close().finally(() => process.exit(0));
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

if (args['watch-pid']) {
  const pid = Number(args['watch-pid']);
  setInterval(() => {
    try {
      process.kill(pid, 0);
    } catch (e) {
      if (e.code === 'ESRCH') stop();
    }
  }, 300);
}
