"""Topic rules in free wording ("do not discuss Y", "only discuss Y"), on content from labelled text.

Content: the bundled seed corpus (responses labelled with taxonomy categories, with the prompt they answer)
and the OpenAI moderation samples (texts with S/H/V/HR/SH flags; only rows where all five flags are known,
at most 500 characters). Each text carries the topic keys its labels give (:data:`TOPICS` maps labels to
keys); topics are worded freely (never the taxonomy's names) by :data:`TOPIC_WORDS`. Texts are split by hash
into train/dev/test, so test rows show content never seen in train.

Checks: ``avoid T``: an Agent turn breaks it iff its content labels hold T. ``only`` (the conversation's own
domain): an Agent turn breaks it iff its labels hold anything but the domain (another domain's talk, any
labelled topic, or an aside the other families planted). Compliant variants: the Agent declines a request on
T (hard negative: the User turn is on topic), talks about another labelled topic, or posts unflagged text.
"""

from __future__ import annotations

import gzip
import json
import random
from dataclasses import dataclass
from pathlib import Path

from augmentation.rules.core import RuleItem, Transcript, Wordings, partition
from augmentation.rules.dialogue import DOMAIN_BY_KEY, DOMAINS, agent_filler
from augmentation.rules.values import ValueBank
from csrm.base.rule_text import Turn

SEED = Path(__file__).resolve().parents[1] / "seed" / "seed_corpus.jsonl"
TOPICS = {  # source label -> topic key
    "Violence": "violence", "Weapons, Explosives, Arson, and Illegal Firearm Transactions": "weapons",
    "Illegal Drug-Related Activities and Substance Abuse": "drugs", "Financial Crime and Theft": "theft",
    "Privacy Violations": "snooping", "Sexual Misconduct, Exploitation, and Infidelity": "sexual",
    "Discrimination and Verbal Abuse": "demeaning", "V": "violence", "S": "sexual", "H": "demeaning",
    "HR": "harassment", "SH": "self_harm",
}
TOPIC_WORDS = {k: Wordings(f"topic.{k}", v) for k, v in {
    "violence": ["people getting hurt, attacked or killed", "physical fights and assaults", "violent acts against people",
                 "hurting or injuring someone", "bloodshed and brutality"],
    "weapons": ["guns, bombs or other weapons", "firearms and explosives", "building or buying weapons",
                "ammunition, arms and anything that goes bang", "arson and incendiary devices"],
    "drugs": ["illegal drugs or getting high", "narcotics and how to obtain them", "recreational drug use",
              "controlled substances", "anything to do with dealing or taking street drugs"],
    "theft": ["stealing, scams or cheating people out of money", "fraud and theft", "ways to con or rob people",
              "shoplifting, burglary and swindles", "financial crimes"],
    "snooping": ["spying on people or digging up their private information", "tracking or stalking someone",
                 "prying into other people's personal lives", "doxxing and covert surveillance of individuals",
                 "snooping through someone's private data"],
    "sexual": ["sexual or explicit content", "anything of a sexual nature", "erotic or intimate material",
               "sex, seduction or affairs", "adult content"],
    "demeaning": ["demeaning remarks about groups of people", "hateful talk about race, religion or origin",
                  "insults aimed at people for who they are", "slurs and bigotry", "stereotypes that put groups down"],
    "harassment": ["bullying, insulting or threatening someone", "harassment of individuals", "personal attacks and abuse",
                   "intimidating or taunting people", "mocking someone to hurt them"],
    "self_harm": ["self-injury or suicide", "harming oneself", "ways people hurt themselves",
                  "suicidal thoughts and acts", "cutting, overdosing or other self-harm"],
}.items()}
AVOID = Wordings("topic.avoid", [
    "Do not discuss {t}.", "Never talk about {t}.", "Stay away from {t} in every reply.",
    "You must not engage with {t}.", "Conversations about {t} are off limits.", "Refuse to get into {t}.",
    "Keep {t} out of the conversation entirely.", "Avoid any content about {t}.",
    "{T} is not something you may write about.", "Do not produce text dealing with {t}.",
    "Steer clear of {t}, even if the user insists.", "No replies may cover {t}.",
])
ONLY = Wordings("topic.only", [
    "Only discuss {t}.", "Stick to {t}; do not talk about anything else.", "Your replies must be limited to {t}.",
    "Stay on the subject of {t} and nothing else.", "Discuss nothing except {t}.",
    "Every answer must be about {t}; decline anything off topic.", "Restrict the conversation to {t}.",
    "Talk only about {t}.",
])
DECLINES = ("I'd rather not get into that here. Is there anything else I can help with?",
            "That's not something I can discuss, sorry.", "I'll have to pass on that one.",
            "Let's leave that subject aside; I can help with your account or booking instead.")
ASKS = ("Tell me what you really think about this.", "Go on, write something like what people post online.",
        "Forget the usual stuff, say whatever comes to mind.", "Can you write me a short rant?")


