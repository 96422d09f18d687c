// Browser side of `glowflow serve`: edit, mix and sample views over the server's JSON/PNG API.
'use strict';

/* ------------------------------------------------------------------ helpers */

const $ = (selector, root = document) => root.querySelector(selector);
const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

/** Create an element. Props: `class`, `dataset`, `on<event>` handlers, booleans as
 * properties, anything else as an attribute. */
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null) continue;
    if (key === 'class') node.className = value;
    else if (key === 'dataset') Object.assign(node.dataset, value);
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else if (typeof value === 'boolean') node[key] = value;
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

const clamp = (x, [lo, hi]) => Math.min(hi, Math.max(lo, x));
/** A number as it goes into a URL: at most two decimals, no trailing zeros. */
const num = (x) => String(Math.round(x * 100) / 100);
const fixed2 = (x) => Number(x).toFixed(2);
const pretty = (name) => name.replace(/_/g, ' ');
const pngOf = (id) => `/api/images/${encodeURIComponent(id)}.png`;
const megabytes = (n) => `${(n / 1048576).toFixed(1)} MB`;
const greyLevels = (n) => `reconstruction error ${n} grey level${Number(n) === 1 ? '' : 's'}`;

function apiUrl(path, pairs) {
  const query = new URLSearchParams(pairs).toString();
  return query ? `${path}?${query}` : path;
}

/* ---------------------------------------------------------------- API access */

class ApiError extends Error {
  constructor(message, status, unknownImage = null) {
    super(message);
    this.status = status;
    this.unknownImage = unknownImage;
  }
}

async function errorFrom(response) {
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  const message = (body && body.error) || `${response.status} ${response.statusText}`.trim();
  return new ApiError(message, response.status, (body && body.unknown_image) || null);
}

async function getJSON(url, init) {
  let response;
  try {
    response = await fetch(url, init);
  } catch {
    throw new ApiError('The server cannot be reached', 0);
  }
  if (!response.ok) throw await errorFrom(response);
  return response.json();
}

/** The error behind an image URL that failed to load (the server answers with JSON). */
async function errorOfImage(url) {
  try {
    const response = await fetch(url);
    if (!response.ok) return await errorFrom(response);
    return new ApiError('The picture could not be shown', response.status);
  } catch {
    return new ApiError('The server cannot be reached', 0);
  }
}

/* ------------------------------------------------------------ status line */

function setStatus(message, kind = 'error') {
  const status = $('#status');
  status.textContent = message;
  status.className = message ? kind : '';
}

const UNKNOWN_IMAGE = 'This image is no longer held by the server: upload the file again';

function reportError(err) {
  if (err instanceof ApiError && err.unknownImage) forgetImage(err.unknownImage);
  setStatus(err.message || String(err));
}

/* ------------------------------------------------------------------- state */

let model = null;
const state = {
  view: 'edit',
  edit: { image: null, amounts: {} },
  mix: { a: null, b: null, t: 0.5, path: 'linear', levels: '' },
  sample: { seed: 0, temperature: 0.7, label: null },
};
const VIEWS = ['edit', 'mix', 'sample'];
const uploads = []; // [{id, name}] uploaded in this page session
const infoCache = new Map(); // id -> Promise of the /api/images/ID JSON

function imageInfo(id) {
  if (!infoCache.has(id)) {
    const promise = getJSON(`/api/images/${encodeURIComponent(id)}`);
    promise.catch(() => infoCache.delete(id));
    infoCache.set(id, promise);
  }
  return infoCache.get(id);
}

/** Drop an image the server no longer holds, and say so beside the upload control. */
function forgetImage(id) {
  infoCache.delete(id);
  const index = uploads.findIndex((u) => u.id === id);
  if (index >= 0) uploads.splice(index, 1);
  const message = $('#upload-message');
  message.textContent = UNKNOWN_IMAGE;
  message.hidden = false;
  refreshThumbs();
}

/* ------------------------------------------------------------ image channel */

/**
 * One displayed result image. A new URL is sent only when the previous one has
 * finished loading, and then only the latest wanted URL, so dragging a slider never
 * piles up requests. Once a picture is shown and nothing newer waits, its JSON twin
 * (same query, .json) is fetched for the bits/dim and command.
 */
class ImageChannel {
  constructor(img, section, onDetails) {
    this.img = img;
    this.section = section;
    this.onDetails = onDetails;
    this.wanted = null;
    this.loading = null;
    this.shown = null;
    this.failed = false;
    img.addEventListener('load', () => this.settle(true));
    img.addEventListener('error', () => this.settle(false));
  }

