"""Use cases at the edge of the core: they load data, ask `core` to decide, and store the result."""
