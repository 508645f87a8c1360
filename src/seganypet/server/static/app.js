// The seganypet viewer: NiiVue (vendored, no network) over the token-protected session API.
//
// Views: axial, coronal and sagittal slices (one NiiVue canvas) and a maximum intensity projection
// (a second NiiVue canvas whose 3D view runs our own ray-casting shader; it can be turned by
// dragging, and it catches up with a new mask just after the slices, so a click is answered as
// soon as the slices show it). Prompts: click = positive point, shift+click = negative point; a
// 3D box is a rectangle dragged on one view plus its depth dragged on another; a scribble is a
// line and a lasso a closed outline dragged on one view (shift: negative). Each prompt is one
// request, whose answer carries the labels where they changed and the new statistics. Left-button events
// on the slice views are ours (NiiVue never sees them); the wheel and the right button go to
// NiiVue (slices, SUV window). The keys are ours too (the table KEYS, which also writes the cheat
// sheet); NiiVue's own keys are switched off.
//
// For a reader: the SUV under the pointer (voxel index in the input array's order, and mm RAS+),
// the study header, a reference segmentation outlined on the slices with its Dice against the
// current object, one row per lesion (click: go to its SUVmax), and the PERCIST liver VOI.
import { Niivue, SHOW_RENDER, SLICE_TYPE, cmapper } from "niivue";

const token = document.querySelector('meta[name="seganypet-token"]').content;
history.replaceState(null, "", location.pathname); // keep the token out of the address bar
const $ = (id) => document.getElementById(id);
// object colours, chosen to stand out on the hot colour maps (no reds, oranges or yellows)
const PALETTE = [[0, 0, 0], [0, 230, 60], [0, 220, 255], [255, 70, 230], [90, 120, 255],
  [190, 255, 80], [255, 255, 255], [160, 90, 255], [0, 160, 130], [255, 150, 220]];
const objectColour = (index) => PALETTE[1 + (index % (PALETTE.length - 1))];
const AXIAL = SLICE_TYPE.AXIAL;
const CORONAL = SLICE_TYPE.CORONAL;
const SAGITTAL = SLICE_TYPE.SAGITTAL;
const RENDER = SLICE_TYPE.RENDER;
const VIEW_NAMES = ["axial", "coronal", "sagittal"];
const PLANE_AXES = [[0, 1], [0, 2], [1, 2]]; // world axes (RAS mm) across and up each view
const DEPTH_AXIS = [2, 1, 0]; // the world axis each view looks along
const CLICK_SLOP_PX = 4; // a press that moves less than this is a click, not a drag
const POSITIVE = "#5f5"; // point markers: green adds, light blue removes (red would vanish in PET)
const NEGATIVE = "#5cf";

let sid = null; // the open session
let info = null; // its SessionInfo
let nativeOfDrawing = null; // NiiVue's drawing (RAS voxel order) index -> input voxel index; null: equal
let labelsNative = null; // the label map in the input array's order (Fortran: first axis fastest)
let inverse = null; // world mm -> input voxel (3x4)
let stats = null; // the last statistics report
let mode = "point";
let press = null; // the left-button press being handled by us
let draft = null; // a box being drawn: {rect: {view, a, b}, depth: [lo, hi] | null}
let stroke = null; // a scribble or lasso being drawn: {tile, points: [mm], positive}
const MODES = ["point", "box", "scribble", "lasso", "liver"];
const MODE_HINTS = {
  point: "",
  box: "Drag a rectangle around the object on any view.",
  scribble: "Drag a line inside the object on one view (shift: outside it).",
  lasso: "Drag around the object on one view to outline it (shift: a region outside it).",
  liver: "Click the liver (right lobe, away from lesions and vessels) for a 3 cm sphere VOI.",
};
const OUTLINE = "#ff4"; // the reference segmentation's outline
let studies = []; // the study list, each study with the masks attached to it
let openedStudy = null; // the path of the study open (null: an upload)
let reference = null; // the reference's labels: {source, labels (input order, first axis fastest), lo, hi}
let outlines = new Map(); // "view:slice" -> the reference outline's segments on that slice, mm
let pointerView = AXIAL; // the slice view under the pointer (the arrow keys step through it)
let masksHidden = false;
let chain = Promise.resolve(); // server calls run one after another, in order
const timings = []; // click round trips, ms: pointer event -> new mask drawn
const phases = []; // where each round trip went, ms