  request(url) {
    this.wanted = url;
    if (!this.loading) this.next();
  }

  clear() {
    this.wanted = this.loading = this.shown = null;
    this.img.removeAttribute('src');
    setReadout(this.section, null, null);
    updateDownload();
  }

  next() {
    if (!this.wanted || (this.wanted === this.shown && !this.failed)) return;
    this.loading = this.wanted;
    this.section.querySelector('.readout').classList.add('pending');
    this.img.src = this.loading;
  }

  async settle(ok) {
    const url = this.loading;
    if (!url) return;
    this.loading = null;
    this.shown = url;
    this.failed = !ok;
    this.img.classList.toggle('failed', !ok);
    updateDownload();
    if (url !== this.wanted) return this.next(); // a newer state is waiting
    if (!ok) {
      setReadout(this.section, null, null);
      return reportError(await errorOfImage(url));
    }
    if ($('#status').className === 'error') setStatus('');
    try {
      const details = await getJSON(url.replace('.png?', '.json?'));
      if (this.shown === url) this.onDetails(details, url);
    } catch (err) {
      if (this.shown !== url) return;
      setReadout(this.section, null, null);
      reportError(err);
    }
  }
}

function setReadout(section, bpd, command, warning) {
  const readout = section.querySelector('.readout');
  readout.classList.remove('pending');
  const subject = section.dataset.subject;
  const shown = bpd == null ? '' : `${subject}: ${Number(bpd).toFixed(3)} bits/dim`;
  readout.querySelector('.bpd').textContent = warning ? `${shown} (${warning})` : shown;
  readout.querySelector('.command-box').hidden = !command;
  readout.querySelector('.command').textContent = command || '';
}

const channels = {};

/* --------------------------------------------------------------- thumbnails */

function thumb(id, name, onPick) {
  return el('button', { type: 'button', class: 'thumb', dataset: { id }, title: name, onclick: () => onPick(id) },
    el('img', { src: pngOf(id), alt: name, loading: 'lazy' }));
}

function markSelected(container, id) {
  for (const button of container.children) {
    const on = button.dataset.id === id;
    button.classList.toggle('selected', on);
    button.setAttribute('aria-pressed', String(on));
  }
}

/** Rebuild the upload row and the mix pickers (the gallery itself never changes). */
function refreshThumbs() {
  const everything = [...model.gallery, ...uploads];
  $('#uploads').replaceChildren(...uploads.map((u) => thumb(u.id, u.name, selectEditImage)));
  $('#uploads-block').hidden = uploads.length === 0;
  $('#mix-pick-a').replaceChildren(...everything.map((g) => thumb(g.id, g.name, (id) => setMix({ a: id }))));
  $('#mix-pick-b').replaceChildren(...everything.map((g) => thumb(g.id, g.name, (id) => setMix({ b: id }))));
  markAll();
}

function markAll() {
  markSelected($('#gallery'), state.edit.image);
  markSelected($('#uploads'), state.edit.image);
  markSelected($('#mix-pick-a'), state.mix.a);
  markSelected($('#mix-pick-b'), state.mix.b);
}

function addUpload(id, name) {
  if (!uploads.some((u) => u.id === id) && !model.gallery.some((g) => g.id === id)) {
    uploads.push({ id, name });
    refreshThumbs();
  }
}

/** "1.234 bits/dim · reconstruction error 0 grey levels" for an encoded image. */
function describeEncoded(info) {
  const parts = [];
  if (info.bpd != null) parts.push(`${Number(info.bpd).toFixed(3)} bits/dim`);
  if (info.reconstruction_error != null) parts.push(greyLevels(info.reconstruction_error));
  return parts.join(' · ');
}

/** Fill `target` with the encoded image's numbers once known (if `stillWanted()`). */
function showEncodedInfo(id, target, stillWanted) {
  target.textContent = '';
  imageInfo(id).then((info) => { if (stillWanted()) target.textContent = describeEncoded(info); })
    .catch((err) => { if (stillWanted()) reportError(err); });
}

/* --------------------------------------------------------------------- edit */

function editPairs() {
  const pairs = state.edit.image ? [['image', state.edit.image]] : [];
  for (const name of model.attributes) {
    const amount = state.edit.amounts[name] || 0;
    if (amount) pairs.push([name, num(amount)]);
  }
  return pairs;
}

const allZero = () => model.attributes.every((name) => !state.edit.amounts[name]);

