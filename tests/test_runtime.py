"""The runtime check: what it finds, the paper recipe refused on a CPU, times only from records."""
import json
import shutil
from pathlib import Path

import pytest
import torch

from icd_lib import runtime
from icd_lib.runtime import NeedsGPUError, check_runtime

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "results" / "book-kd-resnet8-from-resnet20-seed0.json"


@pytest.fixture
def cpu_only(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv(runtime.ALLOW_CPU_ENV, raising=False)


@pytest.fixture
def a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")


def test_the_paper_profile_on_a_cpu_is_refused_with_the_colab_instruction(cpu_only):
    with pytest.raises(NeedsGPUError) as raised:
        check_runtime("paper")
    message = str(raised.value)
    assert "Runtime > Change runtime type" in message and "GPU" in message
    assert f"{runtime.ALLOW_CPU_ENV}=1" in message
    assert "240 epochs" in message and "\n" not in message


def test_the_refusal_can_be_overridden(cpu_only, monkeypatch):
    assert check_runtime("paper", allow_cpu=True).kind == "cpu"
    monkeypatch.setenv(runtime.ALLOW_CPU_ENV, "1")
    assert check_runtime("paper").kind == "cpu"
    with pytest.raises(NeedsGPUError):
        check_runtime("paper", allow_cpu=False)


def test_the_book_profile_runs_on_a_cpu_and_says_so(cpu_only):
    found = check_runtime("book")
    assert (found.kind, found.threads) == ("cpu", torch.get_num_threads())
    assert str(found).startswith("no GPU: cpu (") and f"{torch.get_num_threads()} threads" in str(found)


def test_asking_for_cuda_without_a_gpu_says_how_to_get_one(cpu_only):
    with pytest.raises(NeedsGPUError, match=r"no GPU.*Runtime > Change runtime type.*--device cpu"):
        check_runtime("book", device="cuda")


def test_on_a_gpu_the_device_is_named(a_gpu):
    found = check_runtime("paper")
    assert found.kind == "cuda" and str(found).startswith("GPU: Tesla T4")


def write_records(folder: Path, times: list[float], device: str, profile: str) -> None:
    """Copies of a committed record with their profile, device and wall time changed."""
    (folder / "results").mkdir(parents=True)
    data = json.loads(RECORD.read_text())
    for i, seconds in enumerate(times):
        (folder / "results" / f"run{i}.json").write_text(
            json.dumps({**data, "name": f"run{i}", "profile": profile, "device": device, "wall_time_s": seconds}))


def test_the_measured_time_is_the_median_of_the_records_on_a_device_of_that_name(a_gpu, tmp_path):
    write_records(tmp_path / "mine", [600.0, 660.0, 7200.0], "Tesla T4", "paper")  # median 660 s = 11.0 min
    shutil.copy(RECORD, tmp_path / "mine" / "results" / RECORD.name)  # a book run on a CPU
    said = str(check_runtime("paper", out=tmp_path / "mine"))
    assert "took 11.0 min each" in said and "3 records" in said


def test_without_records_on_this_device_no_time_is_given(a_gpu, tmp_path):
    write_records(tmp_path / "mine", [100.0], "NVIDIA A100-SXM4-40GB", "paper")
    said = str(check_runtime("paper", out=tmp_path / "mine"))
    assert "no paper run recorded on Tesla T4" in said and "took" not in said


def kd_records(times: list[float], device: str, method: str = "kd", role: str = "student",
               profile: str = "book") -> list:
    """Copies of a committed record with their method, role, profile, device and wall time changed."""
    from dataclasses import replace

    from icd_lib.results.records import load_record

    base = load_record(RECORD)
    return [replace(base, name=f"{method}-{role}-{i}-{device}", method=method, role=role, profile=profile,
                    device=device, wall_time_s=seconds) for i, seconds in enumerate(times)]


def test_the_estimate_is_the_median_of_comparable_records_on_this_device():
    from icd_lib.experiments.spec import make_spec
    from icd_lib.utils import device_description

    here = device_description("cpu")
    records = (kd_records([100.0, 200.0, 600.0], here)  # median 200 s per KD run
               + kd_records([5.0], "Tesla T4")  # another device: not counted
               + kd_records([9.0], here, profile="smoke")  # another profile: not counted
               + kd_records([5000.0], here, method="teacher", role="teacher"))  # another role
    specs = [make_spec("book", "kd", seed=seed) for seed in (0, 1)]
    found = runtime.estimate(specs, None, "cpu", records=records)
    assert (found.runs, found.seconds, found.records, found.device) == (2, 400.0, 3, here)
    assert str(found).startswith(f"2 runs, about 6.7 min on {here}")  # 400 s


def test_the_estimate_prefers_the_runs_own_method_and_falls_back_to_its_role(a_gpu):
    from icd_lib.experiments.spec import make_spec

    records = kd_records([100.0, 300.0], "Tesla T4") + kd_records([900.0], "Tesla T4", method="icd+kd")
    icd_kd = runtime.estimate([make_spec("book", "icd+kd")], None, records=records)
    crd = runtime.estimate([make_spec("book", "crd")], None, records=records)
    assert icd_kd.seconds == 900.0  # its own method's one record
    assert crd.seconds == 300.0  # no CRD record: the median of the students' (100, 300, 900)


def test_an_unmeasured_estimate_says_so_with_the_epochs_and_images(tmp_path):
    from icd_lib.config import get_profile
    from icd_lib.experiments.spec import make_spec

    write_records(tmp_path, [100.0], "Tesla T4", "book")  # a GPU record, read from out/results
    book = get_profile("book")
    found = runtime.estimate([make_spec("book", "teacher"), make_spec("book", "kd")], tmp_path, "cpu")
    assert found.seconds is None and found.unmeasured == 2
    said = str(found)
    assert said.startswith("2 runs, time unmeasured") and "about" not in said
    assert f"{book.student_epochs} epochs on {book.student_train_size:,} fashion_mnist images" in said
    teacher_images = "all" if book.teacher_train_size is None else f"{book.teacher_train_size:,}"
    assert f"{book.teacher_epochs} epochs on {teacher_images} fashion_mnist images" in said


def test_an_estimate_is_read_from_the_records_folder(a_gpu, tmp_path):
    from icd_lib.experiments.spec import make_spec

    write_records(tmp_path, [120.0, 240.0, 360.0], "Tesla T4", "book")  # copies of a KD student record
    found = runtime.estimate([make_spec("book", "kd")] * 3, tmp_path, "cuda")
    assert (found.seconds, found.records) == (720.0, 3) and "about 12.0 min on Tesla T4" in str(found)
