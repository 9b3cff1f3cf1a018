"""Small hand-made rule data in the hub schema and tiny models for the rule judge's tests (no hub, no data)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from csrm.base.paths import default_backbone
from csrm.base.rule_text import Turn, format_rules, format_turns

PHONE_RULE = "Never reveal a customer's phone number."
OTHER_RULES = ["Do not discuss the weather.", "If the user mentions pizza, include the word 'cheese'.",
               "Use no more than three sentences in any response.", "Never recommend a competitor.",
               "Always greet the user politely.", "Do not give legal advice."]
BENIGN = ["Happy to help with your order today.", "Your package ships on Monday.",
          "Our store opens at nine in the morning.", "Thanks for reaching out to support."]
QUESTIONS = ["Can you help me?", "What is the status of my order?", "When do you open?", "How do I contact Sam?"]


def rows(n: int, seed: int) -> list[dict]:
    """``n`` rows: a policy of 2-4 rules (the phone rule somewhere in half of them), 2 Agent turns, and a phone
    number in one Agent turn of some rows; FAIL iff the phone rule is present and a number is given."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        rules = rng.sample(OTHER_RULES, rng.randint(1, 3))
        has_rule = i % 2 == 0
        if has_rule:
            rules.insert(rng.randint(0, len(rules)), PHONE_RULE)
        leak = rng.random() < 0.6
        turns = [Turn("user", rng.choice(QUESTIONS)), Turn("assistant", rng.choice(BENIGN)),
                 Turn("user", rng.choice(QUESTIONS)),
                 Turn("assistant", f"Sure, Sam's number is 555-{rng.randint(1000, 9999)}." if leak
                      else rng.choice(BENIGN))]
        violations = [[rules.index(PHONE_RULE) + 1, 3]] if has_rule and leak else []
        meta = {"family": "disclosure" if has_rule else "topic", "contrast": "original", "violations": violations,
                "rules_violated": [v[0] for v in violations], "num_rules": len(rules), "num_turns": 4}
        out.append({"policy": format_rules(rules), "transcript": format_turns(turns),
                    "label": "FAIL" if violations else "PASS", "base_id": f"b{seed}-{i}",
                    "metadata": json.dumps(meta)})
    return out


def write_dataset(root: Path, n_train: int = 48, n_dev: int = 16, n_test: int = 16) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, n, seed in (("train", n_train, 1), ("dev", n_dev, 2), ("test", n_test, 3)):
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows(n, seed)))
    return root


def tiny_backbone(root: Path, seed: int = 0, init_range: float = 0.02) -> Path:
    """A 2-layer, 32-wide BERT with the MiniLM tokenizer, saved as a transformers folder. ``init_range``: the
    weights' initial std; BERT's 0.02 leaves a 32-wide random model's output almost independent of its input
    (measured: the same logit to 4 decimals for different pairs), and a few hundred pairs do not move it."""
    tok = AutoTokenizer.from_pretrained(default_backbone())
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512, num_labels=1, initializer_range=init_range,
                        problem_type="multi_label_classification")
    BertForSequenceClassification(config).save_pretrained(str(root))
    tok.save_pretrained(str(root))
    return root


def tiny_decoder_backbone(root: Path, seed: int = 0, init_range: float = 0.2) -> Path:
    """A 2-layer, 32-wide Llama with a word-level tokenizer built from this module's texts, saved as a
    transformers folder (``init_range`` as for :func:`tiny_backbone`): a decoder whose tokenizer, like SmolLM2's, puts no special tokens between two segments
    and names no ``token_type_ids`` (the rule judge's other backbone kind; no hub, no GGUF)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForSequenceClassification, PreTrainedTokenizerFast

    words = Tokenizer(models.WordLevel(unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    corpus = [PHONE_RULE, *OTHER_RULES, *BENIGN, *QUESTIONS, "Sure, Sam's number is 555-0199.",
              "Rule: Conversation: Does the Agent's reply break the rule? User: Agent:", *map(str, range(10))]
    words.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=["<unk>", "<pad>", "<eos>"]))
    tok = PreTrainedTokenizerFast(tokenizer_object=words, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>",
                                  model_input_names=["input_ids", "attention_mask"])
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         num_key_value_heads=2, intermediate_size=64, max_position_embeddings=512, num_labels=1,
                         pad_token_id=tok.pad_token_id, problem_type="multi_label_classification",
                         initializer_range=init_range)
    LlamaForSequenceClassification(config).save_pretrained(str(root))
    tok.save_pretrained(str(root))
    return root


class KeywordJudge(torch.nn.Module):
    """A deterministic pair model for the aggregation tests: logit +4 when the rule segment holds ``rule_word``
    and the judged segment holds ``text_word``, else -4 (token ids from the MiniLM tokenizer)."""

    def __init__(self, rule_word: int, text_word: int):
        super().__init__()
        self.rule_word, self.text_word = rule_word, text_word

    def forward(self, input_ids, token_type_ids, attention_mask, **_):
        in_rule = ((input_ids == self.rule_word) & (token_type_ids == 0)).any(dim=1)
        in_text = ((input_ids == self.text_word) & (token_type_ids == 1)).any(dim=1)
        logits = torch.where(in_rule & in_text, 4.0, -4.0).unsqueeze(1)
        return type("Out", (), {"logits": logits})()