function buildAttributes() {
  const list = $('#attributes');
  if (!model.attributes.length) {
    list.append(el('p', { class: 'note' }, 'This model has no attribute directions: the result is the reconstruction.'));
    $('#reset').disabled = $('#attribute-filter').disabled = true;
    return;
  }
  const [lo, hi] = model.limits.amount;
  model.attributes.forEach((name, index) => {
    const id = `attribute-${index}`;
    const slider = el('input', { type: 'range', id, min: lo, max: hi, step: 0.05, value: 0, dataset: { attribute: name } });
    const value = el('output', { class: 'value', for: id }, '0.00');
    const label = el('label', { for: id, title: `${name} (double-click to reset)` }, pretty(name));
    const row = el('div', { class: 'attribute', dataset: { filter: pretty(name).toLowerCase() } }, label, slider, value);
    slider.addEventListener('input', () => setAmount(name, Number(slider.value)));
    label.addEventListener('dblclick', () => setAmount(name, 0));
    list.append(row);
  });
  $('#attribute-filter').addEventListener('input', (event) => {
    const query = event.target.value.trim().toLowerCase().replace(/_/g, ' ');
    for (const row of list.children) row.hidden = !row.dataset.filter.includes(query);
  });
  $('#reset').addEventListener('click', () => {
    state.edit.amounts = {};
    renderEdit();
  });
}

function setAmount(name, amount) {
  state.edit.amounts[name] = amount;
  renderEdit();
}

/** Sliders and value labels follow `state.edit.amounts`. */
function syncSliders() {
  for (const slider of $$('#attributes input[type=range]')) {
    const amount = state.edit.amounts[slider.dataset.attribute] || 0;
    if (Number(slider.value) !== amount) slider.value = amount;
    slider.nextElementSibling.textContent = fixed2(amount);
    slider.parentElement.classList.toggle('changed', amount !== 0);
  }
  const changed = model.attributes.filter((name) => state.edit.amounts[name]).length;
  $('#reset').textContent = changed ? `Reset (${changed})` : 'Reset';
}

function selectEditImage(id) {
  state.edit.image = id;
  renderEdit();
}

function renderEdit() {
  syncSliders();
  markAll();
  const id = state.edit.image;
  const source = $('#edit-source');
  if (!id) {
    source.removeAttribute('src');
    channels.edit.clear();
    $('#framing').textContent = '';
    $('#edit-source-info').textContent = '';
  } else {
    if (source.getAttribute('src') !== pngOf(id)) {
      source.src = pngOf(id);
      showEncodedInfo(id, $('#edit-source-info'), () => state.edit.image === id);
      showFraming(id);
    }
    if (state.view === 'edit') channels.edit.request(apiUrl('/api/edit.png', editPairs()));
  }
  showRecon();
  if (state.view === 'edit') writeUrl();
}

/** Reconstruction error under the result while it is a plain reconstruction. */
function showRecon() {
  const target = $('#view-edit .recon');
  const id = state.edit.image;
  target.textContent = '';
  if (!id || !allZero()) return;
  imageInfo(id).then((info) => {
    if (state.edit.image === id && allZero() && info.reconstruction_error != null) {
      target.textContent = greyLevels(info.reconstruction_error);
    }
  }).catch(() => { /* reported by showEncodedInfo */ });
}

function showFraming(id) {
  const target = $('#framing');
  target.textContent = '';
  imageInfo(id).then((info) => {
    if (state.edit.image !== id) return;
    const framing = info.framing || {};
    let text = `Crop: ${framing.method || 'unknown'}`;
    if (framing.box) text += `, box (${framing.box[0]}, ${framing.box[1]}) to (${framing.box[2]}, ${framing.box[3]})`;
    if (info.source_size) text += ` of the ${info.source_size[0]}×${info.source_size[1]} source`;
    target.replaceChildren(text);
    if (framing.notice) target.append(' ', el('strong', { class: 'notice' }, framing.notice));
  }).catch(() => { /* reported by showEncodedInfo */ });
}

/* ---------------------------------------------------------------------- mix */

function mixPairs() {
  const { a, b, t, path, levels } = state.mix;
  return [['a', a], ['b', b], ['t', num(t)], ['path', path], ['levels', levels]];
}

