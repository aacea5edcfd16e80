"""Category structure per layer (dense-sample learning; Hanson, Yadav & Hanson 2024).

At each checkpoint, the representation of a fixed probe set in every probed layer, summarised
by how the classes are arranged there (class-mean and exemplar RDMs, between/within ratio,
correlation with the category model RDM, nearest-class-mean accuracy, a 2-D embedding).
The measures and records: docs/companion_spectra_dense.md.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from .base import Probe, ProbeContext
from .schedule import Schedule

COLUMNS = ("epoch", "layer", "layer_index", "measure", "a", "b", "value")
METRICS = ("euclidean", "correlation")


def probe_set_index(y: np.ndarray, per_class: int) -> np.ndarray:
    """The first ``per_class`` indices of every class, grouped by class (class order)."""
    return np.concatenate([np.flatnonzero(y == c)[:per_class] for c in np.unique(y)])


def layer_names(model: nn.Module, layers) -> list[str]:
    if layers in (None, "auto"):
        names = getattr(model, "probe_layers", None)
        return list(names) if names else [name for name, _ in model.named_children()]
    names = list(layers)
    known = dict(model.named_modules())
    missing = [n for n in names if n not in known]
    if missing:
        raise ValueError(f"probe.category_structure.layers has {missing}; allowed: {', '.join(n for n in known if n)}")
    return names


def representations(
    model: nn.Module, x: torch.Tensor, names: list[str], batch_size: int = 512
) -> dict[str, torch.Tensor]:
    """{layer: (n, features) float64 tensor} of the named modules' outputs, evaluation mode, no grad."""
    modules = dict(model.named_modules())
    store: dict[str, list[torch.Tensor]] = {n: [] for n in names}

    def make_hook(name, module):
        def hook(_module, _inputs, output):
            if isinstance(module, nn.RNNBase):
                seq = output[0]
                last = seq[:, -1] if module.batch_first else seq[-1]
                store[name].append(last.detach().reshape(len(last), -1))
            else:
                out = output[0] if isinstance(output, (tuple, list)) else output
                store[name].append(out.detach().reshape(out.shape[0], -1))

        return hook

    handles = [modules[n].register_forward_hook(make_hook(n, modules[n])) for n in names]
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                model(x[start : start + batch_size])
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes:
            m.train(mode)
    return {n: torch.cat(store[n]).to(torch.float64).cpu() for n in names}


