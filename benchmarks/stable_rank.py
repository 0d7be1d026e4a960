"""Stable rank: the training loop's warm block-Lanczos estimates vs exact SVD, and what they cost.

    python -m benchmarks.stable_rank [--steps 1000] [--threads N] [--tiny]

Accuracy. A 1,000-step run on digits (depth 8 x width 256, batch 128) per optimiser, AGD (its
orthogonal init) and Adam lr=1e-3 (PyTorch's default init), with the loop's own probe
(`train._LayerProbe`: one `PowerIteration` for the weights, one for the gradients) called where
`train.run` calls it: at the automatic cadence of a 1,000-step run (`resolved_layer_every`), at
that of a default 300-step run (every 5 steps), and at every step (checked against SVD every
`--check-every` steps, since SVD per step is the cost being avoided). At each check, every layer:
relative error of the stable rank ||M||_F^2 / σ_max(M)^2 of the weights and of the gradients
against float64 SVD (layers whose matrix is not finite, after a divergence, are left out).
Target: max relative error <= 1%.

Cost. At depth 16 x 256 and 8 x 1024 (batch 128), CPU time, interleaved: blocks of 5 training
steps (forward, backward, AGD) with and without a probe on the last one, as train.run probes,
once past the first steps: the probe's cost in training steps, against the model the cadence
uses (`cost.probe_steps`), and its share of training at the cadences of 300- and 1,000-step runs.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

try:
    from benchmarks import _common as C
except ImportError:
    import _common as C  # type: ignore[no-redef]

TARGET_ERR = 0.01


def _exact(mats):
    """(fro², σ_max²) of each matrix in float64 via SVD."""
    import torch

    out = []
    for m in mats:
        a = m.detach().reshape(m.shape[0], -1).double()
        s = torch.linalg.svdvals(a)
        out.append((float(a.square().sum()), float(s[0]) ** 2))
    return out


def accuracy_run(optimizer: str, steps: int, depth: int, width: int, every: int | None,
                 check_every: int, seed: int = 0) -> dict:
    """Train with the loop's probe where train.run would call it; compare with SVD at checks."""
    import torch

    from agd_viz import cost, data, nets, optspec, train
    from agd_viz.optim import make_optimizer
    from agd_viz.spec import RunSpec

    spec = RunSpec(dataset="digits", depth=depth, width=width, steps=steps, batch_size=128,
                         seed=seed, device="cpu", optimizers=(optimizer,), layer_every=every or 0)
    layer_every = cost.resolved_layer_every(spec)
    ds = data.load("digits", seed=seed)
    torch.manual_seed(seed)
    model = nets.MLP(ds.d_in, ds.d_out, depth, width)
    gen = torch.Generator().manual_seed(seed + 1)
    (nets.init_agd_model_ if optspec.parse(optimizer).init == "agd" else nets.init_default_)(model, gen)
    opt = make_optimizer(optimizer, model.parameters())
    weights = list(model.parameters())
    probe = train._LayerProbe(weights, layer_every)
    probe.at_init()
    batches = train._Batches(ds.x_train.shape[0], 128, seed, torch.device("cpu"))
    loss_fn = data.loss_fn(ds.task)
    w_err = g_err = 0.0
    worst = None
    checks = 0
    for step in range(1, steps + 1):
        logged = step % layer_every == 0 or step == 1 or step == steps
        if logged:
            probe.before_step()
        idx = batches.next()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(ds.x_train[idx]), ds.y_train[idx])
        loss.backward()
        opt.step()
        if not logged:
            continue
        ly = probe.after_step()  # rows in the order of train.LAYER_METRICS
        if step % check_every and step not in (1, steps) and layer_every == 1:
            continue
        checks += 1
        names = train.LAYER_METRICS
        w_srank, g_srank = ly[names.index("w_srank")], ly[names.index("g_srank")]
        for kind, est, mats in (("weights", w_srank, weights), ("gradients", g_srank, [w.grad for w in weights])):
            for k, (fro2, spec2) in enumerate(_exact(mats)):
                if not (spec2 > 0 and math.isfinite(fro2) and math.isfinite(spec2)):
                    continue  # a diverged or dead layer: nothing to estimate
                err = abs(float(est[k]) / (fro2 / spec2) - 1)
                if kind == "weights":
                    w_err = max(w_err, err)
                else:
                    g_err = max(g_err, err)
                if worst is None or err > worst[0]:
                    worst = (err, kind, k, step)
    return {"optimizer": optimizer, "layer_every": layer_every, "checks": checks,
            "max_rel_err_w_srank": C.rounded(w_err), "max_rel_err_g_srank": C.rounded(g_err),
            "worst": {"err": C.rounded(worst[0]), "of": worst[1], "layer": worst[2], "step": worst[3]},
            "final_loss": C.rounded(float(loss.detach()))}


