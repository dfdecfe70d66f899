"""Seeding, device choice and the environment report shown at the top of every chapter."""
from __future__ import annotations

import errno
import glob
import json
import os
import platform
import random
import shutil
import subprocess
import tempfile
import textwrap
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and PyTorch (all devices); optionally ask for deterministic kernels."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)


def get_device(prefer: str | None = None) -> torch.device:
    """``prefer`` if given, else CUDA when available, else CPU."""
    if prefer:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_description(device: torch.device | str | None = None) -> str:
    """A human-readable name of the device, e.g. 'NVIDIA H100 80GB HBM3' or 'cpu (2 threads, x86_64)'."""
    device = torch.device(device) if device is not None else get_device()
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads, {platform.machine()})"


def load_average() -> float | None:
    """The machine's 1-minute load average (processes running or waiting for a CPU), or None
    where the system has none (Windows)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


# torch.save's messages for a failed write (torch 2.x), which carry no errno: "basic_ios::clear:
# iostream error", "[enforce fail at inline_container.cc:672] . unexpected pos 768 vs 662"
TORCH_WRITE_FAILURES = ("basic_ios::clear", "unexpected pos")
LOW_SPACE_BYTES = 1 << 20  # a folder with less free space than this counts as full


def exception_chain(err: BaseException | None) -> list[BaseException]:
    """``err`` and what caused it, outermost first."""
    chain = []
    while err is not None and err not in chain:
        chain.append(err)
        err = err.__cause__ or err.__context__
    return chain


def process_age() -> float | None:
    """Seconds since this process started (from Linux's /proc), None where that is unknown."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()  # fields 3, 4, ... of proc(5)
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start time in clock ticks
    except (OSError, ValueError, IndexError):
        return None


def is_disk_full(err: BaseException | None, folder: str | Path | None = None) -> bool:
    """Whether ``err`` (or what caused it) is 'no space left on device': ENOSPC or its message, or
    one of torch's errno-less write failures while ``folder`` has under ``LOW_SPACE_BYTES`` free."""
    chain = exception_chain(err)
    if any(isinstance(e, OSError) and e.errno == errno.ENOSPC or "No space left on device" in str(e) for e in chain):
        return True
    torch_failed = any(message in str(e) for e in chain for message in TORCH_WRITE_FAILURES)
    return torch_failed and folder is not None and shutil.disk_usage(folder).free < LOW_SPACE_BYTES


def atomic_write(path: str | Path, write: Callable[[str], object], intact: str) -> Path:
    """Write ``path`` all at once: ``write(tmp)`` fills a temporary file in the same folder, then
    ``os.replace`` puts it in place, so a reader, a kill or a full disk never leaves half a file.
    On a full disk, an OSError (ENOSPC) names ``path`` and says what is ``intact``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the file is an ordinary one
        write(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        full = is_disk_full(err, path.parent)  # before the partial file is removed
        Path(tmp).unlink(missing_ok=True)
        if full:
            raise OSError(errno.ENOSPC, f"no space left on the device to write {path}; free some space "
                          f"and rerun ({intact})") from err
        raise
    return path


def remove_partial_writes(path: str | Path) -> list[Path]:
    """Delete the temporary files that ``atomic_write(path, ...)`` calls killed mid-write left
    beside ``path``; return them. Only the one writer of ``path`` may call it (a run holds its lock)."""
    path = Path(path)
    stale = sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp")) if path.parent.is_dir() else []
    for partial in stale:
        partial.unlink(missing_ok=True)
    return stale


def renamed_keys(data: dict, names: dict[str, str]) -> dict:
    """A copy of ``data`` with each key of ``names`` called by its value (order kept)."""
    return {names.get(key, key): value for key, value in data.items()}


def wrap_fields(fields: Sequence[str], width: int | None = 88, separator: str = "; ", indent: str = "  ") -> str:
    """``separator.join(fields)``, broken into lines of at most ``width`` columns at the field
    boundaries (each broken line keeps the separator's ``;``, continuation lines start with
    ``indent``). A field longer than a line on its own is broken at its spaces (a word longer than
    a line is cut). ``width`` None: one line. Joining the stripped lines with spaces gives the one line back.
    """
    if width is None:
        return separator.join(fields)
    if width <= len(indent) + 1:
        raise ValueError(f"width {width} leaves no room after the indent of {len(indent)} columns")
    suffix = separator.rstrip()
    joiner = separator[len(suffix):]
    pieces = [f + suffix for f in fields[:-1]] + list(fields[-1:])
    lines: list[str] = []
    line = ""
    for piece in pieces:
        prefix = indent if lines or line else ""
        if line and len(line) + len(joiner) + len(piece) <= width:
            line += joiner + piece
            continue
        if line:
            lines.append(line)
        if len(prefix) + len(piece) <= width:
            line = prefix + piece
        else:
            lines += textwrap.wrap(piece, width, initial_indent=prefix, subsequent_indent=indent,
                                   break_on_hyphens=False)
            line = ""
    return "\n".join(lines + ([line] if line else []))


def git_commit(path: str | Path | None = None) -> str | None:
    """The git commit of the repository holding ``path`` (this package by default), or None."""
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def installed_from(where: str | os.PathLike = Path(__file__).resolve().parents[1]) -> tuple[str | None, str | None]:
    """(URL, commit) pip recorded when it installed the ``icd_lib`` found in ``where`` (PEP 610's
    ``direct_url.json``); the commit is None unless it came from git, both None when unrecorded."""
    for dist in metadata.distributions(path=[str(where)]):
        if dist.metadata["Name"].replace("-", "_").lower() != "icd_lib":
            continue
        text = dist.read_text("direct_url.json")
        if text:
            direct = json.loads(text)
            return direct.get("url"), direct.get("vcs_info", {}).get("commit_id")
    return None, None


def git_dirty(path: str | Path | None = None) -> bool | None:
    """Whether the library's source differs from the commit ``git_commit`` names (None outside git).

    A record made from uncommitted code says so, since its commit alone does not reproduce it.
    """
    where = Path(path) if path else Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--", "."], cwd=where, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def environment_report() -> dict[str, str]:
    """Versions and device, as shown at the top of the book's chapters."""
    import matplotlib
    import torchvision

    import icd_lib
    from icd_lib.config import get_profile

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "numpy": np.__version__,
        "matplotlib": matplotlib.__version__,
        "icd_lib": icd_lib.__version__,
        "device": device_description(),
        "profile": get_profile().name,
    }
