"""``csrm run configs/pipeline/NAME.yaml [key=value ...]``: the main job in one command.

Stages, each writing into ``output_dir``:

1. ``augment``   -> ``output_dir/data``            (the augmentation recipe named by ``augment``)
2. ``train``     -> ``output_dir/model``           (the training config named by ``train``)
3. ``calibrate`` -> ``output_dir/calibration.json`` (temperature fitted on the dev slice of the validation split
   that evaluation tunes on, never on the test slice it reports; not applied when it raises that slice's ECE)
4. ``baselines`` -> ``output_dir/model_blind`` (config-blind: same backbone and data, config removed), if asked
5. ``eval``      -> ``output_dir/eval/<label>/``    (``csrm eval``'s harness on each benchmark; label ``csrm``,
   ``config_blind``, ``zero-shot_<model>``, ...)
6. ``rule judge`` -> ``output_dir/model_rule`` + ``output_dir/eval/rule_judge/``, if the recipe names
   ``rule_judge`` (trained on ``output_dir/data/rules``, evaluated like the CSRM: :mod:`csrm.app.pipeline_rule`);
   then ``policy judge`` -> ``output_dir/model_policy`` + ``output_dir/eval/policy_judge/``, if it names
   ``policy_judge`` (both readers in one folder behind a router: :mod:`csrm.app.pipeline_policy`)
7. ``report``    -> ``output_dir/report.md`` + ``report.json`` (printed at the end)

**Honest reruns.** Every stage has a fingerprint: a hash of its resolved settings, of the files it reads and of
the fingerprints of the stages it reads from (:mod:`csrm.app.run_state`). A stage is reused only when its output
exists and its recorded fingerprint (``output_dir/stages.json``) matches; a changed setting reruns that stage and,
through the upstream fingerprints, every stage after it. A killed run resumes at the first unfinished stage;
``force=true`` reruns everything. The report lists which stages ran in this invocation and which were reused.

**Paths.** Files the recipe names resolve against the recipe's folder and the folders above it, then the current
folder, then the checkout csrm runs from (:func:`csrm.base.paths.recipe_path`), so ``csrm run
<clone>/configs/pipeline/default.yaml`` works from any folder and from a wheel install. The shared data folder
is ``data_dir``, else :func:`csrm.base.paths.data_dir` near the recipe; every stage of the run reads that one
folder (``$CSRM_DATA_DIR`` is set to it while the run lasts). A recipe whose augmentation sources live there
and are missing stops before any stage, naming ``data_dir``; optional training files that are missing
(distractor rules, pseudo-label prompts) are trained without and named in the report.

Every stage writes its output atomically (a temporary folder or file renamed into place), so a stage's output
exists only once it is complete.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from csrm.app.run_state import RunState, StageSpec
from csrm.base import config as config_system
from csrm.base.config import setting
from csrm.base.errors import InputError
from csrm.base.io import atomic_path, remove_stale_temps, write_json
from csrm.base.paths import DEFAULT_TAXONOMY, PROJECT_ROOT, data_dir, recipe_path

# local folders each public benchmark reads under data_dir (their files are fingerprinted)
BENCH_FOLDERS = {"cosapien": ("cosapien", "cosapien_configs"), "dynabench": ("dynabench",),
                 "cosalign-test": ("cosalign_test",)}
# training keys that only say where this run writes or logs (the data is covered by the augment fingerprint)
RUN_PATH_KEYS = {"dataset_path", "output_dir", "checkpoint_dir", "resume_from_checkpoint", "report_to", "rule_data",
                 "category_model", "rule_model",
                 "overwrite"}


@dataclass
class PipelineConfig:
    """A pipeline recipe (YAML). Paths are relative to the recipe's folder (module doc)."""

    name: str = setting(help="recipe name (used in the report)")
    augment: str = setting(help="augmentation recipe YAML (configs/augment/...)")
    train: str = setting(help="training config YAML (configs/train/...)")
    output_dir: str = setting("", "where every stage writes; default runs/<name>")
    augment_overrides: list[str] = setting(help="key=value for the recipe", default_factory=list)
    train_overrides: list[str] = setting(help="key=value for training", default_factory=list)
    rule_judge: str = setting("", "rule-judge training config YAML (architecture: rule, e.g. "
                              "configs/train/rule_minilm.yaml), trained on output_dir/data/rules and evaluated on "
                              "the benchmarks beside the CSRM; needs the augmentation recipe's rules.enabled; '' = none")
    rule_judge_overrides: list[str] = setting(help="key=value for the rule judge's training", default_factory=list)
    policy_judge: str = setting("", "policy-judge config YAML (architecture: policy, configs/train/policy.yaml): "
                                "composes the calibrated CSRM and the rule judge into output_dir/model_policy, one "
                                "model for category allow lists and free-text rules, evaluated beside them; needs "
                                "rule_judge; '' = none")
    train_launcher: str = setting("", "empty = train in this process; else a launcher prefix run as a subprocess, e.g. "
                "'accelerate launch --config_file configs/accelerate/deepspeed_zero3.yaml' (-m csrm train is added)")
    calibrate: bool = setting(True, "fit the temperature on the validation split")
    bench: list[str] = setting(help="benchmarks to evaluate: augmented (the held-out split of this run's data), cosalign-test, "
                "cosapien, dynabench", default_factory=lambda: ["augmented"])
    data_dir: str = setting("", "the shared data folder ('{data_dir}' in the augmentation and training configs, "
                            "and the public benchmarks); default $CSRM_DATA_DIR, else ../shared/data beside the "
                            "checkout (of csrm, else of this recipe), else ~/.cache/csrm/data")
    eval_limit: int | None = setting(None, "at most N dev and N test items per benchmark")
    use_hub: bool = setting(False, "let benchmarks load from the Hugging Face Hub")
    baselines: list[str] = setting(help="config_blind (train the same model without configs) and/or zero-shot:<model> (e.g. "
                "zero-shot:smollm2), evaluated on the same items", default_factory=list)
    report_to: str = setting("", "'wandb' logs training, calibration and evaluation to Weights & Biases; empty = the training "
                "config's report_to (logging never changes a stage's fingerprint)")
    force: bool = setting(False, "rerun every stage, even those whose output matches the current settings")
    about: str = setting("", "plain words on what this recipe's model is good for (and which recipe gives a usable judge), "
                "printed at the top of the report")

    def __post_init__(self) -> None:
        self.output_dir = self.output_dir or f"runs/{self.name}"
        for baseline in self.baselines:
            if baseline != "config_blind" and not baseline.startswith(("zero-shot:", "probe:")):
                raise InputError(f"unknown baseline {baseline!r}: use config_blind, zero-shot:<model>, "
                                 "probe:clause-similarity, probe:category-logreg or probe:surface", field="baselines")