def cost(depth: int, width: int, rounds: int, n: int) -> dict:
    """What the training loop's probe costs, in training steps: blocks of `n` steps timed with and
    without a probe on the last (as train.run probes), interleaved, once the run has settled."""
    import torch

    from agd_viz import cost as cost_mod
    from agd_viz import data, nets, train
    from agd_viz.optim import AGD
    from agd_viz.spec import RunSpec

    ds = data.load("digits")
    model = nets.MLP(ds.d_in, ds.d_out, depth, width)
    nets.init_agd_model_(model, torch.Generator().manual_seed(1))
    opt = AGD(model.parameters())
    weights = list(model.parameters())
    loss_fn = data.loss_fn(ds.task)
    gen = torch.Generator().manual_seed(2)

    def step():
        idx = torch.randint(0, ds.x_train.shape[0], (128,), generator=gen)
        opt.zero_grad(set_to_none=True)
        loss_fn(model(ds.x_train[idx]), ds.y_train[idx]).backward()
        opt.step_tensors()

    every = {s: cost_mod.resolved_layer_every(RunSpec(depth=depth, width=width, batch_size=128, steps=s))
             for s in (300, 1000)}
    probe = train._LayerProbe(weights, every[300])
    probe.at_init()
    for _ in range(3):  # cold blocks, then past the first steps (cost.probe_iters)
        step()
        probe.before_step()
        step()
        probe.after_step()
    probe.probes = cost_mod.WEIGHT_SETTLE_STEPS

    def block(with_probe):
        def timed():
            t0 = time.process_time()
            for i in range(n):
                if with_probe and i == n - 1:
                    probe.before_step()
                step()
                if with_probe and i == n - 1:
                    probe.after_step()
            return time.process_time() - t0
        return timed

    times = C.interleaved({"steps": block(False), "probed": block(True)}, rounds=rounds, warmup=1)
    per_step = C.median(times["steps"]) / n
    probe_steps = C.median([(p - s) / (s / n) for p, s in zip(times["probed"], times["steps"])])
    return {"depth": depth, "width": width, "batch": 128, "ms_step": C.rounded(1000 * per_step),
            "ms_probe": C.rounded(1000 * probe_steps * per_step), "probe_over_step": C.rounded(probe_steps),
            "model_probe_over_step": C.rounded(cost_mod.probe_steps(128)),
            "layer_every": {str(k): v for k, v in every.items()},
            "share_of_training": {str(k): C.rounded(probe_steps / v) for k, v in every.items()}}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--depth", type=int, default=8)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--check-every", type=int, default=20, help="SVD checks in the every-step runs")
    ap.add_argument("--optimizer", action="append", default=None, help="default: agd and adam:lr=1e-3")
    ap.add_argument("--cost-width", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=5)
    C.add_thread_args(ap)
    ap.add_argument("--tiny", action="store_true", help="a few seconds, for the smoke test")
    args = ap.parse_args(argv)
    threads = C.setup_torch(args.threads)
    opts = args.optimizer or ["agd", "adam:lr=1e-3"]
    if args.tiny:
        args.steps, args.depth, args.width, args.cost_width, args.rounds = 30, 3, 16, 32, 1
    acc = []
    for every, name in ((None, "auto"), (5, "300-step run's"), (1, "every step")):
        for o in opts:
            r = accuracy_run(o, args.steps, args.depth, args.width, every, args.check_every)
            r["cadence"] = name
            acc.append(r)
    nets = ((3, 16), (2, args.cost_width)) if args.tiny else ((16, 256), (8, args.cost_width))
    costs = [cost(d, w, args.rounds, 5) for d, w in nets]

    print(f"stable rank, estimate vs float64 SVD: depth {args.depth} x width {args.width} on digits, "
          f"batch 128, {args.steps} steps, {threads} thread(s)")
    rows = [(r["optimizer"], r["cadence"], r["layer_every"], r["checks"], r["max_rel_err_w_srank"],
             r["max_rel_err_g_srank"], max(r["max_rel_err_w_srank"], r["max_rel_err_g_srank"]) <= TARGET_ERR)
            for r in acc]
    print(C.table(rows, ("optimiser", "estimates", "every", "checks", "max err W srank",
                         "max err grad srank", f"<= {TARGET_ERR:.0%}")))
    print(f"\nprobe cost (train._LayerProbe: norms, update norm, spectral estimates of W and grads), batch 128, "
          f"CPU time, median of {args.rounds} interleaved rounds")
    print(C.table([(f"{c['depth']}x{c['width']}", c["ms_step"], c["ms_probe"], c["probe_over_step"],
                    c["model_probe_over_step"], c["layer_every"]["300"], c["share_of_training"]["300"],
                    c["layer_every"]["1000"], c["share_of_training"]["1000"]) for c in costs],
                  ("net", "ms/step", "ms/probe", "probe/step", "model (cost.probe_steps)", "every (300 steps)",
                   "share", "every (1,000 steps)", "share")))
    ok = all(max(r["max_rel_err_w_srank"], r["max_rel_err_g_srank"]) <= TARGET_ERR for r in acc)
    C.emit({"benchmark": "stable_rank", "target_err": TARGET_ERR, "threads": threads, "tiny": args.tiny,
            "accuracy": acc, "cost": costs, "machine": C.machine(), "pass": ok})
    return 0


if __name__ == "__main__":
    sys.exit(main())
