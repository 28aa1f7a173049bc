"""cnnjax.use_compile_cache: programs kept on disk and read by the next process, keyed so
that another lowering is another program; a cache the user configured is left alone."""

import os
import subprocess
import sys
import textwrap

import pytest
from scripts import load

PROGRAM = textwrap.dedent("""
    import json, os, sys
    import jax, jax.numpy as jnp
    import cnnjax
    folder = cnnjax.use_compile_cache()
    seen = []
    for name in sys.argv[1:]:
        with cnnjax.lowering.use(conv=name):
            jax.jit(lambda a, b: cnnjax.conv(a, b)).lower(jnp.ones((1, 8, 8, 1)), jnp.ones((3, 3, 1, 2))).compile()
        seen.append(sorted(os.listdir(folder)) if folder else None)
    print(json.dumps([folder, seen, cnnjax.compile_counts()]))
""")


def _run(tmp_path, *lowerings, **env):
    """The program above in a fresh process whose environment names no JAX cache, with
    ``XDG_CACHE_HOME`` in ``tmp_path`` and ``env`` added."""
    import json

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COMPILATION_CACHE", "JAX_PERSISTENT",
                                                                     "CNNJAX_COMPILE"))}
    clean.update(XDG_CACHE_HOME=str(tmp_path / "xdg"), JAX_PLATFORMS="cpu", **env)
    out = subprocess.run([sys.executable, "-c", PROGRAM, *lowerings], env=clean, capture_output=True, text=True,
                         check=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_program_compiled_once_is_read_by_the_next_process_and_another_lowering_is_another(tmp_path):
    folder, (after_reference, after_patches), counts = _run(tmp_path, "reference", "patches")
    assert folder == str(tmp_path / "xdg" / "cnnjax" / "jax")
    new = set(after_patches) - set(after_reference)
    assert len(new) == 1 and next(iter(new)).startswith("jit__lambda-")  # the patches lowering: its own key
    assert counts["compiled"] >= 2 and counts["compiled"] == len(after_patches)  # JAX's events count each program
    _, (again,), counts = _run(tmp_path, "reference")  # a new process: read, not compiled and written again
    assert again == after_patches
    assert counts["compiled"] == 0 and counts["from_cache"] >= 1


@pytest.mark.slow
def test_a_cache_the_user_configured_is_left_alone_and_the_switch_turns_it_off(tmp_path):
    mine = tmp_path / "mine"
    folder, *_ = _run(tmp_path, "reference", JAX_COMPILATION_CACHE_DIR=str(mine))  # its own settings kept too
    assert folder == str(mine) and not (tmp_path / "xdg").exists()
    assert _run(tmp_path, "reference", CNNJAX_COMPILE_CACHE="0") == [None, [None], None]
    assert not (tmp_path / "xdg").exists()
    elsewhere = tmp_path / "elsewhere"
    assert _run(tmp_path, "reference", CNNJAX_COMPILE_CACHE=str(elsewhere))[0] == str(elsewhere)


def test_the_scripts_use_it_and_say_where_with_verbose_2(capsys):
    """In the suite JAX's cache is the session's own (conftest), which the scripts leave as it is."""
    import jax

    common, xo = load("experiments", "common"), load("experiments", "xo")
    common.parse(xo.Config, ["--verbose", "2"], "")
    assert f"compiled programs are read from and kept in {jax.config.jax_compilation_cache_dir}" in \
        capsys.readouterr().out
    common.parse(xo.Config, ["--verbose", "2", "--no-compile-cache"], "")
    assert "compiled programs" not in capsys.readouterr().out


def test_a_directory_other_than_the_one_jax_already_uses_is_refused_not_ignored(tmp_path):
    import re

    import jax
    import pytest

    import cnnjax

    configured = jax.config.jax_compilation_cache_dir  # the suite's own (conftest)
    assert cnnjax.use_compile_cache(configured) == str(configured)
    with pytest.raises(ValueError, match=re.escape(f"`directory` {str(tmp_path)!r} was given, but JAX already keeps "
                                                   f"its compiled programs in {str(configured)!r}")):
        cnnjax.use_compile_cache(tmp_path)
