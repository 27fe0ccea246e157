"""What lies on disk under OUT: the journal, the manifest, the summary, media, locks, claims and checks."""
