"""``deeploc compare``: two runs on the photos both predicted, per output and scale: each run's accuracy,
the difference (B - A) with a 95 % bootstrap interval that resamples users (photos of one user are
correlated: resampling photos would make the interval too narrow), and McNemar's exact p-value on the
paired outcomes. Written to ``comparisons/<A>__<B>/`` (JSON, markdown, a figure).

A name ``M@F`` is the predictions model M made of run F's photos (the removal-effect stage makes them);
its outputs are M's.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

from pyiceberg.expressions import EqualTo

from deeploc.earth import geo
from deeploc.storage import catalog, commit
from deeploc.storage.lake import Lake

REPLICATES = 2000
CHUNK = 100  # replicates drawn at once: users x CHUNK counts in memory


def mcnemar_exact(a_only: int, b_only: int) -> float:
    """Two-sided exact McNemar test: the discordant pairs under a fair coin."""
    from scipy.stats import binomtest

    n = a_only + b_only
    return 1.0 if n == 0 else float(binomtest(min(a_only, b_only), n, 0.5).pvalue)


def user_bootstrap(users: np.ndarray, a: np.ndarray, b: np.ndarray, replicates: int = REPLICATES,
                   seed: int = 0) -> tuple[float, float]:
    """95 % percentile interval of mean(b) - mean(a) when whole users are drawn with replacement."""
    codes, per_user = np.unique(users, return_inverse=True)
    n_u = np.bincount(per_user, minlength=len(codes)).astype(float)
    d_u = np.bincount(per_user, weights=b.astype(float) - a.astype(float), minlength=len(codes))
    rng, diffs = np.random.default_rng(seed), []
    for start in range(0, replicates, CHUNK):
        k = min(CHUNK, replicates - start)
        counts = rng.multinomial(len(codes), np.full(len(codes), 1 / len(codes)), size=k)  # users drawn per replicate
        diffs.append(counts @ d_u / (counts @ n_u))
    low, high = np.percentile(np.concatenate(diffs), [2.5, 97.5])
    return float(low), float(high)


def paired(pred_a: pd.DataFrame, pred_b: pd.DataFrame, outputs: list[str]) -> pd.DataFrame:
    """One row per (output, scale) on the photos both runs predicted."""
    both = pred_a.merge(pred_b, on="photo_id", suffixes=("_a", "_b"))
    users = both["user_nsid_a"].fillna(both["user_nsid_b"]).fillna("(unknown user)").to_numpy(object)
    rows = []
    for o in outputs:
        for scale, km in geo.SCALES_KM.items():
            a = both[f"{o}_km_a"].to_numpy(float) <= km
            b = both[f"{o}_km_b"].to_numpy(float) <= km
            low, high = user_bootstrap(users, a, b) if len(both) else (float("nan"), float("nan"))
            rows.append({"output": o, "scale": f"{scale}_{int(km)}km", "n": int(len(both)),
                         "users": int(len(set(users))), "accuracy_a": float(a.mean()) if len(a) else float("nan"),
                         "accuracy_b": float(b.mean()) if len(b) else float("nan"),
                         "difference": float(b.mean() - a.mean()) if len(a) else float("nan"),
                         "ci_low": low, "ci_high": high, "a_only": int((a & ~b).sum()), "b_only": int((b & ~a).sum()),
                         "mcnemar_p": mcnemar_exact(int((a & ~b).sum()), int((b & ~a).sum()))})
    return pd.DataFrame(rows)


def read_predictions(lake: Lake, run: str, outputs: list[str]) -> pd.DataFrame:
    """The predictions named ``run`` of photos with a known location: id, user and each output's error."""
    columns = ["photo_id", "latitude", "user_nsid", *(f"{o}_km" for o in outputs)]
    pred, _ = catalog.read(lake, "predictions", columns, EqualTo("run", run), writer="infer")
    return pred[pred["latitude"].notna() & pred[f"{outputs[0]}_km"].notna()].drop(columns="latitude")


def records(table: pd.DataFrame) -> list[dict]:
    """The rows as JSON-ready dicts (NaN as null)."""
    return table.replace({np.nan: None}).to_dict(orient="records")


def _outputs(lake: Lake, run: str) -> list[str]:
    from deeploc.learn.predict import outputs_of

    model = commit.require(lake, f"models/{run.split('@')[0]}", "train")
    return outputs_of(json.loads(lake.read_bytes(f"{model}/summary.json")))


def markdown(table: pd.DataFrame, run_a: str, run_b: str) -> str:
    lines = [f"| output | scale | {run_a} | {run_b} | difference (B - A) | 95 % interval (users resampled) | McNemar p |",
             "|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        lines.append(f"| {r.output} | {r.scale} | {100 * r.accuracy_a:.1f} % | {100 * r.accuracy_b:.1f} % | "
                     f"{100 * r.difference:+.1f} pts | [{100 * r.ci_low:+.1f}, {100 * r.ci_high:+.1f}] | {r.mcnemar_p:.3g} |")
    return "\n".join(lines) + "\n"


def figure(path: str, table: pd.DataFrame, run_a: str, run_b: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 0.35 * len(table) + 1.2), dpi=110)
    y = np.arange(len(table))[::-1]
    ax.errorbar(100 * table["difference"], y, xerr=[100 * (table["difference"] - table["ci_low"]),
                                                     100 * (table["ci_high"] - table["difference"])], fmt="o", capsize=3)
    ax.axvline(0, color="0.5", linewidth=0.8)
    ax.set_yticks(y, [f"{o} {s}" for o, s in zip(table["output"], table["scale"])], fontsize=7)
    ax.set(xlabel=f"accuracy of {run_b} minus {run_a} (points), 95 % interval resampling users",
           title=f"{run_b} vs {run_a} on {table['n'].iloc[0]:,} photos both predicted")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def run(lake: str, run_a: str, run_b: str) -> dict:
    lake_ = Lake(lake)
    outputs = [o for o in _outputs(lake_, run_a) if o in set(_outputs(lake_, run_b))]
    if not outputs:
        raise ValueError(f"runs {run_a} and {run_b} share no output to compare")
    pred_a, pred_b = read_predictions(lake_, run_a, outputs), read_predictions(lake_, run_b, outputs)
    table = paired(pred_a, pred_b, outputs)
    result = {"run_a": run_a, "run_b": run_b, "photos_a": int(len(pred_a)), "photos_b": int(len(pred_b)),
              "photos_both": int(table["n"].iloc[0]), "replicates": REPLICATES,
              "rows": records(table)}
    with commit.building(lake_, f"comparisons/{run_a}__{run_b}") as out:
        with open(os.path.join(out, "comparison.json"), "w") as f:
            json.dump(result, f, indent=2)
        with open(os.path.join(out, "comparison.md"), "w") as f:
            f.write(f"{run_b} against {run_a} on the {result['photos_both']:,} photos both predicted "
                    f"({result['photos_a']:,} and {result['photos_b']:,} predicted):\n\n" + markdown(table, run_a, run_b))
        if len(table) and result["photos_both"]:
            figure(os.path.join(out, "comparison.png"), table, run_a, run_b)
    return result