# The numerics run in torch (float64, CPU), so that they use torch's thread
# setting (one thread per run in a sweep) rather than numpy's BLAS pool, which
# oversubscribes a shared machine.
def pairwise_distances(r: torch.Tensor, metric: str = "euclidean") -> torch.Tensor:
    r = torch.as_tensor(r, dtype=torch.float64)
    if metric == "correlation":
        z = r - r.mean(1, keepdim=True)
        norm = z.norm(dim=1, keepdim=True)
        z = torch.where(norm > 0, z / norm.clamp_min(1e-300), torch.zeros_like(z))
        return (1.0 - z @ z.T).clamp(0.0, 2.0)
    sq = (r * r).sum(1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (r @ r.T)
    d2.fill_diagonal_(0.0)
    return d2.clamp_min(0.0).sqrt()


def pca_2d(r: torch.Tensor, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores (n x 2) on the first two principal axes and their variance shares; sign convention above."""
    r = torch.as_tensor(r, dtype=torch.float64)
    z = r - r.mean(0, keepdim=True)
    gram = z @ z.T
    vals, vecs = torch.linalg.eigh(gram)
    vals, vecs = vals.flip(0)[:2].clamp_min(0.0), vecs.flip(1)[:, :2]
    scores = (vecs * vals.sqrt()[None, :]).numpy().copy()
    vals = vals.numpy()
    if scores.shape[1] < 2:
        scores = np.pad(scores, ((0, 0), (0, 2 - scores.shape[1])))
        vals = np.pad(vals, (0, 2 - len(vals)))
    first = labels == labels.min()
    for k in range(2):
        if scores[first, k].mean() > 0:
            scores[:, k] *= -1
    total = float(torch.trace(gram))
    share = vals / total if total > 0 else np.zeros(2)
    return scores, share


def category_measures(
    r: torch.Tensor, labels: np.ndarray, metric: str = "euclidean", embedding: bool = True
) -> list[tuple[str, int, int, float]]:
    """(measure, a, b, value) rows for one layer's representations ``r`` (n x d) of the probe set."""
    r = torch.as_tensor(r, dtype=torch.float64)
    classes = np.unique(labels)
    lab = torch.as_tensor(labels)
    rows = []
    masks = [lab == c for c in classes]
    means = torch.stack([r[m].mean(0) for m in masks])
    dm = pairwise_distances(means, metric).numpy()
    rows += [
        ("class_mean_rdm", int(a), int(b), float(dm[i, j]))
        for i, a in enumerate(classes)
        for j, b in enumerate(classes)
    ]
    d = pairwise_distances(r, metric).numpy()
    same = labels[:, None] == labels[None, :]
    off = ~np.eye(len(labels), dtype=bool)
    for a in classes:
        for b in classes:
            block = d[np.ix_(labels == a, labels == b)]
            if a == b:
                n = block.shape[0]
                value = block.sum() / (n * (n - 1)) if n > 1 else np.nan
            else:
                value = block.mean()
            rows.append(("exemplar_rdm", int(a), int(b), float(value)))
    within, between = d[same & off], d[~same]
    ratio = between.mean() / within.mean() if within.size and within.mean() > 0 else np.nan
    rows.append(("between_within_ratio", -1, -1, float(ratio)))
    upper = np.triu(off, 1)
    dv, mv = d[upper], (~same)[upper].astype(float)
    corr = np.corrcoef(dv, mv)[0, 1] if dv.std() > 0 and mv.std() > 0 else np.nan
    rows.append(("category_rdm_corr", -1, -1, float(corr)))
    # leave-one-out nearest class mean (Euclidean): the distance to one's own
    # class mean without oneself is n / (n - 1) times the distance to the mean
    sq = ((r * r).sum(1)[:, None] + (means * means).sum(1)[None, :] - 2 * r @ means.T).clamp_min(0).numpy()
    own = np.searchsorted(classes, labels)
    n_own = np.array([(labels == c).sum() for c in classes], dtype=float)[own]
    factor = np.where(n_own > 1, (n_own / np.maximum(n_own - 1, 1)) ** 2, np.inf)
    sq = sq.copy()
    sq[np.arange(len(labels)), own] *= factor
    rows.append(("ncm_accuracy", -1, -1, float((sq.argmin(1) == own).mean())))
    if embedding:
        scores, share = pca_2d(r, labels)
        rows += [("pca_explained", k + 1, -1, float(share[k])) for k in range(2)]
        for k in range(2):
            rows += [
                (f"embedding_{k + 1}", int(i), int(c), float(s)) for i, (c, s) in enumerate(zip(labels, scores[:, k]))
            ]
    return rows


class CategoryStructureProbe(Probe):
    name = "category_structure"
    table = "category_structure"
    needs_training_pass_states = False

    def __init__(
        self,
        per_class: int = 50,
        split: str = "test",
        layers="auto",
        include_input: bool = True,
        metric: str = "euclidean",
        embedding: bool = True,
        schedule: str = "every_epoch",
        per_decade: float = 5.0,
        epochs=None,
    ):
        if split not in ("train", "test"):
            raise ValueError(f"probe.category_structure.split={split!r}; allowed: train, test")
        if metric not in METRICS:
            raise ValueError(f"probe.category_structure.metric={metric!r}; allowed: {', '.join(METRICS)}")
        if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 2:
            raise ValueError(f"probe.category_structure.per_class={per_class!r}: must be an integer >= 2")
        self.per_class, self.split, self.layers = int(per_class), split, layers
        self.include_input, self.metric, self.embedding = bool(include_input), metric, bool(embedding)
        self.schedule = Schedule(schedule, per_decade, epochs, owner="probe.category_structure")
        self._index: np.ndarray | None = None
        self._key: tuple[int, int] | None = None

    def measure(self, ctx: ProbeContext) -> pd.DataFrame:
        if not self.schedule.due(int(ctx.epoch)):
            return self.empty()
        return self.compute(ctx)

    def probe_set(self, ctx: ProbeContext) -> tuple[torch.Tensor, np.ndarray]:
        x, y = (ctx.x_test, ctx.y_test) if self.split == "test" else (ctx.x_train, ctx.y_train)
        key = (y.data_ptr(), len(y))
        if self._index is None or self._key != key:
            self._index = probe_set_index(y.cpu().numpy(), self.per_class)
            self._key = key
        sel = torch.as_tensor(self._index, device=x.device)
        return x[sel], y.cpu().numpy()[self._index]

    def compute(self, ctx: ProbeContext) -> pd.DataFrame:
        """Measure now, whatever the schedule."""
        x, labels = self.probe_set(ctx)
        names = layer_names(ctx.model, self.layers)
        reps = representations(ctx.model, x, names)
        if self.include_input:
            reps = {"input": x.detach().reshape(len(x), -1).to(torch.float64).cpu(), **reps}
        rows = []
        offset = 0 if self.include_input else 1
        for index, (layer, r) in enumerate(reps.items()):
            for measure, a, b, value in category_measures(r, labels, self.metric, self.embedding):
                rows.append((int(ctx.epoch), layer, index + offset, measure, a, b, value))
        return self._frame(rows)

    def empty(self) -> pd.DataFrame:
        return self._frame([])

    @staticmethod
    def _frame(rows) -> pd.DataFrame:
        frame = pd.DataFrame(rows, columns=list(COLUMNS))
        return frame.astype(
            {
                "epoch": np.int32,
                "layer": str,
                "layer_index": np.int32,
                "measure": str,
                "a": np.int32,
                "b": np.int32,
                "value": np.float64,
            }
        )
