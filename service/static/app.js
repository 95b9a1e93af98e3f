// The page's own code: no dependencies, no CDN. Sends each dropped mesh to the service
// (/classify with preview=true, /retrieve, /spherical-map) and shows the answers. The service
// parses every format and returns the mesh it classified (normalized, decimated; see
// raymap/preview.py): the page only draws that, turning (WebGL, or canvas 2D where WebGL is
// missing). Several files at once fill a sortable table, downloadable as CSV and JSON.
"use strict";

const MAX_BARS = 8; // classes shown as bars; the rest are summed into "others"
const NEIGHBORS = 5;
const PREVIEW_TRIANGLES_2D = 6000; // the canvas-2D fallback draws at most this many
const BATCH_CONCURRENCY = 2; // files in flight at once when several are dropped
const FORMATS = ["obj", "off", "stl", "ply", "glb", "gltf"];

const $ = (id) => document.getElementById(id);
let classNames = [];

// ----------------------------------------------------------------------------- service

async function readError(response) {
  try {
    const body = await response.json();
    if (body && body.detail) return `${response.status}: ${body.detail}`;
  } catch (_) {
    // not JSON
  }
  return `${response.status} ${response.statusText}`;
}

async function postFile(path, file, fields = {}) {
  const form = new FormData();
  form.append("file", file, file.name);
  for (const [key, value] of Object.entries(fields)) form.append(key, String(value));
  const response = await fetch(path, { method: "POST", body: form });
  if (!response.ok) throw new Error(await readError(response));
  return response;
}

