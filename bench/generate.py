"""Generation throughput: batched, left-padded generation against the seed reports' one-prompt-at-a-time loop.

Both run in one process on the same loaded model (random weights; Qwen2.5-0.5B's shape on a GPU, a
scaled-down one on CPU, ``--shape``), greedy, with the same chat template and the same prompts (ESConv
seeker turns from ``examples/data/esconv``, cut after the 1st, 2nd or 3rd turn so their lengths vary):

* ``batched``: :func:`evaluate.generate.generate_batched`, what ``evaluate.generate.generate`` runs
  for a local model: prompts sorted longest first, batches of ``--batch-size``, left padding with an
  attention mask, ``model.generate(use_cache=True)``;
* ``per-prompt loop``: :func:`evaluate.generate.generate_one_by_one`, the seeds' recipe: one
  ``model.generate`` per prompt, no padding.

Reported: generated tokens (up to and including the stop token) per second of each and their ratio.
The loop runs on the first ``--loop-prompts`` prompts only (its tokens/s does not depend on how many
there are, and all of them would take minutes); the line under the table says how many of those
replies are token for token the same in both (all of them in fp32; bf16 on a GPU may differ in a few
late tokens, as padding changes the rounding). One short untimed warm-up call first.

    python bench/generate.py                    # CPU: ~2 min on 2 cores
    python bench/generate.py --prompts 256      # GPU: Qwen2.5-0.5B shape, batch 32, < 5 min
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def esconv_prompts(n: int) -> list[list[dict]]:
    """``n`` chat prompts ending with a seeker turn, from the ESConv example slice (test, valid, train)."""
    prompts: list[list[dict]] = []
    for split in ("test", "valid", "train"):
        path = ROOT / "examples" / "data" / "esconv" / "hf" / f"{split}.txt"
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
            messages: list[dict] = []
            for turn in json.loads(line)["dialog"]:
                role = "user" if turn["speaker"] == "usr" else "assistant"
                if not messages and role == "assistant":
                    continue
                if messages and messages[-1]["role"] == role:
                    messages[-1]["content"] += " " + turn["text"]
                else:
                    messages.append({"role": role, "content": turn["text"]})
            users = [k for k, m in enumerate(messages) if m["role"] == "user"]
            if not users:
                continue
            prompts.append(messages[: users[min(i % 3, len(users) - 1)] + 1])
            if len(prompts) == n:
                return prompts
    if len(prompts) < n:
        sys.exit(f"only {len(prompts)} ESConv prompts in examples/data; ask for fewer (--prompts)")
    return prompts


def timed(run, device) -> tuple[list, float]:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    replies = run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return replies, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=("auto", "cpu", "qwen2.5-0.5b"), default="auto")
    parser.add_argument("--prompts", type=int, default=None, help="Prompts generated batched (GPU 256, CPU 64).")
    parser.add_argument("--loop-prompts", type=int, default=None, help="Prompts of the loop (GPU 32, CPU 8).")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=None, help="Per reply (GPU 128, CPU 32).")
    parser.add_argument("--json", help="Write the results here too.")
    args = parser.parse_args()

    import torch

    from evaluate.generate import Decoding, generate_batched, generate_one_by_one, load_local_model
    from finetune.tiny import BENCH_CPU_SHAPE, QWEN2_5_0_5B, build_tiny_model
    from finetune.tokenizer import load_tokenizer

    gpu = torch.cuda.is_available()
    args.prompts = args.prompts or (256 if gpu else 64)
    args.loop_prompts = min(args.loop_prompts or (32 if gpu else 8), args.prompts)
    args.max_new_tokens = args.max_new_tokens or (128 if gpu else 32)
    shape_name = args.shape if args.shape != "auto" else ("qwen2.5-0.5b" if gpu else "cpu")
    shape = QWEN2_5_0_5B if shape_name == "qwen2.5-0.5b" else BENCH_CPU_SHAPE
    prompts = esconv_prompts(args.prompts)
    decoding = Decoding(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size)

    with tempfile.TemporaryDirectory() as tmp:  # the weights stay on disk while the model runs (memory-mapped)
        t0 = time.perf_counter()
        folder = build_tiny_model(Path(tmp) / "model", shape=shape)
        model = load_local_model(folder)
        tokenizer = load_tokenizer(folder)
        print(f"model: Qwen2 shape {shape_name} (random weights) built in {time.perf_counter() - t0:.0f} s", flush=True)
        device = next(model.parameters()).device
        threads = torch.get_num_threads()
        device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({threads} threads)"
        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")

        generate_batched(model, tokenizer, prompts[:2], Decoding(max_new_tokens=4, batch_size=2))  # warm-up
        batched, batched_s = timed(lambda: generate_batched(model, tokenizer, prompts, decoding), device)
        print(f"batched: {len(prompts)} prompts in {batched_s:.1f} s", flush=True)
        few = prompts[: args.loop_prompts]
        looped, looped_s = timed(lambda: generate_one_by_one(model, tokenizer, few, decoding), device)
        print(f"per-prompt loop: {len(few)} prompts in {looped_s:.1f} s", flush=True)

    rows = {
        "per-prompt loop (seeds)": (args.loop_prompts, 1, sum(r.completion_tokens for r in looped), looped_s),
        "batched, left padded": (len(prompts), args.batch_size, sum(r.completion_tokens for r in batched), batched_s),
    }
    loop_rate = rows["per-prompt loop (seeds)"][2] / looped_s
    same = sum(a.token_ids == b.token_ids for a, b in zip(batched, looped, strict=False))
    prompt_tokens = [r.prompt_tokens for r in batched]

    print(
        f"\ngeneration throughput on {device_name}, {dtype}, model shape {shape_name} (random weights), greedy, "
        f"at most {args.max_new_tokens} new tokens per reply; prompts of {min(prompt_tokens)}-{max(prompt_tokens)} "
        "tokens (ESConv seeker turns through the chat template)"
    )
    header = f"{'method':<24} {'prompts':>7} {'batch':>5} {'gen tokens':>10} {'seconds':>8} {'tok/s':>8} {'x loop':>7}"
    print(header)
    print("-" * len(header))
    results = {}
    for name, (n, batch, tokens, seconds) in rows.items():
        rate = tokens / seconds
        results[name] = {"prompts": n, "batch": batch, "tokens": tokens, "seconds": seconds, "tokens_per_s": rate}
        print(f"{name:<24} {n:>7} {batch:>5} {tokens:>10,} {seconds:>8.1f} {rate:>8,.0f} {rate / loop_rate:>6.2f}x")
    print(
        f"same tokens as the loop on the {args.loop_prompts} prompts both generated: {same}/{args.loop_prompts} "
        "(gen tokens include the stop token)"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {"device": device_name, "dtype": dtype, "shape": shape_name, "args": vars(args), **results}, indent=1
            )
        )


if __name__ == "__main__":
    main()
