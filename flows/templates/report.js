// The contact sheet's behaviour: filters by status and value, zoom, and videos that load only
// when their cell comes near the screen (a sheet of a thousand cells opens at once).
(() => {
  const boxes = [...document.querySelectorAll('input[data-status-filter]')];
  const selects = [...document.querySelectorAll('select[data-param]')];
  const cells = [...document.querySelectorAll('article.cell')];
  const shown = document.getElementById('shown');

  function load(video) {
    if (video.dataset.poster) { video.poster = video.dataset.poster; delete video.dataset.poster; }
    if (video.dataset.src) { video.preload = 'metadata'; video.src = video.dataset.src; delete video.dataset.src; }
  }
  const videos = [...document.querySelectorAll('video[data-src]')];
  if ('IntersectionObserver' in window) {
    const near = new IntersectionObserver(entries => {
      for (const entry of entries) {
        if (entry.isIntersecting) { load(entry.target); near.unobserve(entry.target); }
      }
    }, { rootMargin: '300px' });
    videos.forEach(v => near.observe(v));
  } else {
    videos.forEach(load);
  }

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
    }
    shown.textContent = count + ' of ' + cells.length + ' cells shown';
  }
  boxes.concat(selects).forEach(el => el.addEventListener('change', apply));
  for (const [event, on] of [['play', true], ['pause', false]]) {
    document.addEventListener(event, e => e.target.closest('.media').classList.toggle('playing', on), true);
  }
  const zoom = document.getElementById('zoom');
  zoom.addEventListener('input', () => document.documentElement.style.setProperty('--cell-w', zoom.value + 'px'));
  apply();
})();
