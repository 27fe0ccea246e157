// Videos that play as one, shared by compare.html (a row's two sides) and report.html (a row's
// cells): the lead plays; each other video follows it within a tenth of a second, plays while it
// plays (until its own end, when it is shorter) and pauses when it pauses. Inlined before the
// page's own script, which says who leads and wires the controls.
window.VideoGroup = class VideoGroup {
  constructor(videos, onFollow = () => {}) {
    this.videos = videos;
    this.lead = videos[0];
    this.onFollow = onFollow;
    this.frame = 0;
  }

  get rest() { return this.videos.filter((v) => v !== this.lead); }

  get playing() { return Boolean(this.lead) && !this.lead.paused; }

  follow() {
    const lead = this.lead;
    for (const video of this.rest) {
      const end = Number.isFinite(video.duration) ? video.duration : Infinity;
      const target = Math.min(lead.currentTime, end);
      if (Math.abs(video.currentTime - target) > 0.1) video.currentTime = target;
      if (!lead.paused && video.paused && target < end) video.play().catch(() => {});
    }
    this.onFollow(lead);
  }

  start() {  // the lead began to play: the others follow it, frame by frame, while it does
    cancelAnimationFrame(this.frame);
    const tick = () => {
      this.follow();
      if (!this.lead.paused) this.frame = requestAnimationFrame(tick);
    };
    this.frame = requestAnimationFrame(tick);
  }

  stop() {  // the lead paused: so do the others, at its position
    this.rest.forEach((v) => v.pause());
    this.follow();
  }

  play() { this.videos.forEach((v) => v.play().catch(() => {})); }

  toggle() { if (this.lead.paused) this.play(); else this.lead.pause(); }
};
