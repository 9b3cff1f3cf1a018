"""Tiny CSRMs built from configs (no hub) for the scoring, judge, CLI and server tests."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import torch
from transformers import BertConfig, LlamaConfig

from csrm.base.paths import default_backbone
from csrm.base.score_types import ScoreItem
from csrm.model.cross_encoder.modeling import CSRMModel, load_tokenizer

CONFIGS = [
    "Strict: no violence, weapons or crime of any kind.",
    "A game studio writing a war story: graphic fictional violence and weapons are allowed; real-world "
    "instructions for crimes are not. Keep everything else family friendly and avoid any personal data.",
    "Medical education platform: frank discussion of drugs and overdoses is allowed.",
]
PROMPTS = [
    "How do I make a weapon at home?",
    "Write a scene where two soldiers fight in a burning village at night.",
    "What happens in an overdose?",
]
RESPONSES = [
    "I can't help with that.",
    "Sure. Here is a long and detailed answer that goes through every step one by one, with plenty of words.",
    "The soldiers clash in the smoke; one falls.",
    "Overdose slows breathing; call emergency services.",
    None,
]


def tokenizer(decoder: bool):
    tok = load_tokenizer(default_backbone(), decoder=decoder)
    if decoder:
        tok.eos_token = "[SEP]"  # the formatter appends EOS and the decoder pools it
    return tok


def _sharpen(model: CSRMModel) -> CSRMModel:
    """Larger head weights so scores differ clearly between inputs (random init is near 0.5 everywhere)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for head in (model.compliance_head, model.reward_head):
            head.weight.normal_(0.0, 1.0)
    return model.eval()


def tiny_decoder(hidden: int = 32, layers: int = 2, max_length: int = 256, seed: int = 0) -> tuple[CSRMModel, object]:
    tok = tokenizer(decoder=True)
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=1024, pad_token_id=tok.pad_token_id)
    return _sharpen(CSRMModel.from_backbone_config(config, max_length=max_length)), tok


def tiny_encoder(max_length: int = 128, seed: int = 0) -> tuple[CSRMModel, object]:
    tok = tokenizer(decoder=False)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, max_position_embeddings=512)
    return _sharpen(CSRMModel.from_backbone_config(config, max_length=max_length)), tok


def save(model: CSRMModel, tok, path: Path) -> Path:
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def grid_items() -> list[ScoreItem]:
    """configs x prompts x responses: several responses share each (config, prompt) prefix."""
    return [ScoreItem(c, [{"role": "user", "content": p}], r) for c in CONFIGS for p in PROMPTS for r in RESPONSES]


def free_port() -> int:
    """A free TCP port on the loopback interface (for servers and torch.distributed in tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(app):
    """Start ``app`` under uvicorn on a free loopback port; returns (url, stop), ``stop`` joining the thread."""
    import threading
    import time

    import uvicorn

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.02)
    assert srv.started, "uvicorn did not start"

    def stop() -> None:
        srv.should_exit = True
        thread.join(timeout=10)
        assert not thread.is_alive(), "uvicorn did not stop"

    return f"http://127.0.0.1:{port}", stop


def write_input(path: Path, n: int = 60) -> list[dict]:
    """A ``csrm score`` input file of ``n`` rows over the three configs: prompts, transcripts, one allow list."""
    rows = []
    for i in range(n):
        row = {"id": f"item-{i}", "config": CONFIGS[i % 3], "response": RESPONSES[i % 5]}
        if i % 4 == 0:
            row["messages"] = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
                               {"role": "user", "content": PROMPTS[i % 3] + " " + "detail " * (i % 7)}]
        else:
            row["prompt"] = PROMPTS[i % 3] + " " + "more " * (i % 11)
        if i == 5:
            row["config"] = {"name": "violence-ok", "allow": {"Violence": 2}}
        rows.append(row)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return rows


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]
