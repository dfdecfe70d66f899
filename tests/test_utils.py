"""seed_everything makes every random source repeat; the environment report names the device;
atomic_write never leaves half a file."""
import errno
import json
import random
import stat

import numpy as np
import pytest
import torch

from icd_lib.utils import atomic_write, environment_report, process_age, seed_everything


def draw():
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_same_seed_same_draws_different_seed_different_draws():
    seed_everything(7)
    first = draw()
    seed_everything(7)
    assert draw() == first
    seed_everything(8)
    assert draw() != first


def test_seed_makes_model_initialisation_repeat():
    seed_everything(3)
    a = torch.nn.Linear(4, 4).weight.clone()
    seed_everything(3)
    assert torch.equal(torch.nn.Linear(4, 4).weight, a)


@pytest.mark.parametrize("bad", [-1, 1.5, "0"])
def test_bad_seed_is_rejected(bad):
    with pytest.raises(ValueError, match="seed"):
        seed_everything(bad)


def test_environment_report_has_versions_and_device():
    report = environment_report()
    assert report["torch"] == torch.__version__
    assert report["device"].startswith(("cpu", "NVIDIA", "cuda"))
    assert report["profile"] in ("smoke", "book", "paper")


def test_git_dirty_tells_a_changed_tree_from_a_clean_one(tmp_path):
    import subprocess

    from icd_lib.utils import git_commit, git_dirty

    assert git_dirty(tmp_path) is None  # not a repository
    run = lambda *args: subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)
    run("init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    run("add", "a.py")
    run("-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm", "a")
    assert git_dirty(tmp_path) is False and git_commit(tmp_path)
    (tmp_path / "a.py").write_text("x = 2\n")
    assert git_dirty(tmp_path) is True


def test_wrap_fields_breaks_only_between_fields_and_keeps_every_field():
    from icd_lib.utils import wrap_fields

    fields = ["a" * 30, "b" * 30, "c" * 30, "d" * 10]
    text = wrap_fields(fields, width=70)
    # by hand: "a...; b...;" is 30+1+1+30+1 = 63 columns, adding "; c..." would be 95
    assert text.splitlines() == [f"{'a' * 30}; {'b' * 30};", f"  {'c' * 30}; {'d' * 10}"]
    assert wrap_fields(fields, width=None) == "; ".join(fields)
    assert wrap_fields(["short"], width=10) == "short"


def test_wrap_fields_breaks_inside_a_field_only_when_it_is_wider_than_a_line():
    from icd_lib.utils import wrap_fields

    long = " ".join(f"w{i:02d}" for i in range(30))  # 119 columns
    fields = ["first", long, "last"]
    lines = wrap_fields(fields, width=40).splitlines()
    assert all(len(line) <= 40 for line in lines)
    assert lines[0] == "first;" and lines[-1] == "  last"
    assert " ".join(line.strip() for line in lines) == "; ".join(fields)
    with pytest.raises(ValueError, match="width 2"):
        wrap_fields(fields, width=2)


def test_load_average_is_the_one_minute_load_or_none_without_one(monkeypatch):
    import os

    from icd_lib.utils import load_average

    if hasattr(os, "getloadavg"):
        assert abs(load_average() - os.getloadavg()[0]) < 1.0  # the two reads are moments apart
    monkeypatch.delattr(os, "getloadavg", raising=False)
    assert load_average() is None


def test_atomic_write_replaces_the_file_whole_and_readably(tmp_path):
    path = atomic_write(tmp_path / "new" / "a.txt", lambda tmp: open(tmp, "w").write("two"), "-")
    assert path.read_text() == "two"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["a.txt"]


def half_then(error):
    def write(tmp):
        with open(tmp, "w") as f:
            f.write("half")
        raise error
    return write


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    (tmp_path / "a.txt").write_text("one")
    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "a.txt", half_then(KeyboardInterrupt()), "-")
    assert (tmp_path / "a.txt").read_text() == "one"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_a_full_disk_names_the_file_and_what_is_intact(tmp_path):
    full = OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(OSError, match=r"no space left on the device to write .*a.txt; free some "
                                      r"space and rerun \(the old one is intact\)") as caught:
        atomic_write(tmp_path / "a.txt", half_then(full), "the old one is intact")
    assert caught.value.errno == errno.ENOSPC
    assert not list(tmp_path.iterdir())


@pytest.fixture
def small_disk(tmp_path):
    """A real 2 MiB filesystem (tmpfs) at ``tmp_path / "disk"``; skipped where mounting is not allowed."""
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a 2 MiB tmpfs here (needs root): {mounted.stderr.strip() or mounted.returncode}")
    yield disk
    subprocess.run(["umount", "--lazy", str(disk)], check=True)  # lazy: a failed write may still hold a file open


def test_a_full_disk_during_a_checkpoint_write_is_one_line_and_keeps_the_old_checkpoint(small_disk):
    from icd_lib.train.checkpoint import load_checkpoint, save_checkpoint

    state = {"config": {}, "epoch": 1, "model": {"w": torch.arange(10.0)}, "history": []}
    save_checkpoint(state, small_disk / "last.pt")
    too_big = {**state, "epoch": 2, "model": {"w": torch.zeros(1_000_000)}}  # 4 MB on a 2 MiB disk
    with pytest.raises(OSError, match=r"no space left on the device to write .*last.pt; free some") as caught:
        save_checkpoint(too_big, small_disk / "last.pt")
    assert caught.value.errno == errno.ENOSPC and "\n" not in str(caught.value)
    assert load_checkpoint(small_disk / "last.pt")["epoch"] == 1
    assert [p.name for p in small_disk.iterdir()] == ["last.pt"]  # the temporary file is gone


def test_a_failed_torch_write_on_a_disk_with_room_is_not_called_full(tmp_path, monkeypatch):
    from icd_lib.train import checkpoint

    def broken(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 768 vs 662")

    monkeypatch.setattr(checkpoint.torch, "save", broken)
    with pytest.raises(RuntimeError, match="unexpected pos"):
        checkpoint.save_checkpoint({"config": {}}, tmp_path / "last.pt")
    assert not list(tmp_path.iterdir())


def test_process_age_is_the_time_since_this_process_started():
    import time

    psutil = pytest.importorskip("psutil")
    expected = time.time() - psutil.Process().create_time()
    assert process_age() == pytest.approx(expected, abs=1.0)


def test_a_record_made_from_a_pip_install_names_the_commit_pip_recorded(tmp_path, monkeypatch):
    """Outside a git checkout (Colab's pip install from git), the commit comes from PEP 610's
    direct_url.json, which pip writes into the dist-info."""
    from icd_lib import utils
    from icd_lib.results import records

    info = tmp_path / "icd_lib-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: icd_lib\nVersion: 0.1\n")
    (info / "direct_url.json").write_text(json.dumps(
        {"url": "https://github.com/icd-book/icd-book", "vcs_info": {"vcs": "git", "commit_id": "c0ffee"}}))
    assert utils.installed_from(tmp_path) == ("https://github.com/icd-book/icd-book", "c0ffee")
    real = utils.installed_from
    monkeypatch.setattr(utils, "git_commit", lambda *args: None)  # not a checkout
    monkeypatch.setattr(utils, "installed_from", lambda: real(tmp_path))
    assert records.provenance()["git_commit"] == "c0ffee"