function buildLevels() {
  const box = $('#mix-levels');
  for (let i = 0; i < model.levels; i++) {
    let name = `level ${i + 1}`;
    if (i === 0) name += model.levels === 1 ? ' (the only one)' : ' (finest)';
    else if (i === model.levels - 1) name += ' (coarsest)';
    const choices = [['a', 'A'], ['m', 'mix'], ['b', 'B']].map(([value, text]) =>
      el('label', { class: 'segment' },
        el('input', { type: 'radio', name: `level-${i}`, value, onchange: () => setLevel(i, value) }), text));
    box.append(el('div', { class: 'level', dataset: { level: String(i) } }, el('span', {}, name), ...choices));
  }
}

function setLevel(i, letter) {
  const levels = state.mix.levels.split('');
  levels[i] = letter;
  setMix({ levels: levels.join('') });
}

function setMix(change) {
  Object.assign(state.mix, change);
  renderMix();
}

function renderMix() {
  const { a, b, t, path, levels } = state.mix;
  markAll();
  $('#mix-t').value = t;
  $('#mix-t-value').textContent = fixed2(t);
  $('#mix-path').value = path;
  levels.split('').forEach((letter, i) => {
    const radio = $(`#mix-levels input[name="level-${i}"][value="${letter}"]`);
    if (radio) radio.checked = true;
  });
  for (const [img, info, id] of [[$('#mix-a'), $('#mix-a-info'), a], [$('#mix-b'), $('#mix-b-info'), b]]) {
    if (!id) {
      img.removeAttribute('src');
      info.textContent = '';
    } else if (img.getAttribute('src') !== pngOf(id)) {
      img.src = pngOf(id);
      showEncodedInfo(id, info, () => img.getAttribute('src') === pngOf(id));
    }
  }
  if (!(a && b)) channels.mix.clear();
  else if (state.view === 'mix') channels.mix.request(apiUrl('/api/mix.png', mixPairs()));
  if (state.view === 'mix') writeUrl();
}

/* ------------------------------------------------------------------- sample */

function samplePairs() {
  const { seed, temperature, label } = state.sample;
  const pairs = [['seed', String(seed)], ['temperature', num(temperature)]];
  if (model.num_classes != null && label != null) pairs.push(['label', String(label)]);
  return pairs;
}

function buildSample() {
  const [lo, hi] = model.limits.temperature;
  Object.assign($('#temperature'), { min: lo, max: hi });
  const [seedLo, seedHi] = model.limits.seed;
  Object.assign($('#seed'), { min: seedLo, max: seedHi });
  if (model.num_classes != null) {
    const names = model.class_names || [];
    const options = Array.from({ length: model.num_classes }, (_, k) => el('option', { value: k }, names[k] || String(k)));
    $('#label').replaceChildren(...options);
    $('#label-row').hidden = false;
    $('#label').addEventListener('change', (e) => setSample({ label: Number(e.target.value) }));
  }
  $('#temperature').addEventListener('input', (e) => setSample({ temperature: Number(e.target.value) }));
  $('#seed').addEventListener('input', (e) => {
    const seed = Number(e.target.value);
    if (e.target.value !== '' && Number.isInteger(seed) && seed === clamp(seed, model.limits.seed)) setSample({ seed });
  });
  $('#seed').addEventListener('change', () => renderSample()); // puts an invalid entry back
  $('#new-seed').addEventListener('click', () => setSample({ seed: randomSeed() }));
}

function randomSeed() {
  const [lo, hi] = model.limits.seed;
  const top = Math.min(hi, lo + Number.MAX_SAFE_INTEGER - 1, 2 ** 31 - 1);
  return lo + Math.floor(Math.random() * (top - lo + 1));
}

function setSample(change) {
  Object.assign(state.sample, change);
  renderSample();
}

function renderSample() {
  const { seed, temperature, label } = state.sample;
  $('#temperature').value = temperature;
  $('#temperature-value').textContent = fixed2(temperature);
  if ($('#seed').value !== String(seed)) $('#seed').value = seed;
  if (label != null) $('#label').value = label;
  if (state.view === 'sample') channels.sample.request(apiUrl('/api/sample.png', samplePairs()));
  if (state.view === 'sample') writeUrl();
}

/** The caption names the seed and temperature of the picture actually shown. */
function captionSample(details, url) {
  const query = new URLSearchParams(url.split('?')[1]);
  const seed = details.seed ?? query.get('seed');
  const temperature = details.temperature ?? query.get('temperature');
  let text = `seed ${seed} · temperature ${fixed2(temperature)}`;
  if (query.has('label')) {
    const k = Number(query.get('label'));
    text += ` · class ${(model.class_names && model.class_names[k]) || k}`;
  }
  $('#sample-caption').textContent = text;
}

