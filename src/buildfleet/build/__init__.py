"""Building one board through a list of commits: the builder shared by local slots and workers."""
