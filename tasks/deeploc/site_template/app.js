// DeepLocations web map. The data is the JSON block in index.html. Every piece of text that comes from
// the data or an answer is written with textContent (never as markup), links are set only for http(s)
// URLs, and nothing is attached as an inline handler, so the page runs under a strict
// Content-Security-Policy (script-src 'self').
(function () {
  "use strict";
  const data = JSON.parse(document.getElementById("deeploc-data").textContent);
  const $ = (id) => document.getElementById(id);
  const el = (tag, text, cls) => { const e = document.createElement(tag); if (text !== undefined) e.textContent = String(text); if (cls) e.className = cls; return e; };
  const httpOnly = (url) => (typeof url === "string" && /^https?:\/\//i.test(url) ? url : null);
  const fmt = (lat, lon) => `${lat.toFixed(3)}°, ${lon.toFixed(3)}°`;
  const pct = (v) => (v === null || v === undefined ? "–" : `${(100 * v).toFixed(1)} %`);
  let output = data.default_output;

  // The map: Natural Earth's countries (cut at 180°, GeoJSON) drawn locally; a tile layer only where one is configured.
  const map = L.map("map", { worldCopyJump: true, minZoom: 1, maxZoom: 12 }).setView([25, 0], 2);
  if (httpOnly(data.tiles)) L.tileLayer(data.tiles, { maxZoom: 18 }).addTo(map);
  L.geoJSON(window.DEEPLOC_COUNTRIES, {
    interactive: false, style: { color: "#7c8ea3", weight: 0.7, fillColor: "#f4f1e8", fillOpacity: 1 },
  }).addTo(map);
  const photosLayer = L.markerClusterGroup({ showCoverageOnHover: false, maxClusterRadius: 40 }).addTo(map);
  const chosenLayer = L.layerGroup().addTo(map);
  const dot = (cls, size) => L.divIcon({ className: cls, iconSize: [size, size] });

  // Cells of each output: the hierarchy (and its kNN refinement) rank the finest partitioning's cells.
  const cellsOf = (o) => data.cells[data.order.includes(o) ? o : data.order[data.order.length - 1]];
  const byToken = {};
  for (const p of data.order) for (const c of data.cells[p]) byToken[c[0]] = c;

  // The great-circle path between two points, as lat/lon steps (longitudes unwrapped).
  function greatCircle(a, b, steps = 64) {
    const rad = Math.PI / 180, v = (la, lo) => [Math.cos(la * rad) * Math.cos(lo * rad), Math.cos(la * rad) * Math.sin(lo * rad), Math.sin(la * rad)];
    const p = v(a[0], a[1]), q = v(b[0], b[1]);
    const w = Math.acos(Math.min(1, Math.max(-1, p[0] * q[0] + p[1] * q[1] + p[2] * q[2])));
    const out = [];
    let last = null;
    for (let i = 0; i <= steps; i++) {
      const t = i / steps, s = Math.sin(w);
      const f = s < 1e-9 ? [1 - t, t] : [Math.sin((1 - t) * w) / s, Math.sin(t * w) / s];
      const x = f[0] * p[0] + f[1] * q[0], y = f[0] * p[1] + f[1] * q[1], z = f[0] * p[2] + f[1] * q[2];
      let lon = Math.atan2(y, x) / rad;
      if (last !== null) { while (lon - last > 180) lon -= 360; while (last - lon > 180) lon += 360; }
      last = lon;
      out.push([Math.atan2(z, Math.hypot(x, y)) / rad, lon]);
    }
    return out;
  }

  // What the side panel and the map show for one photo, from the collection or uploaded: per output the
  // predicted place (and country), the error when the truth is known, and the top cells.
  function collectionView(p) {
    return {
      kind: "From the collection", img: p.img, title: p.title || "(untitled)", credit: p, id: p.id,
      truth: { lat: p.lat, lon: p.lon, country: p.country, source: "" },
      pred: (o) => {
        const pr = p.pred[o], cells = cellsOf(o);
        return { lat: pr.lat, lon: pr.lon, country: pr.country, km: pr.km,
          top: pr.top.map(([c, prob]) => ({ prob, token: cells[c][0], lat: cells[c][1], lon: cells[c][2], outline: cells[c][3], radius: cells[c][4] || 0 })) };
      },
    };
  }
  function uploadView(answer, name, url) {
    const g = answer.exif_gps;
    return {
      kind: "Your photo", img: url, title: name, credit: null, id: null,
      truth: g ? { lat: g.lat, lon: g.lon, country: g.country, source: " (from the photo's EXIF)" } : null,
      pred: (o) => {
        const pr = answer.prediction[o];
        return { lat: pr.lat, lon: pr.lon, country: pr.country, km: g ? answer.distances_km[o] : null,
          top: pr.top.map((t) => ({ prob: t.probability, token: t.cell, lat: t.lat, lon: t.lon, outline: (byToken[t.cell] || [])[3], radius: (byToken[t.cell] || [])[4] || 0 })) };
      },
    };
  }

  // Confidence in words, from the (temperature-scaled) probabilities: what the top cells hold, and the
  // error the model expects: the distance to a photo of each top cell (its centre's distance and its
  // radius, in quadrature), weighted by the cell's probability.
  function km(a, b) {
    const rad = Math.PI / 180, dp = (b[0] - a[0]) * rad, dl = (b[1] - a[1]) * rad;
    const h = Math.sin(dp / 2) ** 2 + Math.cos(a[0] * rad) * Math.cos(b[0] * rad) * Math.sin(dl / 2) ** 2;
    return 2 * 6371.0 * Math.asin(Math.sqrt(Math.min(1, h)));
  }
  function confidence(pr) {
    const top = pr.top, p1 = top.length ? top[0].prob : 0, p5 = top.reduce((s, t) => s + t.prob, 0);
    const words = p1 >= 0.5 ? "fairly sure" : p1 >= 0.2 ? "unsure" : "guessing";
    const expected = top.reduce((s, t) => s + t.prob * Math.hypot(km([pr.lat, pr.lon], [t.lat, t.lon]), t.radius), 0) / Math.max(p5, 1e-12);
    return `${words}: ${pct(p1)} on its most likely cell, ${pct(p5)} on its ${top.length} most likely; expected error about ${Math.round(expected)} km`;
  }
  const place = (pt) => `${fmt(pt.lat, pt.lon)}${pt.country ? ` · ${pt.country}` : " · at sea or no country"}`;

  // The view fits the truth, the prediction and the most likely cell, with room around them, and never
  // zooms closer than FIT_MAX_ZOOM, where the outlines and place names still say where one is.
  const FIT_MAX_ZOOM = 6, LABEL_ZOOM = 4;
  let current = null;
  function show(view) {
    current = view;
    const pr = view.pred(output);
    chosenLayer.clearLayers();
    const bounds = L.latLngBounds([[pr.lat, pr.lon]]);
    for (const t of pr.top) {
      if (t.outline) L.polygon(t.outline, { color: "#d64545", weight: 1, fillOpacity: Math.min(0.6, 0.1 + t.prob), className: "topk-cell" })
        .bindTooltip(el("span", pct(t.prob))).addTo(chosenLayer);
      else L.marker([t.lat, t.lon], { icon: dot("top-marker", 8), title: pct(t.prob) }).addTo(chosenLayer);
    }
    if (pr.top.length) bounds.extend(pr.top[0].outline ? L.latLngBounds(pr.top[0].outline) : L.latLng(pr.top[0].lat, pr.top[0].lon));
    if (view.truth) {
      L.polyline(greatCircle([view.truth.lat, view.truth.lon], [pr.lat, pr.lon]), { color: "#1c2430", weight: 2, dashArray: "6 4", className: "gc-line" }).addTo(chosenLayer);
      L.marker([view.truth.lat, view.truth.lon], { icon: dot("truth-marker chosen-truth", 14), title: "taken here" + view.truth.source }).addTo(chosenLayer);
      bounds.extend([view.truth.lat, view.truth.lon]);
    }
    L.marker([pr.lat, pr.lon], { icon: dot("pred-marker", 14), title: "placed here" }).addTo(chosenLayer);
    map.fitBounds(bounds, { padding: [40, 40], maxZoom: FIT_MAX_ZOOM, animate: false });
    $("hint").hidden = true;
    $("chosen").hidden = false;
    $("kind").textContent = view.kind;
    $("photo").src = view.img || "";
    $("photo").alt = view.title;
    $("title").textContent = view.title;
    $("credit").hidden = !view.credit;
    if (view.credit) {
      const c = view.credit, lic = $("license"), page = $("page");
      $("author").textContent = c.author || "unknown";
      lic.textContent = c.license || "licence unknown";
      if (httpOnly(c.license_url)) lic.href = c.license_url; else lic.removeAttribute("href");
      if (httpOnly(c.url)) { page.href = c.url; page.hidden = false; } else { page.removeAttribute("href"); page.hidden = true; }
    }
    $("truth").textContent = view.truth ? place(view.truth) + view.truth.source : "unknown (no GPS position in the photo)";
    $("predicted").textContent = `${place(pr)} (${output})`;
    $("distance").textContent = pr.km === null ? "–" : `${pr.km.toFixed(1)} km`;
    $("confidence").textContent = confidence(pr);
    const list = $("topk");
    list.replaceChildren();
    for (const t of pr.top) list.appendChild(el("li", `${pct(t.prob)} · cell ${t.token} · ${fmt(t.lat, t.lon)}`));
    for (const b of document.querySelectorAll("#gallery button")) b.classList.toggle("active", Number(b.dataset.id) === view.id);
  }

  // Place names (GeoNames' largest cities) from LABEL_ZOOM on, more of them as one zooms in.
  const labelsLayer = L.layerGroup().addTo(map);
  function label() {
    const z = map.getZoom(), n = z < LABEL_ZOOM ? 0 : z === LABEL_ZOOM ? 100 : z === LABEL_ZOOM + 1 ? 300 : data.places.length;
    labelsLayer.clearLayers();
    for (const [name, lat, lon] of data.places.slice(0, n)) {
      L.marker([lat, lon], { icon: L.divIcon({ className: "place-label", html: el("span", name), iconSize: null }), interactive: false, keyboard: false }).addTo(labelsLayer);
    }
  }
  // The zoom, on the map's element: what the view rule and the labels depend on, readable by tests.
  const zoomed = () => { $("map").dataset.zoom = String(map.getZoom()); label(); };
  map.on("zoomend", zoomed);
  zoomed();

  // 100 photos at a time from the pool, drawn with a seeded generator: the same page shows the same
  // photos; "shuffle" moves to the next draw.
  function mulberry32(seed) {
    return function () { seed |= 0; seed = (seed + 0x6d2b79f5) | 0; let t = Math.imul(seed ^ (seed >>> 15), 1 | seed); t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t; return ((t ^ (t >>> 14)) >>> 0) / 4294967296; };
  }
  let draw = 0;
  function showPhotos() {
    const rand = mulberry32(data.seed * 1000003 + draw), pool = data.pool.slice();
    for (let i = pool.length - 1; i > 0; i--) { const j = Math.floor(rand() * (i + 1)); [pool[i], pool[j]] = [pool[j], pool[i]]; }
    const shown = pool.slice(0, data.shown);
    const gallery = $("gallery");
    gallery.replaceChildren();
    photosLayer.clearLayers();
    for (const p of shown) {
      const b = el("button");
      b.type = "button";
      b.dataset.id = String(p.id);
      const img = el("img");
      img.src = p.img;
      img.alt = p.title || "photo";
      img.loading = "lazy";
      b.appendChild(img);
      b.addEventListener("click", () => show(collectionView(p)));
      gallery.appendChild(b);
      L.marker([p.lat, p.lon], { icon: dot("truth-marker", 9), title: p.title || "photo" }).on("click", () => show(collectionView(p))).addTo(photosLayer);
    }
    $("gallery-note").textContent = `${shown.length} of ${data.pool.length} photos (draw ${draw + 1})`;
  }
  $("shuffle").addEventListener("click", () => { draw += 1; showPhotos(); });

  for (const o of data.outputs) {
    const opt = el("option", o);
    opt.value = o;
    opt.selected = o === output;
    $("output").appendChild(opt);
  }
  $("output").addEventListener("change", () => { output = $("output").value; if (current) show(current); });

  // Your own photo: sent to `deeploc serve`, which answers with the top cells (and the GPS position
  // from the photo's EXIF, shown as the truth; the network never sees it). The photo itself is shown
  // from the browser's own copy (a blob: URL), never sent back.
  let ownUrl = null;
  $("upload").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const say = (t) => { $("upload-message").textContent = t; };
    if (location.protocol === "file:") { say("Uploading a photo needs the server: run `deeploc serve --lake <lake>` and open the address it prints."); return; }
    const file = $("file").files[0];
    if (!file) { say("Choose a JPEG or PNG photo first."); return; }
    const form = new FormData();
    form.append("photo", file);
    say("Looking…");
    try {
      const resp = await fetch("api/predict", { method: "POST", body: form });
      const answer = await resp.json();
      if (!resp.ok) { say(answer.error || `The server refused the photo (${resp.status}).`); return; }
      if (ownUrl) URL.revokeObjectURL(ownUrl);
      ownUrl = URL.createObjectURL(file);
      say("");
      show(uploadView(answer, file.name, ownUrl));
    } catch (err) {
      say("The server did not answer; is `deeploc serve` running?");
    }
  });

  // Results: the accuracy table (every output and the prior) and the figures.
  const scales = [["street_1km", "1 km"], ["city_25km", "25 km"], ["region_200km", "200 km"], ["country_750km", "750 km"], ["continent_2500km", "2500 km"]];
  function table(id, rows, first, extra) {
    const head = el("tr");
    const scored = rows.some((r) => r.geoscore !== undefined);
    for (const h of [first, ...scales.map((s) => `≤ ${s[1]}`), ...extra.map((e) => e[1]), ...(scored ? ["GeoScore"] : []), "median km", "n"]) head.appendChild(el("th", h));
    $(id).querySelector("thead").appendChild(head);
    for (const r of rows) {
      const tr = el("tr");
      const name = r.method || r.continent || r.country;
      if (String(name).startsWith("prior")) tr.className = "prior";
      const score = scored ? [r.geoscore === null || r.geoscore === undefined ? "–" : Math.round(r.geoscore)] : [];
      const cells = [name, ...scales.map((s) => pct(r[s[0]])), ...extra.map((e) => pct(r[e[0]])), ...score, r.median_km === null ? "–" : Math.round(r.median_km), r.n];
      for (const c of cells) tr.appendChild(el("td", c));
      $(id).querySelector("tbody").appendChild(tr);
    }
  }
  table("accuracy", data.metrics, "output", [["same_country", "same country"], ["same_continent", "same continent"]]);
  table("continents", data.by_continent, "continent", []);
  table("countries", data.by_country, "country", []);
  for (const f of data.figures) { const img = el("img"); img.src = f; img.alt = f.includes("curve") ? "accuracy curve" : f.includes("reliability") ? "reliability diagram" : "map of the photos"; $("figures").appendChild(img); }
  // The removal effect: the full and removal models on the same test photos, hierarchy output.
  const effect = data.removal_effect;
  if (effect) {
    const head = el("tr");
    for (const h of ["test photos", "scale", `full (${effect.full_run})`, `removal (${effect.removal_run})`, "difference", "95 % interval", "McNemar p"]) head.appendChild(el("th", h));
    $("removal").querySelector("thead").appendChild(head);
    for (const [subset, rows] of Object.entries(effect.rows)) {
      for (const r of rows.filter((r) => r.output === "hierarchy")) {
        const tr = el("tr");
        const points = (v) => (v === null ? "–" : `${v >= 0 ? "+" : ""}${(100 * v).toFixed(1)}`);
        const scale = scales.find((s) => s[0] === r.scale);
        for (const c of [`${subset === "all" ? "all" : "without faces"} (${r.n})`, scale ? scale[1] : r.scale, pct(r.accuracy_a), pct(r.accuracy_b), points(r.difference), `[${points(r.ci_low)}, ${points(r.ci_high)}]`, r.mcnemar_p === null ? "–" : r.mcnemar_p.toPrecision(2)]) tr.appendChild(el("td", c));
        $("removal").querySelector("tbody").appendChild(tr);
      }
    }
    $("removal-note").textContent = `The model trained without photos whose face ratio is above ${effect.face_threshold} (removal) against the one trained on every photo (full), on the full run's test photos, and on those without faces. Differences in points of accuracy, removal minus full; the interval resamples users.`;
    $("removal-effect").hidden = false;
  }
  $("accuracy-note").textContent = `${data.predicted_total} photos predicted: ${data.photos || "held-out photos"}.`;
  $("subtitle").textContent = `Model run ${data.run} (${data.image_set} image set; ${data.train.train_images} training photos).`;
  showPhotos();
})();
