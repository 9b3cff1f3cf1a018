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
    if recipe.sources:
        manifest = run(recipe)
        for split in ("train", "validation"):
            ex, pr = manifest["examples"][split], manifest["pairs"][split]
            print(f"{split}: {ex['count']} examples ({ex['compliant_fraction']:.1%} compliant), {pr['count']} pairs")
    if recipe.rules.enabled:  # after the sources: their writer replaces output_dir as a whole
        from augmentation.recipe import resolve_path
        from augmentation.rules.generate import run_rules

        rules = run_rules(recipe.rules, recipe.seed, recipe.output_dir, lambda p: resolve_path(p, recipe))
        for split, info in rules["splits"].items():
            print(f"rules {split}: {info['count']} rows ({info['fail_fraction']:.1%} FAIL), lengths-only probe "
                  f"AUROC {info['lengths_probe_auroc_cv']} (cross-validated)")
        print(f"rules generated in {rules['total_seconds']:.1f} s")
    print(f"wrote {recipe.output_dir}")
    return 0
