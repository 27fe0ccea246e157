// Each row's videos play as one (a VideoGroup of sync.js): the first (baseline when it has a video)
// leads, through one play button, one position slider and clicks on either.
(() => {
  for (const pair of document.querySelectorAll('.pair')) {
    const videos = [...pair.querySelectorAll('video')];
    if (!videos.length) continue;
    const seek = pair.querySelector('.seek');
    const clock = pair.querySelector('.clock');
    const group = new VideoGroup(videos, (lead) => {
      if (lead.duration) seek.value = String(Math.round((1000 * lead.currentTime) / lead.duration));
      clock.textContent = lead.currentTime.toFixed(1) + ' s';
    });
    const { lead } = group;
    const button = pair.querySelector('.play');
    const difference = pair.querySelector('.diffmode input');
    button.addEventListener('click', () => group.toggle());
    videos.forEach((v) => v.addEventListener('click', () => group.toggle()));
    lead.addEventListener('play', () => {
      button.textContent = '❚❚ pause';
      group.start();
    });
    lead.addEventListener('pause', () => {
      button.textContent = '▶ play';
      group.stop();
    });
    lead.addEventListener('seeked', () => group.follow());
    seek.addEventListener('input', () => {
      if (!lead.duration) return;
      lead.currentTime = (Number(seek.value) / 1000) * lead.duration;
      group.follow();
    });
    if (difference) difference.addEventListener('change', () => pair.classList.toggle('diff', difference.checked));
  }
})();
// A card's videos load when it nears the screen (preload="none" until then): a compare of many
// changed rows does not fetch every video at once.
(() => {
  const pairs = [...document.querySelectorAll('.pair')];
  const ready = (pair) => pair.querySelectorAll('video').forEach((v) => { v.preload = 'auto'; });
  if (!('IntersectionObserver' in window)) { pairs.forEach(ready); return; }
  const near = new IntersectionObserver((entries) => {
    for (const entry of entries) {
      if (entry.isIntersecting) { ready(entry.target); near.unobserve(entry.target); }
    }
  }, { rootMargin: '600px 0px' });
  pairs.forEach((p) => near.observe(p));
})();
// "Every row", a page at a time: the HTML holds the first page, #every-rows all of them; the find
// box keeps the rows any of whose texts (or the row id) hold what is typed, across every page.
(() => {
  const pager = document.querySelector('nav.pager');
  if (!pager) return;
  const every = JSON.parse(document.getElementById('every-rows').textContent);
  const body = document.getElementById('every');
  const withInputs = document.querySelector('table.rows thead th:nth-child(4)').textContent === 'inputs';
  const [back, forward] = pager.querySelectorAll('button');
  const find = pager.querySelector('input.find');
  let at = 0;
  let rows = every.rows;
  function td(text, cls) {
    const cell = document.createElement('td');
    if (cls) cell.className = cls;
    cell.textContent = text;
    return cell;
  }
  function line(indices) {
    const [change, label, , prompt, inputs, status, psnr, cost, elapsed, note] = indices.map((i) => every.strings[i]);
    const rowId = indices[2];
    const tr = document.createElement('tr');
    tr.className = `ch-${change}`;
    tr.dataset.rowId = rowId;
    const badge = document.createElement('span');
    badge.className = 'badge';
    badge.textContent = label;
    const code = document.createElement('code');
    code.textContent = rowId.slice(0, 8);
    tr.append(td(''), td(''), td(prompt, 'prompt'));
    tr.cells[0].append(badge);
    tr.cells[1].append(code);
    if (withInputs) tr.append(td(inputs));
    tr.append(td(status), td(psnr, 'num'), td(cost, 'num'), td(elapsed, 'num'), td(note, 'note'));
    return tr;
  }
  function show(step) {
    at = Math.max(Math.min(at + step * every.page, rows.length - 1), 0);
    at -= at % every.page;
    const end = Math.min(at + every.page, rows.length);
    body.replaceChildren(...rows.slice(at, end).map(line));
    const of = rows === every.rows ? '' : ` (found in ${every.rows.length})`;
    pager.querySelector('.at').textContent = rows.length
      ? `rows ${at + 1}–${end} of ${rows.length}${of}` : `no row of ${every.rows.length} holds it`;
    back.disabled = at === 0;
    forward.disabled = end >= rows.length;
  }
  function matching(text) {
    const wanted = text.trim().toLowerCase();
    if (!wanted) return every.rows;
    const holds = every.strings.map((s) => String(s).toLowerCase().includes(wanted));
    return every.rows.filter((r) => r.some((v, k) => (k === 2 ? v.toLowerCase().includes(wanted) : holds[v])));
  }
  back.addEventListener('click', () => show(-1));
  forward.addEventListener('click', () => show(1));
  find.addEventListener('input', () => { rows = matching(find.value); at = 0; show(0); });
})();
