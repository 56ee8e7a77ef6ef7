"""kNN refinement of the hierarchy's answer ("Revisiting IM2GPS in the Deep Learning Era", Vo et al. 2017):
a photo's place is looked up among the training photos that look most like it, inside the cells the
classifier finds most likely, so that an answer is no longer stuck at a cell's mean.

- **Index**: the training photos' embeddings (the layer before the outputs, L2-normalised) in a faiss
  ``IndexIVFFlat`` whose inverted lists are the finest partitioning's cells: each photo is filed under
  its own cell, so a search "inside the top cells" scans only their photos (at most tau_max each),
  whatever the index's size. Saved beside the model (``knn.faiss``, ``knn_places.parquet``).
- **Query**: the ``NEIGHBOURS`` most similar training photos within the hierarchy's ``CELLS`` most likely
  cells (inner product of the normalised embeddings).
- **Place**: the densest group among them: the neighbour with the most similarity within ``GROUP_KM``
  of it, and the similarity-weighted mean (on the sphere) of the neighbours in that radius.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from deeploc.earth import geo

INDEX, PLACES = "knn.faiss", "knn_places.parquet"
NEIGHBOURS, CELLS, GROUP_KM = 20, 5, 25.0
INDEX_PHOTOS = 1_000_000  # training photos indexed at most: float32 embeddings, 4 bytes x width each (8 GB at 2048)


def normalised(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def build(embeddings: np.ndarray, cells: np.ndarray, n_cells: int):
    """An IVF index with one inverted list per cell, each embedding filed under its cell; ids are row numbers."""
    import faiss

    # Named arrays, contiguous: swig_ptr keeps no reference, so a temporary could be freed under faiss.
    x, cells = np.ascontiguousarray(normalised(embeddings)), np.ascontiguousarray(cells, np.int64)
    centroids = np.zeros((n_cells, x.shape[1]), np.float32)
    np.add.at(centroids, cells, x)  # a cell's mean direction: used only if someone searches it the usual way
    quantizer = faiss.IndexFlatIP(x.shape[1])
    quantizer.add(normalised(centroids))
    index = faiss.IndexIVFFlat(quantizer, x.shape[1], n_cells, faiss.METRIC_INNER_PRODUCT)
    index.is_trained = True
    ids = np.arange(len(x), dtype=np.int64)
    index.add_core(len(x), faiss.swig_ptr(x), faiss.swig_ptr(ids), faiss.swig_ptr(cells))
    return index


class Refiner:
    """The index and the training photos' places (row ``i`` is id ``i``)."""

    def __init__(self, index, lat: np.ndarray, lon: np.ndarray):
        self.index, self.lat, self.lon = index, np.asarray(lat, float), np.asarray(lon, float)

    def save(self, folder: str) -> None:
        import faiss

        faiss.write_index(self.index, os.path.join(folder, INDEX))
        pd.DataFrame({"latitude": self.lat, "longitude": self.lon}).to_parquet(os.path.join(folder, PLACES))

    @classmethod
    def load(cls, folder: str) -> Refiner | None:
        """The run's refiner; None for runs without an index."""
        import faiss

        if not os.path.exists(os.path.join(folder, INDEX)):
            return None
        places = pd.read_parquet(os.path.join(folder, PLACES))
        return cls(faiss.read_index(os.path.join(folder, INDEX)), places["latitude"].to_numpy(), places["longitude"].to_numpy())

    def neighbours(self, embeddings: np.ndarray, top_cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(similarities, ids) of each photo's nearest training photos inside its ``top_cells`` (-1: none)."""
        top_cells = np.ascontiguousarray(top_cells, np.int64)
        self.index.nprobe = top_cells.shape[1]
        return self.index.search_preassigned(normalised(embeddings), NEIGHBOURS, top_cells,
                                             np.zeros(top_cells.shape, np.float32))

    def refine(self, embeddings: np.ndarray, top_cells: np.ndarray, lat: np.ndarray, lon: np.ndarray):
        """Each photo's place from its neighbours' densest group; ``lat``/``lon`` where it has none."""
        sims, ids = self.neighbours(embeddings, top_cells)
        out_lat, out_lon = np.array(lat, float), np.array(lon, float)
        for i in range(len(ids)):
            found = ids[i] >= 0
            if found.any():
                out_lat[i], out_lon[i] = densest(self.lat[ids[i][found]], self.lon[ids[i][found]], sims[i][found])
        return out_lat, out_lon


def densest(lat: np.ndarray, lon: np.ndarray, weight: np.ndarray) -> tuple[float, float]:
    """The similarity-weighted spherical mean of the neighbours within GROUP_KM of the one with the most
    similarity within GROUP_KM of it."""
    w = np.maximum(np.asarray(weight, float), 1e-6)  # inner products may be <= 0; every neighbour still counts
    near = geo.haversine_km(lat[:, None], lon[:, None], lat[None, :], lon[None, :]) <= GROUP_KM
    centre = int(np.argmax(near @ w))
    member = near[centre]
    mean_lat, mean_lon = geo.from_xyz((geo.to_xyz(lat[member], lon[member]) * w[member, None]).sum(axis=0))
    return float(mean_lat), float(mean_lon)
