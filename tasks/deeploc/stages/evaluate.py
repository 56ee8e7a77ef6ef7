"""Evaluate stage: ``predictions/<run>/`` -> ``metrics/<run>/``.

Per output (each partitioning, the hierarchy, and the prior: always the most frequent training cell):
accuracy within 1 / 25 / 200 / 750 / 2500 km (the shape of the report's Table 7), median and mean error,
and the share of photos placed in the right country and on the right continent (point in polygon against
Natural Earth's outlines, ``deeploc.earth.geography``; over the photos whose truth lies in a country: those at sea
or off every outline are counted apart), and the mean GeoScore (5000 * exp(-d / 1492.7 km), the
game GeoGuessr's points, as PIGEON reports them: one number that rewards being close at every scale).
How far the probabilities can be trusted (``deeploc.learn.calibration``): per output, the calibration error
of the top-1 probability on the test photos (and, from training, on the validation photos before and
after temperature scaling), the reliability diagram, and how well each photo's expected error (km,
from its top cells) ranks its actual error (Spearman). Also the accuracy with every user weighing the same ("user-macro": a few prolific users cannot carry
it), the hierarchy's accuracy per continent and for the largest countries of the truth, and two
figures: the accuracy curve, and a map of the training photos' density with the test photos.
Reads only the columns it needs.
"""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pandas as pd

from pyiceberg.expressions import EqualTo

from deeploc.earth import geo, geography
from deeploc.earth.partitioning import Partitionings
from deeploc.learn import calibration
from deeploc.learn.predict import HIERARCHY, KNN, outputs_of
from deeploc.storage import catalog, commit, ledger, runs
from deeploc.storage.lake import Lake

log = logging.getLogger(__name__)
PRIOR = "prior (most frequent cell)"
GEOSCORE_KM = 1492.7
LARGEST_COUNTRIES = 20
CURVE_KM = np.logspace(0, np.log10(20_000), 200)


def scores(true_lat, true_lon, pred_lat, pred_lon, true_country, true_continent) -> dict:
    """One output's row: accuracy at the five scales, median and mean error, same country / continent."""
    d = geo.haversine_km(true_lat, true_lon, pred_lat, pred_lon)
    row = geo.accuracy(d)
    row["mean_km"] = float(np.mean(d)) if d.size else float("nan")
    row["geoscore"] = float(np.mean(5000 * np.exp(-d / GEOSCORE_KM))) if d.size else float("nan")
    predicted = geography.locate(pred_lat, pred_lon)
    country, continent = predicted.country, predicted.continent
    on_land = np.array([c is not None for c in true_country], bool)
    row["same_country"] = float(np.mean(country[on_land] == true_country[on_land])) if on_land.any() else float("nan")
    row["same_continent"] = (float(np.mean(continent[on_land] == true_continent[on_land])) if on_land.any()
                             else float("nan"))
    return row


def accuracy_table(pred: pd.DataFrame, outputs: list[str], prior_latlon: tuple[float, float] | None,
                   true_country: np.ndarray, true_continent: np.ndarray) -> pd.DataFrame:
    lat, lon = pred["latitude"].to_numpy(float), pred["longitude"].to_numpy(float)
    rows = [{"method": o, **scores(lat, lon, pred[f"{o}_lat"].to_numpy(float), pred[f"{o}_lon"].to_numpy(float),
                                   true_country, true_continent)} for o in outputs]
    if prior_latlon is not None:
        rows.append({"method": PRIOR, **scores(lat, lon, np.full(len(lat), prior_latlon[0]),
                                               np.full(len(lat), prior_latlon[1]), true_country, true_continent)})
    return pd.DataFrame(rows)


def by_place(pred: pd.DataFrame, output: str, places: np.ndarray, column: str, largest: int | None = None) -> pd.DataFrame:
    """The output's accuracy per place of the truth (truth in none: "none"), in name order, or the
    ``largest`` places by number of photos, largest first."""
    labels = pd.Series([c if c is not None else "none" for c in places], dtype=object)
    names = sorted(set(labels)) if largest is None else list(labels[labels != "none"].value_counts().index[:largest])
    d = pred[f"{output}_km"].to_numpy(float)
    return pd.DataFrame([{column: name, **geo.accuracy(d[(labels == name).to_numpy()])} for name in names])


def user_macro(pred: pd.DataFrame, outputs: list[str], users: pd.Series) -> pd.DataFrame:
    """Per output, the accuracy at each scale with every user weighing the same: the mean over users of
    each user's own accuracy."""
    rows = []
    for o in outputs:
        per_user = pd.DataFrame({k: pred[f"{o}_km"].to_numpy(float) <= v for k, v in geo.SCALES_KM.items()})
        means = per_user.groupby(users.to_numpy()).mean()
        rows.append({"method": o, **{f"{k}_{int(v)}km": float(means[k].mean()) for k, v in geo.SCALES_KM.items()},
                     "users": int(len(means)), "n": int(len(pred))})
    return pd.DataFrame(rows)


