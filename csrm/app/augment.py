"""``csrm augment RECIPE.yaml [key=value | --key value ...]``: run the augmentation stage from a recipe."""

from __future__ import annotations

import sys

from augmentation.pipeline import run
from augmentation.recipe import Recipe, load_recipe
from csrm.base.config import command_parser, dump, help_text, parse_command


def main(argv: list[str] | None = None) -> int:
    parser = command_parser("csrm augment", "Synthesize config-targeted examples and preference pairs.",
                            help_text(Recipe), config_help="recipe YAML (see configs/augment/)")
    args, overrides = parse_command(parser, sys.argv[1:] if argv is None else argv)
    recipe = load_recipe(args.config, overrides)
    if args.print_config:
        print(dump(recipe), end="")
        return 0
    manifest = run(recipe)
    for split in ("train", "validation"):
        ex, pr = manifest["examples"][split], manifest["pairs"][split]
        print(f"{split}: {ex['count']} examples ({ex['compliant_fraction']:.1%} compliant), {pr['count']} pairs")
    print(f"wrote {recipe.output_dir}")
    return 0
