// The page's own code: no dependencies, no CDN. Reads a dropped mesh (OBJ, OFF, STL) for a
// turning view (WebGL, or canvas 2D where WebGL is missing), sends the file to /classify,
// /retrieve and /spherical-map, and shows the answers.
"use strict";

const MAX_BARS = 8; // classes shown as bars; the rest are summed into "others"
const NEIGHBORS = 5;
const PREVIEW_TRIANGLES_GL = 400000;
const PREVIEW_TRIANGLES_2D = 6000;

const $ = (id) => document.getElementById(id);

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
  if (!response.ok) throw new Error(`${path}: ${await readError(response)}`);
  return response;
}

async function showModel() {
  const line = $("model");
  for (;;) {
    try {
      const response = await fetch("/model");
      if (response.ok) {
        const m = await response.json();
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

// ----------------------------------------------------------------------------- results

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

function showClassification(result) {
  const ranked = Object.entries(result.probabilities).sort((a, b) => b[1] - a[1]);
  $("label").textContent = result.label;
  $("confidence").textContent = percent(ranked[0][1]);
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
  const parts = ["parse", "cast", "inference"]
    .filter((k) => t[k] !== undefined)
    .map((k) => `${k} ${t[k].toFixed(0)}`);
  $("timings").textContent = total + (parts.length ? ` (${parts.join(", ")} ms)` : "");
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
  for (const n of result.neighbors) {
    const width = (n.score + 1) / 2; // cosine in [-1, 1] -> bar in [0, 1]
    const item = barItem(`${n.id} (${n.label})`, n.score, width, n.score.toFixed(3),
      n.label === result.label);
    list.appendChild(item);
  }
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

// ----------------------------------------------------------------------------- a file

let busy = 0;

async function handleFile(file) {
  if (!file) return;
  showError("");
  $("filename").textContent = `${file.name} · ${(file.size / 1024).toFixed(0)} KiB`;
  document.body.classList.add("busy");
  busy += 1;
  const mine = busy;
  $("label").textContent = "…";
  $("confidence").textContent = "";

  const buffer = await file.arrayBuffer();
  let triangles = null;
  try {
    triangles = parseMesh(file.name, buffer);
  } catch (err) {
    triangles = null;
    $("view-note").textContent = `no preview: ${err.message}`;
  }
  if (triangles) {
    viewer.show(triangles);
    $("view-note").textContent = `${(triangles.length / 9).toLocaleString()} triangles` +
      (viewer.mode === "2d" ? " (canvas preview, subsampled)" : "");
  } else {
    viewer.clear();
  }

  const jobs = [
    postFile("/classify", file).then((r) => r.json()).then((r) => {
      if (mine === busy) showClassification(r);
    }),
    postFile("/retrieve", file, { k: NEIGHBORS }).then((r) => r.json()).then((r) => {
      if (mine === busy) showNeighbors(r);
    }),
    postFile("/spherical-map", file).then((r) => (mine === busy ? showMap(r) : null)),
  ];
  const results = await Promise.allSettled(jobs);
  if (mine !== busy) return;
  const errors = results.filter((r) => r.status === "rejected").map((r) => r.reason.message);
  if (errors.length) {
    showError([...new Set(errors)].join("\n"));
    if (results[0].status === "rejected") $("label").textContent = "–";
  }
  document.body.classList.remove("busy");
}

// ----------------------------------------------------------------------------- mesh parsing
// Each parser returns a triangle soup: Float32Array of 9 numbers per triangle.

function parseMesh(name, buffer) {
  const ext = name.toLowerCase().split(".").pop();
  if (ext === "off") return parseOff(new TextDecoder().decode(buffer));
  if (ext === "obj") return parseObj(new TextDecoder().decode(buffer));
  if (ext === "stl") return parseStl(buffer);
  throw new Error(`the page draws OBJ, OFF and STL; ${ext.toUpperCase()} is still classified`);
}

function fanTriangles(positions, polygons) {
  let count = 0;
  for (const poly of polygons) count += Math.max(0, poly.length - 2);
  const out = new Float32Array(count * 9);
  let o = 0;
  for (const poly of polygons) {
    for (let k = 1; k + 1 < poly.length; k++) {
      for (const index of [poly[0], poly[k], poly[k + 1]]) {
        if (!(index >= 0 && 3 * index + 2 < positions.length)) {
          throw new Error(`face index ${index} out of range`);
        }
        out[o++] = positions[3 * index];
        out[o++] = positions[3 * index + 1];
        out[o++] = positions[3 * index + 2];
      }
    }
  }
  if (!out.length) throw new Error("the file has no faces");
  return out;
}

function parseOff(text) {
  const tokens = text.replace(/#[^\n]*/g, " ").trim().split(/\s+/);
  let head = tokens.shift() || "";
  if (!/^C?N?OFF/.test(head)) throw new Error("not an OFF file");
  const glued = head.replace(/^C?N?OFF/, ""); // ModelNet's "OFF490 518 0"
  if (glued) tokens.unshift(glued);
  const nVertices = parseInt(tokens[0], 10);
  const nFaces = parseInt(tokens[1], 10);
  if (!(nVertices > 0 && nFaces > 0)) throw new Error("bad OFF counts");
  const positions = new Float64Array(3 * nVertices);
  let t = 3;
  for (let i = 0; i < 3 * nVertices; i++) positions[i] = parseFloat(tokens[t++]);
  const polygons = [];
  for (let f = 0; f < nFaces && t < tokens.length; f++) {
    const n = parseInt(tokens[t++], 10);
    const poly = [];
    for (let k = 0; k < n; k++) poly.push(parseInt(tokens[t++], 10));
    polygons.push(poly);
  }
  return fanTriangles(positions, polygons);
}

function parseObj(text) {
  const positions = [];
  const polygons = [];
  for (const line of text.split("\n")) {
    const words = line.trim().split(/\s+/);
    if (words[0] === "v") {
      positions.push(+words[1], +words[2], +words[3]);
    } else if (words[0] === "f") {
      const nVertices = positions.length / 3;
      polygons.push(words.slice(1).map((w) => {
        const index = parseInt(w.split("/")[0], 10);
        return index < 0 ? nVertices + index : index - 1;
      }));
    }
  }
  return fanTriangles(positions, polygons);
}

function parseStl(buffer) {
  const view = new DataView(buffer);
  if (buffer.byteLength >= 84) {
    const n = view.getUint32(80, true);
    if (84 + 50 * n === buffer.byteLength) {
      const out = new Float32Array(9 * n);
      for (let i = 0; i < n; i++) {
        for (let j = 0; j < 9; j++) out[9 * i + j] = view.getFloat32(84 + 50 * i + 12 + 4 * j, true);
      }
      if (!n) throw new Error("the STL file has no triangles");
      return out;
    }
  }
  const text = new TextDecoder().decode(buffer);
  const numbers = [];
  const vertex = /vertex\s+(\S+)\s+(\S+)\s+(\S+)/g;
  let match;
  while ((match = vertex.exec(text)) !== null) numbers.push(+match[1], +match[2], +match[3]);
  const usable = numbers.length - (numbers.length % 9);
  if (!usable) throw new Error("cannot read the STL file");
  return new Float32Array(numbers.slice(0, usable));
}

// Centre on the bounding box, scale into the unit ball, drop non-finite triangles and keep
// at most `limit` triangles (evenly spaced) for the preview.
function prepareTriangles(soup, limit) {
  const total = soup.length / 9;
  const step = Math.max(1, Math.ceil(total / limit));
  const kept = [];
  for (let i = 0; i < total; i += step) {
    let finite = true;
    for (let j = 0; j < 9; j++) if (!Number.isFinite(soup[9 * i + j])) finite = false;
    if (finite) kept.push(i);
  }
  const lo = [Infinity, Infinity, Infinity];
  const hi = [-Infinity, -Infinity, -Infinity];
  for (const i of kept) {
    for (let j = 0; j < 9; j++) {
      const v = soup[9 * i + j];
      lo[j % 3] = Math.min(lo[j % 3], v);
      hi[j % 3] = Math.max(hi[j % 3], v);
    }
  }
  const centre = lo.map((l, a) => (l + hi[a]) / 2);
  let radius = 0;
  for (const i of kept) {
    for (let k = 0; k < 3; k++) {
      const x = soup[9 * i + 3 * k] - centre[0];
      const y = soup[9 * i + 3 * k + 1] - centre[1];
      const z = soup[9 * i + 3 * k + 2] - centre[2];
      radius = Math.max(radius, Math.hypot(x, y, z));
    }
  }
  radius = radius || 1;
  const positions = new Float32Array(kept.length * 9);
  const normals = new Float32Array(kept.length * 9);
  kept.forEach((i, n) => {
    const p = [];
    for (let j = 0; j < 9; j++) p.push((soup[9 * i + j] - centre[j % 3]) / radius);
    const e1 = [p[3] - p[0], p[4] - p[1], p[5] - p[2]];
    const e2 = [p[6] - p[0], p[7] - p[1], p[8] - p[2]];
    let nx = e1[1] * e2[2] - e1[2] * e2[1];
    let ny = e1[2] * e2[0] - e1[0] * e2[2];
    let nz = e1[0] * e2[1] - e1[1] * e2[0];
    const length = Math.hypot(nx, ny, nz) || 1;
    nx /= length; ny /= length; nz /= length;
    for (let j = 0; j < 9; j++) positions[9 * n + j] = p[j];
    for (let k = 0; k < 3; k++) {
      normals[9 * n + 3 * k] = nx;
      normals[9 * n + 3 * k + 1] = ny;
      normals[9 * n + 3 * k + 2] = nz;
    }
  });
  return { positions, normals, count: kept.length };
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

  show(soup) {
    const limit = this.mode === "webgl" ? PREVIEW_TRIANGLES_GL : PREVIEW_TRIANGLES_2D;
    this.mesh = prepareTriangles(soup, limit);
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
  const input = $("file");
  input.addEventListener("change", () => handleFile(input.files[0]));
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    const file = event.dataTransfer && event.dataTransfer.files[0];
    if (file) handleFile(file);
  });
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") input.click();
  });
  // Dropping a file anywhere else must not navigate away from the page.
  window.addEventListener("dragover", (event) => event.preventDefault());
  window.addEventListener("drop", (event) => event.preventDefault());
  showModel();
}

wire();
