"""How every ``mefnet-*`` command reports an error a user can fix: one message, no traceback.

At the bottom of the package (the commands live at every layer: ``mefnet-synth`` in
datasets/, ``mefnet-cache`` in preprocessing/, ``mefnet-train`` in experiment/), so it knows
the errors of the layers above by their common base :class:`UserError`, not by name.
"""

from __future__ import annotations

import errno
import os
import re
import sys


class UserError(Exception):
    """Base of mefnet's own errors that a user can cause and fix (a refused run, a diverged
    fold, an incomplete experiment): the commands show them as one message."""


def expected_errors() -> tuple[type[BaseException], ...]:
    """Errors a user can cause and fix (bad data, config, files, a refused run): shown as a
    one-paragraph message without a traceback."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    return (ValueError, FileNotFoundError, NotADirectoryError, PermissionError, UserError, HydraException,
            OmegaConfBaseException)


# Config options that existed once, and why they are gone (added to Hydra's "Could not
# find" message when a command line still asks for one).
RETIRED_OPTIONS = {
    "trainer/ddp": (
        "trainer=ddp is no longer offered: mefnet trains and predicts each fold in one process on one "
        "device (under DDP trainer.predict returns only one process's shard of the test clips). Run folds "
        "in parallel instead: n_jobs=N (fold=all) or mefnet-train -m fold=each hydra/launcher=joblib"
    ),
}


# Map-like options: their keys are the user's (labels, dataset parts, face-crop options),
# so `key='{...}'` on the command line may bring keys the default map lacks. Hydra's plain
# `key=value` refuses new keys in a map (only `++key=...` adds them): such overrides are
# passed to Hydra as `++key=...`, which merges the given map into the default one.
MAP_OPTIONS = ("class_map", "parts", "face_options")


# Errors of writing files that the user fixes (a folder not writable, a full disk, a name
# too long): one line naming the path, at any layer; other OS errors keep their traceback.
_WRITE_ERRNOS = {
    errno.EACCES: "make it writable or choose another output folder",
    errno.EPERM: "make it writable or choose another output folder",
    errno.EROFS: "the file system is read-only: choose another output folder",
    errno.ENOSPC: "the disk is full: free some space or choose another output folder",
    errno.EDQUOT: "the disk quota is exceeded: free some space or choose another output folder",
    errno.ENAMETOOLONG: "the name is too long: use a shorter name or output folder",
    errno.ENOTDIR: "a file stands where a folder is needed: move it or choose another output folder",
    errno.EISDIR: "a folder stands where a file is needed: move it or choose another output folder",
}


def is_write_error(e: BaseException) -> bool:
    """An OS error of writing that the user fixes (:data:`_WRITE_ERRNOS`)."""
    return isinstance(e, OSError) and e.errno in _WRITE_ERRNOS


def user_message(e: BaseException) -> str:
    """The message of an expected error as the user should read it: an error raised inside
    a configured loader (a dataset's ``_target_``) without Hydra's ``Error in call to target
    ... full_key`` wrapping, which names Hydra's machinery rather than the user's file; a
    log file that cannot be opened (logging's "Unable to configure handler") and any write
    error (:func:`is_write_error`) as the path and what to do."""
    from hydra.errors import InstantiationException

    while isinstance(e, InstantiationException) and isinstance(e.__cause__, expected_errors()):
        e = e.__cause__
    if isinstance(e, ValueError) and str(e).startswith("Unable to configure handler") and \
            isinstance(e.__cause__, OSError):
        e = e.__cause__  # the log file: its path is in the cause only
    if is_write_error(e):
        where = e.filename if e.filename is not None else "a file"
        return f"cannot write {where}: {e.strerror}; {_WRITE_ERRNOS[e.errno]}"
    return str(e).strip() or type(e).__name__


def open_map_overrides(overrides: list[str]) -> list[str]:
    """``overrides`` with every plain ``<map option>='{...}'`` (or ``<map option>.<key>='{...}'``,
    e.g. ``dataset.index.parts.mine='{_target_: ..., root: ...}'``) given as ``++...``."""
    out = []
    for o in overrides:
        key, eq, value = o.partition("=")
        parts = key.split(".")
        if (eq and not key.startswith(("+", "~", "-")) and value.lstrip().startswith("{")
                and (parts[-1] in MAP_OPTIONS or (len(parts) > 1 and parts[-2] in MAP_OPTIONS))):
            o = f"++{o}"
        out.append(o)
    return out


def missing_name_hint(text: str, argv: list[str]) -> str:
    """``text`` with what to add when a backbone or loss config lacks its ``name`` (the
    default experiment_name is built from it)."""
    m = re.search(r"Interpolation key '(backbone|loss)\.name' not found", text)
    if not m:
        return text
    group = m.group(1)
    choice = next((a.split("=", 1)[1] for a in argv if a.split("=", 1)[0].lstrip("+") == group), "<option>")
    return (f"{text}\nA {group} config needs a name (the experiment name is built from it): add the line "
            f"`name: {choice}` to conf/{group}/{choice}.yaml (docs/recipes.md)")


def retired_hint(text: str) -> str:
    """``text`` with the reason appended when it is Hydra's error for a retired option."""
    for option, why in RETIRED_OPTIONS.items():
        if f"Could not find '{option}'" in text:
            return f"{text}\n{why}"
    return text


def cli(prog: str, entry, argv_debug: bool = True) -> None:
    """Run ``entry()`` as the command ``prog``: an expected error becomes ``prog: message``
    on stderr and exit status 1, without a traceback; ``HYDRA_FULL_ERROR=1`` (or ``--debug``
    on the command line, removed before Hydra sees it) shows the traceback."""
    debug = os.environ.get("HYDRA_FULL_ERROR") == "1"
    if argv_debug and "--debug" in sys.argv[1:]:
        sys.argv.remove("--debug")
        debug = True
    # Hydra then lets the task's exception through to here instead of printing its trace.
    # Only for this call: a caller in the same process (a test, a notebook) must not be
    # left with HYDRA_FULL_ERROR=1, or the commands it starts later would show tracebacks.
    before = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        entry()
    except (*expected_errors(), OSError) as e:
        if debug or not (isinstance(e, expected_errors()) or is_write_error(e)):
            raise
        text = user_message(e)
        # A resolver's own message (experiment_name ...), without OmegaConf's wrapping.
        text = re.sub(r"^\w+ raised while resolving interpolation: ", "", text)
        text = re.split(r"\n\s*full_key: ", text)[0]  # OmegaConf's note on where it resolved
        text = missing_name_hint(retired_hint(text), sys.argv[1:])
        how = "HYDRA_FULL_ERROR=1 or --debug" if argv_debug else "HYDRA_FULL_ERROR=1"
        sys.exit(f"{prog}: {text}\n({how} shows the traceback)")
    finally:
        if before is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = before
