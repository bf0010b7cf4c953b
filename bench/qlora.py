"""QLoRA training throughput: our trainer beside the seed reports' recipes, same model shape, same data.

Three recipes, each in its own process (so peak memory is its own), on the same random-weight
Qwen2-style model, the same conversations (a real export when ``--export`` is given, else the
ESConv example slice as chat messages) in the same order, a few optimizer steps after a warm-up:

* ``ours``: ``finetune.train.build_trainer`` as ``workbench finetune`` runs it: TRL SFTTrainer,
  assistant-only loss, bfd packing, padding-free, LoRA on every linear layer, 4-bit NF4 base;
* ``seed 000``: plain transformers Trainer + peft + bitsandbytes as the report did it: batch 1,
  gradient accumulation 4, every example padded to ``--pad-to`` (1024 in the report), LoRA on
  q/v only, fp16 where the GPU has it, loss on every non-pad token;
* ``seed 003``: batch 4, dynamic padding (to the longest in the batch), LoRA on q/k/v/o, fp16.

Reported per recipe: processed (non-pad) tokens/s, trained (loss-carrying) tokens/s and peak memory
(GPU: ``torch.cuda.max_memory_allocated``; CPU: the process's peak RSS), with ratios to the seed 003
recipe. The trained-token ratio mixes speed with the loss mask (ours trains on assistant tokens
only, ~43 % of the ESConv tokens; the seeds on every token), so the processed-token ratio is shown
too. On a GPU the model has Qwen2.5-0.5B's shape; on CPU a scaled-down shape (``--shape``) and
shorter sequences, so CPU numbers are only comparable as ratios.

On CPU the rates are per second of the process's CPU time (user + system, OpenMP threads waiting
passively), not of wall time: on a shared machine another job's load lands on whichever recipe runs
at that moment, and wall-clock ratios moved by 2x between runs. ``--repeat`` runs the recipes in
turn several times and reports each recipe's median.

Caveats for CPU numbers: the scaled-down shape keeps Qwen2.5's 151,936-token vocabulary, so the LM
head (tied, 151,936 x 256) is ~90 % of a step, and TRL's fused LM head has no Triton kernel on CPU
(its torch fallback scores every position, not only the loss-carrying ones as on a GPU); and at the
CPU ``--max-length`` of 256 every ESConv conversation (318 to 2,262 tokens) is truncated, so nothing
is packed. ``--set`` changes our recipe's config (``FinetuneConfig`` fields) to try settings.

    python bench/qlora.py                      # CPU: ~2 min on 2 cores
    python bench/qlora.py --recipes "seed 003,ours" --set gradient_checkpointing=false --repeat 2
    python bench/qlora.py --export example-e1 --store workbench-store   # the export `make run` writes
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RECIPES = ("seed 003", "seed 000", "ours")


def conversations(args) -> list[list[dict]]:
    """Chat messages: an export's train split, else the ESConv example slice (train)."""
    if args.export:
        from curation.store import SnapshotStore
        from finetune.config import FinetuneConfig
        from finetune.train import load_export

        data = load_export(SnapshotStore(args.store), args.export, FinetuneConfig(tasks=list(_all_tasks())))
        rows = [list(r["messages"]) for r in data.train.select_columns(["messages"])]
    else:
        rows = []
        path = ROOT / "examples" / "data" / "esconv" / "hf" / "train.txt"
        for line in path.read_text(encoding="utf-8").splitlines():
            messages: list[dict] = []
            for turn in json.loads(line)["dialog"]:
                role = "user" if turn["speaker"] == "usr" else "assistant"
                if messages and messages[-1]["role"] == role:
                    messages[-1]["content"] += " " + turn["text"]
                else:
                    messages.append({"role": role, "content": turn["text"]})
            while messages and messages[0]["role"] == "assistant":
                messages.pop(0)
            while messages and messages[-1]["role"] == "user":
                messages.pop()
            if len(messages) >= 2:
                rows.append(messages)
    import random

    random.Random(0).shuffle(rows)
    return rows


def _all_tasks():
    from finetune.config import KNOWN_TASKS

    return KNOWN_TASKS


# ---- one recipe, in a child process ------------------------------------------------------------------


