// misomap map viewer: the map's COGs read by HTTP range requests (OpenLayers GeoTIFF source, WebGL),
// shown in EPSG:3338, with legends from map.json, pedons, pixel values and a swipe between two maps.
// Query parameter `compare=<map folder URL, relative to this page>` adds a second map to swipe to.
(function () {
  'use strict';
  const O = window.misoOL;
  const $ = (id) => document.getElementById(id);
  O.proj4.defs('EPSG:3338', '+proj=aea +lat_0=50 +lon_0=-154 +lat_1=55 +lat_2=65 +x_0=0 +y_0=0 ' +
    '+datum=NAD83 +units=m +no_defs +type=crs');
  O.register(O.proj4);

  // what tests and scripts can read: readiness, first render time, problems, the last click
  const viewer = window.misomapViewer = {ready: false, firstRenderMs: null, errors: [], maps: [], olMap: null};
  const ui = {layer: null, band: 0, opacity: 0.85, swipe: 0.5};

  function problem(text) {
    viewer.errors.push(text);
    $('errors-box').hidden = false;
    const li = document.createElement('li');
    li.textContent = text;
    $('errors').appendChild(li);
  }

  async function loadMap(folderUrl, role) {
    const base = new URL('viewer/', folderUrl).href;
    const url = new URL('map.json', base).href;
    const resp = await fetch(url);
    if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status} (no map manifest there)`);
    const doc = await resp.json();
    doc.role = role;
    doc.base = base;
    doc.images = {};
    await Promise.all(doc.layers.map(async (layer) => {
      layer.url = new URL(layer.cog, base).href;
      try {
        const tiff = await O.fromUrl(layer.url, {allowFullFile: false});
        doc.images[layer.name] = await tiff.getImage(0);
      } catch (err) {
        const head = await fetch(layer.url, {method: 'HEAD'}).catch(() => null);
        layer.failed = head && !head.ok ? `HTTP ${head.status}` : String(err && err.message || err);
        problem(`${role} map: layer ${layer.name} failed to load (${layer.url}): ${layer.failed}`);
      }
    }));
    return doc;
  }

  function rgba(hex, a = 1) {
    const n = parseInt(hex.slice(1), 16);
    return [(n >> 16) & 255, (n >> 8) & 255, n & 255, a];
  }

  function colourExpression(layer) {
    let colour;
    if (layer.kind === 'class') {
      colour = ['match', ['band', 1]];
      for (const c of layer.classes) colour.push(c.value, rgba(c.colour));
      colour.push([0, 0, 0, 0]);
    } else {
      colour = ['interpolate', ['linear'], ['band', 1]];
      for (const [v, rgb] of layer.ramp) colour.push(v, [...rgb, 1]);
    }
    return ['case', ['==', ['band', 1], layer.nodata], rgba(layer.nodata_colour), colour];
  }

  // the part of the map area a map shows in compare mode: left of the swipe line (main), right (compare)
  function clip(canvas, index) {
    const cut = `${(ui.swipe * 100).toFixed(3)}%`;
    canvas.style.clipPath = index === 0 ? `inset(0 calc(100% - ${cut}) 0 0)` : `inset(0 0 0 ${cut})`;
  }

  function rasterLayer(doc, layer, band) {
    const source = new O.GeoTIFF({
      sources: [{url: layer.url, bands: [band + 1], nodata: layer.nodata}],
      normalize: false, interpolate: false, wrapX: false,
    });
    source.on('change', () => {
      if (source.getState() === 'error') {
        problem(`${doc.role} map: layer ${layer.name} failed to render: ${source.getError && source.getError()}`);
      }
    });
    return new O.TileLayer({source, style: {color: colourExpression(layer)}, opacity: ui.opacity,
      className: `ol-layer misomap-${doc.role}`});
  }

  function legend(layer) {
    const box = $('legend');
    box.innerHTML = '';
    const title = document.createElement('div');
    title.textContent = layer.title + (layer.bands ? ` — ${layer.bands[ui.band]}` : '');
    box.appendChild(title);
    if (layer.kind === 'class') {
      for (const c of layer.classes) {
        const row = document.createElement('div');
        row.className = 'legend-class';
        row.innerHTML = `<span class="swatch" style="background:${c.colour}"></span>`;
        row.appendChild(document.createTextNode(c.name));
        box.appendChild(row);
      }
    } else {
      const stops = layer.ramp.map(([v, rgb]) => `rgb(${rgb.join(',')}) ${v}%`).join(', ');
      box.insertAdjacentHTML('beforeend', `<div class="ramp" style="background:linear-gradient(to right, ${stops})">` +
        '</div><div class="ramp-labels"><span>0 %</span><span>50 %</span><span>100 %</span></div>');
    }
    const nodata = document.createElement('div');
    nodata.className = 'legend-class legend-nodata';
    nodata.innerHTML = `<span class="swatch" style="background:${layer.nodata_colour}"></span>`;
    nodata.appendChild(document.createTextNode(`no data (value ${layer.nodata})`));
    box.appendChild(nodata);
  }

  function pedonStyleFactory(doc) {
    const cache = {};
    return (feature) => {
      const p = feature.getProperties();
      const scheme = $('scheme').value;
      const fold = $('fold').value;
      if (!$('pedons').checked) return null;
      if (fold !== 'all' && String(p.folds[scheme]) !== fold) return null;
      const by = $('pedon-label').value;
      const label = p[by];
      const colour = label == null ? '#ffffff' : doc.pedons.colours[by][label];
      if (!cache[colour]) {
        cache[colour] = new O.Style({image: new O.Circle({
          radius: 5, fill: new O.Fill({color: colour}), stroke: new O.Stroke({color: '#000', width: 1.2})})});
      }
      return cache[colour];
    };
  }

  function pedonLegend(doc) {
    const by = $('pedon-label').value;
    const box = $('pedon-legend');
    box.innerHTML = '';
    for (const name of doc.pedons.labels[by]) {
      box.insertAdjacentHTML('beforeend', `<div><span class="swatch" style="background:${doc.pedons.colours[by][name]};` +
        'border-radius:50%"></span>' + name + '</div>');
    }
    box.insertAdjacentHTML('beforeend', '<div><span class="swatch" style="background:#fff;border-radius:50%"></span>' +
      'no label</div>');
  }

  function formatValue(layer, raw) {
    if (raw === undefined) return 'outside';
    if (raw === layer.nodata) return 'no data';
    if (layer.kind === 'class') {
      const c = layer.classes.find((k) => k.value === raw);
      return c ? c.name : `code ${raw}`;
    }
    return `${raw} %`;
  }

  async function pixelValues(doc, layer, x, y) {
    const image = doc.images[layer.name];
    if (!image) return null;
    const [ox, oy] = image.getOrigin();
    const [rx, ry] = image.getResolution();
    const col = Math.floor((x - ox) / rx);
    const row = Math.floor((y - oy) / ry);
    if (col < 0 || row < 0 || col >= image.getWidth() || row >= image.getHeight()) return [];
    const bands = await image.readRasters({window: [col, row, col + 1, row + 1], interleave: false});
    return Array.from(bands, (b) => b[0]);
  }

  function lonLat(coordinate) {
    return O.transform(coordinate, 'EPSG:3338', 'EPSG:4326');
  }

  function coordText(c) {
    const [lon, lat] = lonLat(c);
    return `EPSG:3338 ${c[0].toFixed(0)} E, ${c[1].toFixed(0)} N · ${lat.toFixed(5)}°, ${lon.toFixed(5)}°`;
  }

  async function showValues(coordinate) {
    const [x, y] = coordinate;
    const maps = viewer.maps;
    const rows = [];
    for (const layer of maps[0].layers) {
      const names = layer.bands || [null];
      const perMap = await Promise.all(maps.map(async (doc) => {
        const l = doc.layers.find((k) => k.name === layer.name);
        if (!l || l.failed) return null;
        return pixelValues(doc, l, x, y);
      }));
      names.forEach((band, i) => rows.push({layer, band, i, perMap}));
    }
    const head = maps.map((d) => `<th>${d.role} (${d.model})</th>`).join('');
    let html = `<div id="click-coords">${coordText(coordinate)}</div><table class="values"><tr><th>layer</th>${head}</tr>`;
    for (const r of rows) {
      const label = r.band ? `${r.layer.name} · ${r.band}` : r.layer.name;
      const cells = r.perMap.map((vals, m) => {
        const attrs = `data-map="${maps[m].role}" data-layer="${r.layer.name}"` + (r.band ? ` data-band="${r.band}"` : '');
        if (vals === null) return `<td ${attrs} class="failed">failed</td>`;
        const raw = vals[r.i];
        return `<td ${attrs} data-raw="${raw === undefined ? '' : raw}">${formatValue(r.layer, raw)}</td>`;
      }).join('');
      html += `<tr><td>${label}</td>${cells}</tr>`;
    }
    html += '</table>';
    $('values').innerHTML = html;
    $('values').dataset.ready = `${x},${y}`;
  }

  function pedonInfo(feature) {
    const p = feature.getProperties();
    const folds = Object.entries(p.folds).map(([s, f]) => `${s}: ${f < 0 ? 'not used' : 'fold ' + f}`).join(', ');
    return `<div class="pedon-info"><b>pedon ${p.pedon_id}</b>: soil order ${p.soil_order ?? '—'}, ` +
      `permafrost ${p.permafrost ?? '—'}; held out in ${folds}</div>`;
  }

  async function main() {
    const here = new URL('..', location.href).href;
    const maps = [await loadMap(here, 'main')];
    const compare = new URLSearchParams(location.search).get('compare');
    if (compare) {
      try {
        maps.push(await loadMap(new URL(compare, location.href).href, 'compare'));
      } catch (err) {
        problem(`compare map ${compare}: ${err.message}`);
      }
    }
    viewer.maps = maps;
    const doc = maps[0];
    document.title = $('title').textContent = doc.title;
    $('maps').textContent = maps.length > 1
      ? `left: ${maps[0].model} · right: ${maps[1].model} (${maps[1].title})` : `model: ${doc.model}`;

    const view = new O.View({projection: 'EPSG:3338'});
    const olMap = viewer.olMap = new O.Map({
      target: 'map', view,
      controls: O.defaultControls().extend([new O.ScaleLine({bar: true, text: true, minWidth: 120})]),
    });
    view.fit(doc.bounds, {padding: [20, 20, 20, 20]});

    // layer choice
    const usable = doc.layers.filter((l) => !l.failed);
    ui.layer = (usable[0] || doc.layers[0]).name;
    for (const l of doc.layers) {
      const id = `layer-${l.name}`;
      $('layers').insertAdjacentHTML('beforeend', `<label class="${l.failed ? 'failed' : ''}"><input type="radio" ` +
        `name="layer" id="${id}" value="${l.name}" ${l.failed ? 'disabled' : ''}> ${l.name}` +
        `${l.failed ? ' (failed to load)' : ''}</label>`);
      if (l.bands) l.bands.forEach((b, i) => $('band').insertAdjacentHTML('beforeend', `<option value="${i}">${b}</option>`));
    }
    if (usable.length) $(`layer-${ui.layer}`).checked = true;

    let rasters = [];
    function showLayer() {
      for (const r of rasters) olMap.removeLayer(r);
      rasters = [];
      const layer = doc.layers.find((l) => l.name === ui.layer);
      $('band-row').hidden = !layer.bands;
      legend(layer);
      maps.forEach((m, i) => {
        const l = m.layers.find((k) => k.name === ui.layer);
        if (!l || l.failed) return;
        const tl = rasterLayer(m, l, l.bands ? ui.band : 0);
        if (maps.length > 1) {  // the main map shows left of the swipe line, the compare map right of it
          // each map in its own canvas (own className), clipped by CSS: the pixels drawn, blending and
          // opacity are exactly those of the map alone
          tl.on('prerender', (event) => clip(event.context.canvas, i));
        }
        tl.setZIndex(i);
        olMap.addLayer(tl);
        rasters.push(tl);
      });
      signalRendered();
    }

    // `data-rendered` on <body> says the current layers are drawn: every GeoTIFF source has read its
    // header (before that OpenLayers has no tiles to wait for) and then the map finished rendering
    function signalRendered() {
      document.body.dataset.rendered = '';
      const sources = rasters.map((r) => r.getSource());
      Promise.all(sources.map((s) => new Promise((resolve) => {
        if (s.getState() !== 'loading') { resolve(); return; }
        const key = s.on('change', () => {
          if (s.getState() !== 'loading') { O.unByKey(key); resolve(); }
        });
      }))).then(() => {
        olMap.once('rendercomplete', () => {
          if (viewer.firstRenderMs === null) viewer.firstRenderMs = performance.now();
          document.body.dataset.rendered = 'true';
        });
        olMap.render();
      });
    }
    if (usable.length) showLayer();
    $('layers').addEventListener('change', (e) => { ui.layer = e.target.value; showLayer(); });
    $('band').addEventListener('change', (e) => { ui.band = Number(e.target.value); showLayer(); });
    $('opacity').addEventListener('input', (e) => {
      ui.opacity = Number(e.target.value) / 100;
      rasters.forEach((r) => r.setOpacity(ui.opacity));
    });
    if (maps.length > 1) {
      $('swipe-row').hidden = $('swipe-line').hidden = false;
      const place = () => { $('swipe-line').style.left = `${ui.swipe * 100}%`; olMap.render(); };
      $('swipe').addEventListener('input', (e) => { ui.swipe = Number(e.target.value) / 100; place(); });
      place();
    }

    // pedons
    let pedonLayer = null;
    if (doc.pedons) {
      try {
        const url = new URL(doc.pedons.url, doc.base).href;
        const resp = await fetch(url);
        if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status}`);
        const geojson = await resp.json();
        const features = new O.GeoJSON().readFeatures(geojson, {dataProjection: 'EPSG:4326', featureProjection: 'EPSG:3338'});
        pedonLayer = new O.VectorLayer({source: new O.VectorSource({features}), style: pedonStyleFactory(doc), zIndex: 10});
        olMap.addLayer(pedonLayer);
        const schemes = Object.keys(geojson.features.length ? geojson.features[0].properties.folds : {});
        schemes.forEach((s) => $('scheme').insertAdjacentHTML('beforeend', `<option>${s}</option>`));
        const refold = () => {
          const s = $('scheme').value;
          const folds = [...new Set(features.map((f) => f.get('folds')[s]))].sort((a, b) => a - b);
          $('fold').innerHTML = '<option value="all">all folds</option>' +
            folds.map((f) => `<option value="${f}">${f < 0 ? 'not used' : 'held out in fold ' + f}</option>`).join('');
          pedonLayer.changed();
        };
        refold();
        $('pedon-controls').hidden = false;
        pedonLegend(doc);
        $('scheme').addEventListener('change', refold);
        for (const id of ['pedons', 'fold']) $(id).addEventListener('change', () => pedonLayer.changed());
        $('pedon-label').addEventListener('change', () => { pedonLegend(doc); pedonLayer.changed(); });
      } catch (err) {
        problem(`pedons failed to load: ${err.message}`);
      }
    }

    olMap.on('pointermove', (e) => { $('coords').textContent = coordText(e.coordinate); });
    olMap.on('singleclick', async (e) => {
      $('values').dataset.ready = '';
      await showValues(e.coordinate);
      const hit = pedonLayer && olMap.forEachFeatureAtPixel(e.pixel, (f) => f, {layerFilter: (l) => l === pedonLayer});
      if (hit) $('values').insertAdjacentHTML('afterbegin', pedonInfo(hit));
    });
    if (!usable.length) document.body.dataset.rendered = 'true';  // nothing to draw: say so, do not hang
    viewer.ready = true;
  }

  main().catch((err) => {
    problem(`viewer failed: ${err.message}`);
    document.body.dataset.rendered = 'failed';
  });
})();
