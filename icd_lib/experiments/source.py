"""Where a chapter finds the book's records: the folder that holds ``results/`` and ``checkpoints/``.

:func:`records_folder` looks, in order, at

1. a folder the user names (``records=``, else ``$ICD_RECORDS``), e.g. a Google Drive folder;
2. the checkout the code runs in (``book/``'s parent, the working directory, or the repository
   ``icd_lib`` is imported from);
3. the records of the commit ``icd_lib`` was installed from (``pip install git+...`` writes it in
   the distribution's ``direct_url.json``), fetched once into ``~/.cache/icd_lib/book/<commit>/``
   and checked against the committed manifest ``results/MANIFEST.tsv`` (bytes and sha256).

Where they are fetched from: ``$ICD_BOOK_REPO`` if set, else the URL pip installed from. A GitHub
repository URL (``https://github.com/<owner>/<name>``) is read at the commit from
raw.githubusercontent.com; any other URL is taken as the folder holding the repository's files
(``file:///path/to/clone``, a mirror). The manifest lists the committed records and teachers'
checkpoints; after committing records, regenerate it with
``python -m icd_lib.experiments.source --write-manifest``.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

from tqdm.auto import tqdm

from icd_lib.config import get_profile
from icd_lib.data.sources import checkout_root, user_cache_dir
from icd_lib.errors import MissingRecordsError
from icd_lib.utils import atomic_write, installed_from

RECORDS_ENV = "ICD_RECORDS"
REPO_ENV = "ICD_BOOK_REPO"
MANIFEST = "results/MANIFEST.tsv"
MANIFEST_HEADER = (
    "# The book's committed records and teachers' checkpoints: sha256, bytes, path in the repository.\n"
    "# Regenerate after committing records: python -m icd_lib.experiments.source --write-manifest\n"
)
FETCHED_SUFFIXES = (".json", ".pt")  # what the manifest lists of the committed results/ and checkpoints/
DRIVE = Path("/content/drive")  # where Colab mounts Google Drive
GITHUB_REPO = re.compile(r"^(?:git\+)?https://github\.com/([^/]+)/([^/]+?)(?:\.git)?/?$")
CHUNK = 1 << 16


class RecordsUnavailableError(MissingRecordsError):
    """The book's records are neither here nor fetchable; the message says what is missing and what to do."""


class Entry(NamedTuple):
    """One file of the manifest: its path in the repository, size in bytes and sha256."""

    path: str
    size: int
    sha256: str


def records_folder(records: str | os.PathLike | None = None) -> Path:
    """The folder holding the book's ``results/`` and ``checkpoints/`` (a chapter's ``OUT``):
    ``records`` (else ``$ICD_RECORDS``), else the checkout, else the fetched records."""
    named = records if records is not None else os.environ.get(RECORDS_ENV) or None
    if named is not None:
        return user_folder(named)
    return checkout_folder() or fetch_book_records()


def require_mounted(path: str | os.PathLike) -> Path:
    """``path``, or RecordsUnavailableError when it lies under Colab's Drive folder and Drive is not mounted."""
    path = Path(path).expanduser()
    if path.absolute().is_relative_to(DRIVE) and not os.path.ismount(DRIVE):
        raise RecordsUnavailableError(
            f"{path} is on Google Drive, which is not mounted: run `from google.colab import drive; "
            f"drive.mount('{DRIVE}')` first")
    return path


def user_folder(path: str | os.PathLike) -> Path:
    """A folder the user named for their records; it must exist (on a mounted Drive)."""
    folder = require_mounted(path)
    if not folder.is_dir():
        raise RecordsUnavailableError(
            f"the records folder {folder} (records= or ${RECORDS_ENV}) does not exist; create it or fix the path")
    return folder


def checkout_folder() -> Path | None:
    """The checkout the code runs in: ``..`` from ``book/``, ``.`` at its root (as the chapters
    name them), else the repository ``icd_lib`` is imported from; None outside a checkout."""
    for folder in (Path(".."), Path(".")):
        if (folder / "_config.yml").is_file() and (folder / "results").is_dir():
            return folder
    return checkout_root()


def files_url(repo: str, commit: str | None) -> str:
    """The URL under which the repository's files lie: raw.githubusercontent.com at ``commit``
    for a GitHub repository URL, ``repo`` itself for any other."""
    match = GITHUB_REPO.match(repo)
    if match is None:
        return repo.rstrip("/")
    if commit is None:
        raise unavailable(
            f"they are read at the commit icd_lib was installed from, and pip recorded none (install it with "
            f"`pip install \"icd_lib @ git+{repo}@main\"`, or set ${REPO_ENV} to "
            f"https://raw.githubusercontent.com/{match[1]}/{match[2]}/<commit>)")
    return f"https://raw.githubusercontent.com/{match[1]}/{match[2]}/{commit}"


