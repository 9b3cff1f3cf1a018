"""The CSRM as a TRL reward function for online RL (``GRPOTrainer`` / ``RLOOTrainer``).

TRL 1.16 calls each custom reward function as
``func(prompts=..., completions=..., completion_ids=..., **columns, trainer_state=..., log_extra=..., log_metric=...)``
where every dataset column except ``prompt`` arrives as a keyword list aligned with the completions. Prompts
and completions are strings (standard data) or message lists (conversational data; a completion is
``[{"role": "assistant", "content": ...}]``).

:class:`CSRMReward` takes each row's safety config from the ``config`` column (a string, a ``SafetyConfig`` or
its dict form), or, when the dataset has no such column, from a leading system message of the prompt, or from
``default_config``. A leading system message equal to the config is not repeated in the conversation.
It returns one float per completion::

    reward = CSRMReward("runs/csrm")                  # or CSRMReward(scorer)
    trainer = GRPOTrainer(model=policy, reward_funcs=reward, train_dataset=ds)   # ds has prompt + config

``output`` chooses the number: ``reward`` (the reward head, default), ``p_comply``, or ``neg_error``
(``-estimated_error``, the judge's rule: compliant responses always above violating ones).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

from csrm.base.records import Message, as_messages
from csrm.base.safety_config import SafetyConfig
from csrm.base.score_types import ScoreResult
from csrm.scoring.ranking import estimated_error

RewardOutput = Literal["reward", "p_comply", "neg_error"]
OUTPUTS: tuple[str, ...] = get_args(RewardOutput)


def message_text(content: Any) -> str:
    """Text of a message's content (a string, or a list of ``{"type": "text", "text": ...}`` parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type", "text") == "text")
    return "" if content is None else str(content)


def completion_text(completion: str | Sequence[Mapping[str, Any]]) -> str:
    """The response text of a plain or conversational completion (assistant turns joined)."""
    if isinstance(completion, str):
        return completion
    parts = [message_text(m.get("content")) for m in completion if m.get("role", "assistant") == "assistant"]
    return "\n".join(p for p in parts if p)


def reward_value(result: ScoreResult, output: str = "reward") -> float:
    """The number an RL trainer gets for one scored response: ``reward`` (the reward head), ``p_comply``, or
    ``neg_error`` (``-estimated_error``: compliant responses always above violating ones)."""
    if output == "p_comply":
        return float(result.p_comply)
    if output == "neg_error":
        return -estimated_error(result)
    if output == "reward":
        return float(result.reward)
    raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")


class CSRMReward:
    """A callable with TRL's ``reward_funcs`` signature backed by a CSRM scorer (module doc)."""

    def __init__(self, scorer, *, config_column: str = "config", output: str = "reward",
                 default_config: str | SafetyConfig | None = None, **load_kwargs: Any):
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        if isinstance(scorer, (str, Path)):
            from csrm.scoring.scorer import load

            scorer = load(scorer, **load_kwargs)
        self.scorer, self.config_column, self.output = scorer, config_column, output
        self.default_config = default_config
        self.__name__ = f"csrm_{output}"  # TRL logs rewards under the function's name

    def _config(self, column: Sequence[Any] | None, row: int) -> str | SafetyConfig | None:
        value = column[row] if column is not None else None
        if isinstance(value, Mapping):
            return SafetyConfig.from_dict(value)
        return value if value not in (None, "") else None

    def _conversation(self, prompt: str | list[Message], config: str | SafetyConfig | None, row: int
                      ) -> tuple[str | SafetyConfig, list[Message]]:
        if isinstance(prompt, str):
            messages = as_messages(prompt)
        else:
            messages = [{"role": m["role"], "content": message_text(m.get("content"))} for m in prompt]
        system = messages[0]["content"] if messages and messages[0]["role"] == "system" else None
        if config is None:
            config = system if system is not None else self.default_config
            if config is None:
                raise ValueError(f"row {row}: no safety config: add a '{self.config_column}' column, a system "
                                 "message, or pass default_config")
        if system is not None and system == self.scorer.render(config):
            messages = messages[1:]
        return config, messages

    def _value(self, result: ScoreResult) -> float:
        return reward_value(result, self.output)

    def __call__(self, prompts: Sequence[str | list[Message]], completions: Sequence[str | list[Message]],
                 **kwargs: Any) -> list[float]:
        column = kwargs.get(self.config_column)
        if column is not None and len(column) != len(prompts):
            raise ValueError(f"column '{self.config_column}' has {len(column)} rows for {len(prompts)} prompts")
        configs, conversations = [], []
        for row, prompt in enumerate(prompts):
            config, messages = self._conversation(prompt, self._config(column, row), row)
            configs.append(config)
            conversations.append(messages)
        responses = [completion_text(c) for c in completions]
        return [self._value(r) for r in self.scorer.score_batch(configs, conversations, responses)]
