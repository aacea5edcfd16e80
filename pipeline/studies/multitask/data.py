"""The multitasking environment (Pyle et al. 2023): stimuli of one-hot input groups, tasks that copy
an input group's feature into an output group, and the (stimulus, task set) samples of a curriculum."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MultitaskEnv:
    n_input_groups: int = 4
    n_features: int = 3
    n_output_groups: int = 3

    @property
    def tasks(self) -> list[tuple[int, int]]:
        return [(i, o) for i in range(self.n_input_groups) for o in range(self.n_output_groups)]

    @property
    def n_tasks(self) -> int:
        return self.n_input_groups * self.n_output_groups

    @property
    def n_inputs(self) -> int:
        return self.n_input_groups * self.n_features

    @property
    def n_outputs(self) -> int:
        return self.n_output_groups * self.n_features

    @property
    def stimuli(self) -> np.ndarray:
        """(n_features^n_input_groups, n_input_groups): the feature of each input group."""
        return np.array(list(itertools.product(range(self.n_features), repeat=self.n_input_groups)))

    def task_sets(self, sizes) -> list[tuple[int, ...]]:
        """Sets of tasks performed at once: distinct input groups and distinct output groups."""
        tasks, out = self.tasks, []
        for size in sizes:
            for combo in itertools.combinations(range(len(tasks)), int(size)):
                ins = {tasks[c][0] for c in combo}
                outs = {tasks[c][1] for c in combo}
                if len(ins) == size and len(outs) == size:
                    out.append(combo)
        return out

    def set_label(self, combo: tuple[int, ...]) -> str:
        """``in2>out0`` for one task, ``in0>out1+in3>out2`` for concurrent ones."""
        return "+".join(f"in{self.tasks[c][0]}>out{self.tasks[c][1]}" for c in combo)

    def dataset(self, sets, stimulus_index) -> TaskData:
        stimuli = self.stimuli
        sets = list(sets)
        stimulus_index = np.asarray(stimulus_index)
        n = len(sets) * len(stimulus_index)
        x = np.zeros((n, self.n_inputs))
        t = np.zeros((n, self.n_tasks))
        y = np.zeros((n, self.n_outputs))
        set_id = np.repeat(np.arange(len(sets)), len(stimulus_index))
        stim = np.tile(stimulus_index, len(sets))
        rows = np.arange(n)
        for g in range(self.n_input_groups):
            x[rows, g * self.n_features + stimuli[stim, g]] = 1.0
        for r, (s, si) in enumerate(zip(set_id, stim)):
            for c in sets[s]:
                i, o = self.tasks[c]
                t[r, c] = 1.0
                y[r, o * self.n_features + stimuli[si, i]] = 1.0
        return TaskData(x, t, y, set_id, stim, [self.set_label(s) for s in sets], [tuple(s) for s in sets])


@dataclass
class TaskData:
    x: np.ndarray  # (N, n_inputs) stimulus one-hots
    t: np.ndarray  # (N, n_tasks) task units
    y: np.ndarray  # (N, n_outputs) targets
    set_id: np.ndarray  # (N,) index into set_labels
    stimulus: np.ndarray  # (N,) stimulus index
    set_labels: list[str]
    sets: list[tuple[int, ...]]

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, index) -> TaskData:
        index = np.asarray(index)
        return TaskData(
            self.x[index],
            self.t[index],
            self.y[index],
            self.set_id[index],
            self.stimulus[index],
            self.set_labels,
            self.sets,
        )

    @property
    def labels(self) -> np.ndarray:
        return np.array(self.set_labels, dtype=object)[self.set_id]

    @property
    def set_sizes(self) -> np.ndarray:
        """Number of tasks performed at once, per sample."""
        return self.t.sum(1).astype(np.int64)
