"""The model and what it learns from: profiles, splits, input pipelines, the network and its pretrained backbone, prediction, calibration, the kNN refinement, run comparisons."""
