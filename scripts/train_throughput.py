#!/usr/bin/env python
"""Training throughput (images/s) of a model from a config, fp32 vs bf16 autocast (and fp16 on CUDA).

Times full optimizer steps (forward, loss, backward, Adam) on synthetic batches of the config's
patch size, so only the arithmetic precision and memory format change between rows.

    uv run python scripts/train_throughput.py configs/nuclei_unet.yaml --steps 20
"""
from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="run config (model + data.patch_size + train.batch_size are used)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per setting (default: 20)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (default: 3)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.SUB=VALUE")
    args = parser.parse_args(argv)

    import torch

    from unetseg.config import load_config
    from unetseg.losses import build_loss
    from unetseg.models import build_model
    from unetseg.models.precision import Precision, cpu_has_fast_bf16
    from unetseg.training.optim import build_optimizer

    cfg = load_config(args.config, args.overrides)
    device = torch.device(args.device)
    kwargs = {"in_channels": 1, "num_classes": 2, **cfg.model.kwargs}
    print(f"{args.config}: {cfg.model.name} {kwargs}, batch {cfg.train.batch_size}; "
          f"{torch.get_num_threads()} threads, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"fast bf16: {cpu_has_fast_bf16()}")
    print("| precision | channels_last | images/s | ms/step |")
    print("|---|---|---:|---:|")
    settings = [(None, False), (None, True), (torch.bfloat16, False), (torch.bfloat16, True)]
    if device.type == "cuda":
        settings.append((torch.float16, True))
    for dtype, channels_last in settings:
        torch.manual_seed(0)
        model = build_model(cfg.model.name, **kwargs).to(device).train()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        n = model.valid_input_size(cfg.data.patch_size)
        out = model.output_size(n)
        x = torch.randn(cfg.train.batch_size, kwargs["in_channels"], n, n, device=device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, kwargs["num_classes"], (cfg.train.batch_size, out, out), device=device)
        loss_fn = build_loss(cfg.loss)
        opt = build_optimizer(model, cfg.train)
        precision = Precision(dtype, channels_last)
        scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
        for i in range(args.warmup + args.steps):
            if i == args.warmup:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                start = time.perf_counter()
            with precision.autocast(device):
                logits = model(x)
            loss = loss_fn(logits, y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = (time.perf_counter() - start) / args.steps
        print(f"| {precision.name} | {channels_last} | {cfg.train.batch_size / seconds:.1f} | {1000 * seconds:.0f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
