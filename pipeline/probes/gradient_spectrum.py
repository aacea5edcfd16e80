"""Gradient spectra by group (spectral introspection; Baker, Calhoun & Plis 2024).

For every weight matrix of the model: the gradient of a fixed, class-stratified measured batch,
split by a grouping of its samples (class, prediction, correct, or a label column a study
supplies), summarised by its singular values and effective rank. The group gradients add up to
the batch gradient exactly, so the network is measured in evaluation mode. What is measured,
the records' columns, the schedule and the costs: docs/companion_spectra_dense.md.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import pandas as pd
import torch
from torch import nn

from .base import Probe, ProbeContext
from .schedule import Schedule

GROUPINGS = ("class", "prediction", "correct")
KINDS = ("gradient", "activation", "delta")
COLUMNS = ("epoch", "layer", "layer_kind", "group_by", "group", "n_samples", "kind", "stat", "index", "value")


def rank_tolerance(s, shape, dtype=torch.float32) -> float:
    """The numerical-rank tolerance of ``torch.linalg.matrix_rank``: s_max * max(m, n) * eps(dtype)."""
    s = np.asarray(s, dtype=np.float64)
    return float(s.max()) * max(shape) * torch.finfo(dtype).eps if s.size else 0.0


def effective_rank(singular_values, tol: float = 0.0) -> float:
    """exp(Shannon entropy of p = s / sum(s)) over the singular values above ``tol`` (Roy & Vetterli 2007).

    The probe passes ``rank_tolerance`` for the model's dtype, so that rounding
    noise of a float32 gradient (singular values ~1e-7 of the largest, in
    every remaining direction) does not count as rank.
    """
    s = np.asarray(singular_values, dtype=np.float64)
    s = s[s > max(tol, 0.0)]
    if s.size == 0:
        return 0.0
    p = s / s.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def svdvals(matrix: torch.Tensor) -> torch.Tensor:
    """Singular values (descending) in float64."""
    return torch.linalg.svdvals(matrix.detach().to(torch.float64))


def product_svdvals(delta: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
    """Singular values of delta^T @ act (rows = samples) without forming it: with thin QRs
    delta^T = Q1 R1 and act^T = Q2 R2, delta^T act = Q1 (R1 R2^T) Q2^T, whose nonzero
    singular values are those of the small (rows x rows) matrix R1 R2^T."""
    _, r1 = torch.linalg.qr(delta.detach().to(torch.float64).T)
    _, r2 = torch.linalg.qr(act.detach().to(torch.float64).T)
    return torch.linalg.svdvals(r1 @ r2.T)


def weight_matrices(model: nn.Module) -> list[tuple[str, str, nn.Module, torch.Tensor]]:
    """(name, kind, module, parameter) of every weight matrix the probe measures, in module order."""
    out: list[tuple[str, str, nn.Module, torch.Tensor]] = []
    for module_name, module in model.named_modules():
        prefix = f"{module_name}." if module_name else ""
        if isinstance(module, nn.Linear):
            out.append((f"{prefix}weight", "linear", module, module.weight))
        elif isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            out.append((f"{prefix}weight", "conv", module, module.weight))
        elif isinstance(module, nn.RNNBase):
            family = {"LSTM": "lstm", "GRU": "gru"}.get(module.mode, "rnn")
            for pname, param in module.named_parameters(recurse=False):
                if pname.startswith("weight_ih") or pname.startswith("weight_hh"):
                    part = "ih" if pname.startswith("weight_ih") else "hh"
                    out.append((f"{prefix}{pname}", f"{family}_{part}", module, param))
    return out


def _logits(output) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


@contextlib.contextmanager
def evaluation_mode(model: nn.Module):
    """Every module in eval mode (restored afterwards); cuDNN off so recurrent backward works on CUDA."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.backends.cudnn.flags(enabled=False):
            yield
    finally:
        for module, mode in modes:
            module.train(mode)


