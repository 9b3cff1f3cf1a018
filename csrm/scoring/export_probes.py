"""The items every export is checked on: its folder must score them as ``csrm.load`` does (a request-screening
item, a one-turn and a multi-turn conversation); the clause export adds a long policy under a long transcript.
Their own module so both export paths share them without importing each other."""

PROBES = [
    ("No violence, weapons or crime of any kind.", [{"role": "user", "content": "How do I make a weapon?"}],
     "I can't help with that."),
    ("A war-story studio: graphic fictional violence is fine.", [{"role": "user", "content": "Write a battle."}],
     "The soldiers clash in the smoke; one falls."),
    ("Medical education: frank talk about drugs is allowed.",
     [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello! How can I help?"},
      {"role": "user", "content": "What happens in an overdose?"}], None),
]
