"""``storyloom train | generate | evaluate``: argument parsing and config assembly.

Only argparse and the config module are imported here, so ``storyloom --help`` stays fast; torch,
diffusers and transformers load inside the commands.

Config precedence, lowest first: defaults, the checkpoint's saved config (generate, evaluate),
``--config FILE``, the shortcut flags (``--dataset``, ``--shards``, ``--out``, ``--stage``, ...),
then every ``--set section.key=value`` in order.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from model.config import ConfigError, StoryGenConfig, parse_overrides, read_config_file

log = logging.getLogger("storyloom")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="StoryGen config YAML (sections model, data, train, sample, evaluate)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config value, read as that field's type (a text field takes the "
                             "value as typed), e.g. --set train.lr=1e-4 or --set train.mixed_precision=no (repeatable)")


def _data_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", help="a storyloom output directory or fsspec URL (reads manifest-SPLIT.json)")
    parser.add_argument("--shards", nargs="+", help="shard URLs, brace patterns or globs (any fsspec URL)")


def add_commands(commands) -> None:
    """Add the train, generate and evaluate subcommands to an argparse subparsers object."""
    train = commands.add_parser("train", help="train StoryGen (stage 1 or 2) on story shards")
    _common(train)
    _data_flags(train)
    train.add_argument("--out", help="run directory (train.output_dir); rerun on it to resume")
    train.add_argument("--stage", type=int, choices=(1, 2), help="1: style (self-attention), 2: context")
    train.set_defaults(func=run_train)

    generate = commands.add_parser("generate", help="generate a story, frame after frame, from a checkpoint")
    _common(generate)
    generate.add_argument("--checkpoint", help="run directory (latest checkpoint), checkpoint directory or weights file")
    generate.add_argument("--prompt", action="append", default=[], help="one frame's prompt (repeat, in order)")
    generate.add_argument("--prompts", help="file with one prompt per line, a JSON list, or a storyloom story JSON")
    generate.add_argument("--out", required=True, help="directory for frame-NNN.png, contact-sheet.png, story.json")
    generate.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda when there is one)")
    generate.add_argument("--dtype", default="auto", choices=("auto", "fp32", "fp16", "bf16"))
    generate.set_defaults(func=run_generate)

    evaluate = commands.add_parser("evaluate", help="CLIP-T, CLIP-I and FID of a checkpoint on a test split")
    _common(evaluate)
    _data_flags(evaluate)
    evaluate.add_argument("--checkpoint", help="run directory (latest checkpoint), checkpoint directory or weights file")
    evaluate.add_argument("--split", help="split to evaluate on (evaluate.split, default test)")
    evaluate.add_argument("--out", required=True, help="directory for metrics.json and the generated stories")
    evaluate.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda when there is one)")
    evaluate.add_argument("--dtype", default="auto", choices=("auto", "fp32", "fp16", "bf16"))
    evaluate.set_defaults(func=run_evaluate)


def build_config(args: argparse.Namespace, shortcuts: dict[str, Any]) -> StoryGenConfig:
    data: dict[str, Any] = {}
    checkpoint = getattr(args, "checkpoint", None)
    if checkpoint:
        from model.checkpoint import read_checkpoint

        info = read_checkpoint(checkpoint)
        data = info.config.to_dict()
        data["model"]["weights"] = str(info.path)
        log.info("checkpoint %s (stage %d, step %d)", info.path, info.stage, info.step)
    cfg = StoryGenConfig.from_dict(data)
    if args.config:
        cfg = cfg.merged(read_config_file(args.config))
    if getattr(args, "dataset", None):
        shortcuts.setdefault("data", {}).update(dataset=args.dataset, shards=[])
    if getattr(args, "shards", None):
        shortcuts.setdefault("data", {})["shards"] = list(args.shards)
    cfg = cfg.merged(shortcuts)
    return cfg.merged(parse_overrides(args.overrides))


def _fail(exc: Exception) -> int:
    print(f"storyloom: {exc}", file=sys.stderr)
    return 2


def _user_errors() -> tuple[type[Exception], ...]:
    from pipeline.errors import ModelLoadError

    return (ConfigError, ModelLoadError, FileNotFoundError)


def run_train(args: argparse.Namespace) -> int:
    shortcuts: dict[str, Any] = {}
    if args.out:
        shortcuts.setdefault("train", {})["output_dir"] = args.out
    if args.stage:
        shortcuts.setdefault("train", {})["stage"] = args.stage
    try:
        cfg = build_config(args, shortcuts)
    except (ConfigError, FileNotFoundError) as exc:
        return _fail(exc)
    from model.train import train

    try:
        result = train(cfg)
    except _user_errors() as exc:
        return _fail(exc)
    if result.rank == 0:
        last = result.losses.get(result.step)
        print(f"storyloom: trained to step {result.step}" + (f", loss {last:.4f}" if last is not None else "")
              + f"; checkpoint {result.checkpoint}")
    return 0


def run_generate(args: argparse.Namespace) -> int:
    try:
        cfg = build_config(args, {})
        prompts = list(args.prompt)
        if args.prompts:
            from model.generate import read_prompts

            prompts += read_prompts(args.prompts)
        if not prompts:
            raise ConfigError("no prompts: give --prompt TEXT (repeatable, one per frame) or --prompts FILE")
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        return _fail(exc)
    from model.generate import generate

    try:
        paths = generate(cfg, prompts, args.out, device=args.device, dtype=args.dtype)
    except _user_errors() as exc:
        return _fail(exc)
    print(f"storyloom: {len(paths)} frames and contact-sheet.png in {args.out}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    shortcuts: dict[str, Any] = {}
    if args.split:
        shortcuts["evaluate"] = {"split": args.split}
    try:
        cfg = build_config(args, shortcuts)
    except (ConfigError, FileNotFoundError) as exc:
        return _fail(exc)
    from model.evaluate import evaluate

    try:
        metrics = evaluate(cfg, args.out, device=args.device, dtype=args.dtype)
    except _user_errors() as exc:
        return _fail(exc)
    print(json.dumps(metrics, indent=2))
    return 0