async function showModel() {
  const line = $("model");
  for (;;) {
    try {
      const response = await fetch("/model");
      if (response.ok) {
        const m = await response.json();
        classNames = m.class_names;
        line.textContent =
          `model ${m.name} ${m.version} · ${m.class_names.length} classes · ` +
          `bandwidth ${m.bandwidth} · ${m.provider.replace("ExecutionProvider", "")}`;
        line.classList.add("ready");
        return;
      }
      line.textContent = `the service is loading the model (${await readError(response)})`;
    } catch (err) {
      line.textContent = `cannot reach the service: ${err.message}`;
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

function thumbnailUrl(id) {
  return `/gallery/items/${encodeURIComponent(id)}/thumbnail`;
}

function extensionOf(name) {
  const dot = name.lastIndexOf(".");
  return dot < 0 ? "" : name.slice(dot + 1).toLowerCase();
}

// ----------------------------------------------------------------------------- one file

function percent(p) {
  return `${(100 * p).toFixed(p >= 0.995 || p < 0.001 ? 0 : 1)}%`;
}

function barItem(name, value, width, text, highlight) {
  const li = document.createElement("li");
  if (highlight) li.classList.add("top");
  const label = document.createElement("span");
  label.className = "name";
  label.textContent = name;
  label.title = name;
  const track = document.createElement("span");
  track.className = "track";
  track.setAttribute("aria-hidden", "true");
  const fill = document.createElement("span");
  fill.className = "fill";
  fill.style.width = `${Math.max(0, Math.min(1, width)) * 100}%`;
  track.appendChild(fill);
  const number = document.createElement("span");
  number.className = "value";
  number.textContent = text;
  li.append(label, track, number);
  li.dataset.value = String(value);
  return li;
}

// "not one of the N classes; closest: ..." when the service says the shape is unknown.
function verdict(result) {
  const ranked = Object.entries(result.probabilities).sort((a, b) => b[1] - a[1]);
  const top = ranked[0][1];
  if (result.known === false) {
    const n = classNames.length || ranked.length;
    return { known: false, text: `not one of the ${n} classes; closest: ${result.label}`, top };
  }
  return { known: result.known, text: result.label, top };
}

function showClassification(result) {
  const ranked = Object.entries(result.probabilities).sort((a, b) => b[1] - a[1]);
  const v = verdict(result);
  const label = $("label");
  label.textContent = v.text;
  label.classList.toggle("unknown", v.known === false);
  $("confidence").textContent =
    v.known === false ? `(${percent(v.top)})` : percent(v.top);
  const bars = $("bars");
  bars.replaceChildren();
  ranked.slice(0, MAX_BARS).forEach(([name, p], i) => {
    bars.appendChild(barItem(name, p, p, percent(p), i === 0));
  });
  if (ranked.length > MAX_BARS) {
    const rest = ranked.slice(MAX_BARS).reduce((sum, [, p]) => sum + p, 0);
    bars.appendChild(barItem(`${ranked.length - MAX_BARS} others`, rest, rest, percent(rest)));
  }
  const t = result.timings_ms || {};
  const total = t.total !== undefined ? `${t.total.toFixed(0)} ms in the service` : "";
  const parts = ["parse", "cast", "inference", "preview"]
    .filter((k) => t[k] !== undefined)
    .map((k) => `${k} ${t[k].toFixed(0)}`);
  $("timings").textContent = total + (parts.length ? ` (${parts.join(", ")} ms)` : "");
}

function showPreview(preview) {
  if (!preview) {
    viewer.clear();
    $("view-note").textContent = "no preview";
    return;
  }
  const mesh = decodePreview(preview.mesh);
  viewer.show(mesh);
  const drawn = viewer.mode === "2d" ? Math.min(mesh.count, PREVIEW_TRIANGLES_2D) : mesh.count;
  $("view-note").textContent =
    `${drawn.toLocaleString("en")} triangles drawn` +
    (preview.faces < preview.source_faces
      ? ` (of ${preview.source_faces.toLocaleString("en")} in the file)`
      : "") +
    (viewer.mode === "2d" ? " · canvas preview" : "") +
    " · normalized as the network sees it";
  const thumb = $("query-thumb");
  thumb.src = `data:${preview.thumbnail_media_type};base64,${preview.thumbnail}`;
  thumb.alt = "a picture of your mesh";
  $("query").hidden = false;
}

function neighborItem(n, highlight) {
  const li = document.createElement("li");
  if (highlight) li.classList.add("top");
  const img = document.createElement("img");
  img.width = 64;
  img.height = 64;
  img.alt = `${n.label} ${n.id}`;
  img.addEventListener("error", () => img.classList.add("missing"));
  img.src = thumbnailUrl(n.id);
  const text = document.createElement("span");
  text.className = "who";
  const id = document.createElement("span");
  id.className = "id";
  id.textContent = n.id;
  const label = document.createElement("span");
  label.className = "class";
  label.textContent = n.label;
  text.append(id, label);
  const score = document.createElement("span");
  score.className = "value";
  score.textContent = n.score.toFixed(3);
  score.title = "cosine similarity";
  li.append(img, text, score);
  return li;
}

function showNeighbors(result) {
  const list = $("neighbors");
  list.replaceChildren();
  if (!result.neighbors.length) {
    const li = document.createElement("li");
    li.className = "empty";
    li.textContent = "the gallery is empty";
    list.appendChild(li);
    return;
  }
  for (const n of result.neighbors) list.appendChild(neighborItem(n, n.label === result.label));
}

let mapUrl = null;

async function showMap(response) {
  const blob = await response.blob();
  if (mapUrl) URL.revokeObjectURL(mapUrl);
  mapUrl = URL.createObjectURL(blob);
  const img = $("map");
  img.alt = "the spherical map of the mesh";
  await new Promise((resolve, reject) => {
    img.onload = resolve;
    img.onerror = () => reject(new Error("/spherical-map: not an image"));
    img.src = mapUrl;
  });
  img.hidden = false;
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function clearDetails() {
  $("label").textContent = "…";
  $("label").classList.remove("unknown");
  $("confidence").textContent = "";
  $("bars").replaceChildren();
  $("neighbors").replaceChildren();
  $("timings").textContent = "";
  $("query").hidden = true;
  $("map").hidden = true;
  viewer.clear();
  $("view-note").textContent = "the service is reading the mesh…";
}

let current = 0;

async function showFile(file) {
  showError("");
  $("filename").textContent = `${file.name} · ${(file.size / 1024).toFixed(0)} KiB`;
  document.body.classList.add("busy");
  current += 1;
  const mine = current;
  clearDetails();
  const jobs = [
    postFile("/classify", file, { preview: true }).then((r) => r.json()).then((r) => {
      if (mine !== current) return;
      showClassification(r);
      showPreview(r.preview);
    }),
    postFile("/retrieve", file, { k: NEIGHBORS }).then((r) => r.json()).then((r) => {
      if (mine === current) showNeighbors(r);
    }),
    postFile("/spherical-map", file).then((r) => (mine === current ? showMap(r) : null)),
  ];
  const names = ["/classify", "/retrieve", "/spherical-map"];
  const results = await Promise.allSettled(jobs);
  if (mine !== current) return;
  const errors = results
    .map((r, i) => (r.status === "rejected" ? `${names[i]}: ${r.reason.message}` : null))
    .filter(Boolean);
  if (errors.length) {
    showError(`${file.name}: ${errors.join("\n")}`);
    if (results[0].status === "rejected") {
      $("label").textContent = "–";
      $("view-note").textContent = "no preview: the service could not read this file";
    }
  }
  document.body.classList.remove("busy");
}

// ----------------------------------------------------------------------------- many files

const rows = []; // one per file: {file, label, probability, known, novelty, neighbor, error, ...}
let sortKey = null;
let sortDescending = false;
let batchRun = 0;

function sortValue(row, key) {
  if (key === "neighbor") return row.neighbor ? row.neighbor.id : "";
  if (key === "known") return row.known === undefined || row.known === null ? "" : String(row.known);
  const value = row[key];
  return value === undefined || value === null ? "" : value;
}

function sortedRows() {
  if (!sortKey) return rows;
  const sign = sortDescending ? -1 : 1;
  return [...rows].sort((a, b) => {
    const x = sortValue(a, sortKey);
    const y = sortValue(b, sortKey);
    if ((x === "") !== (y === "")) return x === "" ? 1 : -1; // no value (an error): last
    if (typeof x === "number" && typeof y === "number") return sign * (x - y);
    return sign * String(x).localeCompare(String(y), "en", { numeric: true });
  });
}

function cell(text, className, heading) {
  const td = document.createElement("td");
  if (className) td.className = className;
  if (heading) td.dataset.label = heading; // shown before the value on narrow screens
  td.textContent = text;
  return td;
}

function renderRow(row) {
  const tr = document.createElement("tr");
  tr.dataset.file = row.file;
  const name = document.createElement("th");
  name.scope = "row";
  name.textContent = row.file;
  tr.appendChild(name);
  if (row.error) {
    tr.classList.add("failed");
    const td = cell(row.error, "row-error", "Error");
    td.colSpan = 4;
    td.setAttribute("role", "alert");
    tr.appendChild(td);
  } else if (row.label === undefined) {
    const td = cell(row.state || "waiting", "pending");
    td.colSpan = 4;
    tr.appendChild(td);
  } else {
    const unknown = row.known === false;
    tr.appendChild(cell(unknown ? `not one of the classes; closest: ${row.label}` : row.label,
      unknown ? "label-cell unknown" : "label-cell", "Label"));
    tr.appendChild(cell(percent(row.probability), "number", "Probability"));
    tr.appendChild(cell(row.known === undefined ? "–" : row.known ? "yes" : "no", "", "Known"));
    const td = document.createElement("td");
    td.dataset.label = "Nearest neighbour";
    if (row.neighbor) {
      const img = document.createElement("img");
      img.width = 32;
      img.height = 32;
      img.alt = "";
      img.addEventListener("error", () => img.classList.add("missing"));
      img.src = thumbnailUrl(row.neighbor.id);
      const text = document.createElement("span");
      text.textContent = `${row.neighbor.id} (${row.neighbor.label}) ${row.neighbor.score.toFixed(3)}`;
      td.append(img, text);
      td.className = "neighbor-cell";
    } else {
      td.textContent = "–";
    }
    tr.appendChild(td);
  }
  const action = document.createElement("td");
  if (row.blob) {
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Details";
    button.setAttribute("aria-label", `details of ${row.file}`);
    button.addEventListener("click", () => {
      showFile(row.blob);
      $("mesh-title").scrollIntoView({ behavior: "smooth", block: "start" });
    });
    action.appendChild(button);
  }
  tr.appendChild(action);
  return tr;
}

function renderTable() {
  $("results").tBodies[0].replaceChildren(...sortedRows().map(renderRow));
  for (const th of $("results").tHead.querySelectorAll("th[data-key]")) {
    const key = th.dataset.key;
    th.setAttribute("aria-sort",
      key === sortKey ? (sortDescending ? "descending" : "ascending") : "none");
  }
}

function updateProgress() {
  const done = rows.filter((r) => r.label !== undefined || r.error).length;
  const progress = $("progress");
  progress.max = Math.max(rows.length, 1);
  progress.value = done;
  const failed = rows.filter((r) => r.error).length;
  $("progress-text").textContent =
    `${done} of ${rows.length} done` + (failed ? ` · ${failed} failed` : "");
  const finished = done === rows.length && rows.length > 0;
  $("download-csv").disabled = !finished;
  $("download-json").disabled = !finished;
  $("batch").classList.toggle("finished", finished);
}

async function classifyRow(row, run) {
  row.state = "classifying…";
  renderTable();
  try {
    const [classified, retrieved] = await Promise.all([
      postFile("/classify", row.blob).then((r) => r.json()),
      postFile("/retrieve", row.blob, { k: 1 }).then((r) => r.json()),
    ]);
    if (run !== batchRun) return;
    row.label = classified.label;
    row.probability = classified.probabilities[classified.label];
    if (classified.known !== undefined) row.known = classified.known;
    if (classified.novelty !== undefined) row.novelty = classified.novelty;
    row.neighbor = retrieved.neighbors[0] || null;
  } catch (err) {
    if (run !== batchRun) return;
    row.error = err.message;
  }
  renderTable();
  updateProgress();
}

async function classifyAll(files, skipped) {
  batchRun += 1;
  const run = batchRun;
  rows.length = 0;
  for (const file of files) rows.push({ file: file.webkitRelativePath || file.name, blob: file });
  $("batch").hidden = false;
  $("filename").textContent =
    `${files.length} files` + (skipped ? ` (${skipped} of other types skipped)` : "");
  renderTable();
  updateProgress();
  const queue = [...rows];
  const worker = async () => {
    while (queue.length && run === batchRun) await classifyRow(queue.shift(), run);
  };
  await Promise.all(Array.from({ length: BATCH_CONCURRENCY }, worker));
}

function exportedRows() {
  return rows.map((r) => ({
    file: r.file,
    label: r.label ?? null,
    probability: r.probability ?? null,
    known: r.known ?? null,
    novelty: r.novelty ?? null,
    neighbor_id: r.neighbor ? r.neighbor.id : null,
    neighbor_label: r.neighbor ? r.neighbor.label : null,
    neighbor_score: r.neighbor ? r.neighbor.score : null,
    error: r.error ?? null,
  }));
}

function csvField(value) {
  if (value === null || value === undefined) return "";
  const text = String(value);
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = document.createElement("a");
  link.href = url;
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

function downloadCsv() {
  const data = exportedRows();
  const columns = Object.keys(data[0]);
  const lines = [columns.join(",")].concat(
    data.map((row) => columns.map((c) => csvField(row[c])).join(",")));
  download("spherical-shapes.csv", "text/csv", lines.join("\r\n") + "\r\n");
}

function downloadJson() {
  download("spherical-shapes.json", "application/json",
    JSON.stringify(exportedRows(), null, 2) + "\n");
}

// Files from a drop: folders are walked (Chromium and Firefox's FileSystemEntry API).
async function droppedFiles(dataTransfer) {
  const entries = [...dataTransfer.items]
    .map((item) => (item.webkitGetAsEntry ? item.webkitGetAsEntry() : null))
    .filter(Boolean);
  if (!entries.length) return [...dataTransfer.files];
  const files = [];
  const walk = async (entry, path) => {
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      files.push(path ? new File([file], `${path}${file.name}`, { type: file.type }) : file);
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        if (!batch.length) break;
        for (const child of batch) await walk(child, `${path}${entry.name}/`);
      }
    }
  };
  for (const entry of entries) await walk(entry, "");
  return files;
}

function handleFiles(list) {
  const all = [...list];
  const meshes = all.filter((f) => FORMATS.includes(extensionOf(f.name)));
  if (all.length === 1) {
    $("batch").hidden = true;
    batchRun += 1;
    showFile(all[0]); // an unknown type gets the service's own 415 message
  } else if (meshes.length) {
    classifyAll(meshes, all.length - meshes.length);
  } else if (all.length) {
    showError(`none of the ${all.length} files is a mesh (${FORMATS.join(", ")})`);
  }
}

// ----------------------------------------------------------------------------- the preview
// The service's binary preview (raymap/preview.py): "SSPV", version, V, F, source F (uint32
// each), V*3 int16 positions (/32767: the normalized mesh inside the unit ball), padding to
// 4 bytes, F*3 uint16 (V <= 65535) or uint32 indices. Expanded here to flat-shaded triangles.

function decodePreview(base64) {
  const binary = atob(base64);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  const view = new DataView(bytes.buffer);
  const magic = String.fromCharCode(...bytes.subarray(0, 4));
  if (magic !== "SSPV" || view.getUint32(4, true) !== 1) throw new Error("not a mesh preview");
  const nVertices = view.getUint32(8, true);
  const nFaces = view.getUint32(12, true);
  const quantized = new Int16Array(bytes.buffer, 20, 3 * nVertices);
  const indexStart = 20 + 6 * nVertices + (nVertices % 2 ? 2 : 0);
  const indices = nVertices <= 0xffff
    ? new Uint16Array(bytes.buffer, indexStart, 3 * nFaces)
    : new Uint32Array(bytes.buffer, indexStart, 3 * nFaces);
  const positions = new Float32Array(9 * nFaces);
  const normals = new Float32Array(9 * nFaces);
  for (let f = 0; f < nFaces; f++) {
    const p = [];
    for (let k = 0; k < 3; k++) {
      const v = indices[3 * f + k];
      for (let a = 0; a < 3; a++) p.push(quantized[3 * v + a] / 32767);
    }
    const e1 = [p[3] - p[0], p[4] - p[1], p[5] - p[2]];
    const e2 = [p[6] - p[0], p[7] - p[1], p[8] - p[2]];
    let nx = e1[1] * e2[2] - e1[2] * e2[1];
    let ny = e1[2] * e2[0] - e1[0] * e2[2];
    let nz = e1[0] * e2[1] - e1[1] * e2[0];
    const length = Math.hypot(nx, ny, nz) || 1;
    nx /= length; ny /= length; nz /= length;
    for (let j = 0; j < 9; j++) positions[9 * f + j] = p[j];
    for (let k = 0; k < 3; k++) {
      normals[9 * f + 3 * k] = nx;
      normals[9 * f + 3 * k + 1] = ny;
      normals[9 * f + 3 * k + 2] = nz;
    }
  }
  return { positions, normals, count: nFaces };
}

// At most `limit` evenly spaced triangles (the canvas-2D fallback sorts and fills each).
function subsample(mesh, limit) {
  if (mesh.count <= limit) return mesh;
  const step = Math.ceil(mesh.count / limit);
  const count = Math.ceil(mesh.count / step);
  const positions = new Float32Array(9 * count);
  const normals = new Float32Array(9 * count);
  for (let i = 0; i < count; i++) {
    positions.set(mesh.positions.subarray(9 * i * step, 9 * i * step + 9), 9 * i);
    normals.set(mesh.normals.subarray(9 * i * step, 9 * i * step + 9), 9 * i);
  }
  return { positions, normals, count };
}

// ----------------------------------------------------------------------------- the view
// Meshes are +Z up (ModelNet's convention and the grid's pole): the model turns about Z and
// is seen from a little above.

const TILT = 0.45; // radians above the horizon
const FOCAL = 2.2; // camera 3 units from the centre: the unit ball fills ~80% of the height

function rotation(angle) {
  // Column-major 3x3: turn about Z by `angle`, then map Z up to screen Y and tilt.
  const c = Math.cos(angle);
  const s = Math.sin(angle);
  const ct = Math.cos(TILT);
  const st = Math.sin(TILT);
  // rows of R = Rx(tilt - pi/2) * Rz(angle)
  const r0 = [c, -s, 0];
  const r1 = [st * s, st * c, ct];
  const r2 = [-ct * s, -ct * c, st];
  return [r0[0], r1[0], r2[0], r0[1], r1[1], r2[1], r0[2], r1[2], r2[2]];
}

const VERTEX_SHADER = `
attribute vec3 position;
attribute vec3 normal;
uniform mat3 rotation;
uniform float aspect;
varying vec3 vNormal;
void main() {
  vec3 p = rotation * position;
  vNormal = rotation * normal;
  float depth = 3.0 - p.z;  // camera on +z at distance 3, looking at the origin
  // depth 2 (nearest) .. 4 (farthest) -> NDC z -1 .. 1, the usual 1/depth mapping
  gl_Position = vec4(p.x * ${FOCAL.toFixed(3)} / aspect, p.y * ${FOCAL.toFixed(3)},
                     3.0 * depth - 8.0, depth);
}`;

const FRAGMENT_SHADER = `
precision mediump float;
varying vec3 vNormal;
void main() {
  vec3 n = normalize(vNormal);
  vec3 light = normalize(vec3(0.4, 0.7, 0.8));
  float diffuse = abs(dot(n, light));   // meshes' windings vary: light both sides
  vec3 base = vec3(0.36, 0.55, 0.85);
  gl_FragColor = vec4(base * (0.3 + 0.7 * diffuse), 1.0);
}`;

class Viewer {
  constructor(canvas) {
    this.canvas = canvas;
    this.mesh = null;
    this.start = performance.now();
    const options = { antialias: true, preserveDrawingBuffer: true };
    this.gl = canvas.getContext("webgl", options) || canvas.getContext("experimental-webgl", options);
    if (this.gl && this.setUpGl()) {
      this.mode = "webgl";
    } else {
      this.gl = null;
      this.mode = "2d";
      this.ctx = canvas.getContext("2d");
    }
    canvas.dataset.mode = this.mode;
    requestAnimationFrame((t) => this.frame(t));
  }

  setUpGl() {
    const gl = this.gl;
    const compile = (type, source) => {
      const shader = gl.createShader(type);
      gl.shaderSource(shader, source);
      gl.compileShader(shader);
      if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(shader));
      return shader;
    };
    try {
      const program = gl.createProgram();
      gl.attachShader(program, compile(gl.VERTEX_SHADER, VERTEX_SHADER));
      gl.attachShader(program, compile(gl.FRAGMENT_SHADER, FRAGMENT_SHADER));
      gl.linkProgram(program);
      if (!gl.getProgramParameter(program, gl.LINK_STATUS)) throw new Error(gl.getProgramInfoLog(program));
      this.program = program;
      this.buffers = { position: gl.createBuffer(), normal: gl.createBuffer() };
      this.where = {
        position: gl.getAttribLocation(program, "position"),
        normal: gl.getAttribLocation(program, "normal"),
        rotation: gl.getUniformLocation(program, "rotation"),
        aspect: gl.getUniformLocation(program, "aspect"),
      };
      gl.enable(gl.DEPTH_TEST);
      return true;
    } catch (err) {
      console.warn("WebGL unusable, drawing with canvas 2D:", err);
      return false;
    }
  }

  show(mesh) {
    this.mesh = this.mode === "2d" ? subsample(mesh, PREVIEW_TRIANGLES_2D) : mesh;
    if (this.gl) {
      const gl = this.gl;
      gl.bindBuffer(gl.ARRAY_BUFFER, this.buffers.position);
      gl.bufferData(gl.ARRAY_BUFFER, this.mesh.positions, gl.STATIC_DRAW);
      gl.bindBuffer(gl.ARRAY_BUFFER, this.buffers.normal);
      gl.bufferData(gl.ARRAY_BUFFER, this.mesh.normals, gl.STATIC_DRAW);
    }
    this.start = performance.now();
    this.canvas.classList.add("has-mesh");
  }

  clear() {
    this.mesh = null;
    this.canvas.classList.remove("has-mesh");
  }

  frame(time) {
    const angle = ((time - this.start) / 1000) * 0.7;
    if (this.gl) this.drawGl(angle);
    else this.draw2d(angle);
    requestAnimationFrame((t) => this.frame(t));
  }

  drawGl(angle) {
    const gl = this.gl;
    gl.viewport(0, 0, this.canvas.width, this.canvas.height);
    gl.clearColor(0.97, 0.97, 0.98, 1);
    gl.clear(gl.COLOR_BUFFER_BIT | gl.DEPTH_BUFFER_BIT);
    if (!this.mesh) return;
    gl.useProgram(this.program);
    for (const name of ["position", "normal"]) {
      gl.bindBuffer(gl.ARRAY_BUFFER, this.buffers[name]);
      gl.enableVertexAttribArray(this.where[name]);
      gl.vertexAttribPointer(this.where[name], 3, gl.FLOAT, false, 0, 0);
    }
    gl.uniformMatrix3fv(this.where.rotation, false, new Float32Array(rotation(angle)));
    gl.uniform1f(this.where.aspect, this.canvas.width / this.canvas.height);
    gl.drawArrays(gl.TRIANGLES, 0, 3 * this.mesh.count);
  }

  draw2d(angle) {
    const ctx = this.ctx;
    const { width, height } = this.canvas;
    ctx.fillStyle = "#f7f7fa";
    ctx.fillRect(0, 0, width, height);
    if (!this.mesh) return;
    const r = rotation(angle); // column-major
    const { positions, normals, count } = this.mesh;
    const scale = (FOCAL / 3) * (height / 2); // pixels per unit at the centre's depth
    const screen = new Float32Array(count * 6);
    const depth = new Float32Array(count);
    const shade = new Float32Array(count);
    const light = [0.4, 0.7, 0.8].map((v) => v / Math.hypot(0.4, 0.7, 0.8));
    for (let i = 0; i < count; i++) {
      let zSum = 0;
      for (let k = 0; k < 3; k++) {
        const o = 9 * i + 3 * k;
        const x = positions[o], y = positions[o + 1], z = positions[o + 2];
        const px = r[0] * x + r[3] * y + r[6] * z;
        const py = r[1] * x + r[4] * y + r[7] * z;
        const pz = r[2] * x + r[5] * y + r[8] * z;
        const w = 3 / (3 - pz); // the same perspective as the WebGL view
        screen[6 * i + 2 * k] = width / 2 + px * w * scale;
        screen[6 * i + 2 * k + 1] = height / 2 - py * w * scale;
        zSum += pz;
      }
      depth[i] = zSum;
      const nx = normals[9 * i], ny = normals[9 * i + 1], nz = normals[9 * i + 2];
      const rx = r[0] * nx + r[3] * ny + r[6] * nz;
      const ry = r[1] * nx + r[4] * ny + r[7] * nz;
      const rz = r[2] * nx + r[5] * ny + r[8] * nz;
      shade[i] = 0.3 + 0.7 * Math.abs(rx * light[0] + ry * light[1] + rz * light[2]);
    }
    const order = Array.from({ length: count }, (_, i) => i).sort((a, b) => depth[a] - depth[b]);
    for (const i of order) {
      const s = shade[i];
      ctx.fillStyle = `rgb(${92 * s | 0},${140 * s | 0},${217 * s | 0})`;
      ctx.strokeStyle = ctx.fillStyle;
      ctx.beginPath();
      ctx.moveTo(screen[6 * i], screen[6 * i + 1]);
      ctx.lineTo(screen[6 * i + 2], screen[6 * i + 3]);
      ctx.lineTo(screen[6 * i + 4], screen[6 * i + 5]);
      ctx.closePath();
      ctx.fill();
      ctx.stroke();
    }
  }
}

// ----------------------------------------------------------------------------- wiring

const viewer = new Viewer($("view"));

function wire() {
  const drop = $("drop");
  for (const [button, input] of [["pick-files", "file"], ["pick-folder", "folder"]]) {
    $(button).addEventListener("click", () => $(input).click());
    $(input).addEventListener("change", () => {
      handleFiles($(input).files);
      $(input).value = ""; // the same file again is a new choice
    });
  }
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", async (event) => {
    event.preventDefault();
    if (event.dataTransfer) handleFiles(await droppedFiles(event.dataTransfer));
  });
  for (const th of $("results").tHead.querySelectorAll("th[data-key]")) {
    th.querySelector("button").addEventListener("click", () => {
      sortDescending = sortKey === th.dataset.key ? !sortDescending : false;
      sortKey = th.dataset.key;
      renderTable();
    });
  }
  $("download-csv").addEventListener("click", downloadCsv);
  $("download-json").addEventListener("click", downloadJson);
  // Dropping a file anywhere else must not navigate away from the page.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
  showModel();
}

wire();