def child(args) -> dict:
    import torch
    from datasets import Dataset
    from transformers import TrainerCallback

    from finetune.tokenizer import load_tokenizer

    gpu = torch.cuda.is_available()
    tokenizer = load_tokenizer(args.model)
    rows = conversations(args)
    steps = args.warmup + args.steps
    timer = _Timer(args.warmup)

    class Timer(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            timer.mark(state.global_step)

    if args.recipe == "ours":
        from finetune.config import FinetuneConfig, parse_overrides
        from finetune.train import RunLog, build_trainer, detect_device, load_base_model, resolve_precision

        values = {
            "base_model": args.model,
            "max_length": args.max_length,
            "per_device_train_batch_size": args.ours_batch,
            "gradient_accumulation_steps": 1,
            "max_steps": steps,
            "eval_split": "",
            "save_steps": 10**9,
            "logging_steps": 10**9,
            "warmup_ratio": 0.0,
        }
        config = FinetuneConfig(**{**values, **parse_overrides(args.set or [])})
        device = detect_device()
        precision, dtype = resolve_precision(config, device)
        model = load_base_model(Path(args.model), config, device, dtype)
        counter = RunLog(None, say=lambda _: None)
        from finetune.train import TrainingData

        data = TrainingData(train=Dataset.from_list([{"messages": m} for m in rows]))
        trainer = build_trainer(
            model,
            tokenizer,
            data,
            config=config,
            output_dir=args.tmp,
            precision=precision,
            device=device,
            use_eval=False,
            callbacks=[counter, Timer()],
        )
        processed = _ProcessedTokens(trainer, padding_free=True)
        timer.sources = (lambda: counter.trained_tokens, processed.total)
    else:
        trainer, timer.sources = _seed_trainer(args, rows, tokenizer, steps, gpu, Timer())
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    out = timer.result()
    out["peak_memory_gib"] = (
        torch.cuda.max_memory_allocated() / 2**30
        if gpu
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    )
    out["device"] = torch.cuda.get_device_name(0) if gpu else "cpu"
    out["config"] = args.set or []
    return out


class _Timer:
    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.sources = (lambda: 0, lambda: 0)
        self.start: tuple[float, int, int, float] | None = None
        self.end: tuple[float, int, int, float] | None = None

    def mark(self, step: int) -> None:
        now = (time.perf_counter(), self.sources[0](), self.sources[1](), time.process_time())
        if step == self.warmup:
            self.start = now
        self.end = now

    def result(self) -> dict:
        assert self.start and self.end, "no steps were timed"
        seconds = self.end[0] - self.start[0]
        cpu_seconds = self.end[3] - self.start[3]
        return {
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "trained_tokens": self.end[1] - self.start[1],
            "processed_tokens": self.end[2] - self.start[2],
            "trained_per_s": (self.end[1] - self.start[1]) / seconds,
            "processed_per_s": (self.end[2] - self.start[2]) / seconds,
            "trained_per_cpu_s": (self.end[1] - self.start[1]) / cpu_seconds,
            "processed_per_cpu_s": (self.end[2] - self.start[2]) / cpu_seconds,
        }


class _ProcessedTokens:
    """Counts non-pad tokens fed to the model (wraps the trainer's training_step)."""

    def __init__(self, trainer, *, padding_free: bool) -> None:
        self.count = 0
        inner = trainer.training_step

        def step(model, inputs, num_items_in_batch=None):
            mask = inputs.get("attention_mask")
            self.count += int(mask.sum()) if mask is not None and not padding_free else int(inputs["input_ids"].numel())
            return inner(model, inputs, num_items_in_batch)

        trainer.training_step = step

    def total(self) -> int:
        return self.count


def _seed_trainer(args, rows, tokenizer, steps, gpu, timer_callback):
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        BitsAndBytesConfig,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
    )

    seed000 = args.recipe == "seed 000"
    half = gpu  # the seeds trained in fp16 on T4s
    dtype = torch.float16 if half else torch.float32
    quant = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=dtype,
        bnb_4bit_quant_storage=dtype,
    )
    kwargs = {"device_map": {"": 0}} if gpu else {}
    model = AutoModelForCausalLM.from_pretrained(args.model, quantization_config=quant, dtype=dtype, **kwargs)
    model.config.use_cache = False
    targets = ["q_proj", "v_proj"] if seed000 else ["q_proj", "k_proj", "v_proj", "o_proj"]
    model = get_peft_model(
        model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=targets, task_type="CAUSAL_LM")
    )
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    length = args.pad_to if seed000 else args.max_length

    def tokenize(row):
        text = tokenizer.apply_chat_template(row["messages"], tokenize=False)
        return tokenizer(
            text,
            truncation=True,
            max_length=length,
            padding="max_length" if seed000 else False,
            add_special_tokens=False,
        )

    dataset = Dataset.from_list([{"messages": m} for m in rows]).map(tokenize, remove_columns=["messages"])
    batch, accumulation = (1, 4) if seed000 else (4, 1)
    training_args = TrainingArguments(
        output_dir=args.tmp,
        per_device_train_batch_size=batch,
        gradient_accumulation_steps=accumulation,
        max_steps=steps,
        learning_rate=5e-5 if seed000 else 2e-4,
        fp16=half,
        use_cpu=not gpu,
        activation_checkpointing=True,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        logging_steps=10**9,
        seed=0,
        data_seed=0,
    )
    counts = {"trained": 0, "processed": 0}

    class SeedTrainer(Trainer):
        def training_step(self, model, inputs, num_items_in_batch=None):
            labels, mask = inputs["labels"], inputs["attention_mask"]
            counts["trained"] += int((labels[..., 1:] != -100).sum())
            counts["processed"] += int(mask.sum())
            return super().training_step(model, inputs, num_items_in_batch)

    # the collator pads dynamically (seed 003); seed 000's rows are already padded to `length`
    trainer = SeedTrainer(
        model=model,
        args=training_args,
        train_dataset=dataset,
        data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False),
        callbacks=[timer_callback],
    )
    return trainer, (lambda: counts["trained"], lambda: counts["processed"])


