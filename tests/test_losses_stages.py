"""AB, FT and FSP, and the initialisation stage they train with: values worked by hand, properties,
gradients, clear errors; and the stage in the training loop (first, alone, resumable, invisible
to methods without one)."""
from __future__ import annotations


import pytest
import torch
from torch import nn

from icd_lib.losses import InitStage, Objective, build_method
from icd_lib.outputs import ModelOutput, ModelShapes
from icd_lib.results.records import without_machine_fields
from icd_lib.train.checkpoint import load_checkpoint
from icd_lib.config import method_weights
from icd_lib.train.loop import train
from icd_lib.train.options import RunOptions
from icd_lib.train.run_config import TrainConfig
from train_helpers import NoisyBlobs, RecordingBlobs, TinyNet


def num(t: torch.Tensor) -> float:
    return t.detach().item()


def output(*features) -> ModelOutput:
    features = tuple(torch.as_tensor(f, dtype=torch.float32) for f in features)
    n = features[0].shape[0]
    return ModelOutput(torch.zeros(n, 2), features, torch.zeros(n, 1))


def shapes_of(out: ModelOutput) -> ModelShapes:
    return ModelShapes(tuple(tuple(f.shape[1:]) for f in out.features), out.pooled.shape[1], out.logits.shape[1])


def run(method, student, teacher):
    return method(student, teacher, torch.zeros(student.logits.shape[0], dtype=torch.long))


STEM = torch.zeros(2, 1, 1, 1)  # AB leaves the stem out; its value must not matter


# ---------------------------------------------------------------- FSP


def fsp_example():
    # maps 0 and 1 at 2x2, map 2 at 1x1 (map 1 is average-pooled to 1x1 for the pair 1 -> 2)
    student = output(
        [[[[1.0, 2.0], [3.0, 4.0]]]],
        [[[[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 2.0]]]],
        [[[[4.0]]]],
    )
    teacher = output(torch.ones(1, 1, 2, 2), torch.ones(1, 2, 2, 2), [[[[2.0]]]])
    return student, teacher


def test_fsp_known_value():
    student, teacher = fsp_example()
    method = build_method("fsp", shapes_of(student), shapes_of(teacher))
    # G[j, i] = sum over positions p of F1[i, p] F2[j, p] / (h w)
    # pair 0 -> 1, student: (1*1) / 4 = 0.25 and (2*4) / 4 = 2; teacher: 4/4 = 1 and 1
    pair01 = ((0.25 - 1) ** 2 + (2 - 1) ** 2) / 2
    # pair 1 -> 2: map 1 pooled to (0.25, 0.5); student 4 * (0.25, 0.5) = (1, 2); teacher 2 * (1, 1) = (2, 2)
    pair12 = ((1 - 2) ** 2 + (2 - 2) ** 2) / 2
    assert num(run(method, student, teacher)["fsp"]) == pytest.approx(pair01 + pair12, rel=1e-6)
    stage = method.init_stage(TinyNet())
    assert num(stage.loss(student, teacher)["fsp.init"]) == pytest.approx(pair01 + pair12, rel=1e-6)


def test_fsp_of_identical_features_is_zero_and_its_gradient_reaches_every_map():
    g = torch.Generator().manual_seed(0)
    maps = [torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 6, 4, 4, generator=g)]
    teacher = output(*maps)
    method = build_method("fsp", shapes_of(teacher), shapes_of(teacher))
    assert num(run(method, teacher, teacher)["fsp"]) == 0.0
    student = ModelOutput(teacher.logits, tuple((m + 0.1 * torch.randn(m.shape, generator=g)).requires_grad_() for m in maps),
                          teacher.pooled)
    loss = run(method, student, teacher)["fsp"]
    assert num(loss) > 0
    loss.backward()
    assert all(bool(f.grad.abs().sum() > 0) for f in student.features)


def test_fsp_needs_equal_channel_counts():
    student = ModelShapes(((4, 8, 8), (4, 8, 8), (8, 4, 4)), 8, 5)
    with pytest.raises(ValueError, match="same channel counts"):
        build_method("fsp", student, ModelShapes(((4, 8, 8), (8, 8, 8), (16, 4, 4)), 16, 5))
    method = build_method("fsp", student, student)
    good = output(torch.ones(2, 4, 8, 8), torch.ones(2, 4, 8, 8), torch.ones(2, 8, 4, 4))
    bad = output(torch.ones(2, 4, 8, 8), torch.ones(2, 4, 8, 8), torch.ones(2, 6, 4, 4))
    with pytest.raises(ValueError, match="FSP matrices of maps 1 -> 2 differ"):
        run(method, good, bad)
    with pytest.raises(ValueError, match="built for 3 feature maps"):
        run(method, output(torch.ones(2, 4, 8, 8), torch.ones(2, 4, 8, 8)), good)