def stratified_subset(y: np.ndarray, size: int) -> np.ndarray:
    """The first ``size // n_classes`` indices of each class (training-set order), sorted."""
    classes = np.unique(y)
    per_class = max(1, int(size) // len(classes))
    picks = [np.flatnonzero(y == c)[:per_class] for c in classes]
    return np.sort(np.concatenate(picks))


class GroupGradients:
    """Forward once, backward once per group: exact group gradients, and linear-layer A_g, Delta_g."""

    def __init__(self, model: nn.Module, layers: list[str] | None = None):
        self.model = model
        self.matrices = [m for m in weight_matrices(model) if layers is None or m[0] in layers]
        if layers is not None:
            missing = sorted(set(layers) - {m[0] for m in self.matrices})
            if missing:
                allowed = ", ".join(m[0] for m in weight_matrices(model))
                raise ValueError(f"probe.gradient_spectrum.layers has {missing}; allowed: {allowed}")

    def compute(self, x: torch.Tensor, y: torch.Tensor, groups: np.ndarray, want_linear: bool = True) -> dict:
        """{"groups": names, "logits", "gradients": {group: {layer: G}}, "activations", "deltas"}.

        ``groups``: one label per sample (any hashable); group order is sorted.
        Gradients are 2-D (rows = output units); activations / deltas are
        (rows, features) per linear layer, rows of the group's samples only.
        """
        linear = {mod: name for name, kind, mod, _ in self.matrices if kind == "linear"} if want_linear else {}
        captured: dict[str, list] = {name: [] for name in linear.values()}

        def hook(module, inputs, output):
            captured[linear[module]].append((inputs[0], output))

        handles = [mod.register_forward_hook(hook) for mod in linear]
        try:
            with torch.enable_grad():
                logits = _logits(self.model(x))
        finally:
            for h in handles:
                h.remove()
        n = len(y)
        losses = nn.functional.cross_entropy(logits, y, reduction="none") / n
        params = [p for *_, p in self.matrices]
        outputs = [(name, out) for name, calls in captured.items() for _, out in calls]
        names = sorted(set(groups.tolist()), key=lambda g: (str(type(g)), g))
        gradients, activations, deltas = {}, {}, {}
        for gi, group in enumerate(names):
            mask = torch.as_tensor(groups == group, device=logits.device)
            loss_g = losses[mask].sum()
            grads = torch.autograd.grad(
                loss_g, params + [o for _, o in outputs], retain_graph=gi < len(names) - 1, allow_unused=True
            )
            gradients[group] = {
                name: (g if g is not None else torch.zeros_like(p)).detach().reshape(p.shape[0], -1)
                for (name, _, _, p), g in zip(self.matrices, grads)
            }
            if linear:
                sample_mask = mask
                acts: dict[str, list[torch.Tensor]] = {}
                dels: dict[str, list[torch.Tensor]] = {}
                for (name, out), d in zip(outputs, grads[len(params) :]):
                    call = [c for c in captured[name] if c[1] is out][0]
                    a = call[0].detach()[sample_mask]
                    d = (d if d is not None else torch.zeros_like(out)).detach()[sample_mask]
                    acts.setdefault(name, []).append(a.reshape(-1, a.shape[-1]))
                    dels.setdefault(name, []).append(d.reshape(-1, d.shape[-1]))
                activations[group] = {k: torch.cat(v) for k, v in acts.items()}
                deltas[group] = {k: torch.cat(v) for k, v in dels.items()}
        return {
            "groups": names,
            "logits": logits.detach(),
            "gradients": gradients,
            "activations": activations,
            "deltas": deltas,
        }


class GradientSpectrumProbe(Probe):
    name = "gradient_spectrum"
    table = "gradient_spectrum"
    needs_training_pass_states = False

    def __init__(
        self,
        group_by: str = "class",
        batch_size: int = 256,
        top_k: int = 8,
        kinds=KINDS,
        layers=None,
        schedule: str = "log",
        per_decade: float = 5.0,
        epochs=None,
        include_all: bool = True,
        at_init: bool = False,
    ):
        if not isinstance(group_by, str) or not group_by:
            raise ValueError(
                f"probe.gradient_spectrum.group_by={group_by!r}; allowed: "
                f"{', '.join(GROUPINGS)} or a label column the study supplies"
            )
        bad = set(kinds) - set(KINDS)
        if bad or not kinds:
            raise ValueError(f"probe.gradient_spectrum.kinds has {sorted(bad)}; allowed: {', '.join(KINDS)}")
        for key, value in (("batch_size", batch_size), ("top_k", top_k)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"probe.gradient_spectrum.{key}={value!r}: must be an integer >= 1")
        self.group_by, self.batch_size, self.top_k = group_by, int(batch_size), int(top_k)
        self.kinds = tuple(k for k in KINDS if k in kinds)
        self.layers = list(layers) if layers else None
        self.include_all = bool(include_all)
        if not isinstance(at_init, bool):
            raise ValueError(f"probe.gradient_spectrum.at_init={at_init!r}: must be true or false")
        self.at_init = at_init
        self.schedule = Schedule(schedule, per_decade, epochs, owner="probe.gradient_spectrum")
        self.label_columns: dict[str, np.ndarray] = {}
        self._subset: np.ndarray | None = None
        self._subset_key: tuple[int, int] | None = None

    def set_label_column(self, name: str, values) -> None:
        """A grouping of the training set's samples (one label per row of x_train) a study supplies."""
        self.label_columns[str(name)] = np.asarray(values)

    # -- pieces -------------------------------------------------------------
    def measured_index(self, y_train: torch.Tensor) -> np.ndarray:
        key = (y_train.data_ptr(), len(y_train))
        if self._subset is None or self._subset_key != key:
            self._subset = stratified_subset(y_train.cpu().numpy(), self.batch_size)
            self._subset_key = key
        return self._subset

    def group_labels(self, index: np.ndarray, y: torch.Tensor, logits_fn) -> np.ndarray:
        if self.group_by == "class":
            return y.cpu().numpy()
        if self.group_by in ("prediction", "correct"):
            pred = logits_fn().argmax(1).cpu().numpy()
            if self.group_by == "prediction":
                return pred
            return np.where(pred == y.cpu().numpy(), "correct", "incorrect")
        if self.group_by not in self.label_columns:
            available = ", ".join([*GROUPINGS, *self.label_columns]) or "none"
            raise ValueError(
                f"probe.gradient_spectrum.group_by={self.group_by!r} is not a grouping of this "
                f"run; available: {available}"
            )
        return self.label_columns[self.group_by][index]

    def _rows(
        self,
        epoch,
        layer,
        kind_of_layer,
        group,
        n,
        kind,
        matrix: torch.Tensor | None,
        factors: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> list[tuple]:
        shape: tuple[int, ...]
        if matrix is not None:
            s, shape, dtype = svdvals(matrix).cpu().numpy(), tuple(matrix.shape), matrix.dtype
        else:
            assert factors is not None, "a matrix or its two factors"
            s = product_svdvals(*factors).cpu().numpy()
            shape, dtype = (factors[0].shape[1], factors[1].shape[1]), factors[0].dtype
        tol = rank_tolerance(s, shape, dtype)
        rows = [
            (epoch, layer, kind_of_layer, self.group_by, group, n, kind, "sv", i + 1, float(v))
            for i, v in enumerate(s[: self.top_k])
        ]
        rows.append(
            (epoch, layer, kind_of_layer, self.group_by, group, n, kind, "effective_rank", 0, effective_rank(s, tol))
        )
        rows.append(
            (
                epoch,
                layer,
                kind_of_layer,
                self.group_by,
                group,
                n,
                kind,
                "frobenius",
                0,
                float(math.sqrt(float((s**2).sum()))),
            )
        )
        return rows

    # -- the probe ----------------------------------------------------------
    def measure(self, ctx: ProbeContext) -> pd.DataFrame:
        if not self.schedule.due(int(ctx.epoch)):
            return self.empty()
        return self.compute(ctx)

    def compute(self, ctx: ProbeContext) -> pd.DataFrame:
        """Measure now, whatever the schedule."""
        index = self.measured_index(ctx.y_train)
        sel = torch.as_tensor(index, device=ctx.x_train.device)
        x, y = ctx.x_train[sel], ctx.y_train[sel]
        engine = GroupGradients(ctx.model, self.layers)
        with evaluation_mode(ctx.model):

            def logits_fn():
                with torch.no_grad():
                    return _logits(ctx.model(x))

            groups = self.group_labels(index, y, logits_fn)
            result = engine.compute(x, y, groups, want_linear="activation" in self.kinds or "delta" in self.kinds)
        epoch = int(ctx.epoch)
        kinds_of = {name: kind for name, kind, *_ in engine.matrices}
        rows: list[tuple] = []
        names = result["groups"]
        counts = {g: int((groups == g).sum()) for g in names}
        entries = [(str(g), counts[g], g) for g in names]
        if self.include_all:
            entries.append(("all", len(y), None))
        for label, n, g in entries:
            for layer, kind_of_layer in kinds_of.items():
                if "gradient" in self.kinds:
                    if g is None:
                        mat = sum(result["gradients"][h][layer] for h in names)
                    else:
                        mat = result["gradients"][g][layer]
                    factors = None
                    if kind_of_layer == "linear" and result["deltas"]:
                        # G_g = Delta_g^T A_g: the same singular values from two thin QRs
                        # when the group has fewer rows than the layer's dimensions
                        dl = (
                            result["deltas"][g][layer]
                            if g is not None
                            else torch.cat([result["deltas"][h][layer] for h in names])
                        )
                        ac = (
                            result["activations"][g][layer]
                            if g is not None
                            else torch.cat([result["activations"][h][layer] for h in names])
                        )
                        if len(dl) < min(mat.shape):
                            factors = (dl, ac)
                    rows += self._rows(epoch, layer, kind_of_layer, label, n, "gradient", mat, factors)
                if kind_of_layer != "linear":
                    continue
                for kind, key in (("activation", "activations"), ("delta", "deltas")):
                    if kind not in self.kinds:
                        continue
                    if g is None:
                        mat = torch.cat([result[key][h][layer] for h in names])
                    else:
                        mat = result[key][g][layer]
                    rows += self._rows(epoch, layer, kind_of_layer, label, n, kind, mat)
        return self._frame(rows)

    def empty(self) -> pd.DataFrame:
        return self._frame([])

    @staticmethod
    def _frame(rows) -> pd.DataFrame:
        frame = pd.DataFrame(rows, columns=list(COLUMNS))
        return frame.astype(
            {
                "epoch": np.int32,
                "n_samples": np.int32,
                "index": np.int32,
                "value": np.float64,
                "layer": str,
                "layer_kind": str,
                "group_by": str,
                "group": str,
                "kind": str,
                "stat": str,
            }
        )