def fetch_book_records(repo: str | None = None, commit: str | None = None,
                       cache: str | os.PathLike | None = None) -> Path:
    """The book's records of ``commit`` from ``repo`` (defaults: ``$ICD_BOOK_REPO`` else pip's
    URL, and pip's commit), in ``cache/<commit>`` (default ``~/.cache/icd_lib/book``), fetched
    where missing or different from the manifest, with a progress bar; RecordsUnavailableError
    when they cannot be had."""
    pip_url, pip_commit = installed_from()
    repo = repo or os.environ.get(REPO_ENV) or pip_url
    commit = commit or pip_commit
    if repo is None:
        raise unavailable("icd_lib was not installed from a repository (pip recorded no URL)")
    base = files_url(repo, commit)
    key = commit or "url-" + hashlib.sha256(base.encode()).hexdigest()[:12]
    folder = Path(cache or user_cache_dir() / "book") / key
    manifest = folder / MANIFEST
    if commit is None or not manifest.is_file():  # a commit pins the manifest; without one, read it again
        download(base, [MANIFEST], folder)
    entries = parse_manifest(manifest.read_text())
    todo = stale(folder, entries)
    if todo:
        download(base, [e.path for e in todo], folder, total=sum(e.size for e in todo),
                 description=f"book records of {commit[:7] if commit else base}")
    wrong = stale(folder, todo)
    if wrong:
        raise unavailable(f"{len(wrong)} files fetched from {base} differ from its manifest, e.g. "
                          f"{wrong[0].path} (the source does not hold the files of commit {commit})")
    return folder


def download(base: str, paths: Iterable[str], folder: Path, total: int | None = None,
             description: str | None = None) -> None:
    """Copy each of ``paths`` from ``base`` into ``folder`` (atomically); with a ``description``,
    one progress bar of ``total`` bytes."""
    with tqdm(total=total, desc=description, unit="B", unit_scale=True, unit_divisor=1024,
              disable=description is None) as bar:
        for path in paths:
            url = f"{base}/{urllib.parse.quote(path)}"
            try:
                atomic_write(folder / path, lambda tmp: copy_url(url, tmp, bar.update),
                             "the files fetched before it are kept")
            except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as err:
                raise unavailable(f"{url} could not be read ({getattr(err, 'reason', err)})") from err


def copy_url(url: str, path: str, progress: Callable[[int], object]) -> None:
    """Write what ``url`` serves to ``path``, calling ``progress`` with the size of each chunk."""
    with urllib.request.urlopen(url, timeout=60) as response, open(path, "wb") as f:
        while chunk := response.read(CHUNK):
            f.write(chunk)
            progress(len(chunk))


def unavailable(reason: str) -> RecordsUnavailableError:
    """The one message for records that cannot be had: why, how to point at them, how to make them."""
    from icd_lib.experiments.plans import get_plan, plan_specs  # the plans load the trainer: only on failure

    runs = len(plan_specs(get_plan("book")))
    return RecordsUnavailableError(
        f"the book's records could not be fetched: {reason}. Connect to the internet, set ${REPO_ENV} to "
        f"a copy of the repository (file:///path/to/clone), or name a folder holding results/ (records= or "
        f"${RECORDS_ENV}); or make them with `python -m icd_lib plan book --run`: {runs} training runs "
        f"({get_profile('book').description.rstrip('.')})")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def stale(folder: Path, entries: Iterable[Entry]) -> list[Entry]:
    """The entries whose file in ``folder`` is missing or differs in size or sha256."""
    def intact(e: Entry) -> bool:
        path = folder / e.path
        return path.is_file() and path.stat().st_size == e.size and sha256_of(path) == e.sha256

    return [e for e in entries if not intact(e)]


def parse_manifest(text: str) -> list[Entry]:
    """The entries of a manifest: lines ``sha256<TAB>bytes<TAB>path``; ``#`` lines are comments."""
    entries = []
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            sha256, size, path = line.split("\t")
            entries.append(Entry(path, int(size), sha256))
    return entries


def manifest_entries(root: str | os.PathLike) -> list[Entry]:
    """The committed records and checkpoints of the checkout at ``root`` (``git ls-files``), as
    they are in its working tree."""
    listed = subprocess.run(["git", "ls-files", "-z", "--", "results", "checkpoints"], cwd=root,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    paths = sorted(p for p in listed if p.endswith(FETCHED_SUFFIXES))
    return [Entry(p, (Path(root) / p).stat().st_size, sha256_of(Path(root) / p)) for p in paths]


def write_manifest(root: str | os.PathLike) -> Path:
    """Write ``results/MANIFEST.tsv`` of the checkout at ``root`` from :func:`manifest_entries`."""
    lines = "".join(f"{e.sha256}\t{e.size}\t{e.path}\n" for e in manifest_entries(root))

    def write(tmp: str) -> None:
        Path(tmp).write_text(MANIFEST_HEADER + lines)

    return atomic_write(Path(root) / MANIFEST, write, "the previous manifest is intact")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m icd_lib.experiments.source",
        description="Print the folder holding the book's records (fetching them if needed).")
    parser.add_argument("--write-manifest", action="store_true",
                        help=f"write {MANIFEST} of this checkout from its committed records and checkpoints")
    args = parser.parse_args(argv)
    if args.write_manifest:
        root = checkout_folder()
        if root is None:
            parser.error("--write-manifest needs a checkout of the repository")
        print(write_manifest(root))
    else:
        print(records_folder().resolve())


if __name__ == "__main__":
    main()
