"""Profiles and recipes: the one compute switch and the paper's loss weights."""
import pytest

from icd_lib.config import METHOD_WEIGHTS, PROFILES, get_profile, method_weights


def test_environment_variable_selects_profile(monkeypatch):
    monkeypatch.setenv("ICD_PROFILE", "smoke")
    assert get_profile().name == "smoke"
    monkeypatch.delenv("ICD_PROFILE")
    assert get_profile().name == "book"


def test_argument_overrides_environment(monkeypatch):
    monkeypatch.setenv("ICD_PROFILE", "smoke")
    assert get_profile("paper").name == "paper"


def test_unknown_profile_lists_valid_ones(monkeypatch):
    monkeypatch.setenv("ICD_PROFILE", "fast")
    with pytest.raises(ValueError) as err:
        get_profile()
    message = str(err.value)
    assert "'fast'" in message
    for name in ("smoke", "book", "paper"):
        assert name in message


def test_overrides_replace_fields_without_touching_the_registry():
    assert get_profile("book", student_epochs=1).student_epochs == 1
    assert PROFILES["book"].student_epochs != 1


def test_paper_profile_is_the_cifar100_recipe():
    paper = get_profile("paper")
    assert (paper.dataset, paper.teacher, paper.student) == ("cifar100", "wrn_40_2", "wrn_16_2")
    assert (paper.batch_size, paper.lr, paper.momentum, paper.weight_decay) == (64, 0.05, 0.9, 5e-4)
    assert paper.milestones(240) == [150, 180, 210]


@pytest.mark.parametrize("epochs, expected", [(8, [5, 6, 7]), (16, [10, 12, 14]), (1, [])])
def test_milestones_scale_with_epochs(epochs, expected):
    assert get_profile("book").milestones(epochs) == expected


def test_method_weights_follow_the_paper():
    # eq. 13 with lambda = beta = 1 for ICD+KD; lambda = 0 for ICD; RepDistiller's KD uses 0.1 CE + 0.9 KD.
    assert method_weights("icd+kd") == {"ce": 1.0, "kd": 1.0, "icd": 1.0}
    assert method_weights("icd") == {"ce": 1.0, "icd": 1.0}
    assert method_weights("kd") == {"ce": 0.1, "kd": 0.9}
    assert method_weights("icd+kd", kd=0.5)["kd"] == 0.5
    assert METHOD_WEIGHTS["icd+kd"]["kd"] == 1.0  # overrides do not leak into the table


def test_unknown_method_lists_valid_ones():
    with pytest.raises(ValueError, match="valid methods: .*icd\\+kd"):
        method_weights("icd-kd")
