"""The benchmark's results table (Markdown, JSON) and learning curves.

Rows follow the paper's Table 5: a task, test set and metric each, e.g.
`SSP3 | CASP12 | accuracy`. Columns: each embedding setting of ours (e.g.
`ours [NLU]`), as mean ± standard deviation over the seeds; the one-hot
baseline (the same head on the residues alone, setting `ONE_HOT`) and, per
setting, what the embeddings add over it (`ours [NLU] − one-hot`: the mean
± standard deviation of the per-seed differences, seeds paired); then
published numbers of other models where `published.json` has them for that
row.

`published.json` holds numbers as their source prints them (converted to
fractions), with the source of each: the Ankh authors' README (Ankh3 Large
and XL, Ankh, ESM2 and others). Its contact numbers are long-range precision
(pairs at least 24 apart), so they sit in the long-range rows, beside ours
computed the same way; the paper's metric (pairs at least 6 apart) has rows
of its own.
"""

from collections.abc import Mapping, Sequence
import json
import math
import os
from typing import Any, Optional

PUBLISHED_PATH = os.path.join(os.path.dirname(__file__), "published.json")
# (task, test set, metric, row label), in the order of the paper's Table 5.
ROWS = (
    ("ssp3", "casp12", "accuracy", "SSP3 | CASP12 | accuracy"),
    ("ssp3", "casp14", "accuracy", "SSP3 | CASP14 | accuracy"),
    ("ssp8", "casp12", "accuracy", "SSP8 | CASP12 | accuracy"),
    ("ssp8", "casp14", "accuracy", "SSP8 | CASP14 | accuracy"),
    (
        "fluorescence",
        "tape_fluorescence",
        "spearman",
        "Fluorescence | TAPE | Spearman",
    ),
    ("gb1", "three_vs_rest", "spearman", "GB1 | FLIP three_vs_rest | Spearman"),
    ("contact", "proteinnet", "precision_at_l", "Contact | ProteinNet | P@L"),
    (
        "contact",
        "proteinnet",
        "precision_at_l5",
        "Contact | ProteinNet | P@L/5",
    ),
    ("contact", "casp14", "precision_at_l", "Contact | CASP14 | P@L"),
    ("contact", "casp14", "precision_at_l5", "Contact | CASP14 | P@L/5"),
    (
        "contact",
        "proteinnet",
        "long_range_precision_at_l",
        "Contact | ProteinNet | long-range P@L",
    ),
    (
        "contact",
        "proteinnet",
        "long_range_precision_at_l5",
        "Contact | ProteinNet | long-range P@L/5",
    ),
    (
        "contact",
        "casp14",
        "long_range_precision_at_l",
        "Contact | CASP14 | long-range P@L",
    ),
    (
        "contact",
        "casp14",
        "long_range_precision_at_l5",
        "Contact | CASP14 | long-range P@L/5",
    ),
)
# The setting of the one-hot baseline (`harness.OneHotStore`), and its column.
ONE_HOT = "one-hot"
ONE_HOT_COLUMN = "one-hot baseline"
# Published models shown by default (all of `published.json` with "all").
DEFAULT_PUBLISHED = ("Ankh3-XL", "Ankh3-Large", "Ankh-Large", "ESM2-15B")


def load_published(path: str = PUBLISHED_PATH) -> dict[str, Any]:
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def check_model_name(
    model_name: str, published: Optional[Mapping[str, Any]] = None
) -> None:
  """Refuses a name of ours that a published model has (the columns clash).

  Raises:
    ValueError: naming the clash.
  """
  published = load_published() if published is None else published
  names = {e["model"] for e in published["results"]}
  if model_name in names:
    raise ValueError(
        f"--model_name {model_name!r} is the name of published results; "
        f"choose another (e.g. '{model_name} (ours)')."
    )


def _published_columns(
    published: Mapping[str, Any], models: Sequence[str]
) -> dict[str, dict[tuple[str, str, str], float]]:
  """Column label -> {(task, test set, metric): value}."""
  columns = {}
  for entry in published["results"]:
    if entry["model"] not in models:
      continue
    label = entry["model"]
    if entry.get("task_token"):
      label += f" [{entry['task_token']}]"
    row = (entry["task"], entry["test_set"], entry["metric"])
    columns.setdefault(label, {})[row] = entry["value"]
  order = {m: i for i, m in enumerate(models)}
  return dict(
      sorted(
          columns.items(), key=lambda kv: (order[kv[0].split(" [")[0]], kv[0])
      )
  )


def _ours_columns(
    results: Mapping[str, Mapping[str, Any]], model_name: str
) -> dict[str, dict[tuple[str, str, str], dict]]:
  """`results[setting][task]` (`harness.run_task`) as table columns.

  Embedding settings first, then the one-hot baseline, then each setting's
  difference from the baseline.
  """
  columns = {}
  for setting, by_task in results.items():
    if setting == ONE_HOT:
      continue
    column = columns.setdefault(f"{model_name} [{setting}]", {})
    _fill(column, by_task)
  if ONE_HOT not in results:
    return columns
  baseline = _fill({}, results[ONE_HOT])
  differences = {}
  for label, column in columns.items():
    differences[f"{label} − {ONE_HOT}"] = {
        key: _difference(summary, baseline[key])
        for key, summary in column.items()
        if key in baseline
    }
  return {**columns, ONE_HOT_COLUMN: baseline, **differences}


