// DeepLocations web map. Data comes from the JSON block in index.html; every piece of user text is
// written with textContent (never innerHTML), and links are only set for http(s) URLs.
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("deeploc-data").textContent);
  const canvas = document.getElementById("map");
  const ctx = canvas.getContext("2d");
  const W = canvas.width, H = canvas.height;
  const select = document.getElementById("output");
  let output = data.default_output, selected = null;

  const proj = (lat, lon) => [((lon + 180) / 360) * W, ((90 - lat) / 180) * H];
  const colour = (km) => (km <= 200 ? "#4aa3ff" : km <= 750 ? "#ffb347" : "#ff5c5c");
  const fmt = (lat, lon) => `${lat.toFixed(3)}°, ${lon.toFixed(3)}°`;

  function draw() {
    ctx.fillStyle = "#0b1d2e";
    ctx.fillRect(0, 0, W, H);
    ctx.strokeStyle = "rgba(255,255,255,0.07)";
    for (let lon = -180; lon <= 180; lon += 30) { const [x] = proj(0, lon); ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, H); ctx.stroke(); }
    for (let lat = -90; lat <= 90; lat += 30) { const [, y] = proj(lat, 0); ctx.beginPath(); ctx.moveTo(0, y); ctx.lineTo(W, y); ctx.stroke(); }
    ctx.fillStyle = "rgba(170,195,220,0.35)";
    const bm = data.basemap;
    for (let i = 0; i < bm.length; i += 2) { const [x, y] = proj(bm[i], bm[i + 1]); ctx.fillRect(x, y, 1.5, 1.5); }
    ctx.globalAlpha = 0.25;
    for (const p of data.points) {
      const [x1, y1] = proj(p.lat, p.lon), pr = p.pred[output], [x2, y2] = proj(pr[0], pr[1]);
      ctx.strokeStyle = colour(pr[2]);
      ctx.beginPath(); ctx.moveTo(x1, y1); ctx.lineTo(x2, y2); ctx.stroke();
    }
    ctx.globalAlpha = 1;
    for (const p of data.points) {
      const [x, y] = proj(p.lat, p.lon);
      ctx.fillStyle = "#3ddc84"; ctx.beginPath(); ctx.arc(x, y, 2.5, 0, 2 * Math.PI); ctx.fill();
    }
    if (selected) {
      const pr = selected.pred[output], [x1, y1] = proj(selected.lat, selected.lon), [x2, y2] = proj(pr[0], pr[1]);
      ctx.lineWidth = 3; ctx.strokeStyle = "#fff";
      ctx.beginPath(); ctx.moveTo(x1, y1); ctx.lineTo(x2, y2); ctx.stroke(); ctx.lineWidth = 1;
      ctx.fillStyle = "#3ddc84"; ctx.beginPath(); ctx.arc(x1, y1, 7, 0, 2 * Math.PI); ctx.fill();
      ctx.fillStyle = colour(pr[2]); ctx.beginPath(); ctx.arc(x2, y2, 7, 0, 2 * Math.PI); ctx.fill();
    }
  }

  function show(p) {
    selected = p;
    const pr = p.pred[output];
    document.getElementById("details").hidden = false;
    const img = document.getElementById("photo");
    if (p.img) { img.src = p.img; img.hidden = false; } else { img.hidden = true; }
    img.alt = p.title;
    document.getElementById("title").textContent = p.title || "(untitled)";
    document.getElementById("truth").textContent = fmt(p.lat, p.lon);
    document.getElementById("predicted").textContent = `${fmt(pr[0], pr[1])} (${output})`;
    document.getElementById("error").textContent = `${pr[2].toFixed(1)} km`;
    document.getElementById("license").textContent = p.license || "";
    const link = document.getElementById("link");
    if (p.url && /^https?:\/\//.test(p.url)) { link.href = p.url; link.hidden = false; } else { link.hidden = true; }
    draw();
  }

  canvas.addEventListener("click", (ev) => {
    const r = canvas.getBoundingClientRect();
    const mx = ((ev.clientX - r.left) / r.width) * W, my = ((ev.clientY - r.top) / r.height) * H;
    let best = null, bestD = 12 * 12;
    for (const p of data.points) {
      const [x, y] = proj(p.lat, p.lon), d = (x - mx) ** 2 + (y - my) ** 2;
      if (d < bestD) { best = p; bestD = d; }
    }
    if (best) show(best);
  });

  for (const o of data.outputs) {
    const opt = document.createElement("option");
    opt.value = o; opt.textContent = o; opt.selected = o === output;
    select.appendChild(opt);
  }
  select.addEventListener("change", () => { output = select.value; if (selected) show(selected); else draw(); });

  const km = (k) => parseFloat(k.split("_")[1]);
  const scales = Object.keys(data.metrics[0] || {}).filter((k) => /^[a-z]+_\d+km$/.test(k)).sort((a, b) => km(a) - km(b));
  const head = document.createElement("tr");
  for (const h of ["method", ...scales, "median km", "n"]) { const th = document.createElement("th"); th.textContent = h.replace("_", " ≤ "); head.appendChild(th); }
  document.querySelector("#accuracy thead").appendChild(head);
  for (const m of data.metrics) {
    const tr = document.createElement("tr");
    if (m.method.startsWith("prior")) tr.className = "prior";
    const cells = [m.method, ...scales.map((s) => `${(100 * m[s]).toFixed(1)} %`), Math.round(m.median_km), m.n];
    for (const c of cells) { const td = document.createElement("td"); td.textContent = String(c); tr.appendChild(td); }
    document.querySelector("#accuracy tbody").appendChild(tr);
  }
  document.getElementById("subtitle").textContent =
    `Run ${data.run} (${data.image_set} image set): ${data.predicted_total} held-out photos predicted, ${data.points.length} shown.`;
  draw();
})();
