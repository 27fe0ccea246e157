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
