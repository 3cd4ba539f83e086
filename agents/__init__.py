"""One module per algorithm, each a reference implementation of its paper (see pgjax.registry)."""
