"""Where the chapters find the book's records: a user's folder, the checkout, or a verified fetch.

Fetches read a small repository-like folder through ``file://`` (offline); its manifest is written
here with hashlib, independently of the module's own writer.
"""
import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from icd_lib.experiments.groups import MissingRecordsError
from icd_lib.experiments import source
from icd_lib.experiments.source import RecordsUnavailableError, fetch_book_records, records_folder

ROOT = Path(__file__).resolve().parents[1]
FILES = {"results/book-kd-resnet8-seed0.json": b'{"last_top1": 88.12}\n',
         "results/book-icd+kd-resnet8-seed0-icd.alpha=0.1.json": b'{"last_top1": 87.5}\n',
         "checkpoints/book-teacher-resnet20-seed0/best.pt": bytes(range(256)) * 40}


def manifest_text(files: dict[str, bytes]) -> str:
    return "# a comment line\n" + "".join(
        f"{hashlib.sha256(data).hexdigest()}\t{len(data)}\t{path}\n" for path, data in files.items())


@pytest.fixture
def repo(tmp_path):
    """A folder laid out like the repository: the FILES and their manifest."""
    root = tmp_path / "repo"
    for path, data in FILES.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    (root / source.MANIFEST).write_text(manifest_text(FILES))
    return root


def fetch(repo: Path, cache: Path, commit: str | None = "c0ffee") -> Path:
    return fetch_book_records(repo.as_uri(), commit, cache)


def test_fetch_copies_every_file_of_the_manifest_into_the_commits_cache(repo, tmp_path):
    folder = fetch(repo, tmp_path / "cache")
    assert folder == tmp_path / "cache" / "c0ffee"
    for path, data in FILES.items():
        assert (folder / path).read_bytes() == data


def test_a_second_fetch_reads_nothing(repo, tmp_path):
    fetch(repo, tmp_path / "cache")
    for path in repo.rglob("*"):
        if path.is_file():
            path.unlink()  # a second fetch that reached for the source would fail now
    folder = fetch(repo, tmp_path / "cache")
    assert (folder / "results/book-kd-resnet8-seed0.json").read_bytes() == FILES["results/book-kd-resnet8-seed0.json"]


def test_a_corrupted_cached_file_is_fetched_again(repo, tmp_path):
    folder = fetch(repo, tmp_path / "cache")
    checkpoint = folder / "checkpoints/book-teacher-resnet20-seed0/best.pt"
    checkpoint.write_bytes(b"\0" * checkpoint.stat().st_size)  # same size, other bytes
    (folder / "results/book-kd-resnet8-seed0.json").unlink()
    fetch(repo, tmp_path / "cache")
    assert checkpoint.read_bytes() == FILES["checkpoints/book-teacher-resnet20-seed0/best.pt"]
    assert (folder / "results/book-kd-resnet8-seed0.json").is_file()


def test_a_source_file_that_differs_from_the_manifest_is_reported(repo, tmp_path):
    (repo / "results/book-kd-resnet8-seed0.json").write_bytes(b'{"last_top1": 99.99}\n')
    with pytest.raises(RecordsUnavailableError, match="differ from its manifest.*book-kd-resnet8-seed0"):
        fetch(repo, tmp_path / "cache")


def test_a_file_missing_at_the_source_is_one_message_with_the_command_that_makes_it(repo, tmp_path):
    (repo / "results/book-kd-resnet8-seed0.json").unlink()
    with pytest.raises(MissingRecordsError) as raised:  # the chapters' exception, so they stop alike
        fetch(repo, tmp_path / "cache")
    message = str(raised.value)
    assert "book-kd-resnet8-seed0.json could not be read" in message
    assert "`python -m icd_lib plan book --run`" in message and "training runs" in message
    assert "\n" not in message


def test_without_a_commit_the_manifest_is_read_again(repo, tmp_path):
    folder = fetch(repo, tmp_path / "cache", commit=None)
    new = {**FILES, "results/book-at-resnet8-seed0.json": b'{"last_top1": 86.0}\n'}
    (repo / "results/book-at-resnet8-seed0.json").write_bytes(new["results/book-at-resnet8-seed0.json"])
    (repo / source.MANIFEST).write_text(manifest_text(new))
    assert fetch(repo, tmp_path / "cache", commit=None) == folder
    assert (folder / "results/book-at-resnet8-seed0.json").is_file()


def test_github_repository_urls_are_read_at_the_commit_from_raw_githubusercontent():
    config = (ROOT / "_config.yml").read_text()
    repo_url = next(line.split("url:")[1].strip() for line in config.splitlines() if line.strip().startswith("url:"))
    owner_name = repo_url.removeprefix("https://github.com/")
    for url in (repo_url, repo_url + ".git", "git+" + repo_url, repo_url + "/"):
        assert source.files_url(url, "abc123") == f"https://raw.githubusercontent.com/{owner_name}/abc123"
    assert source.files_url("file:///srv/clone/", None) == "file:///srv/clone"
    with pytest.raises(RecordsUnavailableError, match="pip recorded none"):
        source.files_url(repo_url, None)