# ---------------------------------------------------------------- AB


def test_ab_known_value_with_identity_connectors():
    # two stages of one 1x1 channel, a batch of 2; margin 1; layer weights 2^(k - K + 1) = (1/2, 1)
    student = output(STEM, [[[[0.5]]], [[[-2.0]]]], [[[[0.0]]], [[[3.0]]]])
    teacher = output(STEM, [[[[1.0]]], [[[-1.0]]]], [[[[0.0]]], [[[2.0]]]])
    method = build_method("ab", shapes_of(student), shapes_of(teacher))
    method.connectors = nn.ModuleList([nn.Identity(), nn.Identity()])
    # stage 1: t > 0: relu(1 - 0.5)^2 = 0.25; t <= 0: relu(1 + (-2))^2 = 0 -> 0.25 / 2 images
    # stage 2: t <= 0: relu(1 + 0)^2 = 1; t > 0: relu(1 - 3)^2 = 0 -> 1 / 2 images
    expected = (0.5 * 0.25 / 2 + 1.0 * 1.0 / 2) * 3 / 1000
    assert num(run(method, student, teacher)["ab"]) == pytest.approx(expected, rel=1e-6)
    assert num(method.init_stage(TinyNet()).loss(student, teacher)["ab.init"]) == pytest.approx(expected, rel=1e-6)
    assert num(build_method("ab", shapes_of(student), shapes_of(teacher), margin=2.0).ab_loss(student, teacher)) != expected


def test_ab_margin_loss_is_zero_when_the_boundaries_agree():
    g = torch.Generator().manual_seed(0)
    stem = torch.zeros(4, 1, 1, 1)
    t = torch.randn(4, 3, 4, 4, generator=g)
    beyond = torch.where(t > 0, 1.0 + torch.rand(t.shape, generator=g), -1.0 - torch.rand(t.shape, generator=g))
    teacher = output(stem, t.relu())  # post-ReLU teacher maps: the same boundaries as t
    method = build_method("ab", shapes_of(teacher), shapes_of(teacher))
    method.connectors = nn.ModuleList([nn.Identity()])
    assert num(method.ab_loss(output(stem, beyond), teacher)) == 0.0
    assert num(method.ab_loss(output(stem, beyond), output(stem, t))) == 0.0
    inside = beyond * 0.5  # on the right side, but within the margin: penalised
    assert num(method.ab_loss(output(stem, inside), teacher)) > 0


def test_ab_gradients_reach_the_connectors_and_the_student_maps():
    g = torch.Generator().manual_seed(1)
    student = ModelOutput(torch.zeros(3, 2), (torch.randn(3, 2, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g).relu().requires_grad_(),
                                              torch.randn(3, 8, 4, 4, generator=g).relu().requires_grad_()), torch.zeros(3, 1))
    teacher = output(torch.randn(3, 2, 8, 8, generator=g), torch.randn(3, 6, 8, 8, generator=g), torch.randn(3, 12, 4, 4, generator=g))
    method = build_method("ab", shapes_of(student), shapes_of(teacher))
    loss = run(method, student, teacher)["ab"]
    loss.backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in method.connectors.parameters())
    assert all(bool(f.grad.abs().sum() > 0) for f in student.features[1:])


def test_ab_bad_shapes_are_clear_errors():
    student = ModelShapes(((2, 8, 8), (4, 8, 8), (8, 4, 4)), 8, 5)
    with pytest.raises(ValueError, match="student has 2 stages after the stem and the teacher 1"):
        build_method("ab", student, ModelShapes(((2, 8, 8), (4, 8, 8)), 4, 5))
    with pytest.raises(ValueError, match="ab: cannot connect"):
        build_method("ab", ModelShapes(((2, 8, 8), (4, 2, 2)), 4, 5), ModelShapes(((2, 8, 8), (4, 8, 8)), 4, 5))
    method = build_method("ab", student, student)
    good = output(torch.ones(2, 2, 8, 8), torch.ones(2, 4, 8, 8), torch.ones(2, 8, 4, 4))
    with pytest.raises(ValueError, match="connector built for student maps"):
        run(method, output(torch.ones(2, 2, 8, 8), torch.ones(2, 4, 8, 8), torch.ones(2, 8, 2, 2)), good)
    with pytest.raises(ValueError, match="batch sizes differ"):
        run(method, good, output(torch.ones(3, 2, 8, 8), torch.ones(3, 4, 8, 8), torch.ones(3, 8, 4, 4)))