// ---------------------------------------------------------------------------- server
function status(text, error = false) {
  $("status").textContent = text || "";
  $("status").className = error ? "error" : "";
}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token}` };
  if (body !== undefined && !(body instanceof Blob)) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers,
    body: body === undefined ? undefined : body instanceof Blob ? body : JSON.stringify(body),
  });
  if (!response.ok) {
    const detail = await response.json().then((d) => d.detail, () => response.statusText);
    throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
  }
  return response;
}

const withToken = (path) => `${path}${path.includes("?") ? "&" : "?"}token=${encodeURIComponent(token)}`;
const nextFrame = () => new Promise((resolve) => requestAnimationFrame(() => resolve()));

function enqueue(task) {
  chain = chain.then(task).catch((error) => status(error.message, true));
  return chain;
}

// ---------------------------------------------------------------------------- geometry
// voxel indices of the input array <-> world mm, with the affine the server reports
function invert(a) {
  const m = [[a[0][0], a[0][1], a[0][2]], [a[1][0], a[1][1], a[1][2]], [a[2][0], a[2][1], a[2][2]]];
  const det = m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
    - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0]) + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0]);
  const c = (r0, c0, r1, c1) => m[r0][c0] * m[r1][c1] - m[r0][c1] * m[r1][c0];
  const inv = [
    [c(1, 1, 2, 2), -c(0, 1, 2, 2), c(0, 1, 1, 2)],
    [-c(1, 0, 2, 2), c(0, 0, 2, 2), -c(0, 0, 1, 2)],
    [c(1, 0, 2, 1), -c(0, 0, 2, 1), c(0, 0, 1, 1)],
  ].map((row) => row.map((v) => v / det));
  return inv.map((row) => [...row, -(row[0] * a[0][3] + row[1] * a[1][3] + row[2] * a[2][3])]);
}
const apply = (m, v) => [0, 1, 2].map((i) => m[i][0] * v[0] + m[i][1] * v[1] + m[i][2] * v[2] + m[i][3]);
const voxelToWorld = (voxel) => apply(info.affine, voxel);
const worldToVoxel = (mm) => apply(inverse, mm);
const inside = (voxel) => voxel.every((v, i) => v >= 0 && v <= info.shape[i] - 1);

// how far one voxel reaches along each world axis, mm
const voxelReach = () => [0, 1, 2].map((w) => Math.max(...[0, 1, 2].map((v) => Math.abs(info.affine[w][v]))));
// the image's extent along each world axis, mm
const worldExtent = () => [0, 1, 2].map((w) => [0, 1, 2].reduce((s, v) => s + Math.abs(info.affine[w][v]) * info.shape[v], 0));

const sliceTiles = () => (nv.screenSlices || []).filter((s) => s.axCorSag <= SAGITTAL && s.fovMM);
const crosshairMM = () => Array.from(nv.frac2mm(nv.scene.crosshairPos)).slice(0, 3);

function tileAt(x, y) {
  for (const s of nv.screenSlices || []) {
    let [l, t, w, h] = s.leftTopWidthHeight;
    if (w < 0) { l += w; w = -w; }
    if (x >= l && x <= l + w && y >= t && y <= t + h) return s;
  }
  return null;
}

// canvas pixels <-> world mm on a slice tile (the depth comes from the crosshair)
function canvasToMM(s, x, y) {
  let [l, t, w, h] = s.leftTopWidthHeight;
  let fx;
  if (w < 0) { l += w; w = -w; fx = 1 - (x - l) / w; } else { fx = (x - l) / w; }
  const fy = 1 - (y - t) / h;
  const mm = crosshairMM();
  const [a, b] = PLANE_AXES[s.axCorSag];
  mm[a] = s.leftTopMM[0] + fx * s.fovMM[0];
  mm[b] = s.leftTopMM[1] + fy * s.fovMM[1];
  return mm;
}

function mmToCanvas(s, mm) {
  const [a, b] = PLANE_AXES[s.axCorSag];
  let [l, t, w, h] = s.leftTopWidthHeight;
  let fx = (mm[a] - s.leftTopMM[0]) / s.fovMM[0];
  const fy = (mm[b] - s.leftTopMM[1]) / s.fovMM[1];
  if (w < 0) { l += w; w = -w; fx = 1 - fx; }
  return [l + fx * w, t + (1 - fy) * h];
}

function eventCanvasXY(e) {
  const canvas = $("gl");
  const rect = canvas.getBoundingClientRect();
  return [(e.clientX - rect.left) * (canvas.width / rect.width), (e.clientY - rect.top) * (canvas.height / rect.height)];
}

// ---------------------------------------------------------------------------- NiiVue
const COMMON = {
  backColor: [0, 0, 0, 1], dragAndDropEnabled: false, loadingText: "", fontMinPx: 12,
  viewModeHotKey: "", clipPlaneHotKey: "", cycleClipPlaneHotKey: "", // no stray layout changes
};
const nv = new Niivue({
  ...COMMON, isColorbar: true, crosshairColor: [0.3, 0.8, 1, 0.7], isOrientationTextVisible: true,
  multiplanarShowRender: SHOW_RENDER.NEVER,
  isRadiologicalConvention: true, // patient's right on the screen's left, as the MIP seen from the front
});
await nv.attachTo("gl");
nv.setSliceType(SLICE_TYPE.MULTIPLANAR);
const mipView = new Niivue({ ...COMMON, show3Dcrosshair: false, isColorbar: false, isOrientCube: false });
await mipView.attachTo("mip");
mipView.setSliceType(RENDER);

// The maximum intensity projection replaces NiiVue's volume rendering in the MIP view. NiiVue's
// volume texture holds the colour-mapped image, and its colour maps (inverted or not) make
// opacity grow with intensity: the most opaque voxel along a ray is its highest SUV. Where the
// ray meets an object, the colour of the one nearest the eye is blended in.
const MIP_FRAGMENT = `#version 300 es
precision highp int;
precision highp float;
uniform vec3 rayDir;
uniform vec3 texVox;
uniform vec3 volScale;
uniform vec3 objectsLo, objectsHi; // texture coordinates of a box around every object
uniform vec3 palette[PALETTE_SIZE]; // object i + 1 has colour i % PALETTE_SIZE
uniform float objectOpacity;
uniform highp sampler3D volume, drawing; // drawing: the label map, label / 255
in vec3 vColor;
out vec4 fColor;
void main() {
  vec3 entry = vColor;
  vec3 dir = rayDir;
  dir = mix(dir, vec3(1e-5), step(abs(dir), vec3(1e-5)));
  vec3 p = entry * volScale;
  vec3 far = max(-p / dir, (volScale - p) / dir);
  vec3 exit = (p + dir * min(far.x, min(far.y, far.z))) / volScale;
  float voxels = length(texVox * (exit - entry));
  gl_FragDepth = 1.0;
  fColor = vec4(0.0);
  if (voxels < 0.5) return;
  int count = int(ceil(voxels));
  vec3 delta = (exit - entry) / float(count);
  vec3 at = entry + 0.5 * delta;
  vec4 peak = vec4(0.0);
  float label = 0.0;
  ivec3 size = textureSize(volume, 0);
  vec3 fsize = vec3(size);
  ivec3 last = size - 1;
  bool layered = all(lessThanEqual(objectsLo, objectsHi));
  for (int i = 0; i < count; i++) {
    ivec3 v = clamp(ivec3(at * fsize), ivec3(0), last); // nearest voxel: one read, not eight
    vec4 c = texelFetch(volume, v, 0);
    if (c.a > peak.a) peak = c;
    if (layered && label == 0.0 && all(greaterThanEqual(at, objectsLo)) && all(lessThanEqual(at, objectsHi))) {
      label = texelFetch(drawing, v, 0).r; // the object nearest the eye
    }
    at += delta;
  }
  vec3 rgb = peak.rgb;
  if (label > 0.0) {
    int index = (int(label * 255.0 + 0.5) - 1) % PALETTE_SIZE;
    rgb = mix(rgb, palette[index], objectOpacity);
  }
  fColor = vec4(rgb, (peak.a > 0.0 || label > 0.0) ? 1.0 : 0.0);
}`;
const VERTEX = `#version 300 es
layout(location=0) in vec3 pos;
layout(location=1) in vec3 texCoords;
uniform mat4 mvpMtx;
out vec3 vColor;
void main(void) {
  gl_Position = mvpMtx * vec4(pos, 1.0);
  vColor = texCoords;
}`;
const Shader = mipView.renderShader.constructor; // NiiVue's shader wrapper (compiles, finds uniforms)
const mip = new Shader(mipView.gl, VERTEX, MIP_FRAGMENT.replace(/PALETTE_SIZE/g, String(PALETTE.length - 1)));
mipView.renderShader = mip;
mipView.renderVolumeShader = mip;
mipView.initRenderShader(mip, 0);
mipView.gl.uniform3fv(mipView.gl.getUniformLocation(mip.program, "palette"), PALETTE.slice(1).flat().map((v) => v / 255));

// The objects are NiiVue's drawing layer (a byte per voxel, uploaded as it is: no shader passes),
// label i coloured as object i - 1 in the panel.
const DRAW_COLOURS = (() => {
  const cm = { R: [], G: [], B: [], A: [], I: [] };
  for (let i = 0; i < 256; i++) {
    const [r, g, b] = i === 0 ? [0, 0, 0] : objectColour(i - 1);
    cm.R.push(r); cm.G.push(g); cm.B.push(b); cm.A.push(i === 0 ? 0 : 255); cm.I.push(i);
  }
  return cmapper.makeDrawLut(cm);
})();
nv.drawLut = DRAW_COLOURS;
mipView.drawLut = DRAW_COLOURS;

// Neither view draws lit volumes, so NiiVue's gradient passes (blur and Sobel filters over the
// whole image, seconds without a GPU) are given a shader that writes nothing.
const FLAT_VERTEX = `#version 300 es
in vec3 vPos;
void main() { gl_Position = vec4((vPos.xy - 0.5) * 2.0, 0.0, 1.0); }`;
const FLAT_FRAGMENT = `#version 300 es
precision highp float;
out vec4 colour;
void main() { colour = vec4(0.0); }`;
for (const view of [nv, mipView]) {
  const flat = new Shader(view.gl, FLAT_VERTEX, FLAT_FRAGMENT);
  Object.assign(view, { blurShader: flat, gradientPrePassShader: flat, sobelFirstOrderShader: flat, sobelSecondOrderShader: flat });
}

function setObjectsBox(lo, hi) { // input voxels; none: no object anywhere
  let a = [1, 1, 1];
  let b = [0, 0, 0];
  if (lo) {
    const corners = [];
    for (const i of [lo[0] - 0.5, hi[0] + 0.5]) for (const j of [lo[1] - 0.5, hi[1] + 0.5]) for (const k of [lo[2] - 0.5, hi[2] + 0.5]) {
      corners.push(mipView.mm2frac(voxelToWorld([i, j, k])));
    }
    a = [0, 1, 2].map((d) => Math.min(...corners.map((c) => c[d])) - 1e-3);
    b = [0, 1, 2].map((d) => Math.max(...corners.map((c) => c[d])) + 1e-3);
  }
  mip.use(mipView.gl);
  mipView.gl.uniform3fv(mip.uniforms.objectsLo, a);
  mipView.gl.uniform3fv(mip.uniforms.objectsHi, b);
  // objects stay visible in the MIP even with the slices' mask opacity at 0
  mipView.gl.uniform1f(mip.uniforms.objectOpacity, 0.25 + 0.6 * Number($("opacity").value));
}

// the prompts and boxes, drawn over NiiVue's canvas after each of its frames
const drawScene = nv.drawScene.bind(nv);
nv.drawScene = () => {
  const result = drawScene();
  drawMarks();
  return result;
};

function layout() {
  // Whole-body PET is tall: coronal, sagittal and MIP stand side by side at one scale, with the
  // axial view beside them (wide screens) or on top of the coronal one; a study about as tall as
  // it is wide gets a 2 x 2 grid. Whichever shows the images largest wins.
  if (!info) return;
  const canvas = $("gl");
  const dpr = canvas.width / Math.max(1, canvas.clientWidth);
  const W = canvas.clientWidth;
  const full = canvas.clientHeight;
  const H = Math.max(1, full - (nv.colorbarHeight || 48) / dpr - 6); // NiiVue draws the colour bar below
  const [X, Y, Z] = worldExtent();
  const gap = 8;
  const layouts = {
    beside: Math.min(H / Z, (W - 3 * gap) / (3 * X + Y)),
    above: Math.min((H - gap) / (Z + Y), (W - 2 * gap) / (2 * X + Y)),
    grid: Math.min((H - gap) / (Math.max(Y, Z) + Z), (W - gap) / (X + Math.max(X, Y))),
  };
  const chosen = Object.keys(layouts).reduce((a, b) => (layouts[b] > layouts[a] ? b : a));
  const scale = layouts[chosen];
  const [x, y, z] = [X * scale, Y * scale, Z * scale];
  const tiles = [];
  const add = (sliceType, left, top, w, h) => tiles.push({ sliceType, position: [left / W, top / full, w / W, h / full] });
  if (chosen === "beside") {
    const spare = W - 3 * gap - 2 * x - y;
    const axialW = Math.max(x, Math.min(spare, H * X / Y));
    let left = Math.max(0, (W - (axialW + 2 * x + y + 3 * gap)) / 2);
    add(AXIAL, left, 0, axialW, axialW * Y / X);
    left += axialW + gap;
    for (const [sliceType, w] of [[CORONAL, x], [SAGITTAL, y], [RENDER, x]]) {
      add(sliceType, left, 0, w, z);
      left += w + gap;
    }
  } else if (chosen === "above") {
    const left = Math.max(0, (W - (2 * x + y + 2 * gap)) / 2);
    add(AXIAL, left, 0, x, y);
    add(CORONAL, left, y + gap, x, z);
    add(SAGITTAL, left + x + gap, y + gap, y, z);
    add(RENDER, left + x + y + 2 * gap, y + gap, x, z);
  } else {
    const left = Math.max(0, (W - (x + Math.max(x, y) + gap)) / 2);
    const top = Math.max(y, z) + gap;
    add(AXIAL, left, 0, x, y);
    add(RENDER, left + x + gap, 0, x, z);
    add(CORONAL, left, top, x, z);
    add(SAGITTAL, left + x + gap, top, y, z);
  }
  // crosshair lines about a pixel wide whatever the zoom
  nv.opts.crosshairWidthUnit = "mm";
  nv.opts.crosshairWidth = 1 / scale;
  if (nv.crosshairs3D) nv.crosshairs3D.mm[0] = NaN;
  const [mx, my, mw, mh] = tiles.find((t) => t.sliceType === RENDER).position;
  Object.assign($("mipbox").style, { left: `${mx * W}px`, top: `${my * full}px`, width: `${mw * W}px`, height: `${mh * full}px`, display: "block" });
  nv.setCustomLayout(tiles.filter((t) => t.sliceType !== RENDER));
  // the MIP fills its canvas (NiiVue leaves room to turn the volume's diagonal)
  const furthest = mipView.volumeObject3D?.furthestVertexFromOrigin || Math.hypot(X, Y, Z) / 2;
  mipView.scene.volScaleMultiplier = (0.8 * furthest) / (Math.min(X, Z) / 2) / 1.02;
  mipView.drawScene();
}
new ResizeObserver(() => layout()).observe($("viewer"));

// ---------------------------------------------------------------------------- marks
function drawMarks() {
  const marks = $("marks");
  const canvas = $("gl");
  if (marks.width !== canvas.width || marks.height !== canvas.height) {
    marks.width = canvas.width;
    marks.height = canvas.height;
  }
  const g = marks.getContext("2d");
  g.clearRect(0, 0, marks.width, marks.height);
  // chromium may leave a canvas that was only cleared showing its last drawing: draw one
  // nearly transparent pixel, so that every frame has something drawn
  g.fillStyle = "rgba(0, 0, 0, 0.004)";
  g.fillRect(0, 0, 1, 1);
  if (!info || !nv.volumes.length) return;
  const dpr = canvas.width / Math.max(1, canvas.clientWidth);
  const reach = voxelReach();
  const here = crosshairMM();
  for (const s of sliceTiles()) {
    const depthAxis = DEPTH_AXIS[s.axCorSag];
    const onSlice = (lo, hi) => here[depthAxis] >= lo - reach[depthAxis] / 2 && here[depthAxis] <= hi + reach[depthAxis] / 2;
    g.save();
    let [l, t, w, h] = s.leftTopWidthHeight;
    if (w < 0) { l += w; w = -w; }
    g.beginPath();
    g.rect(l, t, w, h);
    g.clip();
    info.objects.forEach((o) => {
      const [r, gr, b] = objectColour(o.index);
      for (const p of o.prompt_list) {
        if (p.box) {
          const range = boxWorldRange(p.box.slice(0, 3), p.box.slice(3));
          if (!onSlice(...range[depthAxis])) continue;
          strokeBox(g, s, range, `rgb(${r},${gr},${b})`, dpr, o.index === info.current ? [] : [4 * dpr, 4 * dpr]);
        } else if (p.scribble || p.lasso) {
          const path = (p.scribble || p.lasso).map(voxelToWorld);
          if (!path.every((mm) => onSlice(mm[depthAxis], mm[depthAxis]))) continue;
          strokePath(g, s, path, Boolean(p.lasso), p.positive ? POSITIVE : NEGATIVE, dpr);
        } else if (p.point) {
          const mm = voxelToWorld(p.point);
          if (!onSlice(mm[depthAxis], mm[depthAxis])) continue;
          const [x, y] = mmToCanvas(s, mm);
          // a ring (the mask under it stays visible) with + or - beside it
          const radius = 6 * dpr;
          const colour = p.positive ? POSITIVE : NEGATIVE;
          for (const [width, style] of [[3.5 * dpr, "#000"], [1.6 * dpr, colour]]) {
            g.lineWidth = width;
            g.strokeStyle = style;
            g.beginPath();
            g.arc(x, y, radius, 0, 2 * Math.PI);
            const [cx, cy, arm] = [x + radius * 1.9, y - radius * 1.3, radius * 0.6];
            g.moveTo(cx - arm, cy); g.lineTo(cx + arm, cy);
            if (p.positive) { g.moveTo(cx, cy - arm); g.lineTo(cx, cy + arm); }
            g.stroke();
          }
        }
      }
    });
    if (stroke && stroke.tile.axCorSag === s.axCorSag) {
      strokePath(g, s, stroke.points, mode === "lasso", stroke.positive ? POSITIVE : NEGATIVE, dpr, [5 * dpr, 3 * dpr]);
    }
    if (draft) drawDraft(g, s, dpr);
    if (reference && $("outline").checked) drawOutline(g, s, dpr);
    if (info.liver) drawLiverSphere(g, s, dpr);
    g.restore();
  }
}

// the input axis that runs along a world axis (its affine column points most along it)
const inputAxisAlong = (world) => [0, 1, 2].reduce((best, v) => (Math.abs(info.affine[world][v]) > Math.abs(info.affine[world][best]) ? v : best), 0);
const crosshairVoxel = () => worldToVoxel(crosshairMM()).map(Math.round);

function outlineSegments(view) {
  // the edges between a reference voxel and a voxel of another label on the slice shown, as
  // segments in mm (voxel faces, whatever the study's axis order)
  const depth = inputAxisAlong(DEPTH_AXIS[view]);
  const slice = crosshairVoxel()[depth];
  const key = `${view}:${slice}`;
  if (outlines.has(key)) return outlines.get(key);
  const segments = [];
  const { labels, lo, hi } = reference;
  if (lo && slice >= lo[depth] && slice <= hi[depth]) {
    const [u, v] = [0, 1, 2].filter((a) => a !== depth);
    const [nx, ny] = info.shape;
    const at = (p) => (p[0] < 0 || p[1] < 0 || p[2] < 0 || p[0] >= nx || p[1] >= ny || p[2] >= info.shape[2]
      ? 0 : labels[p[0] + nx * (p[1] + ny * p[2])]);
    const voxel = [0, 0, 0];
    voxel[depth] = slice;
    for (let i = lo[u]; i <= hi[u]; i++) {
      for (let j = lo[v]; j <= hi[v]; j++) {
        voxel[u] = i;
        voxel[v] = j;
        const here = at(voxel);
        if (!here) continue;
        for (const [axis, other] of [[u, v], [v, u]]) {
          for (const step of [-1, 1]) {
            const next = voxel.slice();
            next[axis] += step;
            if (at(next) === here) continue;
            const a = voxel.slice();
            a[axis] += step / 2;
            a[other] -= 0.5;
            const b = a.slice();
            b[other] += 1;
            segments.push([voxelToWorld(a), voxelToWorld(b)]);
          }
        }
      }
    }
  }
  outlines.set(key, segments);
  return segments;
}

function drawOutline(g, s, dpr) {
  const segments = outlineSegments(s.axCorSag);
  if (!segments.length) return;
  for (const [width, style] of [[3 * dpr, "#000"], [1.5 * dpr, OUTLINE]]) {
    g.lineWidth = width;
    g.strokeStyle = style;
    g.lineCap = "round";
    g.beginPath();
    for (const [a, b] of segments) {
      const [x0, y0] = mmToCanvas(s, a);
      const [x1, y1] = mmToCanvas(s, b);
      g.moveTo(x0, y0);
      g.lineTo(x1, y1);
    }
    g.stroke();
  }
}

function drawLiverSphere(g, s, dpr) {
  // the liver VOI where the slice cuts the sphere
  const centre = info.liver.centre_world_mm;
  const radius = info.liver.diameter_mm / 2;
  const depthAxis = DEPTH_AXIS[s.axCorSag];
  const here = crosshairMM();
  const offset = here[depthAxis] - centre[depthAxis];
  if (Math.abs(offset) >= radius) return;
  const onSlice = centre.slice();
  onSlice[depthAxis] = here[depthAxis];
  const [x, y] = mmToCanvas(s, onSlice);
  const pixels = Math.sqrt(radius * radius - offset * offset) * Math.abs(s.leftTopWidthHeight[2] / s.fovMM[0]);
  g.setLineDash([5 * dpr, 3 * dpr]);
  for (const [width, style] of [[3 * dpr, "#000"], [1.5 * dpr, "#fff"]]) {
    g.lineWidth = width;
    g.strokeStyle = style;
    g.beginPath();
    g.arc(x, y, pixels, 0, 2 * Math.PI);
    g.stroke();
  }
  g.setLineDash([]);
}

function strokePath(g, s, path, closed, colour, dpr, dash = []) {
  if (path.length < 2) return;
  g.setLineDash(dash);
  for (const [width, style] of [[3.5 * dpr, "#000"], [1.8 * dpr, colour]]) {
    g.lineWidth = width;
    g.strokeStyle = style;
    g.beginPath();
    path.forEach((mm, i) => { const [x, y] = mmToCanvas(s, mm); if (i) g.lineTo(x, y); else g.moveTo(x, y); });
    if (closed) g.closePath();
    g.stroke();
  }
  g.setLineDash([]);
}

function boxWorldRange(lo, hi) {
  const corners = [];
  for (const i of [lo[0], hi[0]]) for (const j of [lo[1], hi[1]]) for (const k of [lo[2], hi[2]]) corners.push(voxelToWorld([i, j, k]));
  const reach = voxelReach();
  return [0, 1, 2].map((w) => [Math.min(...corners.map((c) => c[w])) - reach[w] / 2, Math.max(...corners.map((c) => c[w])) + reach[w] / 2]);
}

function strokeBox(g, s, range, colour, dpr, dash = []) {
  const [a, b] = PLANE_AXES[s.axCorSag];
  const p = [0, 0, 0];
  const q = [0, 0, 0];
  p[a] = range[a][0]; p[b] = range[b][0];
  q[a] = range[a][1]; q[b] = range[b][1];
  const [x0, y0] = mmToCanvas(s, p);
  const [x1, y1] = mmToCanvas(s, q);
  g.setLineDash(dash);
  g.lineWidth = 2 * dpr;
  g.strokeStyle = colour;
  g.strokeRect(Math.min(x0, x1), Math.min(y0, y1), Math.abs(x1 - x0), Math.abs(y1 - y0));
  g.setLineDash([]);
}

function draftRange() {
  // world ranges known so far: two axes from the rectangle, the third from the depth drag
  const range = [null, null, null];
  if (!draft) return range;
  const { view, a, b } = draft.rect;
  for (const axis of PLANE_AXES[view]) range[axis] = [Math.min(a[axis], b[axis]), Math.max(a[axis], b[axis])];
  if (draft.depth) range[DEPTH_AXIS[view]] = draft.depth;
  return range;
}

function drawDraft(g, s, dpr) {
  const range = draftRange();
  const colour = "#fff";
  const [a, b] = PLANE_AXES[s.axCorSag];
  const depthAxis = DEPTH_AXIS[s.axCorSag];
  if (range[a] && range[b] && (!range[depthAxis] || (crosshairMM()[depthAxis] >= range[depthAxis][0] && crosshairMM()[depthAxis] <= range[depthAxis][1]))) {
    strokeBox(g, s, range, colour, dpr, [6 * dpr, 4 * dpr]);
    return;
  }
  // the depth is not set yet: mark the rectangle's extent along this view's shared axis
  g.setLineDash([6 * dpr, 4 * dpr]);
  g.lineWidth = 1.5 * dpr;
  g.strokeStyle = colour;
  let [l, t, w, h] = s.leftTopWidthHeight;
  if (w < 0) { l += w; w = -w; }
  for (const [axis, horizontal] of [[a, false], [b, true]]) {
    if (!range[axis]) continue;
    for (const v of range[axis]) {
      const mm = crosshairMM();
      mm[axis] = v;
      const [x, y] = mmToCanvas(s, mm);
      g.beginPath();
      if (horizontal) { g.moveTo(l, y); g.lineTo(l + w, y); } else { g.moveTo(x, t); g.lineTo(x, t + h); }
      g.stroke();
    }
  }
  g.setLineDash([]);
}

// ---------------------------------------------------------------------------- the mask
function drawingOrder(image) {
  // NiiVue keeps drawings in RAS voxel order; the image's own order maps onto it by steps
  const [step, start, dims] = [image.img2RASstep, image.img2RASstart, image.dimsRAS];
  if (start.every((v) => v === 0) && step[0] === 1 && step[1] === dims[1] && step[2] === dims[1] * dims[2]) return null;
  const map = new Int32Array(dims[1] * dims[2] * dims[3]);
  let at = 0;
  for (let z = 0; z < dims[3]; z++) {
    for (let y = 0; y < dims[2]; y++) {
      const row = start[0] + start[1] + y * step[1] + start[2] + z * step[2];
      for (let x = 0; x < dims[1]; x++) map[at++] = row + x * step[0];
    }
  }
  return map;
}

const lastMask = { fetched: 0, drawn: 0 };
async function refreshMask() { // the whole label map, when a study opens
  const payload = await (await api("GET", `/api/sessions/${sid}/mask?format=rle`)).json();
  applyLabels(payload);
}

function applyLabels(region) {
  // write a region of the label map (an inclusive box, its labels run-length coded in Fortran
  // order) into the drawing; the whole map is the region of the whole volume
  lastMask.fetched = performance.now();
  if (!region || !nv.drawBitmap) return;
  const [nx, ny, nz] = info.shape;
  if (nv.drawBitmap.length !== nx * ny * nz) return;
  const labels = nativeOfDrawing ? labelsNative : nv.drawBitmap;
  const { lo, hi, runs } = region;
  const [bx, by] = [hi[0] - lo[0] + 1, hi[1] - lo[1] + 1];
  let at = 0; // position inside the box
  for (let r = 0; r < runs.length; r += 2) {
    const value = Math.min(255, runs[r]);
    let count = runs[r + 1];
    while (count > 0) { // one row of the box at a time
      const x = at % bx;
      const y = Math.floor(at / bx) % by;
      const z = Math.floor(at / (bx * by));
      const take = Math.min(count, bx - x);
      const start = lo[0] + x + nx * (lo[1] + y + ny * (lo[2] + z));
      labels.fill(value, start, start + take);
      at += take;
      count -= take;
    }
  }
  if (nativeOfDrawing) {
    const drawing = nv.drawBitmap;
    for (let i = 0; i < drawing.length; i++) drawing[i] = labels[nativeOfDrawing[i]];
  }
  nv.refreshDrawing(false);
  nv.drawScene();
  lastMask.drawn = performance.now();
  mipPending = region.extent || [null];
  if (!mipScheduled) { // the MIP follows once the slices are shown; a burst of updates draws once
    mipScheduled = true;
    mipUpdate = mipUpdate.then(nextFrame).then(drawMip);
  }
}

let mipPending = null;
let mipScheduled = false;
let mipUpdate = Promise.resolve(); // settles when the MIP on screen shows the latest mask

async function drawMip() {
  mipScheduled = false;
  if (!mipView.drawBitmap || mipView.drawBitmap.length !== nv.drawBitmap.length) return;
  mipView.drawBitmap.set(nv.drawBitmap);
  setObjectsBox(...mipPending);
  mipView.refreshDrawing(false);
  mipView.drawScene();
  await gpuDone(mipView.gl);
}

function gpuDone(gl) { // resolves when the GPU has run every command given so far (no blocking)
  const fence = gl.fenceSync(gl.SYNC_GPU_COMMANDS_COMPLETE, 0);
  gl.flush();
  return new Promise((resolve) => {
    const poll = () => {
      if (gl.getSyncParameter(fence, gl.SYNC_STATUS) === gl.SIGNALED) {
        gl.deleteSync(fence);
        resolve();
      } else {
        setTimeout(poll, 5);
      }
    };
    poll();
  });
}

// ---------------------------------------------------------------------------- panels
const fmt = (v, digits = 2) => (v === null || v === undefined || Number.isNaN(v) ? "—" : Number(v).toFixed(digits));
const fmtBig = (v) => (v === null || v === undefined ? "—" : Math.abs(v) >= 100 ? Number(v).toFixed(1) : Number(v).toFixed(2));

function showObjects() {
  const table = $("objects");
  const head = "<tr><th>object</th><th title=\"highest voxel\">SUVmax</th><th title=\"highest mean of a 1 ml sphere centred on a voxel of the object\">SUVpeak</th>"
    + "<th>SUVmean</th><th title=\"metabolic tumour volume, ml\">MTV ml</th><th title=\"total lesion glycolysis: SUVmean × MTV\">TLG</th></tr>";
  table.innerHTML = head;
  const byLabel = new Map((stats?.labels || []).map((s) => [s.label, s]));
  for (const o of info.objects) {
    const s = o.voxels > 0 ? byLabel.get(o.label) : undefined;
    const row = document.createElement("tr");
    row.className = `object${o.index === info.current ? " current" : ""}`;
    row.dataset.index = o.index;
    row.title = `${o.name}: ${o.prompts} prompt${o.prompts === 1 ? "" : "s"}, ${o.voxels} voxels (click to make it current)`;
    const [r, g, b] = objectColour(o.index);
    const first = document.createElement("td");
    const swatch = Object.assign(document.createElement("span"), { className: "swatch" });
    swatch.style.background = `rgb(${r},${g},${b})`;
    const name = Object.assign(document.createElement("span"), { className: "name", textContent: o.name });
    first.append(swatch, name);
    row.append(first);
    for (const text of s ? [fmt(s.suv_max), fmt(s.suv_peak), fmt(s.suv_mean), fmtBig(s.mtv_ml), fmtBig(s.tlg)] : ["—", "—", "—", "—", "—"]) {
      row.append(Object.assign(document.createElement("td"), { textContent: text }));
    }
    row.onclick = () => { if (o.index !== info.current) enqueue(() => interact("POST", `/objects/${o.index}/select`)); };
    table.append(row);
  }
  $("undo").disabled = !info.can_undo;
  showLesions();
  showReference();
  showLiver();
}

const cell = (text, className) => Object.assign(document.createElement("td"), { textContent: text, className: className || "" });

const HEADER_ROWS = [
  ["patient_id", "Patient ID", (v) => v],
  ["patient_name", "Patient name", (v) => v],
  ["study_date", "Study date", (v) => v],
  ["tracer", "Tracer", (v, h) => (h.radionuclide ? `${v} (${h.radionuclide})` : v)],
  ["weight_kg", "Weight", (v) => `${Number(v).toFixed(1)} kg`],
  ["injected_dose_mbq", "Injected dose", (v) => `${Number(v).toFixed(1)} MBq`],
  ["suv_type", "SUV type", (v, h) => (h.format === "dicom" ? v : `${v} (as stated: a NIfTI file records no SUV header)`)],
  ["suv_factor", "SUV factor", (v, h) => `${Number(v).toPrecision(6)} (from ${h.source_units})`],
];

function showHeader() {
  const header = info.header || {};
  $("header").replaceChildren(...HEADER_ROWS.map(([field, name, shown]) => {
    const row = document.createElement("tr");
    row.dataset.field = field;
    const value = header[field];
    const missing = value === null || value === undefined || value === "";
    row.append(Object.assign(document.createElement("th"), { textContent: name }),
      cell(missing ? "not recorded" : shown(value, header), missing ? "missing" : ""));
    return row;
  }));
}

function goToVoxel(voxel) {
  nv.scene.crosshairPos = nv.mm2frac(voxelToWorld(voxel));
  nv.createOnLocationChange();
  nv.drawScene();
}

function showLesions() {
  const table = $("lesions");
  const above = new Set((info.percist?.lesions_above || []).map(([label, lesion]) => `${label}:${lesion}`));
  const head = document.createElement("tr");
  for (const [text, title] of [["object", ""], ["#", "lesion: a connected component of the object, largest first"], ["SUVmax", ""],
    ["SUVpeak", ""], ["ml", "volume"], ["voxel", "where its SUVmax is: voxel index in the image's own axis order"]]) {
    head.append(Object.assign(document.createElement("th"), { textContent: text, title }));
  }
  const rows = [head];
  for (const label of stats?.labels || []) {
    for (const lesion of label.lesions || []) {
      const row = document.createElement("tr");
      row.className = "lesion";
      row.dataset.label = label.label;
      row.dataset.lesion = lesion.lesion;
      row.dataset.voxel = lesion.suv_max_voxel.join(",");
      const reaches = above.has(`${label.label}:${lesion.lesion}`);
      row.title = `go to the SUVmax of ${label.name}, lesion ${lesion.lesion}`;
      row.append(cell(label.name), cell(String(lesion.lesion)), cell(fmt(lesion.suv_max)),
        cell(`${fmt(lesion.suv_peak)}${reaches ? " ≥" : ""}`, reaches ? "above" : ""), cell(fmtBig(lesion.mtv_ml)),
        cell(`[${lesion.suv_max_voxel.join(", ")}]`));
      row.onclick = () => goToVoxel(lesion.suv_max_voxel);
      rows.push(row);
    }
  }
  table.replaceChildren(...rows);
  const percist = info.percist;
  const count = rows.length - 1;
  $("percist-result").textContent = percist
    ? `PERCIST baseline ${percist.threshold.toFixed(2)} ${percist.units}: ${percist.lesions_above.length} of ${count} `
      + `lesion${count === 1 ? "" : "s"} reach it (${percist.units === "SUL" ? "SULpeak" : "SUVpeak"}, marked ≥)`
    : "";
}

function showReference() {
  const ref = info.reference;
  const table = $("dice");
  if (!ref) { table.replaceChildren(); return; }
  const object = info.objects[ref.object]?.name ?? "";
  const head = document.createElement("tr");
  for (const text of ["reference", "voxels", `Dice with ${object}`]) head.append(Object.assign(document.createElement("th"), { textContent: text }));
  const rows = ref.labels.map((l) => {
    const row = document.createElement("tr");
    row.dataset.label = l.label;
    row.append(cell(l.name), cell(String(l.voxels)), cell(fmt(l.dice, 3)));
    return row;
  });
  if (ref.labels.length > 1) {
    const all = document.createElement("tr");
    all.dataset.label = "all";
    all.append(cell("all labels"), cell(String(ref.labels.reduce((n, l) => n + l.voxels, 0))), cell(fmt(ref.dice_all, 3)));
    rows.push(all);
  }
  table.replaceChildren(head, ...rows);
}

function showLiver() {
  const liver = info.liver;
  $("percist").disabled = !liver;
  const box = $("liver-result");
  if (!liver) { box.replaceChildren(); return; }
  const [mean, sd, threshold] = [liver.mean, liver.sd, liver.percist_threshold].map((v) => v.toFixed(2));
  box.replaceChildren(
    Object.assign(document.createElement("div"), { id: "liver-values", textContent: `${liver.units} mean ${mean} · SD ${sd} · PERCIST threshold 1.5 × mean + 2 × SD = ${threshold}` }),
    Object.assign(document.createElement("div"), { className: "muted", textContent: `${liver.voxels} voxels in a ${liver.diameter_mm} mm sphere at voxel [${liver.centre_voxel.join(", ")}]; ${liver.note}` }),
  );
}

// the SUV under the pointer (or at the crosshair), its voxel and its place in mm
function voxelValue(voxel) {
  const volume = nv.volumes[0];
  const [nx, ny] = info.shape;
  const stored = volume.img[voxel[0] + nx * (voxel[1] + ny * voxel[2])]; // NiiVue keeps the file's own order
  const slope = volume.hdr.scl_slope;
  return Number.isFinite(slope) && slope !== 0 ? stored * slope + (volume.hdr.scl_inter || 0) : stored;
}

function showCursor(voxel) {
  if (!info || !nv.volumes.length || !inside(voxel)) return;
  const value = voxelValue(voxel);
  const mm = voxelToWorld(voxel);
  const line = $("cursor");
  line.textContent = `${info.units} ${value.toFixed(3)}  at voxel [${voxel.join(", ")}]  ·  `
    + `(${mm.map((v) => v.toFixed(1)).join(", ")}) mm RAS`;
  Object.assign(line.dataset, { voxel: voxel.join(","), value: String(value), mm: mm.join(",") });
}
nv.onLocationChange = (location) => { if (info) showCursor(worldToVoxel(Array.from(location.mm).slice(0, 3)).map(Math.round)); };

// the reference segmentation's labels, for its outline
async function loadReference() {
  outlines = new Map();
  if (!info.reference) { reference = null; return; }
  const payload = await (await api("GET", `/api/sessions/${sid}/reference`)).json();
  const labels = new Uint16Array(payload.shape.reduce((a, b) => a * b, 1));
  let at = 0;
  for (let r = 0; r < payload.runs.length; r += 2) {
    if (payload.runs[r]) labels.fill(payload.runs[r], at, at + payload.runs[r + 1]);
    at += payload.runs[r + 1];
  }
  const [nx, ny] = payload.shape;
  const lo = [Infinity, Infinity, Infinity];
  const hi = [-1, -1, -1];
  for (let i = 0; i < labels.length; i++) {
    if (!labels[i]) continue;
    const p = [i % nx, Math.floor(i / nx) % ny, Math.floor(i / (nx * ny))];
    for (let a = 0; a < 3; a++) { lo[a] = Math.min(lo[a], p[a]); hi[a] = Math.max(hi[a], p[a]); }
  }
  reference = { source: info.reference.source, labels, lo: hi[0] < 0 ? null : lo, hi };
  nv.drawScene();
}

function showReferenceChoice() {
  const select = $("reference");
  const attached = studies.find((s) => s.path === openedStudy)?.attachments || [];
  const kinds = { labels: "label map", rtstruct: "RTSTRUCT", seg: "SEG" };
  const options = [Object.assign(document.createElement("option"), { value: "", textContent: "none" })];
  for (const a of attached) options.push(Object.assign(document.createElement("option"), { value: a.path, textContent: `${a.path} (${kinds[a.kind] || a.kind})` }));
  const source = info.reference?.source;
  if (source && !attached.some((a) => a.path === source)) {
    options.push(Object.assign(document.createElement("option"), { value: source, textContent: `${source} (uploaded)`, disabled: true }));
  }
  select.replaceChildren(...options);
  select.value = source || "";
}

async function changeReference(method, suffix, body) {
  try {
    await interact(method, suffix, body);
    await loadReference();
  } finally {
    showReferenceChoice();
  }
}


async function interact(method, suffix, body, started) {
  if (!sid) return;
  status("working…");
  document.body.dataset.busy = "1";
  try {
    const sent = performance.now();
    info = await (await api(method, `/api/sessions/${sid}${suffix}`, body)).json();
    const answered = performance.now();
    stats = info.stats;
    applyLabels(info.change); // draws the new mask where it changed
    nv.drawScene(); // (and the marks)
    showObjects();
    if (started !== undefined) {
      // the mask is drawn: reading a pixel back waits for the GPU to finish; then the frame shows it
      nv.gl.readPixels(0, 0, 1, 1, nv.gl.RGBA, nv.gl.UNSIGNED_BYTE, new Uint8Array(4));
      await nextFrame();
      const done = performance.now();
      timings.push(done - started);
      phases.push({ before: sent - started, prompt: answered - sent, mask: lastMask.fetched - answered,
        draw: lastMask.drawn - lastMask.fetched, frame: done - lastMask.drawn });
    }
    status("");
  } finally {
    delete document.body.dataset.busy;
  }
}

function setHint(text) { $("hint").textContent = text || ""; }

function setMode(next) {
  mode = next;
  draft = null;
  stroke = null;
  for (const m of MODES) $(`mode-${m}`).classList.toggle("on", mode === m);
  $("viewer").classList.toggle("box", mode !== "point");
  setHint(MODE_HINTS[mode]);
  nv.drawScene();
}

async function opened(response, path = null) {
  info = await response.json();
  openedStudy = path;
  $("study").value = path ?? "";
  sid = info.session_id;
  inverse = invert(info.affine);
  stats = null;
  draft = null;
  $("downloads").replaceChildren();
  status("loading the image…");
  const look = windowAndColours();
  await nv.loadVolumes([
    { url: withToken(`/api/sessions/${sid}/image`), name: "image.nii.gz", colormap: look.colormap,
      cal_min: look.cal_min, cal_max: look.cal_max },
  ]);
  nv.createEmptyDrawing();
  nv.drawOpacity = Number($("opacity").value);
  nativeOfDrawing = drawingOrder(nv.volumes[0]);
  labelsNative = nativeOfDrawing ? new Uint8Array(nv.drawBitmap.length) : null;
  // the MIP view gets its own copy (each WebGL context holds its own textures)
  mipView.volumes = [Object.assign(nv.volumes[0].clone(), look)];
  [mipView.back, ...mipView.overlays] = mipView.volumes; // as addVolume would
  mipView.updateGLVolume();
  mipView.createEmptyDrawing();
  if (look.colormapInvert) applyColormap();
  layout();
  mipView.setRenderAzimuthElevation(180, 0); // seen from the front
  $("studyinfo").textContent = `${info.study}: ${info.shape.join(" × ")} voxels of `
    + `${info.spacing_mm.map((v) => v.toFixed(2)).join(" × ")} mm, ${info.units}${info.dicom ? ", DICOM" : ""}`;
  stats = info.stats;
  await refreshMask();
  showHeader();
  showObjects();
  showReferenceChoice();
  await loadReference();
  showCursor(crosshairVoxel());
  status(info.replayed ? `restored ${info.replayed} interactions from the journal` : "");
  document.body.dataset.opened = sid;
}

function windowAndColours() {
  const choice = $("colormap").value;
  return {
    colormap: choice === "gray-inverted" ? "gray" : choice,
    colormapInvert: choice === "gray-inverted",
    cal_min: Number($("suvmin").value),
    cal_max: Number($("suvmax").value),
  };
}

function applyColormap() {
  const look = windowAndColours();
  for (const view of [nv, mipView]) {
    if (!view.volumes.length) continue;
    Object.assign(view.volumes[0], look);
    view.updateGLVolume();
  }
}

// ---------------------------------------------------------------------------- controls
// a study that fails to open leaves the one open selected and shown
$("open").onclick = () => {
  const wanted = $("study").value;
  enqueue(async () => {
    let response;
    try {
      response = await api("POST", "/api/sessions", { study: wanted });
    } catch (error) {
      $("study").value = openedStudy ?? "";
      throw new Error(`${wanted}: ${error.message}`);
    }
    await opened(response, wanted);
  });
};
$("upload").onchange = (event) => {
  const file = event.target.files[0];
  if (!file) return;
  enqueue(async () => {
    status(`uploading ${file.name}…`);
    try {
      await opened(await api("POST", `/api/sessions/upload?filename=${encodeURIComponent(file.name)}`, file));
    } finally {
      event.target.value = "";
    }
  });
};
$("reference").onchange = () => {
  const path = $("reference").value;
  enqueue(() => (path ? changeReference("POST", "/reference", { path }) : changeReference("DELETE", "/reference")));
};
$("reference-upload").onchange = (event) => {
  const file = event.target.files[0];
  if (!file) return;
  enqueue(async () => {
    status(`uploading ${file.name}…`);
    try {
      await changeReference("POST", `/reference/upload?filename=${encodeURIComponent(file.name)}`, file);
    } finally {
      event.target.value = "";
    }
  });
};
$("outline").onchange = () => nv.drawScene();
$("percist").onclick = () => enqueue(() => interact("POST", "/percist"));
$("new").onclick = () => {
  const name = $("newname").value.trim() || null;
  $("newname").value = "";
  enqueue(() => interact("POST", "/objects", { name }));
};
$("rename").onclick = () => {
  const name = $("newname").value.trim();
  if (!name) { status("type the new name in the box above first", true); return; }
  $("newname").value = "";
  enqueue(() => interact("PATCH", `/objects/${info.current}`, { name }));
};
$("undo").onclick = () => enqueue(() => interact("POST", "/undo"));
$("reset").onclick = () => enqueue(() => interact("POST", "/reset"));
for (const m of MODES) $(`mode-${m}`).onclick = () => setMode(m);
for (const id of ["suvmin", "suvmax", "colormap"]) $(id).onchange = applyColormap;
$("opacity").oninput = () => {
  if (!sid) return;
  masksHidden = false;
  nv.setDrawOpacity(Number($("opacity").value));
  mipPending ??= [null];
  setObjectsBox(...mipPending);
  mipView.drawScene();
};
nv.onIntensityChange = (volume) => { // right-drag sets the window: show it, and use it in the MIP
  if (volume !== nv.volumes[0]) return;
  $("suvmin").value = Number(volume.cal_min.toFixed(2));
  $("suvmax").value = Number(volume.cal_max.toFixed(2));
  if (mipView.volumes.length) {
    mipView.volumes[0].cal_min = volume.cal_min;
    mipView.volumes[0].cal_max = volume.cal_max;
    mipView.updateGLVolume();
  }
};
// every key the viewer handles: the cheat sheet above the views is written from this table
const toggleMode = (next) => setMode(mode === next ? "point" : next);
const KEYS = [
  { key: "p", label: "P", does: "points", run: () => setMode("point") },
  { key: "b", label: "B", does: "3D box", title: "a rectangle on one view, then its depth on another", run: () => toggleMode("box") },
  { key: "s", label: "S", does: "scribble", run: () => toggleMode("scribble") },
  { key: "l", label: "L", does: "lasso", run: () => toggleMode("lasso") },
  { key: "v", label: "V", does: "liver VOI", title: "then click the liver: a 3 cm sphere (PERCIST)", run: () => toggleMode("liver") },
  { key: "Escape", label: "Esc", does: "cancel", title: "drop the shape being drawn, back to points", run: () => setMode("point") },
  { key: "ctrl+z", label: "Ctrl+Z", does: "undo", run: () => { if (info?.can_undo) enqueue(() => interact("POST", "/undo")); } },
  { key: "ArrowUp", label: "↑", does: "next", title: "the next slice of the view under the pointer", run: () => stepSlice(1) },
  { key: "ArrowDown", label: "↓", does: "previous slice", title: "the previous slice of the view under the pointer", run: () => stepSlice(-1) },
  { key: "m", label: "M", does: "masks on/off", run: () => toggleMasks() },
  { key: "o", label: "O", does: "reference outline on/off", run: () => { $("outline").checked = !$("outline").checked; nv.drawScene(); } },
];
$("key-list").replaceChildren(...KEYS.flatMap((k, i) => [
  ...(i ? [Object.assign(document.createElement("span"), { className: "sep", textContent: "·" })] : []),
  Object.assign(document.createElement("kbd"), { textContent: k.label, title: k.title || k.does }),
  document.createTextNode(` ${k.does}`),
]));
$("key-list").querySelectorAll("kbd").forEach((kbd, i) => { kbd.dataset.key = KEYS[i].key; });

function keyName(e) {
  if ((e.ctrlKey || e.metaKey) && !e.altKey) return `ctrl+${e.key.toLowerCase()}`;
  if (e.ctrlKey || e.metaKey || e.altKey) return null;
  return e.key.length === 1 ? e.key.toLowerCase() : e.key;
}

function stepSlice(direction) {
  // one voxel along the view's depth, towards higher world coordinates for "up"
  if (!info) return;
  const world = DEPTH_AXIS[pointerView];
  const axis = inputAxisAlong(world);
  const voxel = crosshairVoxel();
  voxel[axis] = Math.min(info.shape[axis] - 1, Math.max(0, voxel[axis] + direction * Math.sign(info.affine[world][axis])));
  goToVoxel(voxel);
}

function toggleMasks() {
  if (!sid) return;
  masksHidden = !masksHidden;
  nv.setDrawOpacity(masksHidden ? 0 : Number($("opacity").value));
}

window.addEventListener("keydown", (e) => {
  if (e.target instanceof HTMLCanvasElement) e.stopPropagation(); // NiiVue's own keys are off
  const field = document.activeElement;
  const typing = field?.tagName === "TEXTAREA" || field?.tagName === "SELECT"
    || (field?.tagName === "INPUT" && ["text", "number", "search", "range"].includes(field.type));
  const entry = typing ? null : KEYS.find((k) => k.key === keyName(e));
  if (!entry) return;
  e.preventDefault();
  entry.run();
}, true);
$("save").onclick = () => enqueue(async () => {
  if (!sid) return;
  const formats = info.dicom ? ["nifti", "dicom-seg"] : ["nifti"];
  const links = [];
  const stored = [];
  for (const format of formats) {
    const saved = await (await api("POST", `/api/sessions/${sid}/save`, { format })).json();
    if (saved.stored) stored.push(`stored on ${saved.stored}`);
    const link = document.createElement("a");
    link.href = withToken(saved.download);
    link.download = saved.file;
    link.textContent = `⤓ ${saved.file} (${format === "nifti" ? "NIfTI label map" : "DICOM SEG"})`;
    link.dataset.format = format;
    link.dataset.path = saved.path;
    links.push(link);
  }
  $("downloads").replaceChildren(...links);
  status([`saved in ${links.map((l) => l.dataset.path).join(" and ")}`, ...stored].join("; "));
});

// ---------------------------------------------------------------------------- pointer
// left button on a slice view: ours; everything else: NiiVue's
const viewer = $("viewer");
viewer.addEventListener("mousedown", (e) => {
  if (e.button !== 0 || !sid || !nv.volumes.length || e.target !== $("gl")) return;
  const [x, y] = eventCanvasXY(e);
  const s = tileAt(x, y);
  if (!s || s.axCorSag > SAGITTAL) return;
  e.stopPropagation();
  e.preventDefault(); // (which keeps the focus where it was: leave any field, for the keys)
  if (document.activeElement instanceof HTMLElement) document.activeElement.blur();
  press = { x, y, tile: s, start: canvasToMM(s, x, y), dragged: false };
  if (mode === "scribble" || mode === "lasso") stroke = { tile: s, points: [press.start], positive: !e.shiftKey };
}, true);

viewer.addEventListener("mousemove", (e) => {
  if (!press) {
    if (!info || e.target !== $("gl")) return;
    const [x, y] = eventCanvasXY(e);
    const s = tileAt(x, y);
    if (!s || s.axCorSag > SAGITTAL || !s.fovMM) return;
    pointerView = s.axCorSag;
    showCursor(worldToVoxel(canvasToMM(s, x, y)).map(Math.round));
    return;
  }
  e.stopPropagation();
  const [x, y] = eventCanvasXY(e);
  if (Math.hypot(x - press.x, y - press.y) > CLICK_SLOP_PX * (window.devicePixelRatio || 1)) press.dragged = true;
  if (!press.dragged) return;
  const mm = canvasToMM(press.tile, x, y);
  if (mode === "box") {
    dragBox(press.tile.axCorSag, press.start, mm, false);
  } else if (stroke) {
    stroke.points.push(mm);
    nv.drawScene();
  } else { // navigate: the crosshair follows the pointer
    nv.scene.crosshairPos = nv.mm2frac(mm);
    nv.createOnLocationChange?.();
    nv.drawScene();
  }
}, true);

viewer.addEventListener("mouseup", (e) => {
  if (!press || e.button !== 0) return;
  e.stopPropagation();
  e.preventDefault();
  const started = e.timeStamp; // same clock as performance.now()
  const [x, y] = eventCanvasXY(e);
  const { tile, start, dragged } = press;
  press = null;
  const mm = canvasToMM(tile, x, y);
  if (mode === "box") {
    if (dragged) dragBox(tile.axCorSag, start, mm, true);
    else setHint(draft ? "Drag (not click) along the box's depth on another view." : "Drag a rectangle around the object on any view.");
    return;
  }
  if (stroke) {
    const done = stroke;
    stroke = null;
    if (dragged) sendStroke(done, started);
    else setHint(MODE_HINTS[mode]);
    nv.drawScene();
    return;
  }
  if (dragged) return;
  // a click: the crosshair moves there, and the point goes to the server
  const voxel = worldToVoxel(mm).map(Math.round);
  if (!inside(voxel)) return;
  nv.scene.crosshairPos = nv.mm2frac(voxelToWorld(voxel));
  nv.createOnLocationChange?.();
  nv.drawScene();
  if (mode === "liver") {
    setMode("point");
    enqueue(() => interact("POST", "/liver", { voxel }));
    return;
  }
  const positive = !e.shiftKey;
  enqueue(() => interact("POST", "/prompts", { point: voxel, positive }, started));
}, true);

function sendStroke(drawn, started) {
  // the line in voxels, on the one slice it was drawn on (the voxel axis that varies least)
  const voxels = drawn.points.map(worldToVoxel);
  const spread = [0, 1, 2].map((a) => Math.max(...voxels.map((v) => v[a])) - Math.min(...voxels.map((v) => v[a])));
  const flat = spread.indexOf(Math.min(...spread));
  const depth = Math.round(voxels.reduce((sum, v) => sum + v[flat], 0) / voxels.length);
  const path = [];
  for (const v of voxels) {
    const p = v.map((c, a) => (a === flat ? depth : Math.round(c * 10) / 10));
    const last = path[path.length - 1];
    if (!last || Math.hypot(p[0] - last[0], p[1] - last[1], p[2] - last[2]) >= 0.5) path.push(p);
  }
  if (!path.every(inside)) { status("the line leaves the image: draw it inside", true); return; }
  const need = mode === "lasso" ? 3 : 2;
  if (path.length < need) { status(`draw a longer ${mode}`, true); return; }
  enqueue(() => interact("POST", "/prompts", { [mode]: path, positive: drawn.positive }, started));
}

function dragBox(view, a, b, done) {
  if (!draft || draft.rect.view === view || !draft.rectDone) {
    // the rectangle (again, on the same view: start over)
    draft = { rect: { view, a, b }, depth: null, rectDone: done };
    if (done) setHint(`Now drag along the box's depth on the ${VIEW_NAMES.filter((_, i) => i !== view).join(" or ")} view.`);
    nv.drawScene();
    return;
  }
  const axis = DEPTH_AXIS[draft.rect.view];
  draft.depth = [Math.min(a[axis], b[axis]), Math.max(a[axis], b[axis])];
  nv.drawScene();
  if (!done) return;
  const range = draftRange();
  const corners = [];
  for (const i of range[0]) for (const j of range[1]) for (const k of range[2]) corners.push(worldToVoxel([i, j, k]));
  const lo = [0, 1, 2].map((v) => Math.max(0, Math.round(Math.min(...corners.map((c) => c[v])))));
  const hi = [0, 1, 2].map((v) => Math.min(info.shape[v] - 1, Math.round(Math.max(...corners.map((c) => c[v])))));
  draft = null;
  setHint("Drag a rectangle around the next object, or press P for points.");
  if (lo.some((v, i) => hi[i] - v < 1)) {
    status("the box is too thin: drag at least two voxels along every axis", true);
    nv.drawScene();
    return;
  }
  enqueue(() => interact("POST", "/prompts", { box: [...lo, ...hi] }, performance.now()));
}

