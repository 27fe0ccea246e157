// The contact sheet's behaviour: rows made as they near the screen, filters by status and value
// over every row, zoom, the inputs of a cell when opened, videos made only when their cell comes
// near the screen, and a row's videos played as one.
//
// Every row is in #sheet (compact JSON, flows/view/pages.py); the HTML holds the first page of
// rows of each section. A section's rows (those its filters leave) go in pages of a few
// dozen: a page near the screen is made, with report.html.j2's markup; one far from it is
// dropped for a spacer of its height. So the page keeps about as many elements for 100,000
// cells as for 1,000.
(() => {
  const sheet = JSON.parse(document.getElementById('sheet').textContent);
  const inputs = JSON.parse(document.getElementById('inputs').textContent);
  const S = sheet.strings;  // every text of #sheet once; elsewhere in it, a text is its index here
  const indexOf = new Map(S.map((text, i) => [text, i]));
  const boxes = [...document.querySelectorAll('input[data-status-filter]')];
  const selects = [...document.querySelectorAll('select[data-param]')];
  const shown = document.getElementById('shown');
  const icons = document.getElementById('icons').content;
  const NEAR = '1500px 0px';  // a page this near the screen is made; one farther is dropped
  const total = sheet.sections.reduce((n, s) => n + s.rows.reduce((m, r) => m + r[4].flat().length, 0), 0);
  const sections = [...document.querySelectorAll('table.sheet')].map((table, i) => ({
    ...sheet.sections[i], table, pages: [], live: new Set(), perRow: 320,
  }));

  // ---------------------------------------------------------------- a row's markup, as the template's
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
    e.append(...children);
    return e;
  }
  const slug = (s) => s.toLowerCase().replace(/[^a-z0-9_-]/g, '') || 'unknown';
  const label = (s) => s.replaceAll('_', ' ');
  function icon(name) {
    const known = icons.querySelector(`[data-icon="${name}"]`) || icons.querySelector('[data-icon=""]');
    return known.firstElementChild.cloneNode(true);
  }
  function pair(indices) {  // [name, text, thumbnail src]: as the template's shown()
    const p = indices.map((i) => S[i]);
    if (p[2]) return [el('span', { class: 'k' }, p[0]), ' ', el('img', { class: 'thumb', src: p[2], loading: 'lazy', alt: '' }), p[1]];
    if (p[0]) return [el('span', { class: 'k' }, p[0]), ' ', p[1] || '—'];
    return [p[1]];
  }
  function card(c) {
    const [status, ratio, clip, reason, cost, time, note] = [c[0], c[3], c[8], c[9], c[10], c[11], c[13]].map((i) => S[i]);
    const [, rowId, values, , video, , start] = c;
    const dot = video.lastIndexOf('.');
    const poster = c[5] === 1 ? (dot < 0 ? '' : video.slice(0, dot)) + '.jpg' : c[5];
    const path = c[7] === 0 ? video : c[7];
    const params = c[12].map(([n, v]) => [S[n], S[v]]);
    const article = el('article', { class: `cell st-${slug(status)}`, 'data-status': status, 'data-row-id': rowId });
    values.forEach((v, i) => article.setAttribute(`data-p${i}`, S[v]));
    if (video) {
      const media = el('div', { class: 'media', style: `aspect-ratio:${ratio}`, 'data-src': video, 'data-file': path });
      if (poster) media.append(el('img', { class: 'poster', src: poster, loading: 'lazy', alt: 'first frame' }));
      if (clip) media.append(el('span', { class: 'clip' }, icon('clip'), clip));
      article.append(media);
    } else {
      article.append(el('div', { class: 'media placeholder', style: `aspect-ratio:${ratio}` },
        el('div', { class: 'why' }, icon(status), el('strong', {}, label(status)), el('p', { class: 'error' }, reason))));
    }
    const meta = el('div', { class: 'meta' });
    if (start >= 0) {
      const [src, name] = sheet.images[start];
      meta.append(el('img', { class: 'start', src, loading: 'lazy', alt: 'start image', title: `start image: ${name}` }));
    }
    meta.append(el('span', { class: 'badge' }, label(status)), el('span', { class: 'cost' }, cost),
      el('span', { class: 'time' }, time));
    article.append(meta);
    if (params.length) {
      const list = el('div', { class: 'params' });
      params.forEach(([n, v], i) => list.append(el('span', { class: 'k' }, n), ' ', v || '—', ...(i < params.length - 1 ? [' · '] : [])));
      article.append(list);
    }
    if (note) article.append(el('p', { class: 'note' }, note));
    article.append(el('details', {}, el('summary', {}, 'inputs')));
    return article;
  }
  function row(section, index) {
    const [prompt, pairs, attrs, counts, columns] = section.rows[index];
    const head = el('div', { class: 'rowlabel' });
    if (prompt !== null) head.append(el('span', { class: 'prompt' }, S[prompt]));
    pairs.forEach((p) => head.append(el('span', { class: 'rowkey' }, ...pair(p))));
    attrs.forEach((p) => head.append(el('span', { class: 'attrs' }, ...pair(p))));
    head.append(el('span', { class: 'tally' }, ...counts.map(([s, n]) => el('span', { class: `st-${slug(S[s])}` }, `${n} ${label(S[s])}`))));
    const cells = el('tr', { class: 'cells' });
    columns.forEach((cards, col) => {
      const td = el('td', { 'data-col': col });
      if (cards.length) td.append(...cards.map(card)); else td.append(el('div', { class: 'empty' }, 'no such combination'));
      cells.append(td);
    });
    const body = el('tbody', { class: 'row' },
      el('tr', { class: 'rowhead' }, el('th', { colspan: section.width, scope: 'colgroup' }, head)), cells);
    body.dataset.i = index;
    return body;
  }

  // ---------------------------------------------------------------- the filters, over the JSON
  let statuses = new Set();  // of indices in S, as the cards hold them
  let picks = [];
  const passes = (c) => statuses.has(c[0]) && picks.every(([i, v]) => c[2][i] === v);
  function fit(section, body) {  // a made row, as the filters show it
    section.rows[body.dataset.i][4].forEach((cards, col) => {
      const td = body.querySelector(`td[data-col="${col}"]`);
      td.hidden = !section.live.has(String(col));
      td.querySelectorAll('article.cell').forEach((a, k) => {
        a.hidden = !passes(cards[k]);
        if (a.hidden) a.querySelectorAll('video').forEach((v) => v.pause());
      });
    });
  }

  // ---------------------------------------------------------------- pages: made near the screen, dropped far
  const pageOf = new Map();  // element (a spacer or a made row) -> its page
  const dirty = new Set();
  const pages = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      const page = pageOf.get(entry.target);
      if (!page) continue;
      if (entry.isIntersecting) page.near.add(entry.target); else page.near.delete(entry.target);
      dirty.add(page);
    }
    requestAnimationFrame(settle);
  }, { rootMargin: NEAR });
  function settle() {
    for (const page of dirty) {
      if (page.spacer && page.near.size) make(page);
      else if (!page.spacer && !page.near.size) drop(page);
    }
    dirty.clear();
  }
  function watch(page, elements) {
    page.near = new Set();
    elements.forEach((e) => { pageOf.set(e, page); pages.observe(e); });
  }
  function forget(elements) {
    elements.forEach((e) => { pages.unobserve(e); pageOf.delete(e); });
  }
  function spacer(page) {
    const height = page.height || page.rows.length * page.section.perRow;
    const body = el('tbody', { class: 'spacer' }, el('tr', {}, el('td', { style: `height:${Math.round(height)}px` })));
    page.spacer = body;
    page.bodies = [];
    watch(page, [body]);
    return body;
  }
  function make(page) {
    const bodies = page.rows.map((i) => row(page.section, i));
    bodies.forEach((b) => fit(page.section, b));
    forget([page.spacer]);
    page.spacer.replaceWith(...bodies);
    page.spacer = null;
    page.bodies = bodies;
    measure(page);
    watch(page, bodies);
    bodies.forEach(videos);
    blocks();
  }
  function drop(page) {
    measure(page);
    forget(page.bodies);
    page.bodies.forEach((b) => b.querySelectorAll('video').forEach((v) => v.pause()));
    page.bodies.forEach((b) => b.querySelectorAll('.media[data-src]').forEach((m) => near.unobserve(m)));
    const old = page.bodies;
    old[0].before(spacer(page));
    old.forEach((b) => b.remove());
  }
  function measure(page) {
    const boxes = page.bodies.filter((b) => !b.hidden).map((b) => b.getBoundingClientRect());
    if (!boxes.length) return;
    page.height = Math.max(...boxes.map((r) => r.bottom)) - Math.min(...boxes.map((r) => r.top));
    if (page.height > 0) page.section.perRow = page.height / page.rows.length;
  }
  // Lay a section out again from the rows the filters leave, in pages: a page holding a row made
  // already (the HTML's own, at opening) is made, reusing those rows (their videos kept); the
  // others are spacers, made into rows as they near the screen.
  function layout(section, order, adopt) {
    const made = new Map();
    const rows = adopt ? [...section.table.tBodies].filter((b) => b.classList.contains('row')) : [];
    rows.forEach((b, i) => { b.dataset.i = i; made.set(i, b); });
    for (const page of section.pages) {
      forget(page.spacer ? [page.spacer] : page.bodies);
      page.bodies.forEach((b) => made.set(Number(b.dataset.i), b));
    }
    [...section.table.tBodies].forEach((b) => b.remove());
    section.pages = [];
    for (let start = 0; start < order.length; start += section.page) {
      const page = { section, rows: order.slice(start, start + section.page), height: 0, spacer: null, bodies: [] };
      if (page.rows.some((i) => made.has(i))) {
        page.bodies = page.rows.map((i) => made.get(i) || row(section, i));
        page.bodies.forEach((b) => { fit(section, b); section.table.append(b); videos(b); });
        watch(page, page.bodies);
      } else {
        section.table.append(spacer(page));
      }
      section.pages.push(page);
    }
    section.pages.filter((page) => !page.spacer).forEach(measure);
  }

  function apply(adopt = false) {
    statuses = new Set(boxes.filter((b) => b.checked).map((b) => indexOf.get(b.value)));
    picks = selects.filter((s) => s.value !== '').map((s) => [Number(s.dataset.param.slice(1)), indexOf.get(s.value) ?? -1]);
    let count = 0;
    for (const section of sections) {
      const order = [];
      section.live = new Set();
      section.rows.forEach((r, i) => {
        let any = false;
        r[4].forEach((cards, col) => cards.forEach((c) => {
          if (passes(c)) { any = true; count++; section.live.add(String(col)); }
        }));
        if (any) order.push(i);
      });
      const table = section.table;
      for (const th of table.querySelectorAll('thead th[data-cols]')) {
        const n = th.dataset.cols.split(' ').filter((c) => section.live.has(c)).length;
        th.hidden = n === 0;
        th.colSpan = Math.max(n, 1);
      }
      table.closest('section').hidden = section.live.size === 0;
      table.style.setProperty('--n', String(Math.max(section.live.size, 1)));
      layout(section, order, adopt);
    }
    blocks();
    shown.textContent = count + ' of ' + total + ' cells shown';
  }
  boxes.concat(selects).forEach((e) => e.addEventListener('change', () => apply()));
  // A filter of many values gets its options when first opened (a <select> of 10,000 parses slowly).
  for (const select of selects.filter((s) => sheet.options[s.dataset.param])) {
    const fill = () => {
      if (select.options.length > 1) return;
      const all = document.createDocumentFragment();
      for (const [value, text] of sheet.options[select.dataset.param]) all.append(new Option(S[text], S[value]));
      select.append(all);
    };
    ['pointerdown', 'focus', 'keydown'].forEach((on) => select.addEventListener(on, fill));
  }

  // ---------------------------------------------------------------- videos, made near the screen
  // A cell near the screen gets its video: made then, so a sheet of a thousand cells does not
  // build a thousand video elements, and loaded once the page is (its posters come first).
  function load(media) {
    if (document.readyState !== 'complete') {
      window.addEventListener('load', () => load(media), { once: true });
      return;
    }
    make_video(media);
  }
  function make_video(media) {
    if (!media.dataset.src || media.querySelector('video')) return;
    const video = document.createElement('video');
    Object.assign(video, { muted: true, loop: true, playsInline: true, controls: true, preload: 'metadata' });
    const poster = media.querySelector('img.poster');
    if (poster) { video.poster = poster.src; }
    video.src = media.dataset.src;
    media.prepend(video);
    if (poster) { video.addEventListener('loadeddata', () => poster.remove(), { once: true }); }
  }
  const near = 'IntersectionObserver' in window ? new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (entry.isIntersecting) { load(entry.target); near.unobserve(entry.target); }
    }
  }, { rootMargin: '300px' }) : { observe: load, unobserve: () => {} };
  function videos(body) { body.querySelectorAll('.media[data-src]').forEach((m) => near.observe(m)); }

  // A cell's inputs, listed when its "inputs" is first opened (from one JSON block, not 1,000 lists).
  function item(tag, text) { const e = document.createElement(tag); e.textContent = text; return e; }
  document.addEventListener('toggle', (event) => {
    const details = event.target;
    if (!(details instanceof HTMLDetailsElement) || !details.open || details.querySelector('dl')) return;
    const cell = details.closest('article.cell');
    const values = (inputs.rows[cell.dataset.rowId] || []).map((i) => inputs.strings[i]);
    const list = document.createElement('dl');
    const optional = new Set(inputs.optional);  // one model's inputs, the image's: listed for the rows that have them
    inputs.names.forEach((name, i) => {
      if (!values[i] && optional.has(name)) return;
      list.append(item('dt', name), item('dd', values[i] || '—'));
    });
    const media = cell.querySelector('.media[data-src]');
    if (media) {
      const link = item('a', media.dataset.file);
      link.href = media.dataset.src;
      list.append(item('dt', 'file'), document.createElement('dd'));
      list.lastChild.append(link);
    }
    details.append(list);
  }, true);

  for (const [event, on] of [['play', true], ['pause', false]]) {
    document.addEventListener(event, (e) => e.target.closest('.media').classList.toggle('playing', on), true);
  }
  // A row's videos play as one (a VideoGroup of sync.js): the one played leads, the row's other
  // shown videos follow it, and pausing or seeking any of them pauses or moves them all.
  const groups = new WeakMap();
  const shownIn = (video) => !video.closest('article.cell').hidden;
  function groupOf(event) {
    const body = event.target instanceof HTMLVideoElement && event.target.closest('tbody.row');
    if (!body) return [null, null];
    if (!groups.has(body)) groups.set(body, new VideoGroup([]));
    return [body, groups.get(body)];
  }
  document.addEventListener('play', (event) => {
    const [body, group] = groupOf(event);
    if (!group || (group.playing && event.target !== group.lead)) return;  // a follower the group started
    body.querySelectorAll('article.cell:not([hidden]) .media[data-src]').forEach(make_video);
    group.videos = [...body.querySelectorAll('video')].filter(shownIn);
    group.lead = event.target;
    group.start();
  }, true);
  document.addEventListener('pause', (event) => {
    const [, group] = groupOf(event);
    if (!group) return;
    if (event.target === group.lead) group.stop();
    else if (group.playing && shownIn(event.target)) group.lead.pause();  // a follower paused by hand
  }, true);
  document.addEventListener('seeked', (event) => {
    const [, group] = groupOf(event);
    if (group && event.target === group.lead) group.follow();
  }, true);

  // Row blocks side by side: the header over the columns would stand over one block only; hide it.
  function blocks() {
    for (const table of document.querySelectorAll('table.sheet')) {
      const [first, second] = [...table.tBodies].filter((b) => !b.hidden && b.classList.contains('row'));
      table.classList.toggle('wrapped', Boolean(second) && second.offsetTop === first.offsetTop);
    }
  }
  window.addEventListener('resize', blocks);
  const zoom = document.getElementById('zoom');
  zoom.addEventListener('input', () => {
    document.documentElement.style.setProperty('--cell-w', zoom.value + 'px');
    blocks();
  });
  apply(true);
})();
