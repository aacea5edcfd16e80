"""The generated part of ``lcm --help``: the config groups with their options and defaults, and the keys.

Everything here is read from conf/ when the help is shown, so the help cannot fall behind the
configs: a new study, data set or launcher file appears in it at once. conf/hydra/help/lcm.yaml
places the text with ``${lcm_config_groups:}`` and ``${lcm_config_keys:}`` (resolvers registered by
pipeline.config). Internal options stay out: the ones a defaults entry picks by interpolation
(``dataset: default_${data_source}`` -> ``default_gesture``, ``default_sentence``), which the help
names by what they resolve to (the source's default data set) instead.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import yaml

WIDTH = 100
NAME_WIDTH = 18


@dataclass(frozen=True)
class GroupEntry:
    """One config-group entry of config.yaml's defaults list."""

    group: str  # "study", "hydra/launcher"
    choice: str | None  # "headline", "default_${data_source}", None (off unless chosen)


def _defaults(conf_dir: Path) -> list[GroupEntry]:
    entries = []
    for item in yaml.safe_load((conf_dir / "config.yaml").read_text()).get("defaults", []):
        if not isinstance(item, dict):
            continue  # _self_
        for key, choice in item.items():
            group = key.removeprefix("override ").strip()
            entries.append(GroupEntry(group, None if choice is None else str(choice)))
    return entries


def _options(conf_dir: Path, group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir / group).glob("*.yaml"))


def _comment_lines(path: Path) -> list[str]:
    """The comment block that opens a config file (without ``@package`` lines)."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if not text.startswith("@package"):
            lines.append(text)
    return lines


def summary(comment_lines: list[str], limit: int = 64) -> str:
    """The opening phrase of a comment: its first sentence or clause, without parentheses."""
    text = " ".join(comment_lines)
    while True:  # innermost parentheses first
        shorter = re.sub(r"\s*\([^()]*\)", "", text)
        if shorter == text:
            break
        text = shorter
    phrase = re.split(r"(?<=[^.])[.:;](?:\s|$)", text, maxsplit=1)[0].strip().rstrip(",")
    return phrase if len(phrase) <= limit else phrase[: limit - 3].rsplit(" ", 1)[0] + "..."


def _interpolated(choice: str | None) -> re.Match | None:
    """``default_${data_source}`` -> a match naming the prefix, the group it depends on and the suffix."""
    return re.fullmatch(r"(.*)\$\{([\w.]+)\}(.*)", choice or "")


def _picks(conf_dir: Path, group: str, option: str) -> str | None:
    """The option an internal option stands for: the first entry of its own defaults list."""
    loaded = yaml.safe_load((conf_dir / group / f"{option}.yaml").read_text()) or {}
    for item in loaded.get("defaults", []) if isinstance(loaded, dict) else []:
        if isinstance(item, str) and item != "_self_":
            return item
    return None


def _option_lines(conf_dir: Path, entry: GroupEntry) -> list[str]:
    """One group's options, as the help lists them (the default marked with *); a group whose default
    depends on another group's choice: one line per choice of that group, with its options."""
    options = _options(conf_dir, entry.group)
    pattern = _interpolated(entry.choice)
    if pattern is None:
        marked = [f"{o}*" if o == entry.choice else o for o in options]
        line = ", ".join(marked) + ("" if entry.choice else "   (none unless chosen)")
        return [line]
    prefix, depends_on, suffix = pattern.groups()
    internal = {f"{prefix}{value}{suffix}": value for value in _options(conf_dir, depends_on)}
    defaults = {value: _picks(conf_dir, entry.group, name) for name, value in internal.items() if name in options}
    by_value: dict[str, list[str]] = {}
    for option in (o for o in options if o not in internal):
        source = (yaml.safe_load((conf_dir / entry.group / f"{option}.yaml").read_text()) or {}).get("source")
        by_value.setdefault(str(source) if source in defaults else "", []).append(option)
    lines = []
    for value, names in sorted(by_value.items(), key=lambda kv: (kv[0] == "", kv[0])):
        names = sorted(names, key=lambda n: n != defaults.get(value))  # the default first
        listed = ", ".join(f"{n}*" if n == defaults.get(value) else n for n in names)
        lines.append(f"{depends_on}={value}: {listed}" if value else f"any {depends_on}: {listed}")
    return lines


def _described(conf_dir: Path, entry: GroupEntry) -> list[str]:
    """A group with several options whose files say what they are: one option per line."""
    options = _options(conf_dir, entry.group)
    width = max(len(o) for o in options) + 2
    room = WIDTH - (NAME_WIDTH + 3) - width - 1
    lines = []
    for option in options:
        mark = "*" if option == entry.choice else ""
        phrase = summary(_comment_lines(conf_dir / entry.group / f"{option}.yaml"), limit=room)
        lines.append(f"{option + mark:<{width}} {phrase}")
    return lines


def _row(name: str, text: str, max_lines: int = 2) -> list[str]:
    """``  name  text`` wrapped to WIDTH, at most ``max_lines`` lines (``lcm --cfg job`` shows the rest)."""
    return textwrap.wrap(
        text,
        WIDTH,
        initial_indent=f"  {name:<{NAME_WIDTH}} ",
        subsequent_indent=" " * (NAME_WIDTH + 3),
        break_on_hyphens=False,
        max_lines=max_lines,
        placeholder=" ...",
    ) or [f"  {name}"]


