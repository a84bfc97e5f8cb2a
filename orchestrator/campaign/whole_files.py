"""Is a checkpoint file whole? Judged from the file's own structure, reading a few bytes, never the whole file.

Trackers and file names do not tell a finished save: DeepSpeed's rank 0 writes `latest` without waiting for the
other ranks at ZeRO 0-2, and a writer killed part-way leaves its file under its final name (DeepSpeed and
torch.save write in place; seen with the real writers, tests/fixtures/checkpoints). What each format ends with:

- torch.save's zip files (`.pt`; torch/serialization.py `_save` -> `torch._C.PyTorchFileWriter`, whose
  `PyTorchStreamWriter::writeEndOfFile` in caffe2/serialize/inline_container.cc writes the central directory,
  the zip64 end record and locator, and the 22-byte end-of-central-directory record `PK\\x05\\x06` last) and
  numpy's `.npz` (zipfile): whole when the end record is at the end and the central directory it points to
  lies before it (a file cut short anywhere lacks the record: the writer puts it last). A torch file of the legacy (non-zip) format carries no end marker: taken as whole
  when not empty.
- safetensors: an 8-byte little-endian header length, the JSON header, then the tensors; whole when the file is
  exactly as long as the header says (8 + header + the largest `data_offsets` end).
- torch.distributed.checkpoint (Megatron's torch_dist): `.metadata` (written last as `.metadata.tmp`, then
  renamed: torch/distributed/checkpoint/filesystem.py `FileSystemWriter.finish`) records for every item a
  `_StorageInfo(relative_path, offset, length)`; whole when every `.distcp` it names is at least as long as the
  byte ranges it records there. `.metadata` is a pickle of torch classes; it is read with an unpickler that
  builds plain stand-ins and imports nothing, so neither torch nor its code is needed or run.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
from pathlib import Path

ZIP_END = b"PK\x05\x06"
_ZIP_END_SIZE = 22
_ZIP_MAX_COMMENT = 0xFFFF
_ZIP_LOCAL = b"PK\x03\x04"
ZIP_SUFFIXES = (".pt", ".pth", ".npz", ".bin", ".ckpt")


def file_problem(path: str | Path, name: str = "") -> str:
    """Why this checkpoint file is not whole ("" when it is, or when its format has nothing to check).
    `name`: the file's base name when the caller has it (a directory listing), saving the work per file."""
    path = os.fspath(path)
    name = name or os.path.basename(path)
    try:
        if name.endswith(ZIP_SUFFIXES):
            return _zip_problem(path, name)
        if name.endswith(".safetensors"):
            return _safetensors_problem(Path(path))
    except OSError as error:
        return f"{name} cannot be read ({error.strerror})"
    return ""


def _zip_problem(path: str, name: str) -> str:
    # os.open and pread, not open(): this runs for every file of every save (13,000 in `benchmarks/`).
    descriptor = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(descriptor).st_size
        if size == 0:
            return f"{name} is empty"
        tail = os.pread(descriptor, _ZIP_END_SIZE, max(0, size - _ZIP_END_SIZE))
        end = size - _ZIP_END_SIZE
        if not (len(tail) == _ZIP_END_SIZE and tail.startswith(ZIP_END) and tail[20:22] == b"\0\0"):
            head = os.pread(descriptor, 4, 0)
            if head != _ZIP_LOCAL:
                if len(head) < 4 and _ZIP_LOCAL.startswith(head):
                    return f"{name} is truncated ({size} bytes)"
                return ""  # torch's legacy pickle format (or another writer's): nothing marks its end
            # A zip comment may follow the end record (torch writes none; other writers may).
            span = min(size, _ZIP_END_SIZE + _ZIP_MAX_COMMENT)
            window = os.pread(descriptor, span, size - span)
            found = window.rfind(ZIP_END)
            if found < 0 or found + _ZIP_END_SIZE > len(window):
                return f"{name} is truncated ({size} bytes, no end-of-central-directory record)"
            end = size - span + found
            tail = window[found:found + _ZIP_END_SIZE]
        central_size, central_offset = struct.unpack("<II", tail[12:20])
        if central_offset == 0xFFFFFFFF:
            return ""  # zip64: the end record's fields point to the zip64 record; the marker at the end suffices
        if central_offset + central_size > end:
            return f"{name} is truncated (its central directory would end past its end record)"
    finally:
        os.close(descriptor)
    return ""


