"""Safe model files: atomic writes, and clear errors for files that do not hold a complete SOM model."""

from __future__ import annotations

import base64
import io
import json
import os
import pathlib
import uuid
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import cloudpickle
from stable_baselines3.common.save_util import open_path

REQUIRED_MEMBERS = ("data", "policy.pth")


@contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str) -> Iterator[pathlib.Path]:
    """A temporary path in the directory of ``path``, renamed onto ``path`` when the block ends without error.

    As SB3's ``save``, ``.suffix`` is added to a path without one and missing folders are created. If the
    block raises, the temporary file is removed and a file already at ``path`` stays as it was.
    """
    target = pathlib.Path(path)
    if target.suffix == "":
        target = target.with_name(f"{target.name}.{suffix}")
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield temporary
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def check_model_file(
    path: str | pathlib.Path | io.BufferedIOBase, policy_base: type, custom_objects: dict[str, Any] | None = None
) -> None:
    """Raise ``ValueError`` naming the file unless it is a complete SB3 model file whose policy is a ``policy_base``.

    Checked without building the model: the file is a zip archive whose members pass their CRC check,
    ``data`` and ``policy.pth`` are present, ``data`` is JSON, every ``.pth`` member is a complete torch file,
    and the saved policy class (or ``custom_objects["policy_class"]``) is a subclass of ``policy_base``.
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
    else:
        policy_class = _deserialize(saved_policy)
    if isinstance(policy_class, type) and issubclass(policy_class, policy_base):
        return
    module = saved_policy.get("__module__", "") if isinstance(saved_policy, dict) else ""
    class_name = policy_class.__name__ if isinstance(policy_class, type) else ""
    described = ".".join(part for part in (module, class_name) if part) or "unknown"
    algorithm = _algorithm_of(module, class_name)
    if algorithm:
        raise ValueError(f"{name} holds a {algorithm} model (policy {described}), not a SOM model: use {algorithm}.load")
    raise ValueError(
        f"{name} does not hold a SOM model (its policy class is {described}): load it with the algorithm that saved it"
    )


def _is_torch_file(archive: zipfile.ZipFile, member: str) -> bool:
    """Whether ``member`` is a complete torch file (``torch.save`` writes a zip archive, its directory last)."""
    with archive.open(member) as member_file:
        return zipfile.is_zipfile(member_file)


def _deserialize(entry: Any) -> Any:
    """The object SB3 serialised into a ``data`` entry, or ``None`` where it cannot be restored here."""
    try:
        return cloudpickle.loads(base64.b64decode(entry[":serialized:"].encode()))
    except Exception:  # any error of unpickling (a class from a package not installed here, a damaged entry)
        return None


def _algorithm_of(module: str, class_name: str) -> str | None:
    """The algorithm of a policy class in a ``<package>.<algorithm>.policies`` module (SB3's layout), e.g. "SAC"."""
    parts = module.split(".")
    if len(parts) != 3 or parts[2] != "policies":
        return None
    if class_name.lower().startswith(parts[1]) and class_name.endswith("Policy"):
        return class_name[: len(parts[1])]
    return parts[1].upper()