def config_groups_text(conf_dir: Path) -> str:
    """The config groups of the run config: ``group  option*, option, ...`` (* = default).

    A group of more than three plain options gets one line per option with the opening phrase of
    its file's comment; groups of one option are named together on the last line (their keys are
    listed with the keys); hydra's own groups appear where the project ships more than one option.
    """
    lines, single = [], []
    for entry in _defaults(conf_dir):
        options = _options(conf_dir, entry.group)
        if entry.group.startswith("hydra/") and len(options) < 2:
            continue  # help, job_logging: one option each, nothing to choose
        if not options:
            continue  # a group of Hydra's own (hydra/sweeper=study lives in hydra_plugins)
        if len(options) == 1 and entry.choice == options[0]:
            single.append(f"{entry.group}={options[0]}")
        elif len(options) > 3 and _interpolated(entry.choice) is None:
            described = _described(conf_dir, entry)
            lines.append(f"  {entry.group:<{NAME_WIDTH}} {described[0]}")
            lines.extend(" " * (NAME_WIDTH + 3) + line for line in described[1:])
        else:
            for number, text in enumerate(_option_lines(conf_dir, entry)):
                lines.extend(_row(entry.group if number == 0 else "", text))
    if single:
        lines.extend(_row("(one option)", ", ".join(single)))
    return _escaped("\n".join(lines))


def _top_level_keys(conf_dir: Path) -> list[tuple[str, object, list[str]]]:
    """(key, value, the comment above it) for the top-level keys of config.yaml; consecutive keys
    share the comment above the first."""
    text = (conf_dir / "config.yaml").read_text()
    loaded = yaml.safe_load(text)
    found: list[tuple[str, object, list[str]]] = []
    comment: list[str] = []
    after_key = False
    for line in text.splitlines():
        if line.startswith("#"):
            comment = [] if after_key else comment
            comment.append(line.lstrip("#").strip())
            after_key = False
            continue
        match = re.match(r"^([a-z_]+):", line)
        if match and match.group(1) not in ("defaults", "hydra"):
            found.append((match.group(1), loaded[match.group(1)], comment))
        after_key = bool(match) or (after_key and line.startswith(" "))
        if line.strip() == "":
            comment, after_key = [], False
    return found


def _flat(value: object) -> str:
    if isinstance(value, dict):
        return " ".join(f"{k}={_flat(v)}" for k, v in value.items() if not isinstance(v, dict))
    if isinstance(value, list):
        return "[" + ",".join(map(str, value)) + "]"
    return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def config_keys_text(conf_dir: Path) -> str:
    """The keys of the run config with their defaults: config.yaml's own (with the opening phrase of their
    comment), then each single-option group's keys (``trainer.*``, ``probe.knn.*``, ...)."""
    lines = []
    for key, value, comment in _top_level_keys(conf_dir):
        if any("never by hand" in c for c in comment):
            continue  # set by the study sweeper
        if isinstance(value, dict):
            lines.extend(_row(f"{key}.*", _flat(value)))
        else:
            lines.extend(_row(key, f"{summary(comment)} (default {_flat(value)})"))
    for entry in _defaults(conf_dir):
        options = _options(conf_dir, entry.group)
        if entry.group.startswith("hydra/") or entry.choice not in options:
            continue  # Hydra's own groups; a choice that follows another group (dataset=default_${...})
        loaded = yaml.safe_load((conf_dir / entry.group / f"{entry.choice}.yaml").read_text()) or {}
        loaded = {k: v for k, v in loaded.items() if k not in ("defaults", "name")}
        # a group of several options shows its default option's keys, saying which option that is
        chosen = f"({entry.group}={entry.choice}) " if len(options) > 1 else ""
        if any(not isinstance(v, dict) for v in loaded.values()):
            lines.extend(_row(f"{entry.group}.*", chosen + _flat(loaded)))
        for sub, value in loaded.items():
            if isinstance(value, dict):
                lines.extend(_row(f"{entry.group}.{sub}.*", chosen + _flat(value)))
    return _escaped("\n".join(lines))


def _escaped(text: str) -> str:
    # Hydra fills the help template with string.Template, where $ starts a placeholder
    return text.replace("$", "$$")


def internal_choices(conf_dir: Path) -> set[str]:
    """``group=option`` of the options only the defaults list picks (``dataset=default_gesture``, ...)."""
    hidden = set()
    for entry in _defaults(conf_dir):
        pattern = _interpolated(entry.choice)
        if pattern is not None:
            prefix, depends_on, suffix = pattern.groups()
            hidden |= {f"{entry.group}={prefix}{value}{suffix}" for value in _options(conf_dir, depends_on)}
    return hidden


def without_internal_choices(completions: str, conf_dir: Path) -> str:
    """A shell-completion answer (words separated by spaces) without the internal options."""
    hidden = internal_choices(conf_dir)
    return " ".join(word for word in completions.split() if word.lstrip("+~") not in hidden)


def is_completion_query(argv: list[str]) -> bool:
    """``lcm -sc query=bash`` (or ``--shell-completion query=...``): the shell asks for completions."""
    flags = {"-sc", "--shell-completion"}
    return any(arg in flags for arg in argv) and any(arg.startswith("query=") for arg in argv)
