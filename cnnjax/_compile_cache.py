"""Compile once, ever: JAX's persistent compilation cache in a folder of the user's.

Every run of a script compiles the same programs again (half of a rerun of
``experiments/xo.py`` on a CPU is compiling). JAX can keep each compiled program on disk,
keyed by everything that makes the program what it is: the lowered HLO (so another
lowering, dtype, shape or model is another key), the compile options, the devices (kind
and count) and the versions of jax and jaxlib. :func:`use_compile_cache` points JAX at a
per-user folder; the experiment scripts call it at start-up (``--no-compile-cache`` or
``CNNJAX_COMPILE_CACHE=0`` turns it off).
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "CNNJAX_COMPILE_CACHE"
"""``0`` (or ``off``, ``false``, ``no``) turns the cache off; a path puts it there."""

_OFF = ("0", "off", "false", "no")


def default_directory() -> Path:
    """``$XDG_CACHE_HOME/cnnjax/jax``, or ``~/.cache/cnnjax/jax``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cnnjax" / "jax"


def use_compile_cache(directory: str | os.PathLike | None = None) -> str | None:
    """Keeps every program JAX compiles in this process in a folder on disk, so that the next
    process that compiles the same program (the same HLO, options, devices and versions)
    reads it instead. Call it before the first ``jit`` runs.

    A cache the user configured for JAX (``JAX_COMPILATION_CACHE_DIR``, or
    ``jax.config.update("jax_compilation_cache_dir", ...)``) is left as it is (a
    ``directory`` naming another folder is then refused, not ignored). Otherwise
    ``directory``, else the path in ``CNNJAX_COMPILE_CACHE``, else
    :func:`default_directory`; ``CNNJAX_COMPILE_CACHE=0`` turns it off (when no
    ``directory`` is given). Every program is kept, however fast it compiled (JAX's own
    default keeps those of 1 s and more), unless
    ``JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`` says otherwise.

    Returns:
      The folder in use, or None when the cache is off.

    Example::

        import cnnjax
        cnnjax.use_compile_cache()   # before training: a rerun reads its programs from disk
    """
    import jax

    _listen()
    configured = jax.config.jax_compilation_cache_dir
    if configured:
        if directory is not None and Path(directory).expanduser().resolve() != Path(configured).resolve():
            raise ValueError(f"`directory` {str(directory)!r} was given, but JAX already keeps its compiled programs "
                             f"in {str(configured)!r} (JAX_COMPILATION_CACHE_DIR or jax.config): unset that, or "
                             "call use_compile_cache() without a directory to use it.")
        return str(configured)
    setting = os.environ.get(ENV, "").strip()
    if directory is None and setting.lower() in _OFF:
        return None
    if directory is None:
        directory = setting if setting and setting.lower() not in ("1", "on", "true", "yes") else default_directory()
    path = Path(directory).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    if "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS" not in os.environ:
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return str(path)


_COUNTS: dict[str, int] | None = None  # JAX's cache events since use_compile_cache was first called
_EVENTS = {"/jax/compilation_cache/cache_hits": "from_cache", "/jax/compilation_cache/cache_misses": "compiled"}


def _listen() -> None:
    global _COUNTS
    if _COUNTS is not None:
        return
    import jax

    _COUNTS = {"from_cache": 0, "compiled": 0}

    def count(event: str, **kwargs) -> None:
        if event in _EVENTS:
            _COUNTS[_EVENTS[event]] += 1

    jax.monitoring.register_event_listener(count)


def compile_counts() -> dict[str, int] | None:
    """How many programs this process read from the compile cache (``from_cache``) and
    compiled and kept there (``compiled``) since :func:`use_compile_cache` was first called,
    as JAX's own monitoring events count them; None if it was never called or no cache is
    in use. A rerun of the same command compiles nothing: ``compiled`` is 0.

    >>> import cnnjax
    >>> sorted(cnnjax.compile_counts() or {"compiled": 0, "from_cache": 0})
    ['compiled', 'from_cache']
    """
    import jax

    return None if _COUNTS is None or not jax.config.jax_compilation_cache_dir else dict(_COUNTS)


__all__ = ["ENV", "compile_counts", "default_directory", "use_compile_cache"]
