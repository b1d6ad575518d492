"""Optuna 3.1's TPE decisions on Branin, for `npm run bench -- tune` (TUNE_BENCH_ONLY=tpe_noise).

Runs Optuna's TPE on Branin under each seed, and for the first n trials of each run (every n given)
makes `draws` next-point decisions from that history with Optuna's own code path of
TPESampler.sample_independent (_get_observation_pairs, _split_observation_pairs, _ParzenEstimator,
24 candidates, the best log l - log g), vectorized: one estimator pair per history, 24 candidates per
decision. Prints [{"seed", "n", "history": [{"x1", "x2", "value"}], "x1": [...], "x2": [...]}].
Usage: python3 test/bench/tune-tpe-decisions.py <seeds, e.g. 0,1,2> <prefixes, e.g. 10,30,60,90> <draws>
"""
import importlib.util
import json
import os
import sys

import numpy as np
import optuna
from optuna.distributions import FloatDistribution
from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator
from optuna.samplers._tpe.sampler import _get_observation_pairs, _split_observation_pairs

optuna.logging.set_verbosity(optuna.logging.ERROR)
DISTRIBUTIONS = {"x1": FloatDistribution(-5, 10), "x2": FloatDistribution(0, 15)}


# The Branin objective exactly as the bench's Optuna runs use it (tune-optuna.py, loaded by path: its name has a hyphen).
_spec = importlib.util.spec_from_file_location("tune_optuna", os.path.join(os.path.dirname(os.path.abspath(__file__)), "tune-optuna.py"))
_tune_optuna = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_tune_optuna)
branin = _tune_optuna.branin


def main():
    seeds = [int(s) for s in sys.argv[1].split(",")]
    prefixes = [int(s) for s in sys.argv[2].split(",")]
    draws = int(sys.argv[3])
    out = []
    for seed in seeds:
        study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
        study.optimize(branin, n_trials=max(prefixes))
        history = [{"x1": t.params["x1"], "x2": t.params["x2"], "value": t.value} for t in study.trials]
        for n in prefixes:
            prefix = optuna.create_study()
            for h in history[:n]:
                prefix.add_trial(optuna.trial.create_trial(params={"x1": h["x1"], "x2": h["x2"]}, distributions=DISTRIBUTIONS, value=h["value"]))
            sampler = optuna.samplers.TPESampler(seed=10_000 + seed * 100 + n)
            rng = np.random.RandomState(20_000 + seed * 100 + n)
            entry = {"seed": seed, "n": n, "history": history[:n]}
            for name, distribution in DISTRIBUTIONS.items():
                values, scores, violations = _get_observation_pairs(prefix, [name], False, False)
                below, above = _split_observation_pairs(scores, sampler._gamma(n), violations)
                v = np.asarray(values[name], dtype=float)
                params = sampler._parzen_estimator_parameters
                l = _ParzenEstimator({name: v[below]}, {name: distribution}, params)
                g = _ParzenEstimator({name: v[above]}, {name: distribution}, params)
                candidates = l.sample(rng, sampler._n_ei_candidates * draws)
                score = (l.log_pdf(candidates) - g.log_pdf(candidates)).reshape(draws, -1)
                best = np.argmax(score, axis=1)
                entry[name] = candidates[name].reshape(draws, -1)[np.arange(draws), best].tolist()
            out.append(entry)
    print(json.dumps(out))


main()