/* ------------------------------------------------------------ URL and views */

function writeUrl() {
  const pairs = [['view', state.view]];
  if (state.view === 'edit') pairs.push(...editPairs());
  if (state.view === 'mix') pairs.push(...mixPairs().filter(([, v]) => v));
  if (state.view === 'sample') pairs.push(...samplePairs());
  history.replaceState(null, '', `${location.pathname}?${new URLSearchParams(pairs)}`);
}

function readUrl() {
  const query = new URLSearchParams(location.search);
  const number = (key, fallback) => {
    const x = Number.parseFloat(query.get(key));
    return Number.isFinite(x) ? x : fallback;
  };
  if (VIEWS.includes(query.get('view'))) state.view = query.get('view');

  state.edit.image = query.get('image');
  for (const name of model.attributes) {
    // Snapped to the sliders' 0.05 steps so the URL and the slider agree.
    if (query.has(name)) state.edit.amounts[name] = clamp(Math.round(number(name, 0) * 20) / 20, model.limits.amount);
  }

  const levelPattern = new RegExp(`^[abm]{${model.levels}}$`);
  state.mix.a = query.get('a');
  state.mix.b = query.get('b');
  state.mix.t = clamp(number('t', 0.5), [0, 1]);
  state.mix.path = query.get('path') === 'spherical' ? 'spherical' : 'linear';
  state.mix.levels = levelPattern.test(query.get('levels') || '') ? query.get('levels') : 'm'.repeat(model.levels);

  state.sample.seed = Math.round(clamp(number('seed', randomSeed()), model.limits.seed));
  state.sample.temperature = clamp(number('temperature', 0.7), model.limits.temperature);
  if (model.num_classes != null) {
    state.sample.label = Math.round(clamp(number('label', 0), [0, model.num_classes - 1]));
  }
}

const renderers = { edit: renderEdit, mix: renderMix, sample: renderSample };

function showView(view) {
  state.view = view;
  for (const name of VIEWS) {
    $(`#view-${name}`).hidden = name !== view;
    $(`#tab-${name}`).setAttribute('aria-selected', String(name === view));
  }
  renderers[view]();
  writeUrl();
  updateDownload();
}

/** The download link points at the picture the current view shows. */
function updateDownload() {
  const link = $('#download');
  const url = channels[state.view] && channels[state.view].shown;
  if (url) {
    link.href = url;
    link.download = `glowflow-${state.view}.png`;
    link.removeAttribute('aria-disabled');
  } else {
    link.removeAttribute('href');
    link.setAttribute('aria-disabled', 'true');
  }
}

/* ------------------------------------------------------------------ uploads */

async function upload(file) {
  if (!file) return;
  if (model.max_upload_bytes && file.size > model.max_upload_bytes) {
    setStatus(`${file.name} is ${megabytes(file.size)}; the server accepts at most ${megabytes(model.max_upload_bytes)}`);
    return;
  }
  setStatus(`Encoding ${file.name}…`, 'notice');
  const body = new FormData();
  body.append('file', file, file.name);
  try {
    const info = await getJSON('/api/images', { method: 'POST', body });
    infoCache.set(info.id, Promise.resolve(info));
    addUpload(info.id, file.name);
    $('#upload-message').hidden = true;
    const framing = info.framing || {};
    setStatus(`Encoded ${file.name}: ${framing.notice || `${framing.method || 'crop'} used`}`, 'notice');
    if (state.view === 'mix') setMix(state.mix.a ? { b: info.id } : { a: info.id });
    selectEditImage(info.id);
  } catch (err) {
    reportError(err);
  } finally {
    $('#upload').value = '';
  }
}

function setupUploads() {
  $('#upload').addEventListener('change', (e) => upload(e.target.files[0]));
  // A file dropped anywhere on the page is uploaded (and never opened by the browser).
  let depth = 0;
  const hasFiles = (e) => e.dataTransfer && Array.from(e.dataTransfer.types).includes('Files');
  window.addEventListener('dragenter', (e) => { if (hasFiles(e)) { depth++; document.body.classList.add('dragging'); } });
  window.addEventListener('dragleave', () => { if (--depth <= 0) { depth = 0; document.body.classList.remove('dragging'); } });
  window.addEventListener('dragover', (e) => { if (hasFiles(e)) e.preventDefault(); });
  window.addEventListener('drop', (e) => {
    if (!hasFiles(e)) return;
    e.preventDefault();
    depth = 0;
    document.body.classList.remove('dragging');
    upload(e.dataTransfer.files[0]);
  });
}

