"""Safe model files: atomic writes, clear errors for files that do not hold a complete SOM model, and models saved
with a single actor network brought to the current actor."""

from __future__ import annotations

import base64
import errno
import io
import json
import os
import pathlib
import pickletools
import stat
import sys
import uuid
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from stable_baselines3.common.save_util import open_path

REQUIRED_MEMBERS = ("data", "policy.pth")


@contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str) -> Iterator[pathlib.Path]:
    """Where to write ``path``'s new content: a temporary file beside it, renamed onto it when the block ends without
    error, so that a failure leaves a file already at ``path`` as it was.

    Otherwise as SB3's ``save``: ``.suffix`` is added to a path without one, missing folders are created, a path
    that is a folder is written to ``<path>_2`` (with a warning), a symbolic link is written through (its target
    gets the content), the file's permissions are kept and a read-only file raises ``PermissionError``. Where the
    rename would break what SB3 keeps, the file is written in place, as SB3 writes it: a file with other hard links
    (they keep sharing its content) or one in a folder where no new file can be made.
    """
    target = pathlib.Path(path)
    if target.suffix == "":
        target = target.with_name(f"{target.name}.{suffix}")
    if target.is_dir():
        warnings.warn(f"Path '{target}' is a folder. Will save instead to {target}_2", stacklevel=3)
        target = pathlib.Path(f"{target}_2")
    target = pathlib.Path(os.path.realpath(target))  # through symbolic links, to the file they name
    target.parent.mkdir(parents=True, exist_ok=True)
    existing = target.stat() if target.exists() else None
    if existing is not None and not os.access(target, os.W_OK):
        raise PermissionError(errno.EACCES, f"{os.strerror(errno.EACCES)}: cannot overwrite the read-only file", str(target))
    if existing is not None and (existing.st_nlink > 1 or not os.access(target.parent, os.W_OK | os.X_OK)):
        yield target
        return
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield temporary
        if existing is not None:
            os.chmod(temporary, stat.S_IMODE(existing.st_mode))
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def write_atomically(path: str | os.PathLike[str] | io.BufferedIOBase, suffix: str, write: Callable[[Any], None]) -> None:
    """``write(file)`` to ``path`` through :func:`atomic_path` (an open buffer is written directly)."""
    if isinstance(path, io.BufferedIOBase):
        write(path)
        return
    with atomic_path(path, suffix) as temporary:
        write(temporary)


def check_model_file(
    path: str | pathlib.Path | io.BufferedIOBase, policy_base: type, custom_objects: dict[str, Any] | None = None
) -> None:
    """Raise ``ValueError`` naming the file unless it is a complete SB3 model file whose policy is a ``policy_base``.

    Checked without building the model: the file is a zip archive whose members pass their CRC check,
    ``data`` and ``policy.pth`` are present, ``data`` is JSON, every ``.pth`` member is a complete torch file,
    and the saved policy class (or ``custom_objects["policy_class"]``) is a subclass of ``policy_base``: the class
    is read by its name from the pickle's opcodes, so nothing the file holds runs here (SB3's load then unpickles it,
    as for any SB3 model); a class of another package is left for SB3's load to restore.
    For another algorithm's file the error names that algorithm and its ``load``.
    """
    file = open_path(path, "r", verbose=0, suffix="zip")
    name = getattr(file, "name", repr(path))
    start = file.tell()
    try:
        with zipfile.ZipFile(file) as archive:
            corrupt_member = archive.testzip()
            if corrupt_member is not None:
                raise ValueError(f"{name} is corrupt: its member {corrupt_member!r} fails its CRC check")
            members = archive.namelist()
            missing = [member for member in REQUIRED_MEMBERS if member not in members]
            if missing:
                raise ValueError(f"{name} is not a complete saved model (truncated or damaged?): {missing} missing")
            incomplete = [member for member in members if member.endswith(".pth") and not _is_torch_file(archive, member)]
            if incomplete:
                raise ValueError(f"{name} is not a complete saved model (truncated or damaged?): {incomplete} truncated")
            data = json.loads(archive.read("data"))
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise ValueError(f"{name} is not a zip archive (a truncated or damaged file, or not a saved model)") from error
    except json.JSONDecodeError as error:
        raise ValueError(f"{name} is damaged: its 'data' member is not JSON ({error})") from error
    finally:
        if isinstance(path, io.BufferedIOBase):
            file.seek(start)
        else:
            file.close()
    saved_policy = data.get("policy_class") if isinstance(data, dict) else None
    if custom_objects is not None and "policy_class" in custom_objects:
        policy_class = custom_objects["policy_class"]
        if isinstance(policy_class, type) and issubclass(policy_class, policy_base):
            return
        module, class_name = getattr(policy_class, "__module__", ""), getattr(policy_class, "__name__", "")
    else:
        # the class is read by name from the pickle's opcodes, without unpickling it: nothing in the file runs here
        reference = _pickled_reference(saved_policy)
        if reference is None:
            return  # not a class saved by reference: SB3's load restores it (running the file's pickle, as SB3 does)
        module, class_name = reference
        if module == policy_base.__module__:
            known = getattr(sys.modules[module], class_name, None)
            if isinstance(known, type) and issubclass(known, policy_base):
                return
        elif _algorithm_of(module, class_name) is None:
            return  # a class of another package (a user's own policy): SB3's load restores it, SOM.load checks it
    described = ".".join(part for part in (module, class_name) if part) or "unknown"
    algorithm = _algorithm_of(module, class_name)
    if algorithm:
        raise ValueError(f"{name} holds a {algorithm} model (policy {described}), not a SOM model: use {algorithm}.load")
    raise ValueError(
        f"{name} does not hold a SOM model (its policy class is {described}): load it with the algorithm that saved it"
    )


