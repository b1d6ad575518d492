"""Optuna's samplers on Branin and Hartmann-6, for `npm run bench -- tune` (Debian's python3-optuna).

Prints one JSON object: {function: {sampler: {"regret_50": median, "regret_100": median}}}.
Usage: python3 test/bench/tune-optuna.py [--per-seed] <seeds> [sampler ...]
With --per-seed each sampler's entry also lists every seed's regret after 100 trials ("regret_100_per_seed").
"""
import json
import math
import statistics
import sys

import optuna

optuna.logging.set_verbosity(optuna.logging.ERROR)

A = [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
P = [[v * 1e-4 for v in row] for row in [[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                                         [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]]]
ALPHA = [1, 1.2, 3, 3.2]


def branin(trial):
    x1 = trial.suggest_float("x1", -5, 10)
    x2 = trial.suggest_float("x2", 0, 15)
    b = 5.1 / (4 * math.pi ** 2)
    c = 5 / math.pi
    return (x2 - b * x1 * x1 + c * x1 - 6) ** 2 + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x1) + 10


def hartmann6(trial):
    x = [trial.suggest_float(f"x{j}", 0, 1) for j in range(6)]
    return -sum(a * math.exp(-sum(A[i][j] * (x[j] - P[i][j]) ** 2 for j in range(6))) for i, a in enumerate(ALPHA))


PROBLEMS = {"branin": (branin, 0.397887357729738), "hartmann6": (hartmann6, -3.322368011415515)}
SAMPLERS = {
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed),
    "tpe_multivariate": lambda seed: optuna.samplers.TPESampler(seed=seed, multivariate=True),
    "cmaes": lambda seed: optuna.samplers.CmaEsSampler(seed=seed),
    "nsga2": lambda seed: optuna.samplers.NSGAIISampler(seed=seed, population_size=20),
}


def main():
    args = sys.argv[1:]
    per_seed = "--per-seed" in args
    args = [a for a in args if a != "--per-seed"]
    seeds = int(args[0])
    names = args[1:] or list(SAMPLERS)
    out = {}
    for problem, (f, optimum) in PROBLEMS.items():
        out[problem] = {}
        for name in names:
            r50, r100 = [], []
            for seed in range(seeds):
                study = optuna.create_study(sampler=SAMPLERS[name](seed))
                study.optimize(f, n_trials=100)
                values = [t.value for t in study.trials]
                r50.append(min(values[:50]) - optimum)
                r100.append(min(values) - optimum)
            out[problem][name] = {"regret_50": statistics.median(r50), "regret_100": statistics.median(r100)}
            if per_seed:
                out[problem][name]["regret_100_per_seed"] = r100
    print(json.dumps(out))


if __name__ == "__main__":
    main()
