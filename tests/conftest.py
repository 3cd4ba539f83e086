import os

# The CLI keeps a persistent compilation cache in the user's cache folder; tests that call it in-process
# leave the user's cache (and the test process's jax config) alone. Subprocess tests pass their own.
os.environ.setdefault("PGJAX_COMPILE_CACHE", "off")

import jax  # noqa: E402

# Two CPU devices, as the CLI gives a 2-core machine: the tests check runs sharded over both.
jax.config.update("jax_num_cpu_devices", 2)

jax.config.update("jax_enable_x64", False)
