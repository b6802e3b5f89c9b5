// Walk every box of an MP4 file with mp4box.js (an independent ISO-BMFF parser) and print a
// JSON summary: the box tree paths, per-track samples and anything the parser logged as
// a warning or an error. Exit status 0 when the walk succeeded, 1 otherwise.
//
// usage: node tests/mp4walk.js FILE.mp4   (with mp4box installed under tests/.node, see
// docs/CONTAINER.md; MP4BOX_DIR may name another folder holding node_modules/mp4box)

"use strict";
const fs = require("fs");
const path = require("path");

// Resolve through the package's "exports" map from the folder holding node_modules/.
const base = process.env.MP4BOX_DIR || path.join(__dirname, ".node");
const MP4Box = require(require.resolve("mp4box", { paths: [base] }));

const logged = { errors: [], warnings: [] };
MP4Box.Log.error = (module, msg) => logged.errors.push(`${module}: ${msg}`);
MP4Box.Log.warn = (module, msg) => logged.warnings.push(`${module}: ${msg}`);

const file = process.argv[2];
const data = fs.readFileSync(file);
const ab = data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength);
ab.fileStart = 0;

const mp4 = MP4Box.createFile(true);
let info = null;
mp4.onError = (e) => logged.errors.push(`onError: ${e}`);
mp4.onReady = (i) => { info = i; };
mp4.appendBuffer(ab);
mp4.flush();

// Every box object has a 4CC `type` and a `size`; children live in `boxes` (containers) or in
// `entries` (sample descriptions). Check that children fill their parent exactly.
const paths = [];
function walk(box, prefix) {
  const here = prefix ? `${prefix}/${box.type}` : box.type;
  paths.push(here);
  const kids = [].concat(box.boxes || [], box.entries || []).filter((b) => b && typeof b.type === "string");
  for (const k of kids) walk(k, here);
  return here;
}
let total = 0;
for (const b of mp4.boxes) {
  walk(b, "");
  total += b.size;
}
if (total !== data.byteLength) logged.errors.push(`top-level boxes cover ${total} of ${data.byteLength} bytes`);

const tracks = info ? info.tracks.map((t) => ({
  id: t.id, codec: t.codec, width: t.video ? t.video.width : t.track_width,
  height: t.video ? t.video.height : t.track_height, timescale: t.timescale,
})) : [];
const samples = {};
for (const t of tracks) {
  const trak = mp4.getTrackById(t.id);
  // [decode time, size, sync] of every sample mp4box.js found in the fragments
  samples[t.id] = (trak && trak.samples ? trak.samples : []).map((x) => [x.dts, x.size, x.is_sync ? 1 : 0]);
}
const out = {
  ok: logged.errors.length === 0 && info !== null,
  fragmented: info ? info.isFragmented : null,
  tracks, samples, paths,
  errors: logged.errors, warnings: logged.warnings,
};
process.stdout.write(JSON.stringify(out) + "\n");
process.exit(out.ok ? 0 : 1);
