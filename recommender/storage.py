"""Model files: ``<path>.npz`` (arrays, loaded with ``allow_pickle=False``) + ``<path>.json`` (metadata).

The JSON holds the format name and version, the model parameters, the recency half-life, the data's
"now", and whatever the caller adds (data fingerprint, train cutoff, metrics). The ``.npz`` carries the
same metadata as one more array (``__metadata__``): it is the model's one manifest, replaced by a single
rename, so arrays and metadata always come from the same save — a process killed between the ``.npz``
and the ``.json`` renames leaves the new model loading (the ``.json`` beside it is then one save behind,
for reading only, and is rewritten by the next save). Both files are written to temporary names first.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from recommender.errors import ModelFileError

FORMAT = "retain-recommender"
VERSION = 1
#: the array of the ``.npz`` holding the metadata (UTF-8 JSON bytes)
METADATA_ARRAY = "__metadata__"


class ModelFileMissing(ModelFileError, FileNotFoundError):
    """No model at the given path."""


def model_files(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    base = Path(path)
    if base.suffix in {".npz", ".json"}:
        base = base.with_suffix("")
    return base.with_name(base.name + ".npz"), base.with_name(base.name + ".json")


def write_model(
    path: str | os.PathLike[str], arrays: dict[str, np.ndarray], metadata: dict[str, Any]
) -> Path:
    npz, meta = model_files(path)
    npz.parent.mkdir(parents=True, exist_ok=True)
    tmp_npz, tmp_meta = npz.with_name(npz.name + ".tmp"), meta.with_name(meta.name + ".tmp")
    payload = {"format": FORMAT, "version": VERSION, **metadata}
    text = json.dumps(payload, indent=2, sort_keys=True, default=str)
    manifest = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    with open(tmp_npz, "wb") as fh:
        np.savez(fh, **arrays, **{METADATA_ARRAY: manifest})  # type: ignore[arg-type]  # numpy stubs type **kwds as allow_pickle
    tmp_meta.write_text(text, encoding="utf-8")
    os.replace(tmp_npz, npz)  # the model changes here, arrays and metadata at once
    os.replace(tmp_meta, meta)
    return npz


def read_model(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays and metadata; ModelFileMissing when absent, ModelFileError when unreadable.

    The metadata comes from the ``.npz`` itself when it carries it (every save since the manifest), else
    from the ``.json`` (older saves).
    """
    npz, meta = model_files(path)
    if not npz.exists():
        raise ModelFileMissing(f"no model at {npz.with_suffix('')} (.npz + .json)")
    try:
        with np.load(npz, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise ModelFileError(f"{npz}: model arrays are corrupt ({exc})") from None
    manifest = arrays.pop(METADATA_ARRAY, None)
    if manifest is None and not meta.exists():
        raise ModelFileMissing(f"no model at {npz.with_suffix('')} (.npz + .json)")
    try:
        text = bytes(manifest).decode("utf-8") if manifest is not None else meta.read_text(encoding="utf-8")
        metadata = json.loads(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = npz if manifest is not None else meta
        raise ModelFileError(f"{where}: model metadata is corrupt ({exc})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ModelFileError(f"{meta}: not a Retain model file")
    if metadata.get("version") != VERSION:
        raise ModelFileError(
            f"{meta}: model format version {metadata.get('version')} is not {VERSION}: retrain"
        )
    return arrays, metadata


def read_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The metadata of the model at ``path`` (the copy :func:`read_model` uses), without reading the
    arrays; ModelFileMissing / ModelFileError like :func:`read_model`."""
    npz, meta = model_files(path)
    if not npz.exists():
        raise ModelFileMissing(f"no model at {npz.with_suffix('')} (.npz + .json)")
    try:
        with np.load(npz, allow_pickle=False) as data:
            manifest = data[METADATA_ARRAY] if METADATA_ARRAY in data.files else None
        text = bytes(manifest).decode("utf-8") if manifest is not None else meta.read_text(encoding="utf-8")
        metadata = json.loads(text)
    except FileNotFoundError:
        raise ModelFileMissing(f"no model at {npz.with_suffix('')} (.npz + .json)") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{npz}: model metadata is unreadable ({exc})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise ModelFileError(f"{meta}: not a Retain model file")
    return metadata