def _pickled_reference(entry: Any) -> tuple[str, str] | None:
    """``(module, name)`` of an SB3 ``data`` entry that pickles one class by reference, read from the pickle's opcodes
    (nothing is unpickled or imported); ``None`` for anything else (a class pickled by value, a damaged entry)."""
    try:
        payload = base64.b64decode(entry[":serialized:"].encode())
        strings: list[str] = []
        references: list[tuple[str, str]] = []
        for opcode, argument, _ in pickletools.genops(payload):
            if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                strings.append(str(argument))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                references.append((strings[-2], strings[-1]))
            elif opcode.name == "GLOBAL":
                module, _, name = str(argument).partition(" ")
                references.append((module, name))
    except Exception:  # not an SB3 entry, or not a pickle
        return None
    return references[0] if len(references) == 1 else None


def _is_torch_file(archive: zipfile.ZipFile, member: str) -> bool:
    """Whether ``member`` is a complete torch file (``torch.save`` writes a zip archive, its directory last)."""
    with archive.open(member) as member_file:
        return zipfile.is_zipfile(member_file)


def _algorithm_of(module: str, class_name: str) -> str | None:
    """The algorithm of a policy class in a ``<package>.<algorithm>.policies`` module (SB3's layout), e.g. "SAC"."""
    parts = module.split(".")
    if len(parts) != 3 or parts[2] != "policies":
        return None
    if class_name.lower().startswith(parts[1]) and class_name.endswith("Policy"):
        return class_name[: len(parts[1])]
    return parts[1].upper()


def single_network_parameters(params: dict[str, Any]) -> bool:
    """Whether SB3 parameters (``get_parameters``' dict) come from a model saved with a single actor network: a
    policy state dict without ``actor.one_step_net`` entries."""
    policy = params.get("policy", {})
    return bool(policy) and not any(key.startswith("actor.one_step_net.") for key in policy)


def extended_optimizer_state(state: dict[str, Any], n_parameters: int) -> dict[str, Any]:
    """An optimizer state dict saved with fewer parameters than the ``n_parameters`` of the optimizer that loads it,
    all in one group: the parameters added at the group's end (the one-step network's) start without state, as in a
    fresh optimizer. A state dict of any other shape is returned as it is, for the optimizer's own check."""
    groups = state["param_groups"]
    saved = [index for group in groups for index in group["params"]]
    if len(groups) != 1 or len(saved) >= n_parameters:
        return state
    start = max(saved, default=-1) + 1
    added = list(range(start, start + n_parameters - len(saved)))
    return {**state, "param_groups": [{**groups[0], "params": [*groups[0]["params"], *added]}]}