def _safetensors_problem(path: Path) -> str:
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        raw = handle.read(8)
        if len(raw) < 8:
            return f"{path.name} is truncated ({size} bytes, no header)"
        (header_size,) = struct.unpack("<Q", raw)
        if 8 + header_size > size:
            return f"{path.name} is truncated (its {header_size}-byte header runs past its {size} bytes)"
        try:
            header = json.loads(handle.read(header_size))
        except ValueError:
            return f"{path.name} has an unreadable header"
    ends = [entry["data_offsets"][1] for key, entry in header.items()
            if key != "__metadata__" and isinstance(entry, dict) and "data_offsets" in entry]
    expected = 8 + header_size + max(ends, default=0)
    if size < expected:
        return f"{path.name} is truncated ({size} of {expected} bytes)"
    return ""


# -- torch.distributed.checkpoint's .metadata ------------------------------------------------------------
class _StandIn:
    """A plain object in place of any class a pickle names: it keeps the state it is given, runs no code."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.args = args

    def __setstate__(self, state: object) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (instance dict, slots dict)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)

    def __hash__(self) -> int:
        return id(self)


class _StandInDict(dict):
    """An OrderedDict that may carry attributes (a torch state dict's `_metadata`): kept as a plain dict."""

    def __setstate__(self, state: object) -> None:
        pass


_CONTAINERS = {("builtins", "set"): set, ("builtins", "frozenset"): frozenset, ("builtins", "dict"): dict,
               ("builtins", "list"): list, ("builtins", "tuple"): tuple, ("collections", "OrderedDict"): _StandInDict}


class _StandInUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle's own protocol
        return _CONTAINERS.get((module, name)) or type(name, (_StandIn,), {})

    def persistent_load(self, pid: object) -> object:
        return None


def distcp_ranges(metadata: Path) -> dict[str, int]:
    """{.distcp file: the end of the last byte range `.metadata` records in it}; raises ValueError if unreadable."""
    try:
        loaded = _StandInUnpickler(io.BytesIO(metadata.read_bytes())).load()
    except Exception as error:  # noqa: BLE001 - a damaged pickle can fail in many ways
        raise ValueError(f"{metadata.name} is unreadable ({type(error).__name__})") from None
    storage = getattr(loaded, "storage_data", None)
    if not isinstance(storage, dict):
        raise ValueError(f"{metadata.name} records no storage data")
    ends: dict[str, int] = {}
    for info in storage.values():
        relative, offset, length = (getattr(info, key, None) for key in ("relative_path", "offset", "length"))
        if isinstance(relative, str) and isinstance(offset, int) and isinstance(length, int):
            ends[relative] = max(ends.get(relative, 0), offset + length)
    return ends


def torch_dist_problem(folder: Path) -> str:
    """Why the `.distcp` files `.metadata` refers to are not whole ("" when every one is long enough)."""
    try:
        ends = distcp_ranges(folder / ".metadata")
    except (OSError, ValueError) as error:
        return str(error) if isinstance(error, ValueError) else f".metadata cannot be read ({error.strerror})"
    for relative, end in sorted(ends.items()):
        try:
            size = (folder / relative).stat().st_size
        except OSError:
            return f"{relative}, which .metadata refers to, is missing"
        if size < end:
            return f"{relative} is truncated ({size} of the {end} bytes .metadata records)"
    return ""


def deepspeed_dp_world_size(model_states: Path) -> int | None:
    """The data-parallel world size a DeepSpeed save declares: `dp_world_size` in its model states
    (deepspeed/runtime/engine.py `_save_checkpoint`: `dp_world_size=self.seq_dp_world_size`, the number of ZeRO
    shards). Read from the zip's `data.pkl` with the stand-in unpickler; None when the file cannot tell."""
    import zipfile

    try:
        with zipfile.ZipFile(model_states) as archive:
            pickled = next((name for name in archive.namelist() if name.endswith("/data.pkl")), None)
            if pickled is None:
                return None
            loaded = _StandInUnpickler(io.BytesIO(archive.read(pickled))).load()
    except Exception:  # noqa: BLE001 - a file being written or cut short: the whole-file check reports it
        return None
    size = loaded.get("dp_world_size") if isinstance(loaded, dict) else None
    return size if isinstance(size, int) and size > 0 else None