# ---------------------------------------------------------------- FT


def test_ft_known_value_with_identity_translator_and_encoder():
    # a(F) = normalise(channel mean of F^2): student (4 + 0, 0 + 0) / 2 = (2, 0) -> (1, 0);
    # teacher (1, 1) -> (1/sqrt2, 1/sqrt2); mean |difference| = (1 - 1/sqrt2 + 1/sqrt2) / 2 = 1/2
    student = output([[[[2.0, 0.0]], [[0.0, 0.0]]]])
    teacher = output([[[[1.0, 1.0]], [[1.0, 1.0]]]])
    method = build_method("ft", shapes_of(student), shapes_of(teacher))
    method.translator, method.paraphraser.encoder = nn.Identity(), nn.Identity()
    assert num(run(method, student, teacher)["ft"]) == pytest.approx(0.5, rel=1e-6)
    # reconstruction: with decoder = ReLU the teacher map (1, -1) comes back as (1, 0): MSE (0 + 1) / 2
    method.paraphraser.decoder = nn.ReLU()
    negative = output([[[[1.0, -1.0]], [[1.0, -1.0]]]])
    assert num(method.init_stage(TinyNet()).loss(student, negative)["ft.init"]) == pytest.approx(0.5, rel=1e-6)


def test_ft_modules_follow_the_reference_and_gradients_reach_the_translator_not_the_paraphraser():
    student_shapes = ModelShapes(((4, 8, 8), (6, 4, 4)), 6, 5)
    teacher_shapes = ModelShapes(((4, 8, 8), (12, 2, 2)), 12, 5)
    method = build_method("ft", student_shapes, teacher_shapes)
    convs = [m for m in method.paraphraser.modules() if isinstance(m, nn.Conv2d | nn.ConvTranspose2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(12, 12), (12, 6), (6, 6), (6, 6), (6, 12), (12, 12)]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in method.paraphraser.modules())
    assert [(c.in_channels, c.out_channels) for c in method.translator if isinstance(c, nn.Conv2d)] == [(6, 6), (6, 6), (6, 6)]
    g = torch.Generator().manual_seed(0)
    f_s = torch.randn(3, 6, 4, 4, generator=g).requires_grad_()
    student = ModelOutput(torch.zeros(3, 5), (torch.zeros(3, 4, 8, 8), f_s), torch.zeros(3, 6))
    teacher = output(torch.zeros(3, 4, 8, 8), torch.randn(3, 12, 2, 2, generator=g).relu())
    loss = run(method, student, teacher)["ft"]  # the 4x4 student factor is pooled to the teacher's 2x2
    loss.backward()
    assert bool(f_s.grad.abs().sum() > 0)
    assert all(p.grad is not None for p in method.translator.parameters())
    assert all(p.grad is None for p in method.paraphraser.parameters())
    stage = method.init_stage(TinyNet())
    stage.loss(student, teacher)["ft.init"].backward()
    assert all(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in method.paraphraser.parameters())
    assert stage.lr == 0.01 and stage.frozen_parameters() == list(method.paraphraser.parameters())


def test_ft_bad_shapes_are_clear_errors():
    shapes = ModelShapes(((4, 8, 8), (6, 4, 4)), 6, 5)
    method = build_method("ft", shapes, shapes)
    good = output(torch.ones(2, 4, 8, 8), torch.ones(2, 6, 4, 4))
    with pytest.raises(ValueError, match="ft was built for last feature maps"):
        run(method, good, output(torch.ones(2, 4, 8, 8), torch.ones(2, 5, 4, 4)))
    with pytest.raises(ValueError, match="ft: rate"):
        build_method("ft", shapes, shapes, rate=0.1)
    with pytest.raises(ValueError, match="needs the teacher's outputs"):
        run(method, good, None)


# ---------------------------------------------------------------- the stage interface


