"""seed_everything makes every random source repeat; the environment report names the device."""
import random

import numpy as np
import pytest
import torch

from icd_lib.utils import environment_report, seed_everything


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
