"""Test-wide settings."""

import os

# The command line turns on a persistent XLA compilation cache (pipelag.runtime.compile_cache); the tests
# call it in-process many times and should not write into the user's cache. tests/test_compile_cache.py
# switches it back on in subprocesses.
os.environ.setdefault("PIPELAG_COMPILE_CACHE", "0")