def confidence(pred: pd.DataFrame, outputs: list[str], truth: pd.DataFrame, parts: Partitionings,
               fitted: dict) -> tuple[pd.DataFrame, dict]:
    """Per output: test-photo calibration error, the validation errors from training, and the rank
    correlation of expected and actual error; and the reliability bins (for the figure)."""
    from scipy.stats import spearmanr

    known = pred.merge(truth, on="photo_id", how="left")
    rows, bins = [], {}
    for o in outputs:
        part = o if o in parts.order else parts.finest  # the hierarchy and its refinement rank the finest cells
        true = known[f"class_{part}"].fillna(-1).to_numpy(int)
        top_class = np.stack(known[f"{o}_topk_class"].to_numpy())
        top_prob = np.stack(known[f"{o}_topk_prob"].to_numpy()).astype(float)
        where = parts.of(part).set_index("class")
        at = lambda col: where[col].reindex(top_class.ravel()).to_numpy(float).reshape(top_class.shape)  # noqa: E731
        expected = calibration.expected_km(known[f"{o}_lat"], known[f"{o}_lon"], top_prob, at("mean_lat"),
                                           at("mean_lon"), at("radius_km"))
        labelled = true >= 0
        correct = known[f"{o}_class"].to_numpy(int)[labelled] == true[labelled]
        if o != KNN:  # the refinement moves the place, not the probabilities: its curve is the hierarchy's
            bins[o] = calibration.reliability(top_prob[labelled, 0], correct)
        val = fitted.get(part, {})
        own = o in parts.order  # a temperature is fitted per partitioning only
        rows.append({"method": o, "temperature": val.get("temperature") if own else None,
                     "ece_val_before": val.get("ece_before") if own else None,
                     "ece_val_after": val.get("ece_after") if own else None,
                     "ece_test": calibration.ece(top_prob[labelled, 0], correct),
                     "expected_km_median": float(np.median(expected)) if len(expected) else None,
                     "rank_correlation": float(spearmanr(expected, known[f"{o}_km"]).statistic) if len(expected) > 2 else None,
                     "n": int(labelled.sum())})
    return pd.DataFrame(rows), bins