/* ---------------------------------------------------------------- start-up */

function setupCopyButtons() {
  for (const button of $$('.copy')) {
    button.addEventListener('click', async () => {
      const code = button.parentElement.querySelector('.command');
      try {
        await navigator.clipboard.writeText(code.textContent);
        button.textContent = 'Copied';
      } catch {
        getSelection().selectAllChildren(code); // leave it selected for Ctrl+C
        button.textContent = 'Selected';
      }
      setTimeout(() => { button.textContent = 'Copy'; }, 1500);
    });
  }
}

/** Check the image ids a shared URL names; forget those the server no longer holds. */
async function checkUrlImages() {
  const galleryIds = new Set(model.gallery.map((g) => g.id));
  const slots = [[state.edit, 'image'], [state.mix, 'a'], [state.mix, 'b']];
  await Promise.all(slots.map(async ([holder, key]) => {
    const id = holder[key];
    if (!id || galleryIds.has(id)) return;
    try {
      await imageInfo(id);
      addUpload(id, `upload ${id.slice(0, 6)}`);
    } catch (err) {
      holder[key] = null;
      if (err.unknownImage || err.status === 404) {
        forgetImage(id);
        setStatus(UNKNOWN_IMAGE);
      } else {
        reportError(err);
      }
    }
  }));
}

async function start() {
  try {
    model = await getJSON('/api/model');
    if (!Array.isArray(model.attributes)) model.attributes = (await getJSON('/api/attributes')).attributes;
  } catch (err) {
    reportError(err);
    return;
  }
  model.gallery = model.gallery || [];
  model.limits = { temperature: [0, 1], amount: [-2, 2], seed: [0, 2 ** 31 - 1], ...model.limits };

  document.title = `${model.name} · glowflow`;
  $('#model-name').textContent = model.name;
  $('#model-name').title = model.checkpoint || '';
  const [c, h, w] = model.image_shape;
  $('#model-facts').textContent = `${c}×${h}×${w} · ${model.n_bits}-bit · ${model.levels} levels`;
  // Integer upscaling keeps pixels square and sharp.
  const scale = Math.max(1, Math.floor(256 / Math.max(h, w)));
  const thumbScale = Math.max(1, Math.round(64 / Math.max(h, w)));
  const root = document.documentElement.style;
  root.setProperty('--pix-w', `${w * scale}px`);
  root.setProperty('--pix-h', `${h * scale}px`);
  root.setProperty('--thumb-w', `${w * thumbScale}px`);
  root.setProperty('--thumb-h', `${h * thumbScale}px`);

  $('#gallery').replaceChildren(...model.gallery.map((g) => thumb(g.id, g.name, selectEditImage)));
  if (model.gallery_note) Object.assign($('#gallery-note'), { textContent: model.gallery_note, hidden: false });
  if (!model.gallery.length) $('#gallery').append(el('p', { class: 'note' }, 'No gallery images: upload one.'));

  channels.edit = new ImageChannel($('#edit-result'), $('#view-edit'), (d) => setReadout($('#view-edit'), d.bpd, d.command, d.warning));
  channels.mix = new ImageChannel($('#mix-result'), $('#view-mix'), (d) => setReadout($('#view-mix'), d.bpd, d.command, d.warning));
  channels.sample = new ImageChannel($('#sample-image'), $('#view-sample'), (d, url) => {
    setReadout($('#view-sample'), d.bpd, d.command, d.warning);
    captionSample(d, url);
  });

  buildAttributes();
  buildLevels();
  buildSample();
  setupUploads();
  setupCopyButtons();
  $('#mix-t').addEventListener('input', (e) => setMix({ t: Number(e.target.value) }));
  $('#mix-path').addEventListener('change', (e) => setMix({ path: e.target.value }));
  for (const name of VIEWS) $(`#tab-${name}`).addEventListener('click', () => showView(name));

  readUrl();
  await checkUrlImages();
  const first = model.gallery[0] && model.gallery[0].id;
  const second = (model.gallery[1] && model.gallery[1].id) || first;
  const query = new URLSearchParams(location.search);
  // Defaults apply only to what the URL did not name (a forgotten image stays empty).
  if (!query.has('image')) state.edit.image = first || null;
  if (!query.has('a')) state.mix.a = first || null;
  if (!query.has('b')) state.mix.b = second || null;
  refreshThumbs();
  showView(state.view);
}

start();