def test_installed_from_reads_what_pip_recorded(tmp_path):
    dist = tmp_path / "icd_lib-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: icd_lib\nVersion: 0.1.0\n")
    direct = {"url": "https://github.com/icd-book/icd-book", "vcs_info": {"vcs": "git", "commit_id": "f00d"}}
    (dist / "direct_url.json").write_text(json.dumps(direct))
    assert source.installed_from(tmp_path) == ("https://github.com/icd-book/icd-book", "f00d")
    (dist / "direct_url.json").unlink()
    assert source.installed_from(tmp_path) == (None, None)


def test_records_folder_in_the_checkout_is_the_folder_the_chapters_used(monkeypatch):
    monkeypatch.delenv(source.RECORDS_ENV, raising=False)
    monkeypatch.chdir(ROOT / "book")
    assert records_folder() == Path("..")
    monkeypatch.chdir(ROOT)
    assert records_folder() == Path(".")


def test_records_folder_without_a_checkout_fetches(repo, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(source, "checkout_root", lambda: None)
    monkeypatch.setattr(source, "installed_from", lambda: ("https://github.com/icd-book/icd-book", "beef"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv(source.REPO_ENV, repo.as_uri())
    monkeypatch.delenv(source.RECORDS_ENV, raising=False)
    folder = records_folder()
    assert folder == tmp_path / "xdg" / "icd_lib" / "book" / "beef"
    assert (folder / "results/book-kd-resnet8-seed0.json").read_bytes() == FILES["results/book-kd-resnet8-seed0.json"]


def test_a_users_folder_comes_first_and_must_exist(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    assert records_folder(tmp_path) == tmp_path
    monkeypatch.setenv(source.RECORDS_ENV, str(tmp_path))
    assert records_folder() == tmp_path
    with pytest.raises(RecordsUnavailableError, match="does not exist"):
        records_folder(tmp_path / "typo")


def test_an_unmounted_drive_folder_says_to_mount_drive(tmp_path, monkeypatch):
    drive = tmp_path / "drive"  # not a mount point
    monkeypatch.setattr(source, "DRIVE", drive)
    with pytest.raises(RecordsUnavailableError, match=r"not mounted.*drive\.mount") as raised:
        records_folder(drive / "MyDrive" / "icd")
    assert "\n" not in str(raised.value)
    monkeypatch.setattr(source.os.path, "ismount", lambda path: Path(path) == drive)
    (drive / "MyDrive" / "icd").mkdir(parents=True)
    assert records_folder(drive / "MyDrive" / "icd") == drive / "MyDrive" / "icd"


def committed_files(paths: list[str]) -> dict[str, bytes]:
    """The contents at HEAD of ``paths``, read by ``git cat-file --batch``."""
    batch = subprocess.run(["git", "cat-file", "--batch"], cwd=ROOT, capture_output=True, check=True,
                           input="".join(f"HEAD:{p}\n" for p in paths).encode()).stdout
    contents, at = {}, 0
    for path in paths:
        header_end = batch.index(b"\n", at)
        size = int(batch[at:header_end].split()[2])
        contents[path] = batch[header_end + 1:header_end + 1 + size]
        at = header_end + 1 + size + 1
    return contents


def test_the_committed_manifest_lists_every_committed_record_and_checkpoint_as_committed():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    tracked = subprocess.run(["git", "ls-tree", "-r", "--name-only", "HEAD", "--", "results", "checkpoints"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    expected = {p: data for p, data in committed_files(tracked).items() if p.endswith((".json", ".pt"))}
    listed = {}
    for line in (ROOT / source.MANIFEST).read_text().splitlines():
        if not line.startswith("#"):
            sha256, size, path = line.split("\t")
            listed[path] = (int(size), sha256)
    stale = sorted(p for p, data in expected.items()
                   if listed.get(p) != (len(data), hashlib.sha256(data).hexdigest()))
    extra = sorted(set(listed) - set(expected))
    assert not stale and not extra, (
        f"{source.MANIFEST} is out of date ({len(stale)} committed files missing or different, e.g. "
        f"{stale[:3]}; {len(extra)} listed but not committed, e.g. {extra[:3]}): run "
        "`python -m icd_lib.experiments.source --write-manifest` and commit it")


def test_write_manifest_lists_the_tracked_files_only(tmp_path, repo):
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    (repo / source.MANIFEST).unlink()
    (repo / "results" / "README.md").write_text("not a record\n")
    subprocess.run(git + ["init", "-q"], cwd=repo, check=True)
    subprocess.run(git + ["add", "."], cwd=repo, check=True)
    (repo / "results" / "untracked.json").write_text("{}")
    source.write_manifest(repo)
    lines = [line for line in (repo / source.MANIFEST).read_text().splitlines() if not line.startswith("#")]
    assert sorted(lines) == sorted(manifest_text(FILES).splitlines()[1:])
