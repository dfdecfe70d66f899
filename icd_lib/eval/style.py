"""Style sensitivity: how much a model's prediction moves when only the style of an image changes.

On the content/style dataset every image is a real content (a garment, a digit) drawn in a
generated style (colour, texture, position, scale). An intervention re-renders the same content
under a freshly drawn style (what ``dataset.render(index, dataset.sample_style())`` does for one
image; here whole batches are rendered at once): a model that relies on the content, not on the
style, should barely change its output.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from icd_lib.data.content_style import PALETTE, ContentStyleDataset, draw_styles, render_images
from icd_lib.data.transforms import normalize
from icd_lib.eval.metrics import evaluation_mode, model_device


def restyled_images(dataset: ContentStyleDataset, indices: Tensor, generator: torch.Generator) -> Tensor:
    """Items ``indices`` (n,) each under a fresh random-mode style: (n, 3, 32, 32) normalised."""
    styles = draw_styles(torch.randint(0, len(PALETTE), indices.shape, generator=generator), generator)
    return normalize(render_images(dataset.content[indices], styles), dataset.mean, dataset.std)


@torch.no_grad()
def style_sensitivity(
    model: nn.Module,
    dataset: ContentStyleDataset,
    n_interventions: int = 4,
    num_items: int | None = 1000,
    seed: int = 0,
    batch_size: int = 256,
) -> dict[str, float]:
    """Compare the model's softmax on each item with its softmax on ``n_interventions`` restyled copies.

    num_items: items drawn at random (with ``seed``) from the dataset; None: all of them.
    Returns, over all (item, new style) pairs:
      ``flip_rate``:   fraction whose top-1 prediction changes (0 = style-invariant);
      ``tv_distance``: mean total-variation distance 0.5 * sum_c |p_c - q_c| between the softmax
                       outputs p (as stored) and q (restyled): 0 = identical, 1 = disjoint;
      ``top1_original`` / ``top1_intervened``: accuracy (%) on the items as stored / restyled.
    """
    if not isinstance(dataset, ContentStyleDataset):
        raise TypeError(f"style_sensitivity needs a ContentStyleDataset, got {type(dataset).__name__}")
    if n_interventions < 1:
        raise ValueError(f"n_interventions must be at least 1, got {n_interventions}")
    generator = torch.Generator().manual_seed(seed)
    count = len(dataset) if num_items is None else min(num_items, len(dataset))
    items = torch.randperm(len(dataset), generator=generator)[:count]
    pairs = items.repeat_interleave(n_interventions)  # item of each (item, new style) pair

    device = model_device(model)

    def softmax(images: Tensor) -> Tensor:
        return model(images.to(device)).double().softmax(dim=1).cpu()

    with evaluation_mode(model):
        p = torch.cat([softmax(normalize(dataset.images[c], dataset.mean, dataset.std)) for c in items.split(batch_size)])
        q = torch.cat([softmax(restyled_images(dataset, c, generator)) for c in pairs.split(batch_size)])
    p = p.repeat_interleave(n_interventions, dim=0)
    labels = dataset.labels[pairs]
    return {
        "flip_rate": float((p.argmax(1) != q.argmax(1)).double().mean()),
        "tv_distance": float(0.5 * (p - q).abs().sum(1).mean()),
        "top1_original": 100.0 * float((p.argmax(1) == labels).double().mean()),
        "top1_intervened": 100.0 * float((q.argmax(1) == labels).double().mean()),
    }
