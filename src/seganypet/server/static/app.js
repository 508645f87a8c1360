// The seganypet viewer: NiiVue (vendored, no network) over the token-protected session API.
import { Niivue, SHOW_RENDER, SLICE_TYPE } from "niivue";

const token = document.querySelector('meta[name="seganypet-token"]').content;
history.replaceState(null, "", location.pathname); // keep the token out of the address bar
const $ = (id) => document.getElementById(id);
const PALETTE = [[0, 0, 0], [0, 220, 0], [40, 140, 255], [255, 200, 0], [255, 60, 200],
  [0, 230, 230], [255, 120, 40], [170, 100, 255], [255, 255, 255], [120, 255, 120]];

let sid = null;
let info = null;
let overlay = null;
let moved = false;
let down = null;

function status(text) { $("status").textContent = text || ""; }

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

const nv = new Niivue({
  backColor: [0, 0, 0, 1], show3Dcrosshair: true, isColorbar: true,
  multiplanarShowRender: SHOW_RENDER.ALWAYS, dragAndDropEnabled: false,
});
await nv.attachTo("gl");
nv.setSliceType(SLICE_TYPE.MULTIPLANAR);

// voxel indices of the input array from world mm, with the affine the server reports
function worldToVoxel(mm) {
  const a = info.affine;
  const m = [[a[0][0], a[0][1], a[0][2]], [a[1][0], a[1][1], a[1][2]], [a[2][0], a[2][1], a[2][2]]];
  const r = [mm[0] - a[0][3], mm[1] - a[1][3], mm[2] - a[2][3]];
  const det = (q) => q[0][0] * (q[1][1] * q[2][2] - q[1][2] * q[2][1])
    - q[0][1] * (q[1][0] * q[2][2] - q[1][2] * q[2][0]) + q[0][2] * (q[1][0] * q[2][1] - q[1][1] * q[2][0]);
  const d = det(m);
  return [0, 1, 2].map((c) => Math.round(det(m.map((row, i) => row.map((v, j) => (j === c ? r[i] : v)))) / d));
}

function labelColormap(names) {
  const n = Math.max(1, ...Object.keys(names).map(Number));
  const cm = { R: [], G: [], B: [], A: [], I: [], labels: [] };
  for (let i = 0; i <= n; i++) {
    const [r, g, b] = PALETTE[i === 0 ? 0 : 1 + ((i - 1) % (PALETTE.length - 1))];
    cm.R.push(r); cm.G.push(g); cm.B.push(b); cm.A.push(i === 0 ? 0 : 255); cm.I.push(i);
    cm.labels.push(i === 0 ? "" : names[i] || `object ${i}`);
  }
  return cm;
}

async function refreshMask() {
  const payload = await (await api("GET", `/api/sessions/${sid}/mask?format=rle`)).json();
  const runs = payload.runs;
  const size = payload.shape.reduce((x, y) => x * y, 1);
  if (!overlay || overlay.img.length !== size) return;
  const img = overlay.img;
  let at = 0;
  for (let i = 0; i < runs.length; i += 2) { img.fill(runs[i], at, at + runs[i + 1]); at += runs[i + 1]; }
  overlay.setColormapLabel(labelColormap(payload.names));
  nv.updateGLVolume();
}

function showObjects() {
  const box = $("objects");
  box.replaceChildren();
  info.objects.forEach((o) => {
    const label = document.createElement("label");
    const radio = Object.assign(document.createElement("input"), { type: "radio", name: "obj", checked: o.index === info.current });
    radio.onchange = () => act("POST", `/objects/${o.index}/select`);
    const [r, g, b] = PALETTE[1 + (o.index % (PALETTE.length - 1))];
    const swatch = Object.assign(document.createElement("span"), { className: "swatch" });
    swatch.style.background = `rgb(${r},${g},${b})`;
    label.append(radio, swatch, `${o.name}: ${o.prompts} prompts, ${o.volume_ml.toFixed(2)} ml`);
    box.append(label);
  });
  $("undo").disabled = !info.can_undo;
}