def test_init_stage_length_validation_and_gathering():
    stage = build_method("fsp", ModelShapes(((8, 8, 8), (16, 4, 4)), 16, 4), ModelShapes(((8, 8, 8), (16, 4, 4)), 16, 4)).init_stage(TinyNet())
    assert (stage.epochs(240), stage.epochs(8), stage.epochs(1)) == (30, 1, 1)  # 30 of 240, at least one
    with pytest.raises(ValueError, match="fraction"):
        InitStage(modules=(nn.Linear(1, 1),), loss=lambda s, t: {}, fraction=0.0)
    shapes = ModelShapes(((8, 8, 8), (16, 4, 4)), 16, 4)
    assert Objective({"ce": 1.0, "kd": 1.0}, shapes, shapes).init_stage(TinyNet()) is None
    student = TinyNet()
    both = Objective({"ce": 1.0, "ab": 1.0, "fsp": 1.0}, shapes, shapes).init_stage(student)
    ab = Objective({"ab": 1.0}, shapes, shapes)
    features = {id(p) for p in [*student.stem.parameters(), *student.stage.parameters()]}
    trained = [id(p) for p in both.parameters()]
    assert len(trained) == len(set(trained))  # the feature layers both stages train are counted once
    assert features <= set(trained) and not {id(p) for p in student.classifier.parameters()} & set(trained)
    assert len(trained) == len(features) + 2 * 2  # + AB's connector: a conv (weight, bias) and a BN (weight, bias)
    g = torch.Generator().manual_seed(0)
    out = output(torch.randn(2, 8, 8, 8, generator=g).relu(), torch.randn(2, 16, 4, 4, generator=g).relu())
    assert set(both.loss(out, out)) == {"ab.init", "fsp.init"}
    assert len(ab.init_stage(student).frozen_parameters()) == len(list(ab.methods["ab"].connectors.parameters()))
    with pytest.raises(ValueError, match="differ in"):
        Objective({"ab": 1.0, "ft": 1.0}, shapes, shapes).init_stage(student)  # FT's stage runs at lr 0.01
    with pytest.raises(ValueError, match="no 'classifier'"):
        build_method("fsp", shapes, shapes).init_stage(nn.Sequential(nn.Linear(1, 1)))


# ---------------------------------------------------------------- the stage in the training loop


def make_models(teacher_width: int = 8):
    torch.manual_seed(100)
    teacher = TinyNet(width=teacher_width)
    torch.manual_seed(0)
    return TinyNet(), teacher


def config(method: str, **overrides) -> TrainConfig:
    # 4 main epochs, init_fraction 1/2: 2 initialisation-stage epochs first
    options = {method: {"init_fraction": 0.5}}
    base = dict(method=method, weights=method_weights(method), method_options=options, model="tiny", teacher="tiny",
                epochs=4, batch_size=32, milestones=(2,))
    return TrainConfig(**{**base, **overrides})


def files(out) -> RunOptions:
    """Checkpoints under ``out/checkpoints/run/``, the record in ``out/results/``."""
    return RunOptions(out=out, progress=False)


def checkpoint(out, name="last.pt"):
    return out / "checkpoints" / "run" / name


