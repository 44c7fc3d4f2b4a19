"""The boss's side of remote machines: start-up, the session with a worker, its channel."""