def resolve(path: str, cfg: PipelineConfig | None = None) -> Path:
    """A file ``cfg``'s recipe names: against the recipe's folder and those above it, then the current folder,
    then the checkout csrm runs from (module doc)."""
    return recipe_path(path, getattr(cfg, "_base_dir", None))


def data_root(cfg: PipelineConfig) -> Path:
    """The run's shared data folder: ``data_dir``, else :func:`csrm.base.paths.data_dir` near the recipe."""
    if cfg.data_dir:
        return recipe_path(cfg.data_dir, getattr(cfg, "_base_dir", None))
    return data_dir(getattr(cfg, "_base_dir", None))


def load_pipeline_config(path: str | Path, overrides: Sequence[str] = ()) -> PipelineConfig:
    """Read a recipe; unknown keys and wrong types (every field, e.g. ``eval_limit=abc``) fail naming the key,
    before any work. :func:`check_recipe` then checks what the fields point at."""
    found = resolve(str(path))
    if not found.is_file():
        raise InputError(f"pipeline recipe not found (looked in the current folder and {PROJECT_ROOT})",
                         path=str(path))
    cfg = config_system.load(PipelineConfig, found, overrides)
    cfg._base_dir = found.resolve().parent  # type: ignore[attr-defined]
    return cfg


def check_recipe(cfg: PipelineConfig) -> None:
    """What the recipe's fields point at, checked before any stage runs: the augmentation recipe with its
    overrides, the training config with its overrides (keys, types, a non-zero number of steps), the rule
    judge's (:func:`csrm.app.pipeline_rule.check`), the benchmark names and the evaluation limit."""
    import augmentation
    from csrm.app import pipeline_policy, pipeline_rule
    from csrm.training.train import load_train_config
    from eval.benchmarks import resolve_names

    for name, value in (("augment", cfg.augment), ("train", cfg.train)):
        if not resolve(value, cfg).is_file():
            raise InputError("file not found (looked in the recipe's folder and those above it, the current folder "
                             f"and {PROJECT_ROOT})", field=name, path=value)
    recipe = augmentation.load_recipe(resolve(cfg.augment, cfg), list(cfg.augment_overrides))
    rule_files = [recipe.rules.ifeval_rules, recipe.rules.moderation] if recipe.rules.enabled else []
    missing = [path for path in [s.path for s in recipe.sources] + rule_files if "{data_dir}" in path and not Path(
        path.replace("{data_dir}", str(data_root(cfg)))).exists()]
    if missing:
        raise InputError(f"the augmentation recipe reads {', '.join(missing)}, not found in the shared data folder "
                         f"{data_root(cfg)}: set data_dir (or CSRM_DATA_DIR) to the folder that holds them",
                         field="data_dir", path=str(resolve(cfg.augment, cfg)))
    try:
        load_train_config(resolve(cfg.train, cfg), list(cfg.train_overrides), instantiate=False)
    except InputError as err:  # an override of the recipe's train_overrides: say so, not "command line"
        if err.path != config_system.COMMAND_LINE:
            raise
        raise InputError(err.reason, path="recipe train_overrides", field=err.field) from None
    pipeline_rule.check(cfg, recipe, resolve)
    pipeline_policy.check(cfg, resolve)
    try:
        resolve_names(cfg.bench)
    except ValueError as err:
        raise InputError(str(err), field="bench") from None
    if cfg.eval_limit is not None and cfg.eval_limit < 1:
        raise InputError(f"must be >= 1, got {cfg.eval_limit}", field="eval_limit")