async function refreshStats() {
  const report = await (await api("GET", `/api/sessions/${sid}/stats`)).json();
  const rows = (report.labels || []).map((s) => `<tr><td>${escapeHtml(s.name ?? String(s.label))}</td>`
    + `<td>${fmt(s.suv_max)}</td><td>${fmt(s.suv_peak)}</td><td>${fmt(s.suv_mean)}</td>`
    + `<td>${fmt(s.mtv_ml)}</td><td>${fmt(s.tlg)}</td></tr>`).join("");
  $("stats").innerHTML = rows ? "<table><tr><th>object</th><th>SUVmax</th><th>SUVpeak</th><th>SUVmean</th>"
    + `<th>MTV ml</th><th>TLG</th></tr>${rows}</table>` : "—";
}

const fmt = (v) => (v === null || v === undefined ? "—" : Number(v).toFixed(2));
const escapeHtml = (s) => s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

async function act(method, suffix, body) {
  if (!sid) return;
  try {
    status("working…");
    info = await (await api(method, `/api/sessions/${sid}${suffix}`, body)).json();
    showObjects();
    await refreshMask();
    await refreshStats();
    status("");
  } catch (error) { status(error.message); }
}

async function opened(response) {
  info = await response.json();
  sid = info.session_id;
  await nv.loadVolumes([
    { url: withToken(`/api/sessions/${sid}/image`), name: "image.nii.gz", colormap: "hot",
      cal_min: Number($("suvmin").value), cal_max: Number($("suvmax").value) },
    { url: withToken(`/api/sessions/${sid}/mask?format=nifti`), name: "mask.nii.gz", opacity: 0.5 },
  ]);
  overlay = nv.volumes[1];
  showObjects();
  await refreshMask();
  await refreshStats();
  status(info.replayed ? `restored ${info.replayed} interactions from the journal` : "");
}

$("open").onclick = async () => {
  try { await opened(await api("POST", "/api/sessions", { study: $("study").value })); } catch (e) { status(e.message); }
};
$("upload").onchange = async (event) => {
  const file = event.target.files[0];
  if (!file) return;
  try {
    status(`uploading ${file.name}…`);
    await opened(await api("POST", `/api/sessions/upload?filename=${encodeURIComponent(file.name)}`, file));
  } catch (e) { status(e.message); }
};
$("new").onclick = () => act("POST", "/objects", { name: $("newname").value || null });
$("undo").onclick = () => act("POST", "/undo");
$("reset").onclick = () => act("POST", "/reset");
document.addEventListener("keydown", (e) => {
  if ((e.ctrlKey || e.metaKey) && e.key === "z") { e.preventDefault(); act("POST", "/undo"); }
});
for (const id of ["suvmin", "suvmax"]) {
  $(id).onchange = () => {
    if (!nv.volumes.length) return;
    nv.volumes[0].cal_min = Number($("suvmin").value);
    nv.volumes[0].cal_max = Number($("suvmax").value);
    nv.updateGLVolume();
  };
}
$("save").onclick = async () => {
  if (!sid) return;
  try {
    const saved = await (await api("POST", `/api/sessions/${sid}/save`, { format: $("format").value || null })).json();
    const link = $("download");
    link.href = withToken(saved.download);
    link.download = saved.file;
    link.textContent = `download ${saved.file}`;
    link.hidden = false;
    status(`saved ${saved.path}`);
  } catch (e) { status(e.message); }
};

// a click (not a drag) that moved the crosshair adds a point there; shift makes it negative
nv.onLocationChange = () => { moved = true; };
const canvas = $("gl");
canvas.addEventListener("pointerdown", (e) => { down = [e.clientX, e.clientY]; moved = false; });
canvas.addEventListener("pointerup", (e) => {
  if (!sid || e.button !== 0 || !down) return;
  const far = Math.hypot(e.clientX - down[0], e.clientY - down[1]) > 4;
  down = null;
  setTimeout(() => {
    if (far || !moved) return;
    const mm = nv.frac2mm(nv.scene.crosshairPos);
    const voxel = worldToVoxel([mm[0], mm[1], mm[2]]);
    if (voxel.some((v, i) => v < 0 || v >= info.shape[i])) return;
    act("POST", "/points", { voxel, positive: !e.shiftKey });
  }, 0);
});

const studies = await (await api("GET", "/api/studies")).json();
$("study").replaceChildren(...studies.map((s) => Object.assign(document.createElement("option"), { value: s.path, textContent: s.path })));