// ---------------------------------------------------------------------------- start
studies = await (await api("GET", "/api/studies")).json();
$("study").replaceChildren(...studies.flatMap((s) => [
  Object.assign(document.createElement("option"), { value: s.path, textContent: s.label ?? s.path }),
  ...s.attachments.map((a) => Object.assign(document.createElement("option"), {
    className: "attachment", disabled: true, value: `attachment:${a.path}`, textContent: `   ↳ ${a.path.split("/").pop()} (${a.kind})`,
  })),
]));
if (!studies.length) status("no studies under --data: upload one");

// for the browser tests: the viewer's state, and where a voxel lies on screen
window.seganypet = {
  nv,
  timings,
  phases,
  info: () => info,
  idle: async () => { await chain; await mipUpdate; },
  keys: KEYS.map((k) => k.key),
  mode: () => mode,
  crosshairVoxel: () => crosshairVoxel(),
  marksPixels(voxelish, view, reach) { // the marks canvas's pixels around a (fractional) voxel's place on a slice view
    const s = sliceTiles().find((t) => t.axCorSag === view);
    const [x, y] = mmToCanvas(s, voxelToWorld(voxelish));
    const data = $("marks").getContext("2d").getImageData(Math.round(x) - reach, Math.round(y) - reach, 2 * reach + 1, 2 * reach + 1).data;
    const pixels = [];
    for (let i = 0; i < data.length; i += 4) pixels.push(Array.from(data.slice(i, i + 4)));
    return pixels;
  },
  mipView,
  goTo(voxel) { // move the slices to a voxel, as scrolling would
    nv.scene.crosshairPos = nv.mm2frac(voxelToWorld(voxel));
    nv.drawScene();
  },
  labelShownAt(voxel) { // the label NiiVue draws at an input voxel
    const v = nv.frac2vox(nv.mm2frac(voxelToWorld(voxel)));
    const dims = nv.back.dimsRAS;
    return nv.drawBitmap[v[0] + dims[1] * (v[1] + dims[2] * v[2])];
  },
  voxelToClient(voxel, view) { // page coordinates of a voxel's centre on a slice view
    const s = sliceTiles().find((t) => t.axCorSag === view);
    if (!s) return null;
    const [x, y] = mmToCanvas(s, voxelToWorld(voxel));
    const canvas = $("gl");
    const rect = canvas.getBoundingClientRect();
    return [rect.left + x * (rect.width / canvas.width), rect.top + y * (rect.height / canvas.height)];
  },
};
document.body.dataset.ready = "1";