# ---- the table ---------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--export", help="An export ref/id: its train conversations (default: the ESConv examples).")
    parser.add_argument("--store", default=os.environ.get("WORKBENCH_STORE", "workbench-store"))
    parser.add_argument("--steps", type=int, default=None, help="Timed optimizer steps per recipe.")
    parser.add_argument("--warmup", type=int, default=1, help="Untimed optimizer steps first.")
    parser.add_argument("--shape", choices=("auto", "cpu", "qwen2.5-0.5b"), default="auto")
    parser.add_argument("--max-length", type=int, default=None, help="Packed length (ours), truncation (seeds).")
    parser.add_argument("--pad-to", type=int, default=None, help="Seed 000's fixed padding (1024 in the report).")
    parser.add_argument("--ours-batch", type=int, default=None, help="Packed sequences per micro-batch (ours).")
    parser.add_argument(
        "--recipes",
        default=",".join(RECIPES),
        help="Comma-separated recipes to run (seed 003, the baseline, always runs).",
    )
    parser.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="Our recipe's config: a FinetuneConfig field, e.g. gradient_checkpointing=false (repeatable).",
    )
    parser.add_argument("--repeat", type=int, default=1, help="Run the recipes in turn this many times; medians.")
    parser.add_argument("--json", help="Write the results here too.")
    parser.add_argument("--recipe", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    args = parser.parse_args()

    import torch

    gpu = torch.cuda.is_available()
    args.steps = args.steps or (20 if gpu else 3)
    args.max_length = args.max_length or (1024 if gpu else 256)
    args.pad_to = args.pad_to or (1024 if gpu else 256)
    args.ours_batch = args.ours_batch or 4  # 4 packed sequences: the tokens of seed 003's batch of 4
    if args.recipe:
        print("RESULT " + json.dumps(child(args)))
        return
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    unknown = sorted(set(recipes) - set(RECIPES))
    if unknown:
        parser.error(f"--recipes: unknown {', '.join(unknown)} (choose from {', '.join(RECIPES)})")
    recipes = [r for r in RECIPES if r in recipes or r == "seed 003"]
    if args.set:
        from curation.errors import WorkbenchError
        from finetune.config import load_config, parse_overrides

        try:
            load_config(overrides=parse_overrides(args.set))  # a bad key or value fails here, not in the child
        except WorkbenchError as exc:
            parser.error(str(exc))

    from finetune.tiny import BENCH_CPU_SHAPE, QWEN2_5_0_5B, build_tiny_model

    shape_name = args.shape if args.shape != "auto" else ("qwen2.5-0.5b" if gpu else "cpu")
    shape = QWEN2_5_0_5B if shape_name == "qwen2.5-0.5b" else BENCH_CPU_SHAPE
    runs: dict[str, list[dict]] = {r: [] for r in recipes}
    env = dict(os.environ)
    if not gpu:
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # spinning OpenMP threads would count as CPU time
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        model = build_tiny_model(Path(tmp) / "model", shape=shape)
        print(f"model: Qwen2 shape {shape_name} (random weights) built in {time.perf_counter() - t0:.0f} s", flush=True)
        for round_ in range(max(1, args.repeat)):
            for recipe in recipes:
                cmd = [sys.executable, __file__, "--recipe", recipe, "--model", str(model), "--tmp", f"{tmp}/{recipe}"]
                for flag in ("steps", "warmup", "max_length", "pad_to", "ours_batch", "export", "store"):
                    value = getattr(args, flag)
                    if value is not None:
                        cmd += [f"--{flag.replace('_', '-')}", str(value)]
                if recipe == "ours":
                    for item in args.set or []:
                        cmd += ["--set", item]
                t0 = time.perf_counter()
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
                lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
                if proc.returncode != 0 or not lines:
                    sys.exit(f"{recipe} failed:\n{proc.stderr[-3000:]}")
                runs[recipe].append(json.loads(lines[-1][7:]))
                print(f"{recipe}: done in {time.perf_counter() - t0:.0f} s (round {round_ + 1})", flush=True)
    results = {recipe: _median_run(rs) for recipe, rs in runs.items()}
    base = results["seed 003"]
    device = base["device"]
    clock = "" if gpu else "CPU-"
    rate = (lambda r, kind: r[f"{kind}_per_s"]) if gpu else (lambda r, kind: r[f"{kind}_per_cpu_s"])
    print(
        f"\nQLoRA throughput on {device}, model shape {shape_name}, {args.steps} timed optimizer steps after "
        f"{args.warmup} warm-up; ours packs to {args.max_length} tokens, seed 000 pads to {args.pad_to}"
        + (f"; ours with {', '.join(args.set)}" if args.set else "")
        + (f"; median of {args.repeat} runs" if args.repeat > 1 else "")
    )
    header = (
        f"{'recipe':<10} {f'processed tok/{clock}s':>20} {'x s003':>7} {f'trained tok/{clock}s':>18} "
        f"{'x seed 003':>11} {'peak GiB':>9} {'x mem':>6}"
    )
    print(header)
    print("-" * len(header))
    for recipe in recipes:
        r = results[recipe]
        print(
            f"{recipe:<10} {rate(r, 'processed'):>20,.0f} {rate(r, 'processed') / rate(base, 'processed'):>6.2f}x "
            f"{rate(r, 'trained'):>18,.0f} {rate(r, 'trained') / rate(base, 'trained'):>10.2f}x "
            f"{r['peak_memory_gib']:>9.2f} {r['peak_memory_gib'] / base['peak_memory_gib']:>5.2f}x"
        )
    print(
        "trained = tokens that carry loss (ours: assistant replies only; the seeds trained on every non-pad token); "
        "processed = non-pad tokens through the model"
        + ("" if gpu else "; CPU-s = seconds of the process's CPU time (wall-clock rates are in --json)")
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps({"shape": shape_name, "args": vars(args), "results": results, "runs": runs}, indent=1)
        )


def _median_run(runs: list[dict]) -> dict:
    """The run with the median trained-token rate (CPU time where there is no GPU)."""
    key = "trained_per_s" if runs[0]["device"] != "cpu" else "trained_per_cpu_s"
    return sorted(runs, key=lambda r: r[key])[(len(runs) - 1) // 2]


if __name__ == "__main__":
    main()
