// Each row's videos play as one: the first (baseline when it has a video) leads, the other follows
// it within a tenth of a second, through one play button, one position slider and clicks on either.
(() => {
  const DRIFT = 0.1;
  for (const pair of document.querySelectorAll('.pair')) {
    const videos = [...pair.querySelectorAll('video')];
    if (!videos.length) continue;
    const [lead, ...rest] = videos;
    const button = pair.querySelector('.play');
    const seek = pair.querySelector('.seek');
    const clock = pair.querySelector('.clock');
    const difference = pair.querySelector('.diffmode input');
    let frame = 0;
    const follow = () => {
      for (const video of rest) {
        const end = Number.isFinite(video.duration) ? video.duration : Infinity;
        const target = Math.min(lead.currentTime, end);
        if (Math.abs(video.currentTime - target) > DRIFT) video.currentTime = target;
        if (!lead.paused && video.paused && target < end) video.play().catch(() => {});
      }
      if (lead.duration) seek.value = String(Math.round((1000 * lead.currentTime) / lead.duration));
      clock.textContent = lead.currentTime.toFixed(1) + ' s';
    };
    const tick = () => {
      follow();
      if (!lead.paused) frame = requestAnimationFrame(tick);
    };
    const play = () => videos.forEach((v) => v.play().catch(() => {}));
    const toggle = () => (lead.paused ? play() : lead.pause());
    button.addEventListener('click', toggle);
    videos.forEach((v) => v.addEventListener('click', toggle));
    lead.addEventListener('play', () => {
      button.textContent = '❚❚ pause';
      cancelAnimationFrame(frame);
      frame = requestAnimationFrame(tick);
    });
    lead.addEventListener('pause', () => {
      button.textContent = '▶ play';
      rest.forEach((v) => v.pause());
      follow();
    });
    lead.addEventListener('seeked', follow);
    seek.addEventListener('input', () => {
      if (!lead.duration) return;
      lead.currentTime = (Number(seek.value) / 1000) * lead.duration;
      follow();
    });
    if (difference) difference.addEventListener('change', () => pair.classList.toggle('diff', difference.checked));
  }
})();