def _fill(column: dict, by_task: Mapping[str, Any]) -> dict:
  for task, result in by_task.items():
    for test_set, by_metric in result["summary"].items():
      for metric, summary in by_metric.items():
        column[(task, test_set, metric)] = summary
  return column


def _difference(ours: Mapping[str, Any], baseline: Mapping[str, Any]) -> dict:
  """Mean and sample std of the per-seed differences (seeds in one order)."""
  pairs = zip(ours["values"], baseline["values"])
  values = [a - b for a, b in pairs]
  finite = [v for v in values if not math.isnan(v)]
  if not finite:
    return {
        "mean": math.nan,
        "std": math.nan,
        "n": 0,
        "values": values,
        "signed": True,
    }
  mean = sum(finite) / len(finite)
  std = 0.0
  if len(finite) > 1:
    std = math.sqrt(sum((v - mean) ** 2 for v in finite) / (len(finite) - 1))
  return {
      "mean": mean,
      "std": std,
      "n": len(finite),
      "values": values,
      "signed": True,  # Shown as +0.0123.
  }


def format_cell(value: Any) -> str:
  """A table cell: `0.8000 ± 0.0100`, `+0.0500 ± 0.0100`, `0.8440` or ``."""
  if value is None:
    return ""
  if isinstance(value, dict):
    if math.isnan(value["mean"]):
      return "nan"
    sign = "+" if value.get("signed") else ""
    cell = f"{value['mean']:{sign}.4f} ± {value['std']:.4f}"
    runs = len(value["values"])
    if value.get("n", runs) < runs:  # Seeds without a number (NaN).
      cell += f" (n={value['n']}/{runs})"
    return cell
  return f"{value:.4f}"


def table(
    results: Mapping[str, Mapping[str, Any]],
    *,
    model_name: str = "ours",
    published: Optional[Mapping[str, Any]] = None,
    published_models: Sequence[str] = DEFAULT_PUBLISHED,
) -> dict[str, Any]:
  """Returns the table as `{"columns": [...], "rows": [{...}]}`.

  Only rows with a result of ours appear, and only published columns with a
  number in those rows. Each row has `task`, `test_set`,
  `metric`, `label` and one entry per column: ours `{"mean", "std",
  "values"}`, published a number, or None where there is none.
  """
  published = load_published() if published is None else published
  if list(published_models) == ["all"]:
    published_models = sorted({e["model"] for e in published["results"]})
  ours = _ours_columns(results, model_name)
  theirs = _published_columns(published, published_models)
  clash = sorted(set(ours) & set(theirs))
  if clash:
    raise ValueError(
        f"Columns {clash} name both our results and published ones; choose "
        "another model name."
    )
  run_tasks = {task for by_task in results.values() for task in by_task}
  known = {(t, s, m) for t, s, m, _ in ROWS}
  extra = sorted(
      {key for column in ours.values() for key in column if key not in known}
  )
  rows = []
  for task, test_set, metric, label in list(ROWS) + [
      (t, s, m, f"{t} | {s} | {m}") for t, s, m in extra
  ]:
    if task not in run_tasks:
      continue
    key = (task, test_set, metric)
    row = {"task": task, "test_set": test_set, "metric": metric, "label": label}
    for name, column in {**ours, **theirs}.items():
      row[name] = column.get(key)
    if any(key in column for column in ours.values()):
      rows.append(row)
  # Published columns with no number in these rows are left out.
  shown = [c for c in theirs if any(row[c] is not None for row in rows)]
  for row in rows:
    for column in set(theirs) - set(shown):
      del row[column]
  return {"columns": list(ours) + shown, "rows": rows}


def markdown(result_table: Mapping[str, Any]) -> str:
  """Formats `table(...)` as Markdown."""
  columns = result_table["columns"]
  lines = [
      "| task | test set | metric | " + " | ".join(columns) + " |",
      "|---|---|---|" + "---|" * len(columns),
  ]
  for row in result_table["rows"]:
    cells = [format_cell(row.get(c)) for c in columns]
    lines.append("| " + row["label"] + " | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def plot_learning_curves(
    results: Mapping[str, Mapping[str, Any]], path: str
) -> None:
  """Plots validation metric and training loss per epoch, task by task.

  One column of two panels per task; one line per setting and seed.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top

  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  tasks = sorted({task for by_task in results.values() for task in by_task})
  figure, axes = plt.subplots(
      2, len(tasks), figsize=(4.5 * len(tasks), 7), squeeze=False
  )
  for column, task in enumerate(tasks):
    top, bottom = axes[0][column], axes[1][column]
    for setting, by_task in results.items():
      if task not in by_task:
        continue
      result = by_task[task]
      for run in result["seeds"]:
        epochs = [h["epoch"] for h in run["history"]]
        label = f"{setting} seed {run['seed']}"
        top.plot(
            epochs, [h["valid_metric"] for h in run["history"]], label=label
        )
        bottom.plot(
            epochs, [h["train_loss"] for h in run["history"]], label=label
        )
    top.set_title(task)
    top.set_ylabel(f"valid {result['selection_metric']}")
    bottom.set_ylabel("train loss")
    bottom.set_xlabel("epoch")
    top.legend(fontsize="small")
  figure.tight_layout()
  figure.savefig(path, dpi=100)
  plt.close(figure)