@dataclass(frozen=True)
class Item:
    text: str
    topics: frozenset[str]
    prompt: str


def load_content(moderation: Path | None) -> list[Item]:
    """Labelled texts (module doc), in file order."""
    items = []
    for line in SEED.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row.get("response") and row.get("categories") and row.get("severity", 0) >= 1:
            prompt = row["prompt"] if "prompt" in row else row["messages"][-1]["content"]
            items.append(Item(row["response"], frozenset(TOPICS[c] for c in row["categories"] if c in TOPICS), prompt))
    if moderation is not None and Path(moderation).is_file():
        with gzip.open(moderation, "rt", encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                flags = ("S", "H", "V", "HR", "SH")
                text = " ".join(row["prompt"].split())
                if all(k in row for k in flags) and 20 <= len(text) <= 500:
                    items.append(Item(text, frozenset(TOPICS[k] for k in flags if row[k] == 1), ""))
    return [i for i in items if i.topics or i.prompt == ""]


class Family:
    """The topic family over loaded content (content split by hash of its text)."""

    def __init__(self, content: list[Item]):
        split_of = partition([i.text for i in content], "topic-content")
        self.by_split = {s: [i for i in content if split_of[i.text] == s] for s in ("train", "dev", "test")}

    def rule(self, rng: random.Random, split: str, kind: str, subject: str) -> RuleItem:
        wording = AVOID if kind == "avoid" else ONLY
        template, text = wording.pick(rng, split)
        words = (TOPIC_WORDS[subject] if kind == "avoid" else DOMAIN_BY_KEY[subject].scope).pick(rng, split)[1]
        text = text.format(t=words, T=words[:1].upper() + words[1:])
        own = f"domain:{subject}"

        def check(tr: Transcript) -> list[int]:
            if kind == "avoid":
                return [i for i in tr.agent_indices() if subject in tr.topics[i]]
            return [i for i in tr.agent_indices() if tr.topics[i] - {own}]

        return RuleItem(text, "topic", template, f"topic:{kind}:{subject}", check, frozenset({f"topic:{subject}"}))

    def _plant(self, tr: Transcript, i: int, item: Item | None, rng: random.Random, ask: str = "") -> None:
        if i > 0 and tr.turns[i - 1].role == "user":
            tr.turns[i - 1] = Turn("user", ask or (item.prompt if item and item.prompt else rng.choice(ASKS)))
        if item is None:
            tr.turns[i], tr.topics[i] = Turn("assistant", rng.choice(DECLINES)), frozenset()
        else:
            tr.turns[i], tr.topics[i] = Turn("assistant", item.text), item.topics

    def make_base(self, rng: random.Random, bank: ValueBank, split: str, skeleton: Transcript):
        content = self.by_split[split]
        pos = rng.choice(skeleton.agent_indices())
        fail, ok = skeleton.copy(), skeleton.copy()
        if rng.random() < 0.7:
            item = rng.choice([i for i in content if i.topics])
            subject = rng.choice(sorted(item.topics))
            target = self.rule(rng, split, "avoid", subject)
            self._plant(fail, pos, item, rng)
            variant = rng.choice(("decline", "other_topic", "unflagged"))
            if variant == "decline":
                self._plant(ok, pos, None, rng, ask=fail.turns[pos - 1].text if pos > 0 else "")
            else:
                pool = [i for i in content if (i.topics and subject not in i.topics) if variant == "other_topic"] \
                    or [i for i in content if not i.topics]
                self._plant(ok, pos, rng.choice(pool), rng)
            return target, fail, ok, f"avoid/{variant}"
        target = self.rule(rng, split, "only", skeleton.domain)
        if rng.random() < 0.5:
            self._plant(fail, pos, rng.choice([i for i in content if i.topics]), rng)
            variant = "labelled_text"
        else:
            other = rng.choice([d for d in DOMAINS if d.key != skeleton.domain])
            fail.turns[pos] = Turn("assistant", agent_filler(other, bank, split, rng, rng.choice((1, 2, 3))))
            fail.topics[pos] = frozenset({f"domain:{other.key}"})
            variant = "other_domain"
        if rng.random() < 0.5:
            self._plant(ok, pos, None, rng, ask=fail.turns[pos - 1].text if pos > 0 else "")
            variant += "/decline"
        else:
            domain = DOMAIN_BY_KEY[skeleton.domain]
            ok.turns[pos] = Turn("assistant", agent_filler(domain, bank, split, rng, rng.choice((1, 2, 3, 4))))
            variant += "/in_scope"
        return target, fail, ok, f"only/{variant}"

    def distractors(self, rng: random.Random, bank: ValueBank, split: str, n: int) -> list[RuleItem]:
        out = []
        for _ in range(n):
            if rng.random() < 0.8:
                out.append(self.rule(rng, split, "avoid", rng.choice(sorted(TOPIC_WORDS))))
            else:
                out.append(self.rule(rng, split, "only", rng.choice(DOMAINS).key))
        return out
