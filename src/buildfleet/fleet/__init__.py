"""Scheduling and executing board jobs: the pool, local slots, remote workers, protocol, SSH."""