def states(module: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


@pytest.mark.parametrize("method", ["ab", "fsp", "ft"])
def test_stage_epochs_come_first_and_train_only_the_stages_modules(tmp_path, method):
    data, test = NoisyBlobs(96, seed=0), NoisyBlobs(64, seed=1)
    student, teacher = make_models()
    initial = states(student)
    snapshots = []  # (student weights, objective weights) after each epoch

    def snapshot(entry):
        snapshots.append((states(student), load_checkpoint(checkpoint(tmp_path, "last.pt"))["objective"]))

    record = train(config(method), student, data, test, teacher, how=files(tmp_path), on_epoch_end=snapshot)
    assert [(e.get("stage", "main"), e["epoch"]) for e in record.history] == [
        ("init", 1), ("init", 2), ("main", 1), ("main", 2), ("main", 3), ("main", 4)]
    assert set(record.history[0]["terms"]) == {f"{method}.init"}
    assert record.history[0]["lr"] == (0.01 if method == "ft" else 0.05)
    assert record.history[2]["lr"] == 0.05 and record.history[4]["lr"] == pytest.approx(0.005)  # the main schedule alone
    main = record.history[2:]
    assert record.best_top1 == max(e["test_top1"] for e in main) and 1 <= record.best_epoch <= 4
    assert record.last_top1 == main[-1]["test_top1"]
    assert load_checkpoint(checkpoint(tmp_path, "last.pt"))["epoch"] == 4
    best = load_checkpoint(checkpoint(tmp_path, "best.pt"))
    assert best["epoch"] == record.best_epoch and len(best["history"]) == 2 + record.best_epoch

    after_stage, objective_after_stage = snapshots[1]
    classifier = {k for k in initial if k.startswith("classifier.")}
    if method == "ft":  # the student is untouched by FT's stage (in eval mode: its BatchNorm statistics too)
        assert changed(initial, after_stage) == set()
    else:  # AB and FSP train the feature layers, never the classifier
        assert changed(initial, after_stage) & classifier == set()
        assert changed(initial, after_stage) >= {k for k in initial if k.startswith(("stem.0", "stage.0"))}
    assert changed(after_stage, snapshots[-1][0]) >= classifier  # the main epochs train the classifier
    objective_end = load_checkpoint(checkpoint(tmp_path, "last.pt"))["objective"]
    frozen = {"ab": "connectors.", "ft": "paraphraser.", "fsp": None}[method]
    if frozen is not None:  # trained in the stage, then frozen: not one value changes in the main epochs
        keys = {k for k in objective_end if k.startswith(f"methods.{method}.{frozen}")}
        assert keys and changed({k: snapshots[0][1][k] for k in keys}, objective_after_stage)  # stage epoch 1 -> 2
        assert changed({k: objective_after_stage[k] for k in keys}, objective_end) == set()
    if method == "ft":  # the translator trains in the main epochs only
        keys = {k for k in objective_end if k.startswith("methods.ft.translator.")}
        assert keys
        assert changed({k: snapshots[0][1][k] for k in keys}, objective_after_stage) == set()
        assert changed({k: objective_after_stage[k] for k in keys}, objective_end)


class Killed(Exception):
    pass


@pytest.mark.parametrize("method, kill_after", [("ab", 1), ("ab", 2), ("ft", 1), ("fsp", 2)])
def test_a_run_killed_during_the_stage_resumes_exactly(tmp_path, method, kill_after):
    """kill_after = 1: in the middle of the stage; 2: right after its last epoch (the freeze comes on resume)."""
    data, test = NoisyBlobs(96, seed=0), NoisyBlobs(64, seed=1)
    student, teacher = make_models()
    straight = train(config(method), student, data, test, teacher, how=files(tmp_path / "a"))

    def kill(entry):
        if entry.get("stage") == "init" and entry["epoch"] == kill_after:
            raise Killed

    student_b, teacher_b = make_models()
    with pytest.raises(Killed):
        train(config(method), student_b, data, test, teacher_b, how=files(tmp_path / "b"), on_epoch_end=kill)
    state = load_checkpoint(checkpoint(tmp_path / "b", "last.pt"))
    assert state["epoch"] == 0 and len(state["history"]) == kill_after and "stage_optimizer" in state
    assert not (checkpoint(tmp_path / "b", "best.pt")).exists()  # no main epoch yet: no best weights
    student_c, teacher_c = make_models()
    with torch.no_grad():  # different weights: the checkpoint must overwrite them
        for parameter in student_c.parameters():
            parameter.add_(1.0)
    torch.manual_seed(999)  # another global RNG state: the checkpoint must restore it
    resumed = train(config(method), student_c, data, test, teacher_c, how=files(tmp_path / "b"))

    assert without_machine_fields(resumed.history) == without_machine_fields(straight.history)
    assert resumed.segments[1]["from_stage_epoch"] == kill_after and resumed.segments[1]["from_epoch"] == 0
    for (name, a), (_, b) in zip(student.state_dict().items(), student_c.state_dict().items()):
        assert torch.equal(a, b), name
    a_state, c_state = load_checkpoint(checkpoint(tmp_path / "a", "last.pt")), load_checkpoint(checkpoint(tmp_path / "b", "last.pt"))
    for name, value in a_state["objective"].items():
        assert torch.equal(value, c_state["objective"][name]), name


def test_stage_epochs_read_orders_the_main_epochs_never_use():
    from icd_lib.data.seeds import derive_seed

    data = RecordingBlobs(64)
    student, teacher = make_models()
    train(config("fsp", epochs=2, milestones=(1,), batch_size=16, method_options={"fsp": {"init_fraction": 0.5}}),
          student, data, NoisyBlobs(32, seed=1), teacher, RunOptions(progress=False))
    order = lambda epoch: torch.randperm(64, generator=torch.Generator().manual_seed(derive_seed(0, epoch))).tolist()  # noqa: E731
    # one stage epoch (half of 2) reads loader epoch 2 + 0; the main epochs read 0 and 1, as without a stage
    assert data.visited == order(2) + order(0) + order(1)


def test_a_method_without_a_stage_trains_as_before(tmp_path):
    data, test = NoisyBlobs(96, seed=0), NoisyBlobs(64, seed=1)
    student, teacher = make_models()
    record = train(TrainConfig(method="at", weights=method_weights("at"), model="tiny", teacher="tiny", epochs=2,
                               batch_size=32, milestones=(1,)), student, data, test, teacher, how=files(tmp_path))
    assert [e["epoch"] for e in record.history] == [1, 2] and all("stage" not in e for e in record.history)
    assert "from_stage_epoch" not in record.segments[0]
    state = load_checkpoint(checkpoint(tmp_path, "last.pt"))
    assert "stage_optimizer" not in state and state["epoch"] == 2
    assert all(p.requires_grad for p in student.parameters())