def reliability_figure(path: str, bins: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=110)
    ax.plot([0, 1], [0, 1], color="0.6", linewidth=0.8, label="perfectly calibrated")
    for o, b in bins.items():
        ax.plot([x["confidence"] for x in b], [x["accuracy"] for x in b], marker="o", markersize=3, label=o)
    ax.set(xlabel="top-1 probability (mean in its bin)", ylabel="share of photos whose top cell is right",
           title="Reliability on the test photos", xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def markdown(table: pd.DataFrame, last: str = "median_km") -> str:
    """A markdown table: the name, the shares (as %), GeoScore where there is one, then ``last`` and n."""
    scales = [c for c in table.columns if c.endswith("km") and c not in ("median_km", "mean_km")]
    shares = scales + [c for c in ("same_country", "same_continent") if c in table.columns]
    score = ["geoscore"] if "geoscore" in table.columns else []
    head = f"| {table.columns[0]} | " + " | ".join(shares + score) + f" | {last.replace('_', ' ')} | n |"
    lines = [head, "|" + "---|" * (len(shares) + len(score) + 3)]
    for _, r in table.iterrows():
        cells = [f"{100 * r[c]:.1f} %" for c in shares] + [f"{r[c]:.0f}" for c in score]
        lines.append(f"| {r[table.columns[0]]} | {' | '.join(cells)} | {r[last]:.0f} | {int(r['n'])} |")
    return "\n".join(lines) + "\n"


def figures(out: str, pred: pd.DataFrame, outputs: list[str], prior_latlon, train: pd.DataFrame) -> list[str]:
    """The accuracy curve and the data map, as PNG files in ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    lat, lon = pred["latitude"].to_numpy(float), pred["longitude"].to_numpy(float)
    curves = {o: pred[f"{o}_km"].to_numpy(float) for o in outputs}
    if prior_latlon is not None:
        curves[PRIOR] = geo.haversine_km(lat, lon, *prior_latlon)
    for name, d in curves.items():
        ax.plot(CURVE_KM, [np.mean(d <= k) * 100 for k in CURVE_KM], label=name,
                linestyle="--" if name == PRIOR else "-", linewidth=2 if name == HIERARCHY else 1.2)
    for km in geo.SCALES_KM.values():
        ax.axvline(km, color="0.85", linewidth=0.8, zorder=0)
    ax.set(xscale="log", xlabel="distance to the true location (km)", ylabel="photos within the distance (%)",
           ylim=(0, 100), xlim=(1, 20_000), title=f"Accuracy curve ({len(pred):,} photos)")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(os.path.join(out, "accuracy_curve.png"))
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(10, 5), dpi=110)
    geography.countries().boundary.plot(ax=ax, color="0.6", linewidth=0.4)
    hb = ax.hexbin(train["longitude"], train["latitude"], gridsize=(90, 30), bins="log", cmap="viridis",
                   mincnt=1, extent=(-180, 180, -90, 90), alpha=0.85)
    ax.scatter(lon, lat, s=3, color="#ff5c5c", label=f"test photos ({len(pred):,})")
    fig.colorbar(hb, ax=ax, label=f"training photos per hexagon ({len(train):,} in all)")
    ax.set(xlim=(-180, 180), ylim=(-90, 90), xlabel="longitude", ylabel="latitude", title="Where the photos are")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(os.path.join(out, "data_map.png"))
    plt.close(fig)
    return ["accuracy_curve.png", "data_map.png"]


def run(lake: str, run: str | None = None) -> dict:
    """Accuracy of a run's predictions; publish ``metrics/<run>/``."""
    lake = Lake(lake)
    run_name = runs.resolve(lake, run)
    model = commit.require(lake, f"models/{run_name}", "train")
    summary = json.loads(lake.read_bytes(f"{model}/summary.json"))
    order = summary["order"]
    outputs = outputs_of(summary)
    columns = ["photo_id", "latitude", "longitude", "user_nsid",
               *(f"{o}_{c}" for o in outputs for c in ("lat", "lon", "km", "class", "topk_class", "topk_prob"))]
    pred, snapshot = catalog.read(lake, "predictions", columns, EqualTo("run", run_name), writer="infer")
    photo_set = ledger.read(lake, "infer", run_name)
    if photo_set is None or (pred.empty and photo_set["out"]):
        raise FileNotFoundError(f"evaluate: no predictions of run {run_name} in {lake.root}; run infer first")
    pred = pred[pred["latitude"].notna()]  # photos of unknown location were predicted, but cannot be scored
    parts = Partitionings.read(model, order, lake)
    fine = parts.of(parts.finest)
    top = fine.loc[fine["count"].idxmax()] if len(fine) else None
    prior = None if top is None else (float(top["mean_lat"]), float(top["mean_lon"]))
    truth = geography.locate(pred["latitude"], pred["longitude"])
    true_country, true_continent = truth.country, truth.continent
    table = accuracy_table(pred, outputs, prior, true_country, true_continent)
    continents = by_place(pred, HIERARCHY, true_continent, "continent")
    countries = by_place(pred, HIERARCHY, true_country, "country", largest=LARGEST_COUNTRIES)
    macro = user_macro(pred, outputs, pred["user_nsid"].fillna("(unknown user)"))
    part_dir = commit.require(lake, f"partitionings/{summary['image_set']}", "the partitioning stage")
    labels = [f"class_{p}" for p in order]
    train = lake.read_parquet(f"{part_dir}/photos.parquet", columns=["photo_id", "latitude", "longitude", "split", *labels])
    fitted = json.loads(lake.read_bytes_or_none(f"{model}/{calibration.FILE}") or "{}")  # older runs have none
    trust, bins = confidence(pred, outputs, train[["photo_id", *labels]], parts, fitted)
    metrics = {"run": run_name, "image_set": summary["image_set"], "images": int(len(pred)),
               "photos": photo_set.get("photos"), "split": photo_set.get("split"), "predictions_snapshot": snapshot,
               "split_rule": summary.get("split_rule"), "crops": photo_set.get("crops", 1),
               "truth_outside_countries": int(sum(c is None for c in true_country)),
               "table": table.replace({np.nan: None}).to_dict(orient="records"),
               "by_continent": continents.replace({np.nan: None}).to_dict(orient="records"),
               "by_country": countries.replace({np.nan: None}).to_dict(orient="records"),
               "user_macro": macro.replace({np.nan: None}).to_dict(orient="records"),
               "calibration": trust.replace({np.nan: None}).to_dict(orient="records")}
    with commit.building(lake, f"metrics/{run_name}") as out:
        metrics["figures"] = figures(out, pred, outputs, prior, train[train["split"] == "train"])
        table.to_csv(os.path.join(out, "accuracy.csv"), index=False)
        continents.to_csv(os.path.join(out, "by_continent.csv"), index=False)
        countries.to_csv(os.path.join(out, "by_country.csv"), index=False)
        macro.to_csv(os.path.join(out, "user_macro.csv"), index=False)
        trust.to_csv(os.path.join(out, "calibration.csv"), index=False)
        reliability_figure(os.path.join(out, "reliability.png"), bins)
        metrics["figures"].append("reliability.png")
        with open(os.path.join(out, "accuracy.md"), "w") as f:
            f.write(markdown(table) + f"\nEvery user weighing the same ({macro['users'].iloc[0]} users):\n\n"
                    + markdown(macro, "users") + "\nHierarchy, by continent of the true location:\n\n"
                    + markdown(continents) + f"\nHierarchy, in the {len(countries)} countries with the most "
                    "test photos:\n\n" + markdown(countries))
        with open(os.path.join(out, "metrics.json"), "w") as f:
            json.dump(metrics, f, indent=2, sort_keys=True, default=str)
    log.info("evaluate [%s]: %d predictions (%s)\n%s", run_name, len(pred), metrics["photos"], markdown(table))
    return metrics
