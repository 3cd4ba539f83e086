import os

# The CLI keeps a persistent compilation cache in the user's cache folder; tests that call it in-process
# leave the user's cache (and the test process's jax config) alone. Subprocess tests pass their own.
os.environ.setdefault("PGJAX_COMPILE_CACHE", "off")

import pgjax  # noqa: E402,F401  (asks for one CPU device per core before jax initialises its backend)
import jax  # noqa: E402

jax.config.update("jax_enable_x64", False)
