// The contact sheet's behaviour: filters by status and value, zoom, the inputs of a cell when
// opened, and videos made only when their cell comes near the screen (a sheet of a thousand cells
// opens at once).
(() => {
  const boxes = [...document.querySelectorAll('input[data-status-filter]')];
  const selects = [...document.querySelectorAll('select[data-param]')];
  const cells = [...document.querySelectorAll('article.cell')];
  const shown = document.getElementById('shown');

  // A cell near the screen gets its video: made then, so a sheet of a thousand cells does not
  // build a thousand video elements, and loaded once the page is (its posters come first).
  function load(media) {
    if (document.readyState !== 'complete') {
      window.addEventListener('load', () => load(media), { once: true });
      return;
    }
    make(media);
  }
  function make(media) {
    if (!media.dataset.src || media.querySelector('video')) return;
    const video = document.createElement('video');
    Object.assign(video, { muted: true, loop: true, playsInline: true, controls: true, preload: 'metadata' });
    const poster = media.querySelector('img.poster');
    if (poster) { video.poster = poster.src; }
    video.src = media.dataset.src;
    media.prepend(video);
    if (poster) { video.addEventListener('loadeddata', () => poster.remove(), { once: true }); }
  }
  const playable = [...document.querySelectorAll('.media[data-src]')];
  if ('IntersectionObserver' in window) {
    const near = new IntersectionObserver(entries => {
      for (const entry of entries) {
        if (entry.isIntersecting) { load(entry.target); near.unobserve(entry.target); }
      }
    }, { rootMargin: '300px' });
    playable.forEach(m => near.observe(m));
  } else {
    playable.forEach(load);
  }

  // A cell's inputs, listed when its "inputs" is first opened (from one JSON block, not 1,000 lists).
  const inputs = JSON.parse(document.getElementById('inputs').textContent);
  function item(tag, text) { const e = document.createElement(tag); e.textContent = text; return e; }
  document.addEventListener('toggle', event => {
    const details = event.target;
    if (!(details instanceof HTMLDetailsElement) || !details.open || details.querySelector('dl')) return;
    const cell = details.closest('article.cell');
    const values = inputs.rows[cell.dataset.rowId] || [];
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

  function apply() {
    const statuses = new Set(boxes.filter(b => b.checked).map(b => b.value));
    const picks = selects.filter(s => s.value !== '').map(s => [s.dataset.param, s.value]);
    let count = 0;
    for (const cell of cells) {
      const ok = statuses.has(cell.dataset.status) && picks.every(([p, v]) => cell.dataset[p] === v);
      cell.hidden = !ok;
      if (ok) count++;
      else cell.querySelectorAll('video').forEach(v => v.pause());
    }
    for (const table of document.querySelectorAll('table.sheet')) {
      const live = new Set();
      for (const row of table.tBodies) {
        const visible = [...row.querySelectorAll('article.cell:not([hidden])')];
        row.hidden = visible.length === 0;
        visible.forEach(c => live.add(c.closest('td').dataset.col));
      }
      table.querySelectorAll('td[data-col]').forEach(td => { td.hidden = !live.has(td.dataset.col); });
      for (const th of table.querySelectorAll('thead th[data-cols]')) {
        const n = th.dataset.cols.split(' ').filter(c => live.has(c)).length;
        th.hidden = n === 0;
        th.colSpan = Math.max(n, 1);
      }
      table.closest('section').hidden = live.size === 0;
      table.style.setProperty('--n', String(Math.max(live.size, 1)));
    }
    blocks();
    shown.textContent = count + ' of ' + cells.length + ' cells shown';
  }
  boxes.concat(selects).forEach(el => el.addEventListener('change', apply));
  for (const [event, on] of [['play', true], ['pause', false]]) {
    document.addEventListener(event, e => e.target.closest('.media').classList.toggle('playing', on), true);
  }
  // A row's videos play as one (a VideoGroup of sync.js): the one played leads, the row's other
  // shown videos follow it, and pausing or seeking any of them pauses or moves them all.
  for (const row of document.querySelectorAll('tbody.row')) {
    const group = new VideoGroup([]);
    const shownIn = (video) => !video.closest('article.cell').hidden;
    row.addEventListener('play', (event) => {
      if (group.playing && event.target !== group.lead) return;  // a follower the group started
      row.querySelectorAll('article.cell:not([hidden]) .media[data-src]').forEach(make);
      group.videos = [...row.querySelectorAll('video')].filter(shownIn);
      group.lead = event.target;
      group.start();
    }, true);
    row.addEventListener('pause', (event) => {
      if (event.target === group.lead) group.stop();
      else if (group.playing && shownIn(event.target)) group.lead.pause();  // a follower paused by hand
    }, true);
    row.addEventListener('seeked', (event) => { if (event.target === group.lead) group.follow(); }, true);
  }
  // Row blocks side by side: the header over the columns would stand over one block only; hide it.
  function blocks() {
    for (const table of document.querySelectorAll('table.sheet')) {
      const [first, second] = [...table.tBodies].filter((b) => !b.hidden);
      table.classList.toggle('wrapped', Boolean(second) && second.offsetTop === first.offsetTop);
    }
  }
  window.addEventListener('resize', blocks);
  const zoom = document.getElementById('zoom');
  zoom.addEventListener('input', () => {
    document.documentElement.style.setProperty('--cell-w', zoom.value + 'px');
    blocks();
  });
  apply();
})();
