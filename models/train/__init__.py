"""Training recipes for the zoo models (resumable, seeded, with progress bars)."""