class Pipeline:
    """Runs the stages of one recipe, reusing those whose fingerprint still matches (module doc)."""

    def __init__(self, cfg: PipelineConfig, log=print):
        self.cfg, self.log = cfg, log
        self.out = Path(cfg.output_dir)
        self.state = RunState(self.out)
        self.fingerprints: dict[str, str] = {}  # stage -> fingerprint computed in this invocation
        self.eval_labels: list[str] = []
        self.report_to: str | list[str] = cfg.report_to  # else the training config's, once read

    # -- paths ---------------------------------------------------------------------------------------
    @property
    def data(self) -> Path:
        return self.out / "data"

    def model_dir(self, blind: bool = False) -> Path:
        return self.out / ("model_blind" if blind else "model")

    def eval_dir(self, label: str) -> Path:
        return self.out / "eval" / label

    def _stage(self, spec: StageSpec, output: Path, work, target: Path | None = None) -> Any:
        """Run ``work`` unless ``output`` exists from the same settings and inputs (fingerprint); ``target``
        (the file or folder the stage writes atomically, default ``output``) first loses the temporary copies
        a killed earlier attempt left beside it."""
        name = spec.name
        self.fingerprints[name] = spec.fingerprint
        if self.cfg.force:
            self.log(f"[csrm run] {name} ... (force=true)")
        else:
            reuse, changed = self.state.reusable(spec, output)
            if reuse:
                self.log(f"[csrm run] {name}: reused, same settings and inputs ({spec.fingerprint[:12]}, {output})")
                self.state.status[name] = "reused"
                return None
            self.log(f"[csrm run] {name} ..." + (f" (rerun: changed {', '.join(changed)})" if output.exists() else ""))
        if remove_stale_temps(target or output):
            self.log(f"[csrm run] {name}: removed the temporary output of an interrupted attempt")
        start = time.perf_counter()
        result = work()
        seconds = round(time.perf_counter() - start, 1)
        self.log(f"[csrm run] {name}: {seconds:.1f} s")
        self.state.finish(spec, seconds)
        timings_path = self.out / "timings.json"  # per stage, so a resumed run still reports earlier stages
        previous = json.loads(timings_path.read_text()) if timings_path.is_file() else {}
        write_json(timings_path, {**previous, name: seconds})
        return result

    # -- stages --------------------------------------------------------------------------------------
    def augment(self) -> None:
        import augmentation

        recipe = augmentation.load_recipe(resolve(self.cfg.augment, self.cfg), list(self.cfg.augment_overrides))
        settings = {k: v for k, v in dataclasses.asdict(recipe).items() if k not in {"output_dir", "progress", "overwrite"}}
        spec = StageSpec("augment", settings, inputs=augment_inputs(recipe))

        def work() -> None:
            if recipe.sources:
                augmentation.run(recipe, output_dir=self.data)
            if recipe.rules.enabled:  # after the sources, whose writer replaces the folder (as csrm augment does)
                from augmentation.recipe import resolve_path
                from augmentation.rules.generate import run_rules

                run_rules(recipe.rules, recipe.seed, self.data, lambda p: resolve_path(p, recipe))

        self._stage(spec, self.data / "manifest.json", work, target=self.data)

    def train(self, *, blind: bool = False) -> None:
        from csrm.training.train import config_class, load_train_config

        target = self.model_dir(blind)
        checkpoints = Path(f"{target}-checkpoints")
        config_path = resolve(self.cfg.train, self.cfg)
        fields = {f.name for f in dataclasses.fields(config_class(config_path, list(self.cfg.train_overrides)))}
        run = {"dataset_path": str(self.data), "output_dir": str(target), "checkpoint_dir": str(checkpoints),
               "resume_from_checkpoint": "auto", "blind_config": "true" if blind else None,
               "report_to": self.cfg.report_to or None}
        # only the run settings the family's config offers (the clause trainer keeps no checkpoints to resume)
        overrides = [*self.cfg.train_overrides, *(f"{k}={v}" for k, v in run.items() if v and k in fields)]
        _, raw = load_train_config(config_path, overrides, instantiate=False)
        self.report_to = self.cfg.report_to or raw.get("report_to") or "none"
        settings = {"config": {k: v for k, v in raw.items() if k not in RUN_PATH_KEYS},
                    "launcher": self.cfg.train_launcher}
        spec = StageSpec("train (config-blind)" if blind else "train", settings,
                         upstream={"augment": self.fingerprints["augment"]})

        def work() -> None:
            self._keep_matching_checkpoints(checkpoints, spec.fingerprint)
            if self.cfg.train_launcher:
                command = [*shlex.split(self.cfg.train_launcher), "-m", "csrm", "train", str(config_path), *overrides]
                subprocess.run(command, check=True)
                return
            from csrm.training.train import run_training

            train_cfg, raw_cfg = load_train_config(config_path, overrides)
            run_training(train_cfg, raw_config=raw_cfg)

        self._stage(spec, target / "config.json", work, target=target)

    def side_training(self, name: str, config_path: Path, overrides: list[str], target: Path,
                      upstream: dict[str, str]) -> None:
        """A training stage beside the main one (the rule judge's, the policy judge's): ``csrm train CONFIG`` with
        ``overrides``, in this process, into ``target``; fingerprinted on the config as checked (minus the keys that
        only say where this run reads and writes) and on ``upstream``."""
        from csrm.training.train import load_train_config, run_training

        _, raw = load_train_config(config_path, overrides, instantiate=False)
        spec = StageSpec(name, {"config": {k: v for k, v in raw.items() if k not in RUN_PATH_KEYS}}, upstream=upstream)

        def work() -> None:
            train_cfg, raw_cfg = load_train_config(config_path, overrides)
            run_training(train_cfg, raw_config=raw_cfg)

        self._stage(spec, target / "config.json", work, target=target)

    def _keep_matching_checkpoints(self, folder: Path, fingerprint: str) -> None:
        """Training resumes from ``folder``'s newest checkpoint: drop checkpoints written under other settings
        (or of unknown settings, or all of them under force=true), then mark the folder with ``fingerprint``."""
        marker = folder / "csrm_fingerprint"
        known = marker.read_text(encoding="utf-8").strip() if marker.is_file() else None
        stale = [p for p in folder.glob("checkpoint-*") if p.is_dir()]
        if stale and (known != fingerprint or self.cfg.force):
            self.log(f"[csrm run] removing {len(stale)} checkpoint(s) in {folder} written under other settings")
            for path in stale:
                shutil.rmtree(path)
        folder.mkdir(parents=True, exist_ok=True)
        marker.write_text(fingerprint + "\n", encoding="utf-8")

    def calibrate(self, *, blind: bool = False) -> None:
        from csrm.training.calibration import calibrate, set_temperature

        name = "calibrate (config-blind)" if blind else "calibrate"
        train_name = "train (config-blind)" if blind else "train"
        output = self.out / ("calibration_blind.json" if blind else "calibration.json")
        if not self.cfg.calibrate:
            self.fingerprints[name] = "off"
            self.state.status[name] = "off"
            if output.exists():  # a temperature fitted by an earlier run must not outlive calibrate=false
                set_temperature(self.model_dir(blind), 1.0)
                output.unlink()
                self.state.forget(name)
                self.log(f"[csrm run] {name}: off; removed the temperature an earlier run had fitted")
            return
        spec = StageSpec(name, {"split": "validation", "subset": "eval_dev"}, upstream={
            "augment": self.fingerprints["augment"], "train": self.fingerprints[train_name]})

        def work() -> None:
            from csrm.app.calibrate import eval_dev_ids

            ids, fit_on = eval_dev_ids(self.data, "validation")
            report = calibrate(self.model_dir(blind), self.data, split="validation", report_to=self.report_to,
                               example_ids=ids, fit_on=fit_on, progress=True)
            write_json(output, report)

        self._stage(spec, output, work)

    def evaluate(self, spec: str, label: str, *, blind: bool = False, upstream: dict[str, str] | None = None
                 ) -> None:
        """Evaluate ``spec`` on the recipe's benchmarks; ``upstream``: the fingerprints of the stages that made
        the model (default this run's ``train`` and ``calibrate``, or the config-blind ones)."""
        from eval.benchmarks import load_benchmark
        from eval.benchmarks._source import BenchmarkUnavailable
        from eval.harness import evaluate, stderr_progress
        from eval.models import load_scorer
        from eval.report import log_report, write_report

        output = self.eval_dir(label)
        self.eval_labels.append(label)
        bench_root = data_root(self.cfg)
        model_upstream, upstream = upstream, {}
        if "augmented" in self.cfg.bench:
            upstream["augment"] = self.fingerprints["augment"]
        if model_upstream is not None:
            upstream.update(model_upstream)
        elif spec.startswith("probe:"):  # frozen-embedding probes: the logreg one fits on this run's data
            upstream["augment"] = self.fingerprints["augment"]
        elif not spec.startswith("zero-shot:"):  # a model trained here: its weights and temperature
            suffix = " (config-blind)" if blind else ""
            upstream["train"] = self.fingerprints["train" + suffix]
            upstream["calibrate"] = self.fingerprints["calibrate" + suffix]
        settings = {"model": spec if spec.startswith(("zero-shot:", "probe:")) else label, "bench": self.cfg.bench,
                    "limit": self.cfg.eval_limit, "use_hub": self.cfg.use_hub, "blind": blind,
                    "data_dir": str(bench_root.resolve())}
        inputs = [bench_root / folder for name in self.cfg.bench for folder in BENCH_FOLDERS.get(name, ())]
        stage = StageSpec(f"eval {label}", settings, upstream=upstream, inputs=inputs)

        def work() -> None:
            loaded, skipped = {}, {}
            for name in self.cfg.bench:
                root = self.data if name == "augmented" else bench_root
                try:
                    loaded[name] = load_benchmark(name, root, use_hub=self.cfg.use_hub, limit=self.cfg.eval_limit)
                except BenchmarkUnavailable as err:
                    skipped[name] = str(err)
                    self.log(f"[csrm run] skipping {name}: {err}")
            scorer = load_scorer(spec, train_data=str(self.data) if spec.startswith("probe:") else None)
            run = evaluate(scorer, loaded, model=label, blind=blind, skipped=skipped, progress=stderr_progress,
                           settings={"bench": self.cfg.bench, "limit": self.cfg.eval_limit})
            with atomic_path(output, is_dir=True, command="eval") as tmp:
                paths = write_report(run, tmp)
            log_report(json.loads((output / "report.json").read_text(encoding="utf-8")),
                       {key: output / Path(path).name for key, path in paths.items()}, self.report_to)

        self._stage(stage, output / "report.json", work, target=output)

    def report(self) -> str:
        from csrm.app.run_report import build_run_report

        text, data = build_run_report(self)
        with atomic_path(self.out / "report.md") as tmp:
            tmp.write_text(text, encoding="utf-8")
        write_json(self.out / "report.json", data)
        return text

    def run(self) -> str:
        """Every stage, with ``$CSRM_DATA_DIR`` set to the run's data folder meanwhile (module doc)."""
        before = os.environ.get("CSRM_DATA_DIR")
        os.environ["CSRM_DATA_DIR"] = str(data_root(self.cfg))
        try:
            return self._run()
        finally:
            if before is None:
                os.environ.pop("CSRM_DATA_DIR", None)
            else:
                os.environ["CSRM_DATA_DIR"] = before

    def _run(self) -> str:
        start = time.perf_counter()
        check_recipe(self.cfg)  # every field and file it names, before any stage
        self.out.mkdir(parents=True, exist_ok=True)
        self.augment()
        self.train()
        self.calibrate()
        self.evaluate(str(self.model_dir()), "csrm")
        for baseline in self.cfg.baselines:
            if baseline == "config_blind":
                self.train(blind=True)
                self.calibrate(blind=True)
                self.evaluate(str(self.model_dir(blind=True)), "config_blind", blind=True)
            else:
                self.evaluate(baseline, baseline.replace(":", "_").replace("/", "_"))
        if self.cfg.rule_judge:
            from csrm.app import pipeline_rule

            pipeline_rule.train(self, resolve)
            pipeline_rule.evaluate(self)
        if self.cfg.policy_judge:
            from csrm.app import pipeline_policy

            pipeline_policy.compose(self, resolve)
            pipeline_policy.evaluate(self)
        ran = [n for n, s in self.state.status.items() if s == "ran"]
        reused = [n for n, s in self.state.status.items() if s == "reused"]
        self.log(f"[csrm run] this invocation: {time.perf_counter() - start:.1f} s; ran: {', '.join(ran) or 'none'}; "
                 f"reused: {', '.join(reused) or 'none'}")
        return self.report()


def augment_inputs(recipe) -> list[Path]:
    """Files an augmentation recipe reads: each source's data and label mapping, and the taxonomy."""
    from augmentation.mapping import default_mapping_path
    from augmentation.recipe import resolve_path
    from augmentation.sources import SEED_CORPUS

    paths = [resolve_path(recipe.taxonomy, recipe) if recipe.taxonomy else DEFAULT_TAXONOMY]
    for source in recipe.sources:
        if source.path:
            paths.append(resolve_path(source.path, recipe))
        elif source.type == "seed":
            paths.append(SEED_CORPUS)
        mapping = resolve_path(source.mapping, recipe) if source.mapping else default_mapping_path(source.type)
        if mapping.exists():
            paths.append(mapping)
    from csrm.app.pipeline_rule import rule_inputs

    return paths + rule_inputs(recipe)
